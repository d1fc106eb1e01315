/**
 * Request/reply over cluster IPC, as node's cluster internals do it (lib/internal/cluster/utils.js:
 * one `seq` per sender, one callbacks map): a request carries `seq`, numbered by its sender, and
 * the reply carries it back as `ack`. Each process has one Sequence for everything it asks
 * (a worker's checkouts; the primary's revokes and metrics requests), and each kind of request
 * keeps its waiting entries in a Pending.
 */

/** The numbers one sender gives its requests: one counter, whatever the kind of request. */
export class Sequence {
  private last = 0;

  next(): number {
    return ++this.last;
  }
}

/**
 * Requests waiting for their reply, by `seq`, in the order they were asked (which is the order of
 * `seq`). A reply to nothing waiting (late, or to a request given up) is not found, and the
 * caller ignores it.
 */
export class Pending<T> {
  private readonly waiting = new Map<number, T>();
  /** Only the requests given a timeout: a checkout, on the request path, costs no timer here. */
  private readonly timers = new Map<number, NodeJS.Timeout>();

  constructor(private readonly sequence: Sequence) {}

  /**
   * Numbers a new request and keeps `value` for its reply. With `timeout`, `onTimeout` runs if
   * no reply has taken the entry by then.
   */
  open(value: T, timeout?: { ms: number; onTimeout(seq: number, value: T): void }): number {
    const seq = this.sequence.next();
    this.waiting.set(seq, value);
    if (timeout) {
      const timer = setTimeout(() => {
        const entry = this.take(seq);
        if (entry !== undefined) timeout.onTimeout(seq, entry);
      }, timeout.ms);
      this.timers.set(seq, timer);
    }
    return seq;
  }

  /** The waiting value of `seq`, left waiting (a reply that does not complete it, e.g. one of several). */
  peek(seq: number): T | undefined {
    return this.waiting.get(seq);
  }

  /** Takes the entry of `seq` out (its reply arrived, or it was given up): undefined if none. */
  take(seq: number): T | undefined {
    const value = this.waiting.get(seq);
    if (value === undefined) return undefined;
    this.waiting.delete(seq);
    if (this.timers.size > 0) {
      clearTimeout(this.timers.get(seq));
      this.timers.delete(seq);
    }
    return value;
  }

  /** Every waiting request, oldest first (the map's own iterator: no copy). */
  entries(): MapIterator<[number, T]> {
    return this.waiting.entries();
  }
}
