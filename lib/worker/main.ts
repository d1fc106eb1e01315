import cluster from 'node:cluster';
import http from 'node:http';
import net from 'node:net';
import { backendHost, type Config } from '../config/config.js';
import { Batcher, unbatch } from '../ipc/batch.js';
import { LeaseClient } from '../ipc/lease-client.js';
import {
  decodePrimaryMessage,
  dispatch,
  NAMESPACE,
  WORKER_BUFFER_DIR_ENV,
  WORKER_CONFIG_ENV,
  type Handlers,
  type PrimaryMessage,
  type WorkerMessage,
} from '../ipc/protocol.js';
import { createAccessLog, createLogger } from '../log.js';
import { RequestMetrics } from '../metrics/request-metrics.js';
import { createHandlers } from './app.js';
import { BufferBudget } from './buffer-budget.js';
import { ClientConnections } from './client-connections.js';
import { releaseAllIdle, releaseIdle } from './exchange.js';
import { requestObserver } from './request-observer.js';
import type { Tunnel } from './upgrade.js';

/**
 * Front worker entry point: one of `workers` processes forked by the primary, all listening on
 * http_port (node:cluster shares the socket). It knows nothing of backend processes: it asks the
 * supervisor for a lease over IPC and proxies to the port it is given.
 */
// The worker's logs and metrics carry its cluster id, as /status lists workers by it.
const workerId = cluster.worker?.id ?? 0;
const log = createLogger('worker', { worker: workerId });
/** The access log's own writer: buffered, where the rest is written line by line. */
const accessLog = createAccessLog('worker', { worker: workerId });
const config = JSON.parse(process.env[WORKER_CONFIG_ENV] ?? 'null') as Config | null;
const bufferDir = process.env[WORKER_BUFFER_DIR_ENV];
if (!config || !bufferDir || !process.send) {
  log.fatal(
    { event: 'worker.misused' },
    'a front worker is started by the multiplexer primary, not on its own',
  );
  process.exit(70);
}
const sendRaw = process.send.bind(process);
/**
 * Every message to the primary. When the primary is gone the send fails; without a callback the
 * failure would be an unhandled 'error' event. The 'disconnect' handler ends this worker then.
 */
const channel = new Batcher<WorkerMessage>((message, done) =>
  sendRaw(message, undefined, {}, () => done?.()),
);
const send = channel.send.bind(channel);
const backend = backendHost(config.service_http_base_url);
const shutdownMs = config.shutdown_timeout_ms;

const leases = new LeaseClient((message) => send(message));
let active = 0;
let draining = false;
let idleGraceOver = false;

/**
 * How long a draining worker keeps idle keep-alive connections open. A client that loops sends its
 * next request within this time and gets an answer with "Connection: close"; closing an idle
 * connection at once races with a request the client is writing onto it, which then fails.
 */
const idleGraceMs = Math.min(1000, config.shutdown_timeout_ms / 2);

/** Upgraded connections (WebSockets) by lease: closed after shutdown_timeout_ms on a drain. */
const tunnels = new Map<number, Tunnel>();

const metrics = new RequestMetrics(workerId);
const budget = new BufferBudget(config.buffer_memory_total_bytes, config.buffer_disk_max_bytes);

const front = createHandlers({
  config,
  leases,
  bufferDir,
  tunnels,
  onStart: () => active++,
  onSettled: () => {
    active--;
    if (draining) finishDrainIfIdle();
  },
  isDraining: () => draining,
  observer: requestObserver(config.metrics ? metrics : undefined, accessLog, config.access_log),
  budget,
  onFault: (err, where) =>
    log.error(
      { event: 'request.internal-error', where, err },
      `an exception ended one exchange (${where}); the worker goes on`,
    ),
});

const server = http.createServer(
  {
    // client_timeout_ms: headers dribbled byte by byte (slowloris) are cut when the whole head has
    // not arrived in time (408), checked this often; bodies and answers are timed by the exchange.
    headersTimeout: config.client_timeout_ms,
    requestTimeout: 0,
    connectionsCheckingInterval: Math.min(1000, Math.max(50, config.client_timeout_ms / 4)),
  },
  front.request,
);
server.on('checkContinue', front.checkContinue);
server.on('upgrade', front.upgrade);
server.listen({ port: config.http_port, host: config.http_host });
server.on('error', (err) => {
  log.fatal(
    { event: 'worker.listen-failed', err },
    `cannot listen on ${config.http_host}:${config.http_port}`,
  );
  process.exit(70);
});

// Open client connections, so a drain with none left ends without waiting out the idle grace.
const clients = new ClientConnections(server, () => {
  if (draining) finishDrainIfIdle();
});

let drained = false;
let recheck: NodeJS.Timeout | undefined;

function finishDrainIfIdle(): void {
  if (drained) return;
  if (idleGraceOver) clients.closeIdle(idleGraceMs);
  if (active > 0 || clients.size > 0) {
    // After the grace, a connection still open is busy or was accepted less than a grace ago:
    // look again shortly (the primary bounds the whole drain).
    if (idleGraceOver && !recheck) {
      recheck = setTimeout(() => {
        recheck = undefined;
        finishDrainIfIdle();
      }, 50);
    }
    return;
  }
  drained = true;
  releaseAllIdle();
  send({ ns: NAMESPACE, type: 'drained', complete: true }, () => process.exit(0));
}

/**
 * Stop accepting, let every request in flight finish (answers say "Connection: close"), give idle
 * keep-alive connections a moment, then exit; the primary bounds the whole wait.
 */
function drain(): void {
  if (draining) return;
  draining = true;
  // http.Server#close would also close idle keep-alive connections at once: stop listening only.
  net.Server.prototype.close.call(server);
  // Upgraded connections have no end of their own: they get shutdown_timeout_ms, then are closed.
  setTimeout(() => tunnels.forEach((t) => t.close()), shutdownMs).unref();
  setTimeout(() => {
    idleGraceOver = true;
    finishDrainIfIdle();
  }, idleGraceMs).unref();
  finishDrainIfIdle();
}

const handlers: Handlers<PrimaryMessage> = {
  granted: (m) => leases.settle(m),
  rejected: (m) => leases.settle(m),
  revoke: (m) => leases.revoke(m),
  drain: () => drain(),
  release: (m) => releaseIdle(backend, m.port),
  'close-upgraded': (m) => {
    setTimeout(() => tunnels.get(m.lease)?.close(), shutdownMs).unref();
  },
  'metrics-request': (m) => {
    void metrics.registry.getMetricsAsJSON().then((json) => {
      send({ ns: NAMESPACE, type: 'metrics', ack: m.seq, metrics: json });
    });
  },
};

process.on('message', (raw) => {
  for (const one of unbatch(raw)) {
    const decoded = decodePrimaryMessage(one);
    if (!decoded.ok) {
      if (!decoded.foreign)
        log.warn(
          { event: 'ipc.malformed', reason: decoded.reason },
          'ignoring a malformed message from the primary',
        );
      continue;
    }
    dispatch(handlers, decoded.message, undefined);
  }
});

// The primary coordinates shutdown. A Ctrl-C at the terminal reaches the whole foreground process
// group, workers included: they leave it to the primary. A SIGTERM aimed at one worker drains it.
process.on('SIGINT', () => undefined);
process.on('SIGTERM', drain);
// Without the primary there is no supervisor to lease from.
process.on('disconnect', () => process.exit(draining ? 0 : 1));
