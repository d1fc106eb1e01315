import { createRequire } from 'node:module';
import net from 'node:net';
import type { OutgoingHttpHeaders } from 'node:http';
import type { CheckinOutcome } from '../ipc/protocol.js';
import type { Delivery } from './delivery.js';
import type { ExchangeTarget, OutgoingRequest } from './exchange.js';
import { guard } from './guard.js';
import { isIdempotent } from './headers.js';

/**
 * The raw backend path (issue 21, part 4): the same exchange as exchange.ts, for a request with no
 * body or one read whole into memory, without node:http's client. Each backend this worker uses
 * has one connection of its own here (no Agent, no pool lookup); the request head is written by
 * hand in one write; the answer is parsed by node's own llhttp binding, the parser node:http uses,
 * so framing (Content-Length, chunked, trailers, 1xx, close-delimited, what is refused) is node's.
 * bench/floor-proxy.mjs measured the two clients side by side: 47 µs of CPU a request for this
 * path against 86 for node:http's client with an Agent (HAProxy: 29; docs/BENCHMARKS.md, steady).
 *
 * `_http_common`'s HTTPParser is not a documented API: it is what node:http itself is built on,
 * the same in Node 20 and 26 (the two this project runs on), and checked at load (see PARSER).
 */
const require = createRequire(import.meta.url);

interface ParserBinding {
  new (): Parser;
  readonly RESPONSE: number;
  readonly kOnMessageBegin: number;
  readonly kOnHeaders: number;
  readonly kOnHeadersComplete: number;
  readonly kOnBody: number;
  readonly kOnMessageComplete: number;
}
interface Parser {
  initialize(type: number, resource: object, maxHeaderSize?: number, lenient?: number): void;
  execute(data: Buffer): number | (Error & { code?: string });
  finish(): undefined | (Error & { code?: string });
  close(): void;
  [callback: number]: unknown;
}

/** node's HTTP parser, or undefined where this node has none such (the raw path is then off). */
const PARSER: ParserBinding | undefined = (() => {
  try {
    const { HTTPParser } = require('_http_common') as { HTTPParser?: ParserBinding };
    if (typeof HTTPParser !== 'function' || typeof HTTPParser.kOnMessageBegin !== 'number')
      return undefined;
    return HTTPParser;
  } catch {
    return undefined;
  }
})();

/** Why a 101 to a request that asked for no upgrade is refused (exchange.ts says the same). */
export const UNREQUESTED_SWITCH =
  'the backend switched protocols (101) though the request asked for no upgrade';

/** Whether this request can take the raw path (else exchange.ts serves it). */
export function rawPathTakes(request: OutgoingRequest): boolean {
  if (!PARSER) return false;
  const body = request.body;
  return body.kind === 'none' || (body.kind === 'stored' && body.store.inMemory);
}

/** Methods node:http's client sends without a body framing header when none is given. */
const NO_BODY_BY_DEFAULT = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);
/** As node's ClientRequest: a path with a control character or above \xff is refused. */
const INVALID_PATH = /[^\u0021-\u00ff]/;
const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

/** The request head, as node's ClientRequest would write it for these headers. */
function headOf(request: OutgoingRequest, bodyLength: number | undefined): string {
  if (INVALID_PATH.test(request.path)) {
    throw Object.assign(new TypeError('Request path contains unescaped characters'), {
      code: 'ERR_UNESCAPED_CHARACTERS',
    });
  }
  let head = `${request.method} ${request.path} HTTP/1.1\r\n`;
  let framed = false;
  let connection = false;
  const headers: OutgoingHttpHeaders = request.headers;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    if (lower === 'content-length' || lower === 'transfer-encoding') framed = true;
    else if (lower === 'connection') connection = true;
    for (const one of Array.isArray(value) ? value : [value]) {
      const text = String(one);
      if (INVALID_VALUE.test(text)) {
        throw Object.assign(new TypeError(`Invalid character in header content ["${name}"]`), {
          code: 'ERR_INVALID_CHAR',
        });
      }
      head += `${name}: ${text}\r\n`;
    }
  }
  if (!connection) head += 'Connection: keep-alive\r\n';
  if (!framed && (bodyLength !== undefined || !NO_BODY_BY_DEFAULT.has(request.method)))
    head += `Content-Length: ${bodyLength ?? 0}\r\n`;
  return `${head}\r\n`;
}

/** What the connection's current exchange is told of its answer. */
interface AnswerSink {
  informational(status: number, raw: string[]): void;
  head(status: number, reason: string, raw: string[], keepAlive: boolean): void;
  body(chunk: Buffer): void;
  /** The answer arrived whole (its trailers given). */
  complete(trailers: string[]): void;
  /**
   * Every byte that came with the answer's end is parsed: `clean` unless bytes followed it (a
   * second answer, or garbage), when the answer stands and the connection is not reused.
   */
  settled(clean: boolean): void;
  /** The answer does not parse (before it was complete): why, for the client's 502. */
  malformed(reason: string): void;
  /** The connection ended or failed before the answer was complete. */
  closed(err: NodeJS.ErrnoException | undefined): void;
}

/**
 * This worker's one connection to one backend, owned while it lives: reused for the next exchange
 * on the same backend when the last one left it clean (kept alive, nothing more arrived).
 */
class BackendConnection {
  readonly socket: net.Socket;
  private readonly parser: Parser;
  sink: AnswerSink | undefined;
  /** Whether an exchange already ran on it (a reused connection may be one the backend closed). */
  used = false;
  /** The answer in progress is to a HEAD: it has no body, whatever its headers say. */
  private headRequest = false;
  /** The message being parsed is a 1xx interim answer. */
  private interim = false;
  /** The final answer is complete; `extra`: more bytes began a message after it. */
  private answered = false;
  private extra = false;
  /** Header pairs given in pieces (a large head), or the trailers. */
  private pending: string[] = [];
  private done = false;
  /** The answer was an unrequested 101 (the parse is failed on purpose). */
  private switched = false;

  constructor(
    readonly port: number,
    host: string,
    private readonly forget: (c: BackendConnection) => void,
  ) {
    const P = PARSER!;
    this.parser = new P();
    this.parser.initialize(P.RESPONSE, {}, 0, 0);
    this.parser[P.kOnMessageBegin] = () => {
      if (this.answered) this.extra = true;
    };
    this.parser[P.kOnHeaders] = (raw: string[]) => {
      for (const x of raw) this.pending.push(x);
    };
    this.parser[P.kOnHeadersComplete] = (
      _major: number,
      _minor: number,
      raw: string[] | undefined,
      _method: unknown,
      _url: unknown,
      status: number,
      reason: string,
      _upgrade: boolean,
      keepAlive: boolean,
    ): number => {
      const headers = raw ?? this.pending;
      this.pending = [];
      if (this.answered) return 1;
      if (status === 101) {
        // Unrequested (upgrades go through upgrade.ts): the rest is not HTTP. Failing the parse
        // here ends the exchange as malformed, with the connection closed (see the data handler).
        this.switched = true;
        return -1;
      }
      // Any other 1xx: an interim answer; the final one follows on the same connection.
      if (status >= 100 && status < 200) {
        this.interim = true;
        this.sink?.informational(status, headers);
        return 1;
      }
      this.sink?.head(status, reason, headers, keepAlive);
      return this.headRequest ? 1 : 0;
    };
    this.parser[P.kOnBody] = (chunk: Buffer) => {
      if (!this.answered) this.sink?.body(chunk);
    };
    this.parser[P.kOnMessageComplete] = () => {
      const trailers = this.pending;
      this.pending = [];
      if (this.interim) {
        this.interim = false;
        return;
      }
      if (this.answered) return;
      this.answered = true;
      this.sink?.complete(trailers);
    };
    this.socket = net.connect({ port, host, noDelay: true });
    this.socket.on('data', (data: Buffer) => {
      if (!this.sink) {
        // Bytes nobody asked for (after a complete answer): the connection is not reused.
        this.close();
        return;
      }
      const parsed = this.parser.execute(data);
      if (typeof parsed !== 'number') {
        this.close();
        if (this.answered) this.sink?.settled(false);
        else if (this.switched) this.sink?.malformed(UNREQUESTED_SWITCH);
        else
          this.sink?.malformed(
            `the backend's answer could not be parsed (${parsed.code ?? 'HPE_UNKNOWN'})`,
          );
      } else if (this.answered) this.sink?.settled(!this.extra);
    });
    this.socket.on('end', () => {
      // A close-delimited answer ends here; any other still open was cut.
      const sink = this.sink;
      const finished = this.parser.finish();
      this.close();
      if (this.answered && !(finished instanceof Error)) sink?.settled(!this.extra);
      else this.notifyClosed(undefined);
    });
    this.socket.on('error', (err: NodeJS.ErrnoException) => {
      this.close();
      this.notifyClosed(err);
    });
    this.socket.on('close', () => {
      this.close();
      this.notifyClosed(undefined);
    });
  }

  private notifyClosed(err: NodeJS.ErrnoException | undefined): void {
    const sink = this.sink;
    this.sink = undefined;
    sink?.closed(err);
  }

  get open(): boolean {
    return !this.done && !this.socket.destroyed;
  }

  send(head: string, body: Buffer | undefined, isHead: boolean, sink: AnswerSink): void {
    this.sink = sink;
    this.headRequest = isHead;
    this.answered = false;
    this.extra = false;
    this.interim = false;
    this.used = true;
    if (body && body.length > 0) {
      this.socket.cork();
      this.socket.write(head, 'latin1');
      this.socket.write(body);
      this.socket.uncork();
    } else this.socket.write(head, 'latin1');
  }

  /** The exchange is over with the connection clean: it may carry the next one. */
  release(): void {
    this.sink = undefined;
  }

  /** The exchange leaves it (a retry on another, or its end): no more news of it. */
  detach(sink: AnswerSink): void {
    if (this.sink === sink) this.sink = undefined;
  }

  close(): void {
    if (this.done) return;
    this.done = true;
    this.forget(this);
    this.socket.destroy();
    this.parser.close();
  }
}

/** Set by exchange.ts: closes node:http's idle connection to a backend (import cycle). */
let dropAgentConnection: (host: string, port: number) => void = () => undefined;
export function onAgentDrop(drop: (host: string, port: number) => void): void {
  dropAgentConnection = drop;
}

/** This worker's connections, by backend port. */
const connections = new Map<number, BackendConnection>();

function forget(c: BackendConnection): void {
  if (connections.get(c.port) === c) connections.delete(c.port);
}

/** Closes this worker's connection to the backend on `port` if it is idle (see exchange.ts). */
export function dropRawConnection(port: number): void {
  const c = connections.get(port);
  if (c && !c.sink) c.close();
}

export function dropAllRawConnections(): void {
  for (const c of [...connections.values()]) if (!c.sink) c.close();
}

/**
 * The discard limit and the phases are exchange.ts's (see there): this is the same state machine
 * on another client.
 */
const DISCARD_LIMIT_BYTES = 64 * 1024 * 1024;

type Phase =
  | { readonly name: 'awaiting-head' }
  | { readonly name: 'receiving'; readonly keepAlive: boolean }
  | {
      readonly name: 'discarding';
      readonly keepAlive: boolean;
      readonly timer: NodeJS.Timeout;
      bytes: number;
    }
  | { readonly name: 'closing'; readonly outcome: CheckinOutcome }
  | { readonly name: 'done' };

export function rawExchange(
  request: OutgoingRequest,
  target: ExchangeTarget,
  client: Delivery,
  done: (outcome: CheckinOutcome) => void,
): void {
  new RawExchange(request, target, client, done).start();
}

/**
 * The answer's events reach this exchange through AnswerSink; each method catches for itself (a
 * try/catch, not guard()'s closure: no allocation per chunk on the request path).
 */
class RawExchange implements AnswerSink {
  private phase: Phase = { name: 'awaiting-head' };
  private connection: BackendConnection | undefined;
  /** The connection had carried an exchange before this one (the backend may have closed it). */
  private reused = false;
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
    try {
      this.send();
    } catch (err) {
      this.crash(err);
    }
  }

  /** `fn` under the request path's guard: an exception ends this exchange, not the worker. */
  private guard<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
    return guard(fn, (err) => this.crash(err));
  }

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
    return isIdempotent(this.request.method);
  }

  private send(): void {
    const { request, target } = this;
    const body = request.body.kind === 'stored' ? request.body.store.contents() : undefined;
    const head = headOf(request, body?.length);
    let c = connections.get(target.port);
    // POST and PATCH always go out on a new connection, as in exchange.ts: a kept-alive one the
    // backend closes just as it is reused could not be sent again.
    if (c && (c.sink || !c.open || this.retried || !this.mayResend)) {
      if (!c.sink) c.close();
      c = undefined;
    }
    if (!c) {
      c = new BackendConnection(target.port, target.host, forget);
      connections.set(target.port, c);
    }
    this.connection = c;
    this.reused = c.used;
    // One connection per backend: node:http's idle one, if the other client left one, goes.
    dropAgentConnection(target.host, target.port);
    c.send(head, body, request.method === 'HEAD', this);
  }

  informational(status: number, raw: string[]): void {
    try {
      if (this.phase.name === 'awaiting-head') this.client.information(status, raw);
    } catch (err) {
      this.crash(err);
    }
  }

  head(status: number, reason: string, raw: string[], keepAlive: boolean): void {
    try {
      if (this.phase.name !== 'awaiting-head') return;
      clearTimeout(this.headTimer);
      // Reset by every byte either way, as node's socket timeout is: the longest stall.
      this.connection!.socket.setTimeout(this.target.timeoutMs, this.onStall);
      if (this.client.gone) {
        this.discard(keepAlive);
        return;
      }
      let contentType = '';
      let accel = '';
      for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i]!.toLowerCase();
        if (name === 'content-type' && contentType === '') contentType = raw[i + 1]!;
        else if (name === 'x-accel-buffering' && accel === '') accel = raw[i + 1]!;
      }
      const stream =
        !this.target.bufferResponses ||
        /^text\/event-stream\b/i.test(contentType) ||
        accel.toLowerCase() === 'no';
      this.client.head(status, reason, raw, stream);
      this.phase = { name: 'receiving', keepAlive };
    } catch (err) {
      this.crash(err);
    }
  }

  body(chunk: Buffer): void {
    try {
      const phase = this.phase;
      if (phase.name === 'receiving') {
        if (!this.client.write(chunk)) {
          const socket = this.connection!.socket;
          socket.pause();
          this.client.whenWritable(() => socket.resume());
        }
      } else if (phase.name === 'discarding') {
        phase.bytes += chunk.length;
        if (phase.bytes > DISCARD_LIMIT_BYTES) this.close('abandoned');
      }
    } catch (err) {
      this.crash(err);
    }
  }

  complete(trailers: string[]): void {
    try {
      if (this.phase.name === 'receiving') this.client.end(trailers);
    } catch (err) {
      this.crash(err);
    }
  }

  settled(clean: boolean): void {
    try {
      const phase = this.phase;
      if (phase.name !== 'receiving' && phase.name !== 'discarding') return;
      // Bytes after the answer: it stands, as nginx delivers it; the connection is not reused.
      if (!clean) return this.close('bad-response');
      // The backend closes it: its side is over once both ends are closed (see closeGracefully).
      if (!phase.keepAlive) return this.closeGracefully('ok');
      this.connection!.release();
      this.finish('ok');
    } catch (err) {
      this.crash(err);
    }
  }

  malformed(reason: string): void {
    try {
      const phase = this.phase.name;
      if (phase === 'closing' || phase === 'done') return;
      if (phase === 'receiving' || phase === 'discarding') {
        this.client.cut();
        this.finish('bad-response');
        return;
      }
      this.client.fail('MPX_BAD_BACKEND_RESPONSE', reason);
      this.finish('bad-response');
    } catch (err) {
      this.crash(err);
    }
  }

  closed(err: NodeJS.ErrnoException | undefined): void {
    try {
      const phase = this.phase;
      if (phase.name === 'closing') return this.finish(phase.outcome);
      if (phase.name === 'done') return;
      if (phase.name === 'receiving' || phase.name === 'discarding') {
        this.client.cut();
        this.finish('broken');
        return;
      }
      const refused = err?.code === 'ECONNREFUSED';
      if (!this.retried && this.reused && !refused && this.mayResend && !this.client.gone) {
        // A kept-alive connection the backend closed as it was reused: once, on a new one.
        this.retried = true;
        this.send();
        return;
      }
      if (refused && this.target.mayRetryRefused && !this.client.gone) {
        this.finish('refused');
        return;
      }
      this.client.fail(
        refused ? 'MPX_BACKEND_UNREACHABLE' : 'MPX_BACKEND_CRASHED',
        refused
          ? 'the backend refused the connection'
          : 'the backend closed the connection before answering',
      );
      this.finish('broken');
    } catch (err) {
      this.crash(err);
    }
  }

  private readonly onStall = (): void => {
    try {
      const phase = this.phase;
      if (phase.name !== 'receiving' && phase.name !== 'discarding') return;
      this.client.cut();
      this.close('stuck');
    } catch (err) {
      this.crash(err);
    }
  };

  private headTimeout(): void {
    if (this.phase.name !== 'awaiting-head') return;
    this.client.fail('MPX_BACKEND_TIMEOUT', 'the backend did not answer within http_proxy_timeout');
    this.close('stuck');
  }

  private clientGone(): void {
    const phase = this.phase;
    // Awaiting the head: the answer is discarded when it comes (see head).
    if (phase.name === 'receiving') this.discard(phase.keepAlive);
  }

  private discard(keepAlive: boolean): void {
    const timer = setTimeout(
      this.guard(() => {
        if (this.phase.name === 'discarding') this.close('abandoned');
      }),
      this.target.timeoutMs,
    );
    this.phase = { name: 'discarding', keepAlive, timer, bytes: 0 };
    // A paused read (the client was slow) would never end the answer.
    this.connection?.socket.resume();
  }

  /** Closes the backend connection; the outcome is reported once it is closed. */
  private close(outcome: CheckinOutcome): void {
    this.leavePhase();
    this.phase = { name: 'closing', outcome };
    const c = this.connection;
    if (!c || c.socket.closed) return this.finish(outcome);
    c.detach(this);
    c.socket.once('close', () => this.finish(outcome));
    c.close();
  }

  /**
   * Ends the connection the backend said it closes: our FIN, then its own, and only then is its
   * side over. Our FIN goes out before any later connection of ours to this backend, so it sees
   * this connection closed before the next request (the fuzz suite checks exactly this). A
   * backend that never closes its end is cut after http_proxy_timeout.
   */
  private closeGracefully(outcome: CheckinOutcome): void {
    this.leavePhase();
    this.phase = { name: 'closing', outcome };
    const c = this.connection!;
    c.detach(this);
    const cut = setTimeout(() => c.close(), this.target.timeoutMs);
    c.socket.once('close', () => {
      clearTimeout(cut);
      this.finish(outcome);
    });
    c.socket.end();
  }

  private leavePhase(): void {
    clearTimeout(this.headTimer);
    if (this.phase.name === 'discarding') clearTimeout(this.phase.timer);
  }

  private finish(outcome: CheckinOutcome): void {
    if (this.phase.name === 'done') return;
    this.leavePhase();
    this.phase = { name: 'done' };
    const c = this.connection;
    if (c) {
      c.socket.setTimeout(0);
      c.socket.off('timeout', this.onStall);
      if (c.sink === this) c.close();
    }
    this.done(outcome);
  }
}
