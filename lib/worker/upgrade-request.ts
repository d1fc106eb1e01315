import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { httpStatusFor, type ErrorCode } from '../errors.js';
import { errorCodeOf, writeErrorTo } from './error-response.js';
import { requestHeaders, requestIdOf, targetOf } from './headers.js';
import type { RequestContext } from './request-context.js';
import { tunnel } from './upgrade.js';
import { NO_LEASE, type LeaseRecord } from './with-backend.js';

/**
 * An Upgrade request (a WebSocket): a backend is checked out as for a request, and held by the
 * tunnel for as long as the upgraded connection lasts (upgrade.ts).
 */
export function upgradeRequest(
  ctx: RequestContext,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): void {
  const { config, deps, trusted } = ctx;
  socket.on('error', () => undefined);
  const startedAt = performance.now();
  const refuse = (code: ErrorCode, message: string): void => {
    writeErrorTo(socket, code, message);
    ctx.report(req, requestIdOf(req, trusted), startedAt, NO_LEASE, {
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
  const route = ctx.route(target.host, target.path);
  if (!route) return refuse('MPX_NO_SERVICE', 'no service takes this host and path');
  deps.onStart();
  let open = 2;
  const settle = (): void => {
    if (--open === 0) deps.onSettled();
  };
  const record: LeaseRecord = { ...NO_LEASE, service: route.service };
  const requestId = requestIdOf(req, trusted);
  let status: number | undefined;
  socket.once('close', () => {
    const errorCode = errorCodeOf(socket);
    ctx.report(req, requestId, startedAt, record, {
      status: errorCode ? httpStatusFor[errorCode] : status,
      bytes: (socket as Socket).bytesWritten,
      errorCode,
    });
    settle();
  });
  const headers = requestHeaders(req, target, trusted, requestId, true);
  ctx.withBackend({
    service: route.service,
    client: socket,
    startedAt,
    record,
    isGone: () => socket.destroyed,
    clientKey: ctx.clientKey(req),
    rejected: (code, message) => writeErrorTo(socket, code, message),
    use: (lease, backend, done) =>
      tunnel(
        req,
        socket,
        head,
        { path: route.path, headers },
        backend,
        config.tunnel_idle_timeout_ms,
        {
          answered: (s) => (status = s),
          upgraded: (t) => {
            deps.tunnels.set(lease, t);
            deps.leases.upgraded(lease);
          },
          done: (outcome) => {
            deps.tunnels.delete(lease);
            done(outcome);
          },
        },
      ),
    settled: settle,
  });
}
