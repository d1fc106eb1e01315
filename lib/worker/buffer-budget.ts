/**
 * What one front worker's bodies may hold in all, across every exchange: bytes in memory
 * (buffer_memory_total_bytes) and bytes in temp files (buffer_disk_max_bytes). Per exchange,
 * buffer_memory_bytes still decides when a body spills; this bounds the sum, which was unbounded:
 * 1,000 queued 1 MiB request bodies held 1 GB, and spills shared the state directory's disk (by
 * default a RAM-backed runtime directory) with no limit at all.
 */
export class BufferBudget {
  private memoryBytes = 0;
  private diskBytes = 0;

  constructor(
    private readonly memoryMax: number,
    private readonly diskMax: number,
  ) {}

  get memory(): number {
    return this.memoryBytes;
  }

  get disk(): number {
    return this.diskBytes;
  }

  /** Takes `bytes` of memory if they fit under the total; false when they do not. */
  takeMemory(bytes: number): boolean {
    if (this.memoryBytes + bytes > this.memoryMax) return false;
    this.memoryBytes += bytes;
    return true;
  }

  /** Whether `bytes` more would fit in memory (for memory node holds, counted afterwards). */
  memoryFits(bytes: number): boolean {
    return this.memoryBytes + bytes <= this.memoryMax;
  }

  /** Memory counted as it is (a response's write buffer): may go up or down by `delta`. */
  adjustMemory(delta: number): void {
    this.memoryBytes += delta;
  }

  /** Takes `bytes` of temp file space if they fit under the total; false when they do not. */
  takeDisk(bytes: number): boolean {
    if (this.diskBytes + bytes > this.diskMax) return false;
    this.diskBytes += bytes;
    return true;
  }

  /** Counts `bytes` of temp file space whether or not they fit (see Delivery.write). */
  forceDisk(bytes: number): void {
    this.diskBytes += bytes;
  }

  get diskFull(): boolean {
    return this.diskBytes >= this.diskMax;
  }

  giveMemory(bytes: number): void {
    this.memoryBytes -= bytes;
  }

  giveDisk(bytes: number): void {
    this.diskBytes -= bytes;
  }
}

/** No limits: for a store used on its own (tests, tools). */
export const UNLIMITED = (): BufferBudget => new BufferBudget(Infinity, Infinity);
