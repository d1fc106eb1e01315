import http, { type IncomingMessage } from 'node:http';
import net, { type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { CheckinOutcome } from '../ipc/protocol.js';
import { writeErrorTo } from './error-response.js';
import type { ExchangeTarget } from './exchange.js';
import { dropIdleConnections } from './exchange.js';
import { responseHeaders } from './headers.js';

/**
 * A WebSocket (or any other Upgrade) passed through on a leased backend: the backend is held for
 * the connection's whole life and returned when either side closes, once the backend's connection
 * is closed. It is written on node:http's client 'upgrade' event rather than http-proxy-middleware:
 * both of its lines (http-proxy, httpxy) destroy any Upgrade that is not "websocket", write a
 * non-101 answer's decoded body under its original Transfer-Encoding header, answer nothing when
 * the backend refuses the connection, and report the end only on a clean 'end' of the backend's
 * socket, so the lease could be returned while the backend still holds the connection, or never.
 *
 * A tunnel ends when either side ends it, as nginx's and HAProxy's do: a client that sends FIN (or
 * leaves) while the backend keeps its side open (a plain echo server does) once kept the backend
 * leased forever. What is in flight is flushed, then both sides are closed. An upgraded connection
 * with no byte either way for tunnel_idle_timeout_ms is closed too; until the backend's answer,
 * http_proxy_timeout applies.
 */
export interface Tunnel {
  /** Closes both sides now (shutdown, reload, the backend is retiring). */
  close(): void;
}

type Phase =
  | { readonly name: 'awaiting-head' }
  | { readonly name: 'answering' }
  | { readonly name: 'open'; readonly backend: Duplex }
  | { readonly name: 'closing' }
  | { readonly name: 'done' };

export function tunnel(
  req: IncomingMessage,
  client: Duplex,
  head: Buffer,
  out: { readonly path: string; readonly headers: http.OutgoingHttpHeaders },
  target: ExchangeTarget,
  idleTimeoutMs: number,
  events: {
    /** The backend's answer status (101, or the ordinary answer it gave instead). */
    answered(status: number): void;
    upgraded(tunnel: Tunnel): void;
    done(outcome: CheckinOutcome): void;
  },
): void {
  let phase: Phase = { name: 'awaiting-head' };
  const finish = (outcome: CheckinOutcome): void => {
    if (phase.name === 'done') return;
    clearTimeout(headTimer);
    phase = { name: 'done' };
    events.done(outcome);
  };

  // Its own connection, not the worker's kept-alive one: a backend that serves one connection at a
  // time would otherwise wait on the idle one, so that one is closed first.
  dropIdleConnections(target.host, target.port);
  const backendReq = http.request({
    host: target.host,
    port: target.port,
    method: req.method,
    path: out.path,
    headers: out.headers,
    agent: false,
    setHost: false,
  });

  const headTimer = setTimeout(() => {
    if (phase.name !== 'awaiting-head') return;
    backendReq.destroy();
    writeErrorTo(
      client,
      'MPX_BACKEND_TIMEOUT',
      'the backend did not answer within http_proxy_timeout',
    );
    finish('stuck');
  }, target.timeoutMs);

  /** Closes the backend's connection; the lease goes back once it is closed. */
  const closeBackend = (socket: Duplex | null, outcome: CheckinOutcome): void => {
    if (phase.name === 'closing' || phase.name === 'done') return;
    const wasOpen = phase.name === 'open';
    phase = { name: 'closing' };
    client.destroy();
    if (!socket || socket.closed) {
      backendReq.destroy();
      finish(outcome);
      return;
    }
    socket.once('close', () => finish(outcome));
    // A reset, not a FIN, once the tunnel was open: a backend that keeps its side of a
    // half-closed connection (node's default for an upgraded socket) never learns of a FIN it
    // already had, and a single-connection backend would wait on that connection forever.
    if (wasOpen && socket instanceof net.Socket && !socket.destroyed) {
      socket.resetAndDestroy();
    } else socket.destroy();
  };

  client.on('error', () => undefined);
  client.once('close', () => {
    if (phase.name === 'open') closeBackend(phase.backend, 'ok');
    else if (phase.name === 'awaiting-head') closeBackend(backendReq.socket, 'ok');
  });

  backendReq.on('upgrade', (answer: IncomingMessage, backend: Duplex, backendHead: Buffer) => {
    clearTimeout(headTimer);
    backend.on('error', () => undefined);
    if (phase.name !== 'awaiting-head' || client.destroyed) {
      backend.once('close', () => finish('ok'));
      backend.destroy();
      return;
    }
    phase = { name: 'open', backend };
    events.answered(101);
    const status = `HTTP/1.1 101 ${answer.statusMessage || 'Switching Protocols'}`;
    client.write(`${status}\r\n${rawLines(answer.rawHeaders)}\r\n`);
    if (backendHead.length > 0) client.write(backendHead);
    if (head.length > 0) backend.write(head);
    backend.pipe(client);
    client.pipe(backend);
    backend.once('close', () => closeBackend(backend, 'ok'));
    const open = phase;
    // Either side's end: pipe() ends the other side's writing (what is in flight is flushed
    // first); once both have written everything, or FLUSH_MS passed, both are closed.
    let ending = false;
    const endBoth = (): void => {
      if (ending || phase !== open) return;
      ending = true;
      let flushing = 2;
      const flushed = (): void => {
        if (--flushing === 0) closeBackend(backend, 'ok');
      };
      for (const side of [client, backend]) {
        if (side.writableFinished) flushed();
        else {
          side.once('finish', flushed);
          side.end();
        }
      }
      setTimeout(() => closeBackend(backend, 'ok'), FLUSH_MS).unref();
    };
    client.once('end', endBoth);
    backend.once('end', endBoth);
    // The client's socket sees every byte either way (read from it, or written to it).
    if (idleTimeoutMs > 0) {
      (client as Socket).setTimeout(idleTimeoutMs, () => {
        if (phase === open) closeBackend(backend, 'ok');
      });
    }
    events.upgraded({
      close: () => {
        if (phase === open) closeBackend(backend, 'ok');
      },
    });
  });

  // Any other answer (the backend declines the upgrade) is an ordinary answer. The body is
  // decoded by node, so it goes out delimited by the connection's close, not re-chunked.
  backendReq.on('response', (answer: IncomingMessage) => {
    clearTimeout(headTimer);
    if (phase.name !== 'awaiting-head') {
      answer.resume();
      return;
    }
    phase = { name: 'answering' };
    events.answered(answer.statusCode ?? 0);
    const headers = responseHeaders(answer.rawHeaders);
    const keepLength = answer.headers['transfer-encoding'] === undefined;
    const kept: string[] = [];
    for (let i = 0; i < headers.length; i += 2) {
      if (keepLength || headers[i]!.toLowerCase() !== 'content-length') {
        kept.push(headers[i]!, headers[i + 1]!);
      }
    }
    kept.push('Connection', 'close');
    client.write(`HTTP/1.1 ${answer.statusCode} ${answer.statusMessage}\r\n${rawLines(kept)}\r\n`);
    answer.pipe(client);
    answer.on('error', () => undefined);
    answer.once('close', () => {
      if (!answer.complete) client.destroy();
      finish(answer.complete ? 'ok' : 'broken');
    });
  });

  backendReq.on('error', (err: NodeJS.ErrnoException) => {
    if (phase.name !== 'awaiting-head') return;
    if (err.code === 'ECONNREFUSED' && target.mayRetryRefused && !client.destroyed) {
      finish('refused');
      return;
    }
    const malformed = err.code?.startsWith('HPE_') ?? false;
    writeErrorTo(
      client,
      malformed ? 'MPX_BAD_BACKEND_RESPONSE' : 'MPX_BACKEND_UNREACHABLE',
      malformed
        ? `the backend's answer could not be parsed (${err.code})`
        : `the backend's connection failed (${err.code ?? err.message})`,
    );
    finish(malformed ? 'bad-response' : 'broken');
  });
  backendReq.end();
}

/** How long a tunnel's sides may take to write what is in flight once one side ended it. */
const FLUSH_MS = 1000;

function rawLines(raw: readonly string[]): string {
  let text = '';
  for (let i = 0; i < raw.length; i += 2) text += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return text;
}
