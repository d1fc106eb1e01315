/**
 * The messages between the primary (supervisor) and the front workers: the one source of truth.
 * Plain JSON objects with a namespace field (Node reserves `cmd: 'NODE_*'` for its own cluster
 * messages). As in node's cluster internals, either side may ask: a request carries `seq`, numbered
 * by its sender, and the reply carries the same number as `ack`. Both sides validate what they
 * receive.
 *
 * The lease protocol, per request (every message names the request's service, as the worker's
 * router chose it; leases and backend ids are unique across services):
 *   worker: checkout{seq}   ─▶ primary: granted{ack: seq, lease, upTo, passes} or rejected{ack: seq}
 *   worker: checkin{lease}  ─▶ primary         (the backend is free again), or
 *   worker: pass{lease, to} ─▶ primary         (handed on to this worker's own checkout `to`)
 *
 * Sticky leases. A worker that is done with a backend while it has checkouts of its own waiting
 * keeps the backend for the oldest of them and tells the primary so (`pass`): the next request
 * reaches the backend without a round trip through the primary, which learns of it after the
 * fact. What keeps one global first-come-first-served order across workers is `upTo`: a worker may
 * pass a lease only to its checkouts numbered ≤ upTo, which the primary chooses so that they all
 * came before any other worker's waiting request (unbounded while no other worker has one). When a
 * request of another worker starts waiting, or the backend is to retire, the primary lowers the
 * bound with revoke{seq, leases, upTo}, and the worker confirms with revoked{ack: seq}. Until that
 * confirmation a pass beyond the new bound may still be under way (it crossed the revoke), so the
 * order holds to within one request per backend; after it, a pass beyond the bound is a bug.
 * A checkout the worker passed a backend to may meanwhile have been granted another one; the
 * primary takes that one back when the pass arrives, and the worker ignores the late grant.
 * `passes` in a grant is how many times the worker may pass it on in all: what the backend's
 * service_max_requests leaves after this request. It is a count, not a bound, because passes are
 * reported after the fact: a revoke would arrive too late for a limit that must hold exactly.
 *
 * Held leases. A lease whose bound is open (UNBOUNDED) may also be kept while idle: a worker whose
 * request ended with nobody of its own waiting keeps the backend, and serves its next request of
 * that service there without any message (a pass to a checkout that was never sent). In the
 * steady state a worker so serves every request on backends it holds, and the primary hears
 * nothing per request. What keeps this honest:
 *   - a request that finds no free held backend is sent to the primary as a checkout at once, so
 *     the one queue still sees every waiting request; its arrival revokes other workers' open
 *     leases (as for passes), and a worker told so gives back the ones it holds idle at once,
 *     before it confirms: within one round trip;
 *   - the grant's `holdMs` says how long the backend may sit idle in the worker: for good within
 *     pool_size, pool_overflow_idle_ms beyond it (then it comes back, `idleMs` telling how long it
 *     was idle, so the pool shrinks on time), 0 for a backend that must come back each time;
 *   - a retire (shrink, roll, recycle, a health check, the budget) revokes to 0: an idle held
 *     lease comes back at once, a busy one at the end of its request;
 *   - requests served on a held lease count against `passes` like passes, and are reported to the
 *     pool in batches (`held`, at most once a second, with which leases sit idle, for /status and
 *     /metrics) and with the checkin;
 *   - a backend that exits while held is reported with lost{lease}: the worker forgets the lease.
 */
import type { ErrorCode } from '../errors.js';

export const NAMESPACE = 'mpx';

/** One lease in a worker's `held` report: [lease, reused, idleMs (-1: in use)]. */
export type HeldEntry = [lease: number, reused: number, idleMs: number];

/** How a lease ended; see the pool's CheckinOutcome. */
export type CheckinOutcome = 'ok' | 'stuck' | 'broken' | 'refused' | 'bad-response' | 'abandoned';
const OUTCOMES = ['ok', 'stuck', 'broken', 'refused', 'bad-response', 'abandoned'] as const;

/**
 * `upTo` for a lease that may be passed to any later checkout of the worker (JSON has no
 * Infinity). Sequence numbers stay far below it.
 */
export const UNBOUNDED = Number.MAX_SAFE_INTEGER;

/** Front worker → primary. */
export type WorkerMessage =
  /** `client`: who asked, for queue_max_per_client (an address; '' when not told). */
  | { ns: typeof NAMESPACE; type: 'checkout'; seq: number; client: string; service: string }
  /**
   * A checkout for a request whose granted backend refused the connection (so never saw it):
   * it goes to the head of the queue, not the end. Never the target of a pass.
   */
  | {
      ns: typeof NAMESPACE;
      type: 'checkout-again';
      seq: number;
      client: string;
      service: string;
    }
  /** Gives up the checkout `seq` (its client left). */
  | { ns: typeof NAMESPACE; type: 'cancel'; seq: number; service: string }
  | {
      ns: typeof NAMESPACE;
      type: 'checkin';
      lease: number;
      outcome: CheckinOutcome;
      service: string;
      /** Requests served on the lease while held (no message each), not yet reported. */
      reused: number;
      /** How long the lease was held idle before this checkin (0: it ends a request). */
      idleMs: number;
    }
  /**
   * The leases this worker holds, as of now: [lease, requests served with no message since the
   * last report, how long it has been idle here (-1: a request is on it)].
   */
  | { ns: typeof NAMESPACE; type: 'held'; service: string; reports: HeldEntry[] }
  /**
   * The request on `lease` ended well and the backend now serves this worker's checkout `to`
   * (always one of the same service).
   */
  | { ns: typeof NAMESPACE; type: 'pass'; lease: number; to: number; service: string }
  /** The reply to revoke `ack`: the new bounds are in force. */
  | { ns: typeof NAMESPACE; type: 'revoked'; ack: number }
  /** The request on `lease` became an upgraded connection (101): held until it closes. */
  | { ns: typeof NAMESPACE; type: 'upgraded'; lease: number; service: string }
  | { ns: typeof NAMESPACE; type: 'drained'; complete: boolean }
  /** The reply to metrics-request `ack`: this worker's prom-client registry as JSON. */
  | { ns: typeof NAMESPACE; type: 'metrics'; ack: number; metrics: unknown[] };

/** Primary → front worker. */
export type PrimaryMessage =
  /**
   * `backend` is the backend's id, for the access log; `port` is where to reach it; `upTo` bounds
   * the checkouts it may be passed to (UNBOUNDED: any).
   */
  | {
      ns: typeof NAMESPACE;
      type: 'granted';
      ack: number;
      lease: number;
      port: number;
      backend: number;
      upTo: number;
      /** How many times the worker may pass the lease on: the backend's max_requests left. */
      passes: number;
      /** How long the worker may hold the backend idle (UNBOUNDED: for good; 0: not at all). */
      holdMs: number;
    }
  /** The backend held under `lease` exited: the lease is void. */
  | { ns: typeof NAMESPACE; type: 'lost'; lease: number }
  | { ns: typeof NAMESPACE; type: 'rejected'; ack: number; code: ErrorCode; message: string }
  /** From now on, `leases` may be passed only to checkouts numbered ≤ upTo (0: to none). */
  | { ns: typeof NAMESPACE; type: 'revoke'; seq: number; leases: readonly number[]; upTo: number }
  /**
   * Stop accepting and finish what is in flight within `withinMs`; then reply drained{complete},
   * false if something had to be cut.
   */
  | { ns: typeof NAMESPACE; type: 'drain'; withinMs: number }
  /**
   * The backend on `port` was leased to another worker: close any idle keep-alive connection to it,
   * or a backend that serves one connection at a time would wait on it instead of the new one.
   */
  | { ns: typeof NAMESPACE; type: 'drop-connections'; port: number }
  /**
   * The backend held by the upgraded connection on `lease` is to retire (reload, shrink): the
   * worker closes that connection after shutdown_timeout_ms.
   */
  | { ns: typeof NAMESPACE; type: 'close-upgraded'; lease: number }
  /** A scrape of /metrics or /status: the worker answers with a 'metrics' message. */
  | { ns: typeof NAMESPACE; type: 'metrics-request'; seq: number };

type Shape = Record<string, 'number' | 'string' | 'boolean' | 'array' | readonly string[]>;

const workerShapes: Record<WorkerMessage['type'], Shape> = {
  checkout: { seq: 'number', client: 'string', service: 'string' },
  'checkout-again': { seq: 'number', client: 'string', service: 'string' },
  cancel: { seq: 'number', service: 'string' },
  checkin: {
    lease: 'number',
    outcome: OUTCOMES,
    service: 'string',
    reused: 'number',
    idleMs: 'number',
  },
  held: { service: 'string', reports: 'array' },
  pass: { lease: 'number', to: 'number', service: 'string' },
  revoked: { ack: 'number' },
  upgraded: { lease: 'number', service: 'string' },
  drained: { complete: 'boolean' },
  metrics: { ack: 'number', metrics: 'array' },
};

const primaryShapes: Record<PrimaryMessage['type'], Shape> = {
  granted: {
    ack: 'number',
    lease: 'number',
    port: 'number',
    backend: 'number',
    upTo: 'number',
    passes: 'number',
    holdMs: 'number',
  },
  lost: { lease: 'number' },
  rejected: { ack: 'number', code: 'string', message: 'string' },
  revoke: { seq: 'number', leases: 'array', upTo: 'number' },
  drain: { withinMs: 'number' },
  'drop-connections': { port: 'number' },
  'close-upgraded': { lease: 'number' },
  'metrics-request': { seq: 'number' },
};

/**
 * `foreign`: a message of another namespace on the same channel (prom-client's cluster
 * aggregation, node's own), not ours to judge: ignored quietly.
 */
export type Decoded<T> = { ok: true; message: T } | { ok: false; foreign: boolean; reason: string };

function decode<T>(raw: unknown, shapes: Record<string, Shape>): Decoded<T> {
  if (typeof raw !== 'object' || raw === null)
    return { ok: false, foreign: false, reason: 'not an object' };
  const message = raw as Record<string, unknown>;
  if (message.ns !== NAMESPACE)
    return { ok: false, foreign: true, reason: 'not a multiplexer message' };
  const type = message.type;
  const shape = typeof type === 'string' ? shapes[type] : undefined;
  if (!shape)
    return { ok: false, foreign: false, reason: `unknown message type ${JSON.stringify(type)}` };
  for (const [field, expected] of Object.entries(shape)) {
    const value = message[field];
    const fits =
      expected === 'array'
        ? Array.isArray(value)
        : typeof expected === 'string'
          ? typeof value === expected && (expected !== 'number' || Number.isSafeInteger(value))
          : typeof value === 'string' && expected.includes(value);
    if (!fits) {
      return {
        ok: false,
        foreign: false,
        reason: `${String(type)}.${field} must be ${String(expected)}, got ${JSON.stringify(value)}`,
      };
    }
  }
  return { ok: true, message: raw as T };
}

export function decodeWorkerMessage(raw: unknown): Decoded<WorkerMessage> {
  return decode<WorkerMessage>(raw, workerShapes);
}

export function decodePrimaryMessage(raw: unknown): Decoded<PrimaryMessage> {
  return decode<PrimaryMessage>(raw, primaryShapes);
}

/**
 * Compile-time exhaustiveness for message dispatch tables. The table is built once; what differs
 * per message (e.g. which worker sent it) travels as `context`.
 */
export type Handlers<M extends { type: string }, C = void> = {
  [K in M['type']]: (message: Extract<M, { type: K }>, context: C) => void;
};

export function dispatch<M extends { type: string }, C>(
  handlers: Handlers<M, C>,
  message: M,
  context: C,
): void {
  (handlers[message.type as M['type']] as (m: M, c: C) => void)(message, context);
}

/** The primary hands each front worker its validated config, as JSON data, in this variable at fork. */
export const WORKER_CONFIG_ENV = 'MULTIPLEXER_WORKER_CONFIG';

/** And the private directory (under the state directory) for bodies that outgrow memory. */
export const WORKER_BUFFER_DIR_ENV = 'MULTIPLEXER_WORKER_BUFFER_DIR';

/**
 * 1 in the environment (the workers inherit the primary's): the raw backend path for what it
 * can serve (see lib/worker/raw-exchange.ts); otherwise node:http's client for every exchange.
 */
export const RAW_PATH_ENV = 'MULTIPLEXER_RAW_PATH';
