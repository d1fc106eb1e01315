/**
 * Exponential backoff for backends that keep dying, so a broken command never spins. A failure is a
 * crash, a boot failure or a start timeout; a backend that becomes ready proves the command works
 * again and resets the streak, and so does a quiet `stableAfterMs` since the last failure.
 */
export interface RestartPolicy {
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  readonly stableAfterMs: number;
}

export const defaultRestartPolicy: RestartPolicy = {
  baseDelayMs: 100,
  maxDelayMs: 30_000,
  stableAfterMs: 10_000,
};

/** Delay before the next start after `streak` failures in a row (streak ≥ 1). */
export function restartDelay(policy: RestartPolicy, streak: number): number {
  if (streak <= 0) return 0;
  return Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(streak - 1, 30));
}

/**
 * Whether the pool may start a backend now: the failure streak and its backoff, the boot failures
 * before any backend was ever ready, and the end of trying (gave up). One record, so that what
 * holds starts back is read in one place; pure, the time is given.
 */
export class RestartGate {
  /** Failures in a row (reset by a ready backend or by `stableAfterMs` of quiet). */
  private streak = 0;
  private lastFailureAt = -Infinity;
  private blockedUntil = -Infinity;
  /**
   * A start was held back by the backoff, so a wake is owed at blockedUntil. Kept as a fact
   * rather than read again from the clock: a timer may fire a millisecond before the clock
   * says the backoff is over, and the clock read again a moment later then says it is, so no
   * wake was asked for and the pool stayed below pool_size until the next request (found by the
   * fuzz suite).
   */
  private heldBack = false;
  /** Some backend has been ready at least once: failures from now on are crashes, not boot. */
  private everReady = false;
  /** Starts in a row that ended before the backend was ready, while none ever was. */
  private bootFailures = 0;
  private over = false;

  /** No backend was ever ready and the pool stopped trying: nothing starts any more. */
  get gaveUp(): boolean {
    return this.over;
  }

  /** A backend became ready: the command works, so the backoff and the boot count start over. */
  ready(): void {
    this.everReady = true;
    this.bootFailures = 0;
    // Backends killed from outside, or crashing on some request, are then replaced at the base
    // delay (gunicorn restarts workers at once) instead of leaving the pool empty for seconds.
    this.streak = 0;
  }

  /** A backend failed (crash, boot failure, start timeout): the delay before the next start. */
  failed(now: number, policy: RestartPolicy): { streak: number; delayMs: number } {
    if (now - this.lastFailureAt >= policy.stableAfterMs) this.streak = 0;
    this.streak += 1;
    this.lastFailureAt = now;
    const delayMs = restartDelay(policy, this.streak);
    this.blockedUntil = now + delayMs;
    return { streak: this.streak, delayMs };
  }

  /**
   * A start ended before it was ready. Before any backend was ever ready, the `attempts`-th such
   * failure in a row ends the trying: the count is returned once, when that happens.
   */
  bootFailed(attempts: number): number | undefined {
    if (this.everReady || this.over) return undefined;
    this.bootFailures += 1;
    if (this.bootFailures < attempts) return undefined;
    this.over = true;
    return this.bootFailures;
  }

  /**
   * One start already showed that every other would end the same way: give up at once, as after
   * `attempts` failures. Returns the attempt count once, or nothing if a backend was ever ready.
   */
  giveUp(): number | undefined {
    if (this.everReady || this.over) return undefined;
    this.over = true;
    return this.bootFailures + 1;
  }

  /** Whether starts are held back now; remembers that a wake is then owed (see heldBack). */
  holdsBack(now: number): boolean {
    this.heldBack = now < this.blockedUntil;
    return this.heldBack;
  }

  /** After repeated failures only one probe starts at a time, until the streak is stable. */
  probing(now: number, policy: RestartPolicy): boolean {
    return this.streak >= 2 && now - this.lastFailureAt < policy.stableAfterMs;
  }

  /** When a start held back may go, if one was held back and trying goes on. */
  wakeAt(): number | undefined {
    return this.heldBack && !this.over ? this.blockedUntil : undefined;
  }
}
