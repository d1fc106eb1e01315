import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { readBody, type BodyResult } from './request-body.js';
import { BufferFullError, BufferStore } from './buffer-store.js';
import { Delivery } from './delivery.js';
import { errorCodeOf, sendError } from './error-response.js';
import { exchange, type OutgoingRequest } from './exchange.js';
import { rawExchange, rawPathTakes } from './raw-exchange.js';
import { RAW_PATH_ENV } from '../ipc/protocol.js';
import { guard } from './guard.js';
import { addOwnHeader, requestHeaders, requestIdOf, targetOf } from './headers.js';
import { Pipelining } from './pipelining.js';
import { requestContext, type AppDeps } from './request-context.js';
import { upgradeRequest } from './upgrade-request.js';
import { NO_LEASE, type LeaseRecord } from './with-backend.js';

export type { AppDeps } from './request-context.js';

export interface FrontHandlers {
  readonly request: (req: IncomingMessage, res: ServerResponse) => void;
  /** A request with "Expect: 100-continue": answered 100 only once it will be accepted. */
  readonly checkContinue: (req: IncomingMessage, res: ServerResponse) => void;
  readonly upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
}

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
  const ctx = requestContext(deps);
  const { config, trusted } = ctx;
  const limit = config.client_max_body_bytes;
  const tooLarge = `the request body is larger than client_max_body_bytes (${limit} bytes)`;
  const pipelining = new Pipelining();
  // The raw backend path (raw-exchange.ts), opt-in with MULTIPLEXER_RAW_PATH=1 until the one
  // overlap the fuzz suite saw on it (README, "The raw backend path") is understood.
  const rawPath = process.env[RAW_PATH_ENV] === '1';

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
    // The answer this one waits for, when the client pipelines (see pipelining.ts).
    const previous = pipelining.admit(socket, res);
    res.once('close', () => {
      pipelining.closed(socket, res);
      ctx.report(req, requestId, startedAt, record, {
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
      const route = ctx.route(target.host, target.path);
      if (!route) {
        sendError(res, 'MPX_NO_SERVICE', 'no service takes this host and path');
        return settle();
      }
      record.service = route.service;
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
          path: route.path,
          headers,
          body,
        };
        ctx.withBackend({
          service: route.service,
          client: res,
          startedAt,
          record,
          isGone: () => req.socket.destroyed,
          clientKey: ctx.clientKey(req),
          rejected: (code, message) => sendError(res, code, message),
          use: (_lease, backend, done) => {
            if (body.kind === 'stream' && expectsContinue) res.writeContinue();
            if (rawPath && rawPathTakes(outgoing)) rawExchange(outgoing, backend, client, done);
            else exchange(outgoing, backend, client, done);
          },
          settled: settle,
        });
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

    // A pipelined request begins once the answer before it is over.
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
        upgradeRequest(ctx, req, socket, head);
      } catch (err) {
        deps.onFault(err, 'upgrade');
        socket.destroy();
      }
    },
  };
}
