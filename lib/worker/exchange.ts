import http, { type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { CheckinOutcome } from '../ipc/protocol.js';
import { sendStored, type BufferStore } from './buffer-store.js';
import type { Delivery } from './delivery.js';
import { guard, type FaultReporter } from './guard.js';
import { isIdempotent } from './headers.js';
import {
  dropAllRawConnections,
  dropRawConnection,
  onAgentDrop,
  UNREQUESTED_SWITCH,
} from './raw-exchange.js';

/**
 * One request/response exchange with a leased backend. Its job is to know exactly when the
 * backend's side is over, because only then may the backend serve anyone else: the request written
 * whole AND the answer read whole, or the connection closed. That is why a client that leaves does
 * not cut the backend connection while the backend answers (every general proxy does): the answer
 * is read to its end and discarded, within limits, then the lease is returned.
 */
export interface ExchangeTarget {
  readonly host: string;
  readonly port: number;
  /** http_proxy_timeout: to the status line, and the longest stall while an answer streams. */
  readonly timeoutMs: number;
  /**
   * A refused connection may end the exchange as 'refused', with nothing sent to the client, so
   * that the request can be sent to another backend; otherwise the client gets 502.
   */
  readonly mayRetryRefused: boolean;
  /** Answers are kept for the client (buffer_responses) unless they are streams. */
  readonly bufferResponses: boolean;
  /** Told of an exception on this exchange's path (see guard.ts). */
  readonly onFault: FaultReporter;
}

export interface OutgoingRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: http.OutgoingHttpHeaders;
  /** No body; a body read whole beforehand (it can be sent twice); the client's, streaming. */
  readonly body:
    | { readonly kind: 'none' }
    | { readonly kind: 'stored'; readonly store: BufferStore }
    | { readonly kind: 'stream'; readonly from: IncomingMessage };
}

/**
 * Connections to backends are kept alive and reused by the worker that opened them: a saved TCP
 * handshake per request. A backend serves one exchange at a time, so a worker has at most one
 * connection to it in use and keeps at most one idle. That is safe with backends that serve one
 * connection at a time too, for which an idle connection held by one worker would block another
 * worker's: the supervisor tells a worker to close its idle connection to a backend whenever
 * another worker is granted that backend (see dropIdleConnections), and a worker closes its own idle
 * connection before it opens a second one.
 */
const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 1, scheduling: 'lifo' });

/** Closes this worker's idle connection to the backend on `host:port`, if it holds one. */
export function dropIdleConnections(host: string, port: number): void {
  for (const socket of agent.freeSockets[agent.getName({ host, port })] ?? []) socket.destroy();
  dropRawConnection(port);
}

onAgentDrop((host, port) => {
  for (const socket of agent.freeSockets[agent.getName({ host, port })] ?? []) socket.destroy();
});

/** Closes every idle backend connection (a draining worker). */
export function dropAllIdleConnections(): void {
  for (const sockets of Object.values(agent.freeSockets)) sockets?.forEach((s) => s.destroy());
  dropAllRawConnections();
}

/**
 * An answer the client left is read and thrown away for at most http_proxy_timeout and this many
 * bytes; past either, it is presumed endless (a log tail, an event stream) and the backend is
 * replaced, since the only other way to stop it would be to cut it mid-answer.
 */
const DISCARD_LIMIT_BYTES = 64 * 1024 * 1024;

/**
 * The backend's side, as phases:
 * - 'sending': the request (and its body) is being written; no answer yet;
 * - 'awaiting-head': written whole, waiting for the status line;
 * - 'receiving': the answer comes in and goes to the client (it may come while 'sending': an
 *   early answer, e.g. 413 before the body was read);
 * - 'discarding': the client left; the rest of the answer is read and dropped, within limits;
 * - 'closing': the connection is being closed (an early answer, an abandoned upload); the lease
 *   goes back once it is;
 * - 'done': the outcome was reported.
 */
type Phase =
  | { readonly name: 'sending' }
  | { readonly name: 'awaiting-head' }
  | { readonly name: 'receiving'; readonly answer: IncomingMessage }
  | {
      readonly name: 'discarding';
      readonly answer: IncomingMessage;
      readonly timer: NodeJS.Timeout;
      bytes: number;
    }
  | { readonly name: 'closing'; readonly outcome: CheckinOutcome }
  | { readonly name: 'done' };

/**
 * Starts the exchange. `done` is called exactly once, when the backend's side is over: 'ok',
 * 'stuck' (no answer or a stall past the timeout: replace it), 'broken' (the connection failed),
 * 'refused' (it refused the connection, so it never saw the request, and nothing was sent to the
 * client), 'bad-response' (an answer that does not parse: 502, the process is fine), 'abandoned'
 * (an answer the client left did not end within the discard limits).
 *
 * A kept-alive connection can be closed by the backend just as it is reused (its idle timeout, a
 * restart). An idempotent request whose body can be sent again that fails that way before any
 * answer is sent again, once, on a new connection. POST and PATCH are never sent twice; they
 * always go out on a new connection, so that race cannot reach them.
 */
export function exchange(
  request: OutgoingRequest,
  target: ExchangeTarget,
  client: Delivery,
  done: (outcome: CheckinOutcome) => void,
): void {
  new Exchange(request, target, client, done).start();
}

class Exchange {
  private phase: Phase = { name: 'sending' };
  private backendReq: http.ClientRequest | undefined;
  private retried = false;
  private headTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly request: OutgoingRequest,
    private readonly target: ExchangeTarget,
    private readonly client: Delivery,
    private readonly done: (outcome: CheckinOutcome) => void,
  ) {}

  start(): void {
    this.client.onGone(this.guard(() => this.clientGone()));
    this.headTimer = setTimeout(
      this.guard(() => this.headTimeout()),
      this.target.timeoutMs,
    );
    this.guard(() => (this.backendReq = this.send()))();
  }

  /** `fn` under the request path's guard: an exception ends this exchange, not the worker. */
  private guard<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
    return guard(fn, (err) => this.crash(err));
  }

  /**
   * An exception on this exchange's path: the client gets 502 MPX_INTERNAL if nothing was sent
   * yet, else its connection is cut; the backend's connection is closed, and the backend returned
   * once it is (as after an answer that does not parse: the process itself is fine).
   */
  private crash(err: unknown): void {
    this.target.onFault(err, 'exchange');
    const phase = this.phase.name;
    if (phase === 'closing' || phase === 'done') return;
    try {
      this.client.fail('MPX_INTERNAL', 'multiplexer could not relay this exchange (see its log)');
    } catch {
      this.client.cut();
    }
    this.close('bad-response');
  }

  private get mayResend(): boolean {
    return isIdempotent(this.request.method) && this.request.body.kind !== 'stream';
  }

  private send(): http.ClientRequest {
    const { request, target } = this;
    if (this.retried || !this.mayResend) dropIdleConnections(target.host, target.port);
    // One connection per backend: the raw path's, if it kept one, goes (raw-exchange.ts).
    else dropRawConnection(target.port);
    const out = http.request({
      host: target.host,
      port: target.port,
      method: request.method,
      path: request.path,
      headers: request.headers,
      agent,
      setHost: false,
    });
    out.on(
      'information',
      this.guard((info: http.InformationEvent) => {
        if (out === this.backendReq) this.client.information(info.statusCode, info.rawHeaders);
      }),
    );
    out.on(
      'response',
      this.guard((answer: IncomingMessage) => this.onHead(out, answer)),
    );
    out.on(
      'error',
      this.guard((err: NodeJS.ErrnoException) => this.onError(out, err)),
    );
    const body = request.body;
    if (body.kind === 'none') {
      // Written whole from our side at once: nothing to wait for before the head.
      out.end();
      this.phase = { name: 'awaiting-head' };
      return out;
    }
    out.on(
      'finish',
      this.guard(() => {
        if (out === this.backendReq && this.phase.name === 'sending') {
          this.phase = { name: 'awaiting-head' };
        }
      }),
    );
    // The body flows only once the backend accepted the connection: a refused connection then
    // leaves it unread, and the request can go to another backend whole.
    out.once(
      'socket',
      this.guard((socket: Socket) => {
        const flow = this.guard((): void => {
          if (body.kind === 'stored') sendStored(body.store, out, (err) => out.destroy(err));
          else body.from.pipe(out);
        });
        if (socket.connecting) socket.once('connect', flow);
        else flow();
      }),
    );
    return out;
  }

  private onHead(out: http.ClientRequest, answer: IncomingMessage): void {
    if (
      out !== this.backendReq ||
      (this.phase.name !== 'sending' && this.phase.name !== 'awaiting-head')
    ) {
      answer.resume();
      return;
    }
    clearTimeout(this.headTimer);
    if (answer.statusCode === 101) {
      // No request here asked for an upgrade (those go through upgrade.ts): what follows on the
      // connection is no longer HTTP, so the answer is refused and the connection closed.
      answer.resume();
      this.client.fail('MPX_BAD_BACKEND_RESPONSE', UNREQUESTED_SWITCH);
      this.close('bad-response');
      return;
    }
    const socket = answer.socket;
    const onStall = this.guard((): void => this.stalled());
    socket.setTimeout(this.target.timeoutMs, onStall);
    answer.on(
      'data',
      this.guard((chunk: Buffer) => this.onData(answer, chunk)),
    );
    answer.on(
      'end',
      this.guard(() => {
        // The connection may be reused: the stall timer belongs to this exchange only.
        socket.setTimeout(0);
        socket.off('timeout', onStall);
        this.onEnd(answer);
      }),
    );
    answer.on('error', () => undefined);
    answer.on(
      'close',
      this.guard(() => {
        if (!answer.complete) this.onCut(answer);
      }),
    );
    if (this.client.gone) {
      this.discard(answer);
      return;
    }
    const stream =
      !this.target.bufferResponses ||
      /^text\/event-stream\b/i.test(answer.headers['content-type'] ?? '') ||
      String(answer.headers['x-accel-buffering']).toLowerCase() === 'no';
    this.client.head(answer.statusCode ?? 502, answer.statusMessage, answer.rawHeaders, stream);
    this.phase = { name: 'receiving', answer };
  }

  private onData(answer: IncomingMessage, chunk: Buffer): void {
    const phase = this.phase;
    if (phase.name === 'receiving') {
      if (!this.client.write(chunk)) {
        answer.pause();
        this.client.whenWritable(() => answer.resume());
      }
    } else if (phase.name === 'discarding') {
      phase.bytes += chunk.length;
      if (phase.bytes > DISCARD_LIMIT_BYTES) this.abandon();
    }
  }

  private onEnd(answer: IncomingMessage): void {
    const phase = this.phase.name;
    if (phase !== 'receiving' && phase !== 'discarding') return;
    if (phase === 'receiving') this.client.end(answer.rawTrailers);
    // An early answer: the backend does not want the rest of the body. Only a closed connection
    // says for sure that it is not still reading it.
    if (!this.backendReq?.writableFinished) this.close('ok');
    else if (!this.backendReq.shouldKeepAlive && !answer.socket.closed) {
      // The backend closes the connection after this answer (node closes ours once its FIN is
      // written): its side is over once it is closed. Ended sooner, the lease could carry the
      // next request (a held one, at once) to a new connection before our FIN, and the backend
      // would see it while still closing this one (the fuzz suite, seed 20261202, case 292).
      this.leavePhase();
      this.phase = { name: 'closing', outcome: 'ok' };
      answer.socket.once('close', () => this.finish('ok'));
    } else this.finish('ok');
  }

  /** The answer's connection ended before the answer did. */
  private onCut(answer: IncomingMessage): void {
    const phase = this.phase;
    if ((phase.name !== 'receiving' && phase.name !== 'discarding') || phase.answer !== answer) {
      return;
    }
    this.client.cut();
    this.finish('broken');
  }

  private onError(out: http.ClientRequest, err: NodeJS.ErrnoException): void {
    if (out !== this.backendReq) return;
    const phase = this.phase.name;
    if (phase === 'closing' || phase === 'done') return;
    const malformed = err.code?.startsWith('HPE_') ?? false;
    const current = this.phase;
    if (
      malformed &&
      (current.name === 'receiving' || current.name === 'discarding') &&
      current.answer.complete
    ) {
      // Bytes after a complete answer (more than its framing said, a body after a HEAD's or a
      // 204's head): the answer stands, as nginx delivers it; the connection is not reused.
      if (current.name === 'receiving') this.client.end(current.answer.rawTrailers);
      this.close('bad-response');
      return;
    }
    if (phase === 'receiving' || phase === 'discarding') {
      this.client.cut();
      this.finish(malformed ? 'bad-response' : 'broken');
      return;
    }
    // Sent again only when the connection failed: an answer that does not parse came from a
    // backend that had the request (nginx does not retry invalid headers by default either).
    if (!malformed && !this.retried && out.reusedSocket && this.mayResend && !this.client.gone) {
      this.retried = true;
      this.phase = { name: 'sending' };
      this.backendReq = this.send();
      return;
    }
    const refused = err.code === 'ECONNREFUSED';
    if (refused && this.target.mayRetryRefused && !this.client.gone) {
      this.finish('refused');
      return;
    }
    if (malformed) {
      this.client.fail(
        'MPX_BAD_BACKEND_RESPONSE',
        `the backend's answer could not be parsed (${err.code})`,
      );
      this.finish('bad-response');
      return;
    }
    this.client.fail(
      refused ? 'MPX_BACKEND_UNREACHABLE' : 'MPX_BACKEND_CRASHED',
      refused
        ? 'the backend refused the connection'
        : 'the backend closed the connection before answering',
    );
    this.finish('broken');
  }

  private headTimeout(): void {
    const phase = this.phase.name;
    if (phase !== 'sending' && phase !== 'awaiting-head') return;
    this.backendReq?.destroy();
    this.client.fail('MPX_BACKEND_TIMEOUT', 'the backend did not answer within http_proxy_timeout');
    this.finish('stuck');
  }

  /** No byte of the answer for http_proxy_timeout. */
  private stalled(): void {
    const phase = this.phase;
    if (phase.name !== 'receiving' && phase.name !== 'discarding') return;
    this.backendReq?.destroy();
    this.client.cut();
    this.finish('stuck');
  }

  private clientGone(): void {
    const phase = this.phase;
    if (phase.name === 'sending' && this.request.body.kind === 'stream') {
      // The backend never received the whole request: it cannot be answering it, so cut it short.
      this.close('ok');
    } else if (phase.name === 'receiving') {
      this.discard(phase.answer);
    }
    // Awaiting the head: the answer is discarded when it comes (see onHead).
  }

  private discard(answer: IncomingMessage): void {
    const timer = setTimeout(
      this.guard(() => this.abandon()),
      this.target.timeoutMs,
    );
    this.phase = { name: 'discarding', answer, timer, bytes: 0 };
    answer.resume();
  }

  private abandon(): void {
    const phase = this.phase;
    if (phase.name !== 'discarding') return;
    this.close('abandoned');
  }

  /** Closes the backend connection; the outcome is reported once it is closed. */
  private close(outcome: CheckinOutcome): void {
    this.leavePhase();
    this.phase = { name: 'closing', outcome };
    const socket = this.backendReq?.socket;
    this.backendReq?.destroy();
    if (!socket || socket.closed) this.finish(outcome);
    else socket.once('close', () => this.finish(outcome));
  }

  /** Stops the timers of the phase being left: the head timer, a discard's limit. */
  private leavePhase(): void {
    clearTimeout(this.headTimer);
    if (this.phase.name === 'discarding') clearTimeout(this.phase.timer);
  }

  private finish(outcome: CheckinOutcome): void {
    if (this.phase.name === 'done') return;
    this.leavePhase();
    this.phase = { name: 'done' };
    this.done(outcome);
  }
}
