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
import { createAccessLog } from '../access-log.js';
import { createLogger } from '../log.js';
import { RequestMetrics } from '../metrics/request-metrics.js';
import { createHandlers } from './app.js';
import { BufferBudget } from './buffer-budget.js';
import { WorkerDrain } from './drain.js';
import { ClientConnections } from './client-connections.js';
import { dropAllIdleConnections, dropIdleConnections } from './exchange.js';
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

const leases = new LeaseClient(
  (message) => send(message),
  undefined,
  undefined,
  // A backend the pool took back: the connection to it closes once it is idle (node:http's
  // client frees it on the next tick), so another worker's can be served.
  (port) => setImmediate(() => dropIdleConnections(backend, port)),
);
// The one coarse timer of the lease client: held leases idle past their time go back, and the
// requests served on held leases are reported (no timer per request).
setInterval(() => leases.sweep(), 100).unref();
let active = 0;

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
    drain.settled();
  },
  isDraining: () => drain.draining,
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
const clients = new ClientConnections(server, () => drain.settled());

const drain = new WorkerDrain(
  {
    busy: () => active,
    connections: () => clients.size,
    closeIdle: (graceMs) => clients.closeIdle(graceMs),
    // http.Server#close would also close idle keep-alive connections at once: stop listening only.
    stopListening: () => net.Server.prototype.close.call(server),
    closeTunnels: () => tunnels.forEach((t) => t.close()),
    finish: (complete) => {
      dropAllIdleConnections();
      send({ ns: NAMESPACE, type: 'drained', complete }, () => process.exit(0));
    },
  },
  idleGraceMs,
  shutdownMs,
);

const handlers: Handlers<PrimaryMessage> = {
  granted: (m) => leases.settle(m),
  rejected: (m) => leases.settle(m),
  revoke: (m) => leases.revoke(m),
  lost: (m) => leases.lost(m.lease),
  drain: (m) => {
    leases.releaseAll();
    drain.begin(m.withinMs);
  },
  'drop-connections': (m) => dropIdleConnections(backend, m.port),
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
// Given as long as the primary gives a stop (shutdown_timeout_ms and the margin for upgraded connections).
process.on('SIGTERM', () => {
  leases.releaseAll();
  drain.begin(shutdownMs + 500);
});
// Without the primary there is no supervisor to lease from.
process.on('disconnect', () => process.exit(drain.draining ? 0 : 1));
