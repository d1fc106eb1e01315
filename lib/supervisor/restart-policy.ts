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
