import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { CheckinOutcome } from '../ipc/protocol.js';
import { sendError } from './error-response.js';

/**
 * One request/response exchange with a leased backend: a transparent reverse proxy whose job is to
 * know exactly when the backend's side is over, because only then may the backend serve anyone
 * else. That is why a client that leaves does not cut the backend connection (every general proxy
 * does): the backend's answer is read to its end and discarded, then the lease is returned.
 */
export interface ExchangeTarget {
  readonly host: string;
  readonly port: number;
  /** http_proxy_timeout: to the status line, and the longest stall while a body streams. */
  readonly timeoutMs: number;
}

/**
 * A fresh connection per exchange, closed when it ends. Keep-alive sockets held by one front
 * worker would block another worker's connection to a backend that serves one connection at a
 * time; issue 4 measures a safe reuse policy.
 */
const agent = new http.Agent({ keepAlive: false });

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function connectionTokens(value: string | string[] | undefined): Set<string> {
  const text = Array.isArray(value) ? value.join(',') : (value ?? '');
  return new Set(
    text
      .split(',')
      .map((t) => t.trim().toLowerCase())
      .filter(Boolean),
  );
}

function outgoingHeaders(req: IncomingMessage): http.OutgoingHttpHeaders {
  const named = connectionTokens(req.headers.connection);
  const headers: http.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || named.has(name)) continue;
    // A chunked request body stays chunked; Node frames it again from this header.
    if (HOP_BY_HOP.has(name) && name !== 'transfer-encoding') continue;
    // The front worker already answered "100 Continue"; the backend must not wait for one.
    if (name === 'expect') continue;
    headers[name] = value;
  }
  const client = req.socket.remoteAddress ?? '';
  const forwarded = req.headers['x-forwarded-for'];
  headers['x-forwarded-for'] = forwarded ? `${String(forwarded)}, ${client}` : client;
  headers['x-forwarded-host'] ??= req.headers.host ?? '';
  headers['x-forwarded-proto'] ??= 'http';
  headers.connection = 'close';
  return headers;
}

function responseHeaders(raw: readonly string[]): string[] {
  const named = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') {
      for (const token of connectionTokens(raw[i + 1])) named.add(token);
    }
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (!HOP_BY_HOP.has(name) && !named.has(name)) out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

/**
 * Forwards `req` to the backend and streams the answer back. `done` is called exactly once, when
 * the backend's side of the exchange is over: 'ok' (it answered in full), 'stuck' (no answer or a
 * stall past the timeout: replace it), 'broken' (the connection failed).
 */
export function forward(
  req: IncomingMessage,
  res: ServerResponse,
  target: ExchangeTarget,
  done: (outcome: CheckinOutcome) => void,
): void {
  let ended = false;
  let clientGone = false;
  let answer: IncomingMessage | undefined;

  const end = (outcome: CheckinOutcome): void => {
    if (ended) return;
    ended = true;
    clearTimeout(firstByteTimer);
    done(outcome);
  };

  const proxyReq = http.request({
    host: target.host,
    port: target.port,
    method: req.method,
    path: req.url,
    headers: outgoingHeaders(req),
    agent,
    setHost: false,
  });

  const firstByteTimer = setTimeout(() => {
    proxyReq.destroy();
    if (!clientGone) {
      sendError(res, 'MPX_BACKEND_TIMEOUT', 'the backend did not answer within http_proxy_timeout');
    }
    end('stuck');
  }, target.timeoutMs);

  proxyReq.on('response', (proxyRes) => {
    clearTimeout(firstByteTimer);
    answer = proxyRes;
    proxyRes.socket.setTimeout(target.timeoutMs, () => {
      proxyReq.destroy();
      res.destroy();
      end('stuck');
    });
    proxyRes.on('end', () => end('ok'));
    proxyRes.on('error', () => undefined);
    proxyRes.on('close', () => {
      if (proxyRes.complete) return;
      res.destroy();
      end('broken');
    });
    if (clientGone) {
      proxyRes.resume();
      return;
    }
    res.sendDate = false;
    res.writeHead(
      proxyRes.statusCode ?? 502,
      proxyRes.statusMessage,
      responseHeaders(proxyRes.rawHeaders),
    );
    proxyRes.pipe(res);
  });

  proxyReq.on('error', (err: NodeJS.ErrnoException) => {
    if (ended) return;
    if (answer) {
      // Cut mid-body: the status line is gone, so the only honest signal left is a cut connection.
      res.destroy();
    } else if (!clientGone) {
      const refused = err.code === 'ECONNREFUSED';
      sendError(
        res,
        refused ? 'MPX_BACKEND_UNREACHABLE' : 'MPX_BACKEND_CRASHED',
        refused
          ? 'the backend refused the connection'
          : 'the backend closed the connection before answering',
      );
    }
    end('broken');
  });

  req.on('error', () => undefined);
  req.pipe(proxyReq);

  res.on('close', () => {
    if (res.writableFinished || ended) return;
    clientGone = true;
    if (!proxyReq.writableFinished) {
      // The backend never received the whole request: it cannot be answering it, so cut it short.
      proxyReq.destroy();
      end('ok');
    } else if (answer) {
      answer.unpipe(res);
      answer.resume();
    }
    // Otherwise the answer has not started: the 'response' handler discards it when it comes.
  });
}
