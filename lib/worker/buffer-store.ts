import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { join } from 'node:path';
import type { BufferBudget } from './buffer-budget.js';

/** A body that does not fit the worker's temp file total (buffer_disk_max_bytes). */
export class BufferFullError extends Error {
  readonly code = 'MPX_BUFFER_FULL';
}

/**
 * A body held for one exchange: in memory up to a limit, the rest in a temp file. A request body
 * is read whole before a backend is taken (and may be sent twice, on a retry); an answer is read as
 * fast as the backend sends it while the client takes it at its own pace.
 *
 * The temp file is unlinked the moment it is opened, as nginx does with its temp files: its name
 * never outlives the open call, so a worker killed with SIGKILL leaves nothing on disk, and the
 * space is freed when the descriptor closes, which dispose() does on every path of the exchange.
 */
export class BufferStore {
  private readonly chunks: Buffer[] = [];
  private memoryBytes = 0;
  private fd: number | undefined;
  /** Bytes written to the file (readable), and chunks waiting to be written after them. */
  private fileBytes = 0;
  private queued: Buffer[] = [];
  private queuedBytes = 0;
  private writing = false;
  private failure: Error | undefined;
  private disposed = false;
  /** Called when more of the file became readable (a reader waiting for it resumes). */
  onFlush: (() => void) | undefined;

  /** Bytes counted against the worker's budget, given back on dispose. */
  private countedMemory = 0;
  private countedDisk = 0;

  /**
   * `budget`: the worker's totals. Past the memory total a body goes to its file from then on;
   * past the disk total, `atDiskLimit` says what happens: 'fail' (a request body: the store's
   * error is a BufferFullError and nothing more is kept) or 'count' (an answer: kept and counted
   * anyway, and its reader is told the budget is spent, so the backend is read at the client's
   * pace from then on).
   */
  constructor(
    private readonly dir: string,
    private readonly memoryLimit: number,
    private readonly budget: BufferBudget,
    private readonly atDiskLimit: 'fail' | 'count',
  ) {}

  /** Every byte appended so far. */
  get length(): number {
    return this.memoryBytes + this.fileBytes + this.queuedBytes;
  }

  /** Whether everything is in memory (then contents() gives it in one buffer, with no copy to disk). */
  get inMemory(): boolean {
    return this.fd === undefined;
  }

  /** A write to the temp file failed (disk full): the body is incomplete. */
  get error(): Error | undefined {
    return this.failure;
  }

  append(chunk: Buffer): void {
    if (this.disposed || chunk.length === 0 || this.failure) return;
    if (
      this.fd === undefined &&
      this.memoryBytes + chunk.length <= this.memoryLimit &&
      this.budget.takeMemory(chunk.length)
    ) {
      this.chunks.push(chunk);
      this.memoryBytes += chunk.length;
      this.countedMemory += chunk.length;
      return;
    }
    if (!this.budget.takeDisk(chunk.length)) {
      if (this.atDiskLimit === 'fail') {
        this.failure = new BufferFullError(
          'the temp files of this worker reached buffer_disk_max_bytes',
        );
        return;
      }
      this.budget.forceDisk(chunk.length);
    }
    this.countedDisk += chunk.length;
    if (this.fd === undefined) {
      try {
        this.fd = openUnlinked(this.dir);
      } catch (err) {
        this.failure = err as Error;
        return;
      }
    }
    this.queued.push(chunk);
    this.queuedBytes += chunk.length;
    this.flush();
  }

  /** Calls back once every byte appended so far is readable (the file has caught up). */
  whenWritten(done: () => void): void {
    if (!this.writing && this.queued.length === 0) {
      done();
      return;
    }
    const previous = this.onFlush;
    this.onFlush = () => {
      previous?.();
      if (!this.writing && this.queued.length === 0) {
        this.onFlush = previous;
        done();
      }
    };
  }

  /** The whole body, when it is all in memory. */
  contents(): Buffer {
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
  }

  /** A reader from the first byte; several may exist (a request body sent twice). */
  reader(): StoreReader {
    return new StoreReader(this);
  }

  /**
   * Calls back with the bytes from `offset` on: a memory chunk (or its rest), or up to 64 KiB of
   * the file. An empty buffer means nothing more is readable yet.
   */
  read(offset: number, done: (err: Error | null, chunk: Buffer) => void): void {
    if (offset < this.memoryBytes) {
      let start = 0;
      for (const chunk of this.chunks) {
        if (offset < start + chunk.length) {
          done(null, offset === start ? chunk : chunk.subarray(offset - start));
          return;
        }
        start += chunk.length;
      }
    }
    const at = offset - this.memoryBytes;
    if (this.fd === undefined || at >= this.fileBytes || this.disposed) {
      done(this.failure ?? null, EMPTY);
      return;
    }
    const size = Math.min(READ_SIZE, this.fileBytes - at);
    const buffer = Buffer.allocUnsafe(size);
    fs.read(this.fd, buffer, 0, size, at, (err, n) => done(err, buffer.subarray(0, n)));
  }

  /** Frees the memory and closes the file (its space is freed with it). Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.budget.giveMemory(this.countedMemory);
    this.budget.giveDisk(this.countedDisk);
    this.countedMemory = 0;
    this.countedDisk = 0;
    this.chunks.length = 0;
    this.queued = [];
    this.onFlush = undefined;
    // A write in flight still uses the descriptor: it is closed when that write returns.
    if (!this.writing) this.closeFile();
  }

  /** One write at a time, of everything queued, so the file holds the bytes in order. */
  private flush(): void {
    if (this.writing || this.queued.length === 0 || this.fd === undefined) return;
    const data = this.queued.length === 1 ? this.queued[0]! : Buffer.concat(this.queued);
    this.queued = [];
    this.writing = true;
    fs.write(this.fd, data, 0, data.length, this.fileBytes, (err) => {
      this.writing = false;
      if (this.disposed) {
        this.closeFile();
        return;
      }
      this.queuedBytes -= data.length;
      if (err) this.failure = err;
      else this.fileBytes += data.length;
      this.onFlush?.();
      this.flush();
    });
  }

  private closeFile(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    fs.close(fd, () => undefined);
  }
}

/** Reads a store from its first byte, in order, as far as it has been written. */
export class StoreReader {
  private offset = 0;

  constructor(private readonly store: BufferStore) {}

  /** Bytes appended to the store and not yet read here. */
  get pending(): number {
    return this.store.length - this.offset;
  }

  next(done: (err: Error | null, chunk: Buffer) => void): void {
    this.store.read(this.offset, (err, chunk) => {
      this.offset += chunk.length;
      done(err, chunk);
    });
  }
}

const EMPTY = Buffer.alloc(0);
const READ_SIZE = 64 * 1024;

/** Opens a new file in `dir` readable and writable by us only, and removes its name at once. */
function openUnlinked(dir: string): number {
  const path = join(dir, `body-${randomBytes(8).toString('hex')}`);
  const fd = fs.openSync(path, 'wx+', 0o600);
  fs.unlinkSync(path);
  return fd;
}

/**
 * Writes a stored body to `dest` (a backend request), then ends it: at once when it is in memory,
 * else chunk by chunk, following `dest`'s backpressure. `failed` is told of a read error.
 */
export function sendStored(
  store: BufferStore,
  dest: NodeJS.WritableStream,
  failed: (err: Error) => void,
): void {
  if (store.inMemory) {
    dest.end(store.contents());
    return;
  }
  const reader = store.reader();
  const step = (): void => {
    reader.next((err, chunk) => {
      if (err) return failed(err);
      if (chunk.length === 0) {
        dest.end();
        return;
      }
      if (dest.write(chunk)) step();
      else dest.once('drain', step);
    });
  };
  step();
}
