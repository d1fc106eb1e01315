/**
 * A front worker's drain, as one phase and one timer: stop accepting, let every request in flight
 * finish (answers say "Connection: close"), give idle keep-alive connections a grace, close
 * upgraded connections after shutdown_timeout_ms, and report at the end whether everything
 * finished or something had to be cut at the primary's deadline.
 */

/** What the drain acts on. */
export interface DrainTarget {
  /** Requests and upgraded connections in flight. */
  busy(): number;
  /** Client connections still open. */
  connections(): number;
  /**
   * Closes the connections idle for `graceMs`; returns when the next idle one that stays open
   * may be closed, if any.
   */
  closeIdle(graceMs: number): number | undefined;
  /** Stop accepting connections (idle keep-alive ones stay open). */
  stopListening(): void;
  /** Close the upgraded connections (WebSockets): they have no end of their own. */
  closeTunnels(): void;
  /** All done (`complete`) or cut at the deadline: report and exit. */
  finish(complete: boolean): void;
}

export interface DrainClock {
  now(): number;
  /** Runs `fn` after `ms`; returns a cancel. */
  after(ms: number, fn: () => void): () => void;
}

export const realDrainClock: DrainClock = {
  now: () => Date.now(),
  after: (ms, fn) => {
    const timer = setTimeout(fn, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};

/** The worker reports this long before the primary's deadline, so its report arrives first. */
export const REPORT_MARGIN_MS = 250;

interface Deadlines {
  readonly graceEnds: number;
  readonly tunnelsClose: number;
  readonly cut: number;
}

type Phase =
  | { readonly kind: 'serving' }
  | { readonly kind: 'draining'; at: Deadlines; tunnelsClosed: boolean }
  | { readonly kind: 'done'; readonly complete: boolean };

export class WorkerDrain {
  private phase: Phase = { kind: 'serving' };
  private cancelWake: (() => void) | undefined;

  /**
   * `graceMs`: how long idle keep-alive connections stay open (a looping client sends its next
   * request within it and gets "Connection: close"; closing at once races with a request being
   * written). `tunnelsAfterMs`: when upgraded connections are closed (shutdown_timeout_ms).
   */
  constructor(
    private readonly target: DrainTarget,
    private readonly graceMs: number,
    private readonly tunnelsAfterMs: number,
    private readonly clock: DrainClock = realDrainClock,
  ) {}

  get draining(): boolean {
    return this.phase.kind !== 'serving';
  }

  /** The primary asked for a drain, to end within `withinMs` (a second ask may bring it nearer). */
  begin(withinMs: number): void {
    const now = this.clock.now();
    const cut = now + Math.max(0, withinMs - REPORT_MARGIN_MS);
    if (this.phase.kind === 'done') return;
    if (this.phase.kind === 'draining') {
      const { at } = this.phase;
      this.phase.at = {
        ...at,
        cut: Math.min(at.cut, cut),
        tunnelsClose: Math.min(at.tunnelsClose, cut),
      };
    } else {
      this.target.stopListening();
      this.phase = {
        kind: 'draining',
        at: {
          graceEnds: now + this.graceMs,
          tunnelsClose: Math.min(now + this.tunnelsAfterMs, cut),
          cut,
        },
        tunnelsClosed: false,
      };
    }
    this.check();
  }

  /** A request, an upgraded connection or a client connection ended. */
  settled(): void {
    if (this.phase.kind === 'draining') this.check();
  }

  private check(): void {
    const phase = this.phase;
    if (phase.kind !== 'draining') return;
    this.cancelWake?.();
    this.cancelWake = undefined;
    const now = this.clock.now();
    const { at } = phase;
    if (!phase.tunnelsClosed && now >= at.tunnelsClose) {
      phase.tunnelsClosed = true;
      this.target.closeTunnels();
    }
    const idleAt = now >= at.graceEnds ? this.target.closeIdle(this.graceMs) : undefined;
    const done = this.target.busy() === 0 && this.target.connections() === 0;
    if (done || now >= at.cut) {
      this.phase = { kind: 'done', complete: done };
      if (!phase.tunnelsClosed) this.target.closeTunnels();
      this.target.finish(done);
      return;
    }
    const wakes = [at.cut];
    if (now < at.graceEnds) wakes.push(at.graceEnds);
    if (!phase.tunnelsClosed) wakes.push(at.tunnelsClose);
    if (idleAt !== undefined) wakes.push(idleAt);
    const wake = Math.min(...wakes);
    this.cancelWake = this.clock.after(Math.max(0, wake - now), () => this.check());
  }
}
