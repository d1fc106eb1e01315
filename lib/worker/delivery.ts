import type { ServerResponse } from 'node:http';
import type { ErrorCode } from '../errors.js';
import { BufferStore, type StoreReader } from './buffer-store.js';
import { sendError } from './error-response.js';
import { headerObject, ownHeadersOf, responseHeaders } from './headers.js';

export interface DeliverySettings {
  /** Where answers that outgrow memory are spilled. */
  readonly bufferDir: string;
  readonly memoryBytes: number;
  /** client_timeout_ms: the longest a client may take no bytes while an answer waits for it. */
  readonly clientTimeoutMs: number;
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

  constructor(
    private readonly res: ServerResponse,
    private readonly settings: DeliverySettings,
  ) {
    res.once('close', () => {
      this.clearStall();
      this.store?.dispose();
      if (this.phase === 'finished') return;
      this.phase = 'gone';
      this.goneHandler?.();
    });
  }

  get gone(): boolean {
    return this.phase === 'gone';
  }

  onGone(handler: () => void): void {
    this.goneHandler = handler;
  }

  /** A 1xx answer: 103 Early Hints and 102 Processing reach the client before the final head. */
  information(status: number, raw: readonly string[]): void {
    if (this.phase !== 'before-head') return;
    if (status === 103) {
      const hints = headerObject(raw);
      if (hints.link) this.res.writeEarlyHints(hints);
    } else if (status === 102) {
      this.res.writeProcessing();
    }
  }

  head(status: number, message: string | undefined, raw: readonly string[], stream: boolean): void {
    if (this.phase !== 'before-head') return;
    this.res.sendDate = false;
    this.res.writeHead(status, message, responseHeaders(raw, ownHeadersOf(this.res)));
    this.phase = stream ? 'streaming' : 'buffering';
    // An event stream's client waits for its head before any event comes.
    if (stream) this.res.flushHeaders();
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
    if (!this.store && this.res.writableLength + chunk.length <= this.settings.memoryBytes) {
      this.res.write(chunk);
      if (this.res.writableNeedDrain) this.armStall();
      return true;
    }
    this.store ??= new BufferStore(this.settings.bufferDir, 0);
    this.reader ??= this.store.reader();
    this.store.append(chunk);
    this.pump();
    return this.reader.pending < MAX_STORED_BYTES;
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
      this.res.once('drain', () => {
        this.pumping = false;
        this.pump();
      });
      return;
    }
    const reader = this.reader;
    const store = this.store;
    if (reader.pending === 0) {
      if (this.phase === 'ending') this.finish(this.trailers);
      return;
    }
    this.pumping = true;
    reader.next((err, chunk) => {
      this.pumping = false;
      if (this.phase !== 'buffering' && this.phase !== 'ending') return;
      if (err) {
        this.cut();
        return;
      }
      if (chunk.length === 0) {
        // The file has not caught up with what was appended: go on once it has.
        store.whenWritten(() => this.pump());
        return;
      }
      this.res.write(chunk);
      if (this.resume && reader.pending < MAX_STORED_BYTES / 2) {
        const resume = this.resume;
        this.resume = undefined;
        resume();
      }
      this.pump();
    });
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
    if (!this.timing) return;
    this.timing = false;
    this.res.socket?.setTimeout(0);
  }
}
