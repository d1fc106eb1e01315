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
  /**
   * A refused connection may end the exchange as 'refused', with nothing sent to the client, so
   * that the request can be sent to another backend; otherwise the client gets 502.
   */
  readonly mayRetryRefused: boolean;
}

/**
 * Connections to backends are kept alive and reused by the worker that opened them: a saved TCP
 * handshake per request. A backend serves one exchange at a time, so a worker has at most one
 * connection to it in use and keeps at most one idle. That is safe with backends that serve one
 * connection at a time too, for which an idle connection held by one worker would block another
 * worker's: the supervisor tells a worker to close its idle connection to a backend whenever
 * another worker is granted that backend (see releaseIdle), and a worker closes its own idle
 * connection before it opens a second one (a request with a body, a retry).
 */
const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 1, scheduling: 'lifo' });

/** Closes this worker's idle connection to the backend on `host:port`, if it holds one. */
export function releaseIdle(host: string, port: number): void {
  for (const socket of agent.freeSockets[agent.getName({ host, port })] ?? []) socket.destroy();
}

/** Closes every idle backend connection (a draining worker). */
export function releaseAllIdle(): void {
  for (const sockets of Object.values(agent.freeSockets)) sockets?.forEach((s) => s.destroy());
}

function hasBody(req: IncomingMessage): boolean {
  return (
    req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length']) > 0
  );
}

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
 * stall past the timeout: replace it), 'broken' (the connection failed), 'refused' (it refused
 * the connection, so it never saw the request, and nothing was sent to the client).
 *
 * A kept-alive connection can be closed by the backend just as it is reused (its idle timeout, a
 * restart). A request without a body that fails that way before any answer is sent again, once,
 * on a new connection; a request with a body always goes out on a new connection, since its body
 * streams through and cannot be sent twice.
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
  const body = hasBody(req);
  const headers = outgoingHeaders(req);

  const end = (outcome: CheckinOutcome): void => {
    if (ended) return;
    ended = true;
    clearTimeout(firstByteTimer);
    done(outcome);
  };

  const send = (retry: boolean): http.ClientRequest => {
    if (body || retry) releaseIdle(target.host, target.port);
    const request = http.request({
      host: target.host,
      port: target.port,
      method: req.method,
      path: req.url,
      headers,
      agent,
      setHost: false,
    });
    request.on('response', onResponse);
    request.on('error', (err: NodeJS.ErrnoException) => {
      if (ended || request !== proxyReq) return;
      if (!answer && !body && !retry && !clientGone && request.reusedSocket) {
        proxyReq = send(true);
        return;
      }
      failed(err);
    });
    if (!body) request.end();
    else {
      // The body flows only once the backend accepted the connection: a refused connection then
      // leaves it unread, and the request can go to another backend whole.
      request.once('socket', (socket) => {
        if (socket.connecting) socket.once('connect', () => req.pipe(request));
        else req.pipe(request);
      });
    }
    return request;
  };

  const firstByteTimer = setTimeout(() => {
    proxyReq.destroy();
    if (!clientGone) {
      sendError(res, 'MPX_BACKEND_TIMEOUT', 'the backend did not answer within http_proxy_timeout');
    }
    end('stuck');
  }, target.timeoutMs);

  const onResponse = (proxyRes: IncomingMessage): void => {
    clearTimeout(firstByteTimer);
    answer = proxyRes;
    const socket = proxyRes.socket;
    const onStall = (): void => {
      proxyReq.destroy();
      res.destroy();
      end('stuck');
    };
    socket.setTimeout(target.timeoutMs, onStall);
    proxyRes.on('end', () => {
      // The connection may be reused: the stall timer belongs to this exchange only.
      socket.setTimeout(0);
      socket.off('timeout', onStall);
      end('ok');
    });
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
  };

  const failed = (err: NodeJS.ErrnoException): void => {
    if (err.code === 'ECONNREFUSED' && !answer && !clientGone && target.mayRetryRefused) {
      end('refused');
      return;
    }
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
  };

  req.on('error', () => undefined);
  let proxyReq = send(false);

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
