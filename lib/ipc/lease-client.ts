import type { ErrorCode } from '../errors.js';
import type { CheckinOutcome, PrimaryMessage, WorkerMessage } from './protocol.js';
import { NAMESPACE, UNBOUNDED, type HeldEntry } from './protocol.js';
import { Pending, Sequence } from './request.js';
import { DEFAULT_SERVICE } from '../config/services.js';

export type CheckoutResult =
  | {
      readonly status: 'granted';
      readonly lease: number;
      readonly port: number;
      readonly backend: number;
    }
  | { readonly status: 'rejected'; readonly code: ErrorCode; readonly message: string }
  | { readonly status: 'cancelled' };

export interface Checkout {
  readonly seq: number;
  readonly result: Promise<CheckoutResult>;
}

interface Waiting {
  readonly resolve: (result: CheckoutResult) => void;
  readonly service: string;
  /** Asked again after a refusal: the primary serves it first; never the target of a pass. */
  readonly again: boolean;
}

/** A lease this worker holds, and how far it may pass it on (see protocol.ts, "Sticky leases"). */
interface Held {
  readonly service: string;
  readonly port: number;
  readonly backend: number;
  upTo: number;
  /** Passes left under the backend's max_requests (UNBOUNDED: no limit). */
  passes: number;
  /** How long it may sit idle here (UNBOUNDED: for good; 0: not at all). */
  readonly holdMs: number;
  /** Idle here, held for this worker's next request, since then; undefined while in use. */
  idleSince: number | undefined;
  /** Requests served on it with no message each, not reported yet. */
  reused: number;
  /** Its backend exited (lost): it is forgotten when its request ends, and never used again. */
  lost: boolean;
  /** The last report said it is idle (so the next quiet moment need not be reported again). */
  idleReported: boolean;
}

/**
 * How often, at most, the leases held are reported to the pool: the requests served on them
 * (recycling, /status) and which sit idle (/status, /metrics).
 */
export const REPORT_MS = 1000;

/**
 * A held lease idle this long is reported idle at the next sweep (the load paused): soon enough
 * for /status, long enough that a loaded worker, whose held backends are idle for far less
 * between two requests, sends nothing.
 */
export const QUIET_MS = 50;

/**
 * The front worker's side of the lease protocol: numbered checkouts, replies matched by `ack`.
 * A checkout cancelled before its reply arrives is forgotten here; the supervisor returns the
 * lease itself if it had already granted it, so a late `granted` is simply ignored. So is a grant
 * that crossed a pass to the same checkout: the supervisor takes it back when the pass arrives.
 *
 * Leases are held (protocol.ts, "Held leases"): a request that finds a backend of its service
 * held idle here takes it with no message at all.
 */
export class LeaseClient {
  /** In the order asked, which is the order of `seq`: the first is the oldest. */
  private readonly waiting: Pending<Waiting>;
  private readonly held = new Map<number, Held>();
  /** Draining: nothing more is held idle, and what was is given back. */
  private releasing = false;
  private reportedAt: number;
  /** Something the last report said changed since (a lease used, or left idle). */
  private changed = false;
  /** A lease the last report said was idle is in use again. */
  private shownIdle = false;

  /**
   * `sequence`: this worker's one numbering of its requests. `revoked`: told the port of a
   * backend given back because the pool took it (a revoke), so the worker closes its connection
   * to it (a backend that serves one connection at a time would wait on it).
   */
  constructor(
    private readonly send: (message: WorkerMessage) => void,
    sequence = new Sequence(),
    private readonly now: () => number = () => performance.now(),
    private readonly revoked: (port: number) => void = () => undefined,
  ) {
    this.waiting = new Pending(sequence);
    this.reportedAt = now();
  }

  /**
   * Asks for a backend of `service`: one held idle here if there is one (no message), else the
   * pool's. `again`: this request's backend refused its connection (it never saw the request), so
   * it asks to be first in the pool's queue rather than last.
   */
  checkout(again = false, client = '', service = DEFAULT_SERVICE): Checkout {
    const lease = this.releasing ? undefined : this.idleHeld(service);
    if (lease !== undefined) {
      const held = this.held.get(lease)!;
      held.idleSince = undefined;
      held.passes--;
      held.reused++;
      this.changed = true;
      // The pool shows it idle: it hears otherwise at the next sweep, not a second later.
      if (held.idleReported) this.shownIdle = true;
      held.idleReported = false;
      const granted = { status: 'granted', lease, port: held.port, backend: held.backend } as const;
      // On the next turn, not at once: the previous exchange's last socket events (its connection
      // freed or closed) run first. Without it the fuzz suite (seed 20261202, a pipelined
      // request right behind an answer) had a backend see the next request on a new connection
      // before the close of the one before: two requests on one backend, for a moment.
      return { seq: 0, result: new Promise((resolve) => setImmediate(resolve, granted)) };
    }
    let seq = 0;
    const result = new Promise<CheckoutResult>((resolve) => {
      seq = this.waiting.open({ resolve, again, service });
    });
    this.send({ ns: NAMESPACE, type: again ? 'checkout-again' : 'checkout', seq, client, service });
    return { seq, result };
  }

  /**
   * The held idle lease of `service` to use next, if any: the one idle the shortest time, so that
   * one the pool gave beyond pool_size stays idle long enough to go back.
   */
  private idleHeld(service: string): number | undefined {
    let best: number | undefined;
    let since = -Infinity;
    for (const [lease, h] of this.held) {
      if (h.idleSince === undefined || h.service !== service || !this.mayHold(h)) continue;
      if (h.idleSince >= since) {
        since = h.idleSince;
        best = lease;
      }
    }
    return best;
  }

  /** Whether the lease may serve a later request of this worker's, no checkout sent for it. */
  private mayHold(h: Held): boolean {
    return h.upTo === UNBOUNDED && h.passes > 0 && h.holdMs > 0 && !h.lost && !this.releasing;
  }

  cancel(seq: number): void {
    const waiting = this.waiting.take(seq);
    if (!waiting) return;
    this.send({ ns: NAMESPACE, type: 'cancel', seq, service: waiting.service });
    waiting.resolve({ status: 'cancelled' });
  }

  /**
   * The request on `lease` is over. After one that ended well, the backend goes on to this
   * worker's oldest waiting checkout of the same service when the lease's bound allows (a pass:
   * no round trip through the primary); else, with no checkout waiting and an open bound, it is
   * held idle for the next request; otherwise it goes back to the primary.
   */
  checkin(lease: number, outcome: CheckinOutcome): void {
    const held = this.held.get(lease);
    if (held?.lost) {
      // Its backend is gone: the pool has nothing to take back.
      this.held.delete(lease);
      return;
    }
    const service = held?.service ?? DEFAULT_SERVICE;
    if (held && outcome === 'ok' && held.passes > 0) {
      for (const [seq, waiting] of this.waiting.entries()) {
        if (seq > held.upTo) break;
        if (waiting.again || waiting.service !== held.service) continue;
        this.waiting.take(seq);
        held.passes--;
        this.send({ ns: NAMESPACE, type: 'pass', lease, to: seq, service });
        waiting.resolve({ status: 'granted', lease, port: held.port, backend: held.backend });
        return;
      }
      if (this.mayHold(held)) {
        held.idleSince = this.now();
        held.idleReported = false;
        return;
      }
    }
    this.held.delete(lease);
    const reused = held?.reused ?? 0;
    this.send({ ns: NAMESPACE, type: 'checkin', lease, outcome, service, reused, idleMs: 0 });
    // A lease the pool bounded comes back to be given to another worker.
    if (held && held.upTo !== UNBOUNDED) this.revoked(held.port);
  }

  /** Gives back a lease held idle, telling how long it was. */
  private giveBack(lease: number, held: Held, now: number): void {
    this.held.delete(lease);
    const idleMs = Math.max(0, Math.round(now - (held.idleSince ?? now)));
    this.send({
      ns: NAMESPACE,
      type: 'checkin',
      lease,
      outcome: 'ok',
      service: held.service,
      reused: held.reused,
      idleMs,
    });
  }

  /**
   * The request on `lease` became an upgraded connection: the backend is held until it closes,
   * and then goes back to the primary (the pool keeps an upgraded lease apart from passes).
   */
  upgraded(lease: number): void {
    const held = this.held.get(lease);
    if (held) held.upTo = 0;
    this.send({
      ns: NAMESPACE,
      type: 'upgraded',
      lease,
      service: held?.service ?? DEFAULT_SERVICE,
    });
  }

  /**
   * Lowers the bound of the leases named (those still held); the ones held idle no longer may be,
   * and go back before the confirmation, so the pool has them within one round trip.
   */
  revoke(message: Extract<PrimaryMessage, { type: 'revoke' }>): void {
    const now = this.now();
    for (const lease of message.leases) {
      const held = this.held.get(lease);
      if (!held) continue;
      held.upTo = Math.min(held.upTo, message.upTo);
      if (held.idleSince !== undefined && !this.mayHold(held)) {
        this.giveBack(lease, held, now);
        this.revoked(held.port);
      }
    }
    this.send({ ns: NAMESPACE, type: 'revoked', ack: message.seq });
  }

  /** The backend held under `lease` exited: an idle lease is forgotten, a busy one when it ends. */
  lost(lease: number): void {
    const held = this.held.get(lease);
    if (!held) return;
    if (held.idleSince !== undefined) this.held.delete(lease);
    else held.lost = true;
  }

  /** A drain: every lease held idle goes back, and none is held from now on. */
  releaseAll(): void {
    this.releasing = true;
    this.sweep();
  }

  /**
   * Run now and then (the worker's one coarse timer): gives back leases idle past their holdMs,
   * and reports what it holds when that changed, once every REPORT_MS at most.
   */
  sweep(): void {
    const now = this.now();
    for (const [lease, held] of this.held) {
      if (held.idleSince === undefined) continue;
      if (!this.mayHold(held) || now - held.idleSince >= held.holdMs)
        this.giveBack(lease, held, now);
    }
    // Idle a while and not said so yet: the load paused, and /status should show it soon.
    let quiet = false;
    for (const held of this.held.values()) {
      if (held.idleSince !== undefined && !held.idleReported && now - held.idleSince >= QUIET_MS)
        quiet = true;
    }
    if (quiet || this.shownIdle || (this.changed && now - this.reportedAt >= REPORT_MS))
      this.report(now);
  }

  /** Tells the pool what it holds: requests served with no message, and which leases sit idle. */
  private report(now: number): void {
    this.reportedAt = now;
    this.changed = false;
    this.shownIdle = false;
    const byService = new Map<string, HeldEntry[]>();
    for (const [lease, held] of this.held) {
      if (held.lost) continue;
      const idleMs = held.idleSince === undefined ? -1 : Math.round(now - held.idleSince);
      held.idleReported = held.idleSince !== undefined;
      const list = byService.get(held.service) ?? [];
      list.push([lease, held.reused, idleMs]);
      byService.set(held.service, list);
      held.reused = 0;
    }
    for (const [service, reports] of byService)
      this.send({ ns: NAMESPACE, type: 'held', service, reports });
  }

  /** Leases held idle now, for tests and /status-like views. */
  get idleCount(): number {
    let n = 0;
    for (const h of this.held.values()) if (h.idleSince !== undefined) n++;
    return n;
  }

  /** Handles a reply from the primary; returns false for a reply to nothing waiting. */
  settle(message: Extract<PrimaryMessage, { type: 'granted' | 'rejected' }>): boolean {
    const waiting = this.waiting.take(message.ack);
    if (!waiting) return false;
    if (message.type === 'granted') {
      const { lease, port, backend, upTo, passes, holdMs } = message;
      this.held.set(lease, {
        service: waiting.service,
        port,
        backend,
        upTo,
        passes,
        holdMs,
        idleSince: undefined,
        reused: 0,
        lost: false,
        idleReported: false,
      });
      waiting.resolve({ status: 'granted', lease, port, backend });
    } else waiting.resolve({ status: 'rejected', code: message.code, message: message.message });
    return true;
  }
}
