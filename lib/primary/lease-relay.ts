import type { Worker } from 'node:cluster';
import { unbatch } from '../ipc/batch.js';
import type { MessageCounts } from '../ipc/message-counts.js';
import {
  decodeWorkerMessage,
  dispatch,
  NAMESPACE,
  UNBOUNDED,
  type Handlers,
  type HeldEntry,
  type WorkerMessage,
} from '../ipc/protocol.js';
import type { Logger } from '../log.js';
import type { RejectCode } from '../supervisor/pool.js';
import type { ServicePools } from '../supervisor/service-pools.js';
import type { SupervisorHooks } from '../supervisor/supervisor.js';
import type { FrontEdge } from './front-edge.js';
import type { MetricsGather } from './metrics-gather.js';
import type { FrontWorkers } from './worker-pool.js';

/** What the supervisor tells workers, as messages (the lease protocol's primary side). */
export type LeaseMessages = Pick<
  SupervisorHooks,
  'grant' | 'revoke' | 'reject' | 'dropConnections' | 'closeUpgraded' | 'lost'
>;

export function leaseMessages(workers: FrontWorkers): LeaseMessages {
  return {
    grant: (g) =>
      workers.send(g.worker, {
        ns: NAMESPACE,
        type: 'granted',
        ack: g.checkoutSeq,
        lease: g.lease,
        port: g.port,
        backend: g.backend,
        upTo: Math.min(g.upTo, UNBOUNDED),
        passes: Math.min(g.passes, UNBOUNDED),
        holdMs: Math.min(g.holdMs, UNBOUNDED),
      }),
    lost: (worker, lease) => workers.send(worker, { ns: NAMESPACE, type: 'lost', lease }),
    revoke: (worker, seq, leases, upTo) =>
      workers.send(worker, { ns: NAMESPACE, type: 'revoke', seq, leases, upTo }),
    reject: (worker, ack, code) =>
      workers.send(worker, {
        ns: NAMESPACE,
        type: 'rejected',
        ack,
        code,
        message: REJECTION[code],
      }),
    dropConnections: (worker, port) =>
      workers.send(worker, { ns: NAMESPACE, type: 'drop-connections', port }),
    closeUpgraded: (worker, lease) =>
      workers.send(worker, { ns: NAMESPACE, type: 'close-upgraded', lease }),
  };
}

const REJECTION: Record<RejectCode, string> = {
  MPX_QUEUE_FULL: 'too many requests are waiting for a free backend (queue_max)',
  MPX_CLIENT_QUEUE_FULL:
    'this client has too many requests waiting for a free backend (queue_max_per_client)',
  MPX_QUEUE_TIMEOUT: 'no backend became free within queue_timeout_ms',
  MPX_SHUTTING_DOWN: 'the server is shutting down',
  MPX_NO_SERVICE: 'no service takes this request (its service was removed by a reload)',
};

/** The entries of a `held` report that are well formed (the rest are dropped). */
function entriesOf(raw: readonly unknown[]): HeldEntry[] {
  const out: HeldEntry[] = [];
  for (const r of raw) {
    if (!Array.isArray(r) || r.length !== 3) continue;
    const [lease, reused, idleMs] = r as unknown[];
    if (
      Number.isSafeInteger(lease) &&
      Number.isSafeInteger(reused) &&
      (reused as number) >= 0 &&
      Number.isSafeInteger(idleMs) &&
      (idleMs as number) >= -1
    )
      out.push([lease as number, reused as number, idleMs as number]);
  }
  return out;
}

/** Where each message from a worker goes: the supervisor, the front core, the metrics gather. */
export class WorkerMessageRouter {
  /** One table for every message on the per-request path; the sending worker's id is the context. */
  private readonly handlers: Handlers<WorkerMessage, number>;

  constructor(
    {
      supervisor,
      front,
      gather,
      reject,
    }: {
      supervisor: ServicePools;
      front: FrontEdge;
      gather: MetricsGather;
      reject: LeaseMessages['reject'];
    },
    private readonly counts: MessageCounts,
    private readonly log: Logger,
  ) {
    this.handlers = {
      // A service a reload removed while the worker still routed to it: 404 MPX_NO_SERVICE.
      checkout: (m, worker) =>
        supervisor.checkout(m.service, worker, m.seq, false, m.client) ||
        reject(worker, m.seq, 'MPX_NO_SERVICE'),
      'checkout-again': (m, worker) =>
        supervisor.checkout(m.service, worker, m.seq, true, m.client) ||
        reject(worker, m.seq, 'MPX_NO_SERVICE'),
      cancel: (m, worker) => supervisor.cancel(m.service, worker, m.seq),
      checkin: (m, worker) =>
        supervisor.checkin(m.service, worker, m.lease, m.outcome, {
          reused: m.reused,
          idleMs: m.idleMs,
        }),
      held: (m, worker) => supervisor.held(m.service, worker, entriesOf(m.reports)),
      pass: (m, worker) => supervisor.pass(m.service, worker, m.lease, m.to),
      revoked: (m, worker) => supervisor.revoked(worker, m.ack),
      upgraded: (m, worker) => supervisor.upgraded(m.service, worker, m.lease),
      drained: (m, worker) => front.feed({ type: 'drained', worker, complete: m.complete }),
      metrics: (m, worker) => gather.reply(worker, m.ack, m.metrics),
    };
  }

  route(worker: Worker, raw: unknown): void {
    const messages = unbatch(raw);
    if (messages.length > 1) this.counts.count('in', 'batch');
    for (const one of messages) {
      const decoded = decodeWorkerMessage(one);
      if (!decoded.ok) {
        // prom-client's cluster messages and node's own share this channel: not ours to judge.
        if (decoded.foreign) continue;
        this.log.warn(
          { event: 'ipc.malformed', worker: worker.id, reason: decoded.reason },
          'ignoring a malformed worker message',
        );
        continue;
      }
      this.counts.count('in', decoded.message.type);
      dispatch(this.handlers, decoded.message, worker.id);
    }
  }
}
