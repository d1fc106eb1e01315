import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { ErrorCode } from '../errors.js';
import type { BufferBudget } from './buffer-budget.js';
import { BufferStore, type StoreReader } from './buffer-store.js';
import { sendError } from './error-response.js';
import { guard, type FaultReporter } from './guard.js';
import {
  earlyHints,
  headerObject,
  ownHeadersOf,
  responseHeaders,
  withoutHeader,
} from './headers.js';

export interface DeliverySettings {
  /** Where answers that outgrow memory are spilled. */
  readonly bufferDir: string;
  readonly memoryBytes: number;
  /** client_timeout_ms: the longest a client may take no bytes while an answer waits for it. */
  readonly clientTimeoutMs: number;
  /** Told of an exception in the delivery's own callbacks, which then cut the client. */
  readonly onFault: FaultReporter;
  /** The worker's totals for bodies in memory and in temp files. */
  readonly budget: BufferBudget;
}

/**
 * A reason phrase as RFC 9112 §4 allows it (HTAB, SP, VCHAR, obs-text). llhttp passes on bytes
 * that node's writeHead then refuses (a control byte threw ERR_INVALID_CHAR and ended the worker):
 * such a phrase is replaced by the standard one, as the phrase carries no meaning (§4).
 */
const REASON_PHRASE = /^[\t\x20-\x7e\x80-\xff]*$/;

function reasonPhrase(status: number, given: string | undefined): string {
  return given !== undefined && REASON_PHRASE.test(given) ? given : (STATUS_CODES[status] ?? '');
}

/**
 * Bytes an answer may hold in its store, waiting for a slow client, before the backend is read at
 * the client's pace after all (nginx's proxy_max_temp_file_size plays this part).
 */
const MAX_STORED_BYTES = 1024 * 1024 * 1024;

/**
 * How the answer reaches the client:
 * - 'before-head': nothing sent yet;
 * - 'streaming': written through as the backend sends it; a slow client slows the backend down
 *   (event streams, "X-Accel-Buffering: no", buffer_responses: false);
 * - 'buffering': written through while the client keeps up, else kept (memory, then a temp file)
 *   and sent as the client takes it, so the backend is never held by the client's pace;
 * - 'ending': the backend's side is over; what is kept still goes to the client;
 * - 'finished': all sent; 'gone': the client left or was dropped first.
 */
type Phase = 'before-head' | 'streaming' | 'buffering' | 'ending' | 'finished' | 'gone';

/** The client's side of one exchange, for the exchange to write the backend's answer into. */
export class Delivery {
  private phase: Phase = 'before-head';
  private store: BufferStore | undefined;
  private reader: StoreReader | undefined;
  private pumping = false;
  private trailers: readonly string[] = [];
  /** Whether the client is being timed: something waits for it to take. */
  private timing = false;
  private resume: (() => void) | undefined;
  private goneHandler: (() => void) | undefined;
  /** Bytes of the answer in node's write buffer, as last counted against the budget. */
  private held = 0;

  constructor(
    private readonly res: ServerResponse,
    private readonly settings: DeliverySettings,
  ) {
    res.once(
      'close',
      this.guard(() => {
        this.clearStall();
        this.countHeld(0);
        this.store?.dispose();
        if (this.phase === 'finished') return;
        this.phase = 'gone';
        this.goneHandler?.();
      }),
    );
  }

  /** The delivery's own callbacks: an exception cuts the client (the exchange then ends). */
  private guard<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
    return guard(fn, (err) => {
      this.settings.onFault(err, 'delivery');
      this.cut();
    });
  }

  get gone(): boolean {
    return this.phase === 'gone';
  }

  onGone(handler: () => void): void {
    this.goneHandler = handler;
  }

  /**
   * A 1xx answer: 103 Early Hints and 102 Processing reach the client before the final head (never
   * an HTTP/1.0 client: RFC 9110 §15.2). Early hints are re-encoded as node's writeEarlyHints takes
   * them, one Link per value; hints it would refuse are dropped (see earlyHints).
   */
  information(status: number, raw: readonly string[]): void {
    if (this.phase !== 'before-head') return;
    const req = this.res.req as
      { httpVersionMajor?: number; httpVersionMinor?: number } | undefined;
    if (req && req.httpVersionMajor === 1 && req.httpVersionMinor === 0) return;
    if (status === 103) {
      const hints = earlyHints(raw);
      try {
        if (hints) this.res.writeEarlyHints(hints);
      } catch (err) {
        // Refused by node before anything was written: the hint is dropped, the answer goes on.
        this.settings.onFault(err, 'early hints (dropped)');
      }
    } else if (status === 102) {
      this.res.writeProcessing();
    }
  }

  head(status: number, message: string | undefined, raw: readonly string[], stream: boolean): void {
    if (this.phase !== 'before-head') return;
    this.res.sendDate = false;
    const headers = responseHeaders(raw, ownHeadersOf(this.res));
    this.res.writeHead(
      status,
      reasonPhrase(status, message),
      // Trailers need chunked coding: node throws ERR_HTTP_TRAILER_INVALID on a Trailer header of
      // an answer it sends otherwise, and drops the trailers themselves then.
      this.willChunk(status, headers) ? headers : withoutHeader(headers, 'trailer'),
    );
    this.phase = stream ? 'streaming' : 'buffering';
    // An event stream's client waits for its head before any event comes.
    if (stream) this.res.flushHeaders();
  }

  /** Whether node will send an answer with these headers chunked (as in its _storeHeader). */
  private willChunk(status: number, headers: readonly string[]): boolean {
    const req = this.res.req as { httpVersionMinor?: number; method?: string } | undefined;
    if (req?.method === 'HEAD' || status === 204 || status === 304 || req?.httpVersionMinor === 0) {
      return false;
    }
    for (let i = 0; i < headers.length; i += 2) {
      if (headers[i]!.toLowerCase() === 'content-length') return false;
    }
    return true;
  }

  /**
   * A chunk of the answer. Returns false when the backend should be read no further for now;
   * `whenWritable` then says when to go on.
   */
  write(chunk: Buffer): boolean {
    if (this.phase === 'streaming') {
      const more = this.res.write(chunk);
      if (!more) this.armStall();
      return more;
    }
    if (this.phase !== 'buffering') return true;
    // In memory, the kept part of an answer is node's own write buffer (no copy of ours); past
    // buffer_memory_bytes, the rest goes to a temp file.
    const { budget } = this.settings;
    if (
      !this.store &&
      this.res.writableLength + chunk.length <= this.settings.memoryBytes &&
      budget.memoryFits(chunk.length)
    ) {
      this.res.write(chunk);
      this.countHeld(this.res.writableLength);
      if (this.res.writableNeedDrain) this.armStall();
      return true;
    }
    // Past buffer_disk_max_bytes the chunk in hand is still kept (one chunk over, per answer),
    // and the backend is read no further until this client took what is kept.
    this.store ??= new BufferStore(this.settings.bufferDir, 0, budget, 'count');
    this.reader ??= this.store.reader();
    this.store.append(chunk);
    this.pump();
    return this.reader.pending < MAX_STORED_BYTES && !budget.diskFull;
  }

  whenWritable(go: () => void): void {
    if (this.phase === 'streaming') this.res.once('drain', go);
    else this.resume = go;
  }

  /** The backend's answer is complete, with these trailers (raw pairs). */
  end(rawTrailers: readonly string[]): void {
    if (this.phase === 'streaming' || (this.phase === 'buffering' && !this.store)) {
      this.finish(rawTrailers);
    } else if (this.phase === 'buffering') {
      this.trailers = rawTrailers;
      this.phase = 'ending';
      this.pump();
    }
  }

  /** multiplexer's own answer when nothing was sent yet, else a cut connection. */
  fail(code: ErrorCode, message: string): void {
    if (this.phase === 'before-head') sendError(this.res, code, message);
    else this.cut();
  }

  /** Cuts the client's connection: after a partial answer, the only honest signal left. */
  cut(): void {
    this.res.destroy();
  }

  private finish(rawTrailers: readonly string[]): void {
    this.phase = 'finished';
    if (rawTrailers.length > 0) this.res.addTrailers(headerObject(rawTrailers));
    this.res.end();
    this.store?.dispose();
    // A client that stops reading the last bytes is dropped as well.
    if (!this.res.writableFinished) {
      this.armStall();
      this.res.once('finish', () => this.clearStall());
    }
  }

  /** Sends what is kept, as fast as the client takes it. */
  private pump(): void {
    if (this.pumping || !this.reader || !this.store) return;
    if (this.res.writableNeedDrain) {
      this.pumping = true;
      this.armStall();
      this.res.once(
        'drain',
        this.guard(() => {
          this.pumping = false;
          this.pump();
        }),
      );
      return;
    }
    const reader = this.reader;
    const store = this.store;
    if (reader.pending === 0) {
      if (this.phase === 'ending') this.finish(this.trailers);
      return;
    }
    this.pumping = true;
    reader.next(
      this.guard((err: Error | null, chunk: Buffer) => {
        this.pumping = false;
        if (this.phase !== 'buffering' && this.phase !== 'ending') return;
        if (err) {
          this.cut();
          return;
        }
        if (chunk.length === 0) {
          // The file has not caught up with what was appended: go on once it has.
          store.whenWritten(this.guard(() => this.pump()));
          return;
        }
        this.res.write(chunk);
        if (
          this.resume &&
          reader.pending < MAX_STORED_BYTES / 2 &&
          (reader.pending === 0 || !this.settings.budget.diskFull)
        ) {
          const resume = this.resume;
          this.resume = undefined;
          resume();
        }
        this.pump();
      }),
    );
  }

  /** The answer bytes node holds for the client now, counted in the worker's memory total. */
  private countHeld(bytes: number): void {
    this.settings.budget.adjustMemory(bytes - this.held);
    this.held = bytes;
  }

  /** From now, the client has client_timeout_ms to take some of what waits for it. */
  private armStall(): void {
    if (this.timing) return;
    this.timing = true;
    // The socket's idle timer, refreshed by every write the kernel completes: it fires only when
    // the client took nothing for client_timeout_ms, however slowly it reads.
    if (this.res.listenerCount('timeout') === 0) {
      this.res.on('timeout', () => {
        if (this.timing) this.res.destroy();
      });
    }
    this.res.setTimeout(this.settings.clientTimeoutMs);
    this.res.once('drain', () => this.clearStall());
  }

  /** Nothing waits for the client (a slow backend is not the client's fault). */
  private clearStall(): void {
    if (!this.res.destroyed) this.countHeld(this.res.writableLength);
    if (!this.timing) return;
    this.timing = false;
    this.res.socket?.setTimeout(0);
  }
}
