import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { backendHost, type Config } from '../config/config.js';
import { httpStatusFor, type ErrorCode } from '../errors.js';
import type { CheckinOutcome } from '../ipc/protocol.js';
import type { CheckoutResult, LeaseClient } from '../ipc/lease-client.js';
import { readBody, type BodyResult } from './request-body.js';
import type { BufferBudget } from './buffer-budget.js';
import { BufferFullError, BufferStore } from './buffer-store.js';
import { Delivery } from './delivery.js';
import { errorCodeOf, sendError, writeErrorTo } from './error-response.js';
import { exchange, type ExchangeTarget, type OutgoingRequest } from './exchange.js';
import { guard, type FaultReporter } from './guard.js';
import {
  addOwnHeader,
  clientAddressOf,
  requestHeaders,
  requestIdOf,
  targetOf,
  TrustedProxies,
} from './headers.js';
import type { RequestObserver } from './request-observer.js';
import { tunnel, type Tunnel } from './upgrade.js';

export interface AppDeps {
  readonly config: Config;
  readonly leases: LeaseClient;
  /** Private directory for bodies that outgrow buffer_memory_bytes. */
  readonly bufferDir: string;
  /** Count requests from arrival until their answer and their lease are done, for the drain. */
  readonly onStart: () => void;
  readonly onSettled: () => void;
  readonly isDraining: () => boolean;
  /** Upgraded connections, by lease, so a drain or a retiring backend can close them. */
  readonly tunnels: Map<number, Tunnel>;
  /** Metrics and the access log. */
  readonly observer: RequestObserver;
  /** An exception caught on the request path (see guard.ts). */
  readonly onFault: FaultReporter;
  /** Bodies in memory and in temp files, all exchanges together. */
  readonly budget: BufferBudget;
}

/** The backend a request was given, for the access log (the last one, after a refusal). */
interface LeaseRecord {
  leasedAt: number | undefined;
  backend: number | undefined;
  port: number | undefined;
}

const NO_LEASE: Readonly<LeaseRecord> = {
  leasedAt: undefined,
  backend: undefined,
  port: undefined,
};

export interface FrontHandlers {
  readonly request: (req: IncomingMessage, res: ServerResponse) => void;
  /** A request with "Expect: 100-continue": answered 100 only once it will be accepted. */
  readonly checkContinue: (req: IncomingMessage, res: ServerResponse) => void;
  readonly upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
}

/**
 * How many backends may refuse one request before it gets 502: each refusal sends the backend
 * back to starting, so this bounds a request's tour of a pool whose backends all stopped listening.
 */
const MAX_REFUSALS = 2;

/**
 * Requests of one connection parsed ahead of its answers. Node reads a pipelining connection on
 * while the first answer waits, and parses every request in it: one connection that sent 200,000
 * GETs behind a slow one grew a worker by 410 MB and starved every other client. Past this many,
 * the connection is no longer read (what was already received in one read is still parsed) until
 * answers catch up; the client's own writes then wait in its socket.
 */
const MAX_PIPELINED = 32;

function storeFailure(err: Error | undefined): string {
  if (err instanceof BufferFullError) return 'buffer_disk_max_bytes reached';
  const code = err && 'code' in err ? String(err.code) : undefined;
  return code ?? err?.message ?? 'unknown';
}

function hasBody(req: IncomingMessage): boolean {
  return (
    req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length']) > 0
  );
}

/**
 * The front worker's handlers, on node:http directly: there is one route, and express's router
 * cost about 100 µs of CPU per request here, half of the worker's whole cost (see
 * docs/BENCHMARKS.md). Every request: its body is read whole first (buffer_requests), then a
 * backend is checked out over IPC (waiting in the supervisor's queue if none is free), the
 * exchange runs, and the backend is checked in the moment its side is over, which with
 * buffer_responses is before a slow client has read the answer.
 */
export function createHandlers(deps: AppDeps): FrontHandlers {
  const { config, leases, observer } = deps;
  const host = backendHost(config.service_http_base_url);
  const trusted = new TrustedProxies(config.trusted_proxies);
  const limit = config.client_max_body_bytes;
  const tooLarge = `the request body is larger than client_max_body_bytes (${limit} bytes)`;
  /** Tells the metrics and the access log how a request ended. */
  const report = (
    req: IncomingMessage,
    requestId: string,
    startedAt: number,
    lease: Readonly<LeaseRecord>,
    answer: { status: number | undefined; bytes: number; errorCode: ErrorCode | undefined },
  ): void =>
    observer.answered({
      requestId,
      method: req.method ?? 'GET',
      target: req.url ?? '/',
      startedAt,
      endedAt: performance.now(),
      ...lease,
      ...answer,
    });

  /** Who a request is from, for queue_max_per_client ('' when that is off: nothing to count). */
  const clientKey = (req: IncomingMessage): string =>
    config.queue_max_per_client > 0 ? clientAddressOf(req, trusted) : '';

  /**
   * Each client connection's requests: the answer in progress (a pipelined request waits for
   * it), how many are read and not yet answered, and whether its reading is being held.
   */
  interface Connection {
    answering: ServerResponse | undefined;
    depth: number;
    held: boolean;
  }
  const connections = new WeakMap<object, Connection>();
  /**
   * Stops reading a connection with too many requests ahead. Node resumes a connection whenever a
   * request of it is read (IncomingMessage's readStart), so each resume is undone while the count
   * is still over.
   */
  const holdReading = (socket: Socket, connection: Connection): void => {
    socket.pause();
    if (connection.held) return;
    connection.held = true;
    socket.on('resume', () => {
      if (connection.depth > MAX_PIPELINED) socket.pause();
    });
  };

  const targetFor = (port: number, mayRetryRefused: boolean): ExchangeTarget => ({
    host,
    port,
    timeoutMs: config.http_proxy_timeout,
    mayRetryRefused,
    bufferResponses: config.buffer_responses,
    onFault: deps.onFault,
  });

  /**
   * Checks out a backend and runs `use` on it; a backend that refused the connection (it never saw
   * the request) sends the request to the head of the queue for another, at most MAX_REFUSALS
   * times. A client that leaves while waiting gives up its place and uses no backend. `settled`
   * is called once the lease question is closed.
   */
  const withBackend = (
    client: { once(e: 'close', f: () => void): unknown; off(e: 'close', f: () => void): unknown },
    startedAt: number,
    record: LeaseRecord,
    isGone: () => boolean,
    clientKey: string,
    rejected: (code: ErrorCode, message: string) => void,
    use: (lease: number, target: ExchangeTarget, done: (outcome: CheckinOutcome) => void) => void,
    settled: () => void,
  ): void => {
    let refusals = 0;
    const tryCheckout = (again: boolean): void => {
      const checkout = leases.checkout(again, clientKey);
      const leave = (): void => leases.cancel(checkout.seq);
      client.once('close', leave);
      const granted = (result: CheckoutResult): void => {
        client.off('close', leave);
        if (result.status === 'cancelled') return settled();
        if (result.status === 'rejected') {
          rejected(result.code, result.message);
          return settled();
        }
        if (isGone()) {
          leases.checkin(result.lease, 'ok');
          return settled();
        }
        const leasedAt = performance.now();
        record.leasedAt = leasedAt;
        record.backend = result.backend;
        record.port = result.port;
        observer.leased(leasedAt - startedAt);
        let returned = false;
        const done = (outcome: CheckinOutcome): void => {
          if (returned) return;
          returned = true;
          leases.checkin(result.lease, outcome);
          observer.returned(performance.now() - leasedAt);
          if (outcome !== 'refused') return settled();
          refusals++;
          tryCheckout(true);
        };
        try {
          use(result.lease, targetFor(result.port, refusals < MAX_REFUSALS), done);
        } catch (err) {
          // What the backend saw of the request is unknown: it is replaced, not reused.
          deps.onFault(err, 'lease');
          rejected('MPX_INTERNAL', 'multiplexer could not relay this exchange (see its log)');
          done('broken');
        }
      };
      void checkout.result.then((result) => {
        try {
          granted(result);
        } catch (err) {
          deps.onFault(err, 'checkout');
          settled();
        }
      });
    };
    tryCheckout(false);
  };

  const handle = (req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void => {
    deps.onStart();
    const startedAt = performance.now();
    // Settled when both the client's response has closed and the lease question is closed.
    let open = 2;
    const settle = (): void => {
      if (--open === 0) deps.onSettled();
    };
    const socket = req.socket;
    const record: LeaseRecord = { ...NO_LEASE };
    const requestId = requestIdOf(req, trusted);
    // What this answer wrote on the connection (head included): counted from when it begins.
    let bytesBefore = socket.bytesWritten;
    // Requests of this connection read and not yet answered: past MAX_PIPELINED, node is made to
    // stop reading it until they are (see below).
    let connection = connections.get(socket);
    if (!connection) {
      connection = { answering: undefined, depth: 0, held: false };
      connections.set(socket, connection);
    }
    const conn = connection;
    if (++conn.depth > MAX_PIPELINED) holdReading(socket, conn);
    res.once('close', () => {
      if (conn.answering === res) conn.answering = undefined;
      if (--conn.depth === MAX_PIPELINED && !socket.destroyed) socket.resume();
      report(req, requestId, startedAt, record, {
        status: res.headersSent ? res.statusCode : undefined,
        bytes: socket.bytesWritten - bytesBefore,
        errorCode: errorCodeOf(res),
      });
      settle();
    });
    addOwnHeader(res, 'X-Request-Id', requestId);
    if (deps.isDraining()) addOwnHeader(res, 'Connection', 'close');

    const begin = (): void => {
      bytesBefore = socket.bytesWritten;
      const target = targetOf(req);
      if (!target) {
        sendError(res, 'MPX_BAD_REQUEST', 'the request names no host (Host header)', {
          close: true,
        });
        return settle();
      }
      if (limit > 0 && Number(req.headers['content-length']) > limit) {
        sendError(res, 'MPX_BODY_TOO_LARGE', tooLarge, { close: true });
        return settle();
      }
      const headers = requestHeaders(req, target, trusted, requestId);
      const client = new Delivery(res, {
        bufferDir: deps.bufferDir,
        memoryBytes: config.buffer_memory_bytes,
        clientTimeoutMs: config.client_timeout_ms,
        onFault: deps.onFault,
        budget: deps.budget,
      });
      const run = (body: OutgoingRequest['body']): void => {
        const outgoing: OutgoingRequest = {
          method: req.method ?? 'GET',
          path: target.path,
          headers,
          body,
        };
        withBackend(
          res,
          startedAt,
          record,
          () => req.socket.destroyed,
          clientKey(req),
          (code, message) => sendError(res, code, message),
          (_lease, backend, done) => {
            if (body.kind === 'stream' && expectsContinue) res.writeContinue();
            exchange(outgoing, backend, client, done);
          },
          settle,
        );
      };
      // The backend request's framing is ours, from what node parsed, never the client's text.
      if (!hasBody(req)) {
        if (req.headers['content-length'] !== '0') delete headers['content-length'];
        return run({ kind: 'none' });
      }
      if (!config.buffer_requests) {
        // Node frames a body from these headers; a chunked body stays chunked.
        if (req.headers['transfer-encoding'] !== undefined) {
          headers['transfer-encoding'] = 'chunked';
          delete headers['content-length'];
        } else {
          headers['content-length'] = String(Number(req.headers['content-length']));
        }
        // A client that stalls mid-upload is dropped; the exchange then closes the backend's
        // connection, and the backend is returned once that is closed.
        req.setTimeout(config.client_timeout_ms, () => res.destroy());
        req.once('end', () => req.setTimeout(0));
        return run({ kind: 'stream', from: req });
      }
      if (expectsContinue) res.writeContinue();
      const store = new BufferStore(
        deps.bufferDir,
        config.buffer_memory_bytes,
        deps.budget,
        'fail',
      );
      res.once('close', () => store.dispose());
      readBody(
        req,
        store,
        { limit, timeoutMs: config.client_timeout_ms },
        guard(
          (result: BodyResult) => {
            switch (result) {
              case 'complete':
                headers['content-length'] = String(store.length);
                return run({ kind: 'stored', store });
              case 'too-large':
                sendError(res, 'MPX_BODY_TOO_LARGE', tooLarge, { close: true });
                return settle();
              case 'stalled':
                sendError(
                  res,
                  'MPX_CLIENT_TIMEOUT',
                  'the request body did not arrive within client_timeout_ms',
                  { close: true },
                );
                return settle();
              case 'failed':
                // A full disk or buffer_disk_max_bytes: for this request only, and no backend taken.
                sendError(
                  res,
                  'MPX_BUFFER_FULL',
                  `the request body could not be stored (${storeFailure(store.error)}); try again later`,
                  { close: true },
                );
                return settle();
              case 'aborted':
                res.destroy();
                return settle();
            }
          },
          (err) => failed(res, err),
        ),
      );
    };

    // A client connection carries one exchange at a time: a pipelined request is read by node
    // while the previous one is answered, and must not take a second backend meanwhile.
    const previous = conn.answering;
    conn.answering = res;
    if (previous)
      previous.once(
        'close',
        guard(begin, (err) => failed(res, err)),
      );
    else begin();
  };

  /** An exception while handling a request: 502 MPX_INTERNAL, or a cut if the answer began. */
  const failed = (res: ServerResponse, err: unknown): void => {
    deps.onFault(err, 'request');
    try {
      sendError(res, 'MPX_INTERNAL', 'multiplexer could not handle this request');
    } catch {
      res.destroy();
    }
  };

  // Plain try/catch here: the guard's closures would cost two allocations a request.
  const guarded = (req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void => {
    try {
      handle(req, res, expectsContinue);
    } catch (err) {
      failed(res, err);
    }
  };

  return {
    request: (req, res) => guarded(req, res, false),
    checkContinue: (req, res) => guarded(req, res, true),
    upgrade: (req, socket, head) => {
      try {
        upgrade(req, socket, head);
      } catch (err) {
        deps.onFault(err, 'upgrade');
        socket.destroy();
      }
    },
  };

  function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    const startedAt = performance.now();
    const refuse = (code: ErrorCode, message: string): void => {
      writeErrorTo(socket, code, message);
      report(req, requestIdOf(req, trusted), startedAt, NO_LEASE, {
        status: httpStatusFor[code],
        bytes: (socket as Socket).bytesWritten,
        errorCode: code,
      });
    };
    if (!config.websocket) {
      return refuse(
        'MPX_UPGRADE_DISABLED',
        'WebSocket and other Upgrade connections are not passed through (websocket: false)',
      );
    }
    const target = targetOf(req);
    if (!target) return refuse('MPX_BAD_REQUEST', 'the request names no host (Host header)');
    deps.onStart();
    let open = 2;
    const settle = (): void => {
      if (--open === 0) deps.onSettled();
    };
    const record: LeaseRecord = { ...NO_LEASE };
    const requestId = requestIdOf(req, trusted);
    let status: number | undefined;
    socket.once('close', () => {
      const errorCode = errorCodeOf(socket);
      report(req, requestId, startedAt, record, {
        status: errorCode ? httpStatusFor[errorCode] : status,
        bytes: (socket as Socket).bytesWritten,
        errorCode,
      });
      settle();
    });
    const headers = requestHeaders(req, target, trusted, requestId, true);
    withBackend(
      socket,
      startedAt,
      record,
      () => socket.destroyed,
      clientKey(req),
      (code, message) => writeErrorTo(socket, code, message),
      (lease, backend, done) =>
        tunnel(
          req,
          socket,
          head,
          { path: target.path, headers },
          backend,
          config.tunnel_idle_timeout_ms,
          {
            answered: (s) => (status = s),
            upgraded: (t) => {
              deps.tunnels.set(lease, t);
              leases.upgraded(lease);
            },
            done: (outcome) => {
              deps.tunnels.delete(lease);
              done(outcome);
            },
          },
        ),
      settle,
    );
  }
}
