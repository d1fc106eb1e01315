import { NAMESPACE } from './protocol.js';

/** Several messages written to the channel as one (see Batcher). */
export interface Batch {
  readonly ns: typeof NAMESPACE;
  readonly type: 'batch';
  readonly messages: readonly unknown[];
}

/**
 * The messages in what arrived: a batch's, in order, or the one message itself. A batch is an
 * envelope, not a message of the protocol: what it carries is validated one by one.
 */
export function unbatch(raw: unknown): readonly unknown[] {
  if (typeof raw === 'object' && raw !== null) {
    const m = raw as Partial<Batch>;
    if (m.ns === NAMESPACE && m.type === 'batch' && Array.isArray(m.messages)) return m.messages;
  }
  return [raw];
}

/**
 * Messages to one peer, written together at the end of the event loop's turn. Each write on the
 * cluster channel is a syscall on each side, a wake-up of the peer and a JSON parse; under load a
 * turn produces several messages (checkouts, passes, grants), which then cost one of each. The
 * delay is until the turn's I/O callbacks have run (setImmediate), not a timer. Order is kept:
 * every message goes through here, and one that needs to know it was written (`done`) flushes
 * the ones before it first.
 */
export class Batcher<M> {
  private pending: M[] = [];
  private scheduled = false;

  constructor(private readonly write: (message: M | Batch, done?: () => void) => void) {}

  send(message: M, done?: () => void): void {
    if (done) {
      this.flush();
      this.write(message, done);
      return;
    }
    this.pending.push(message);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  readonly flush = (): void => {
    this.scheduled = false;
    const out = this.pending;
    if (out.length === 0) return;
    this.pending = [];
    this.write(out.length === 1 ? out[0]! : { ns: NAMESPACE, type: 'batch', messages: out });
  };
}
