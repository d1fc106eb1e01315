import type { PoolHealth } from '../supervisor/pool-health.js';

/**
 * What /readyz and /healthz answer, from what the primary knows: pure, so each answer is a
 * table test. Both stay short: the probes answer anyone who reaches the admin port.
 */
export type Readiness =
  | { readonly ready: true; readonly reason: string; readonly degraded?: true }
  | { readonly ready: false; readonly reason: string };

export function readiness(input: {
  readonly state: string;
  readonly someWorkerListens: boolean;
  readonly health: PoolHealth;
}): Readiness {
  const { state, health } = input;
  if (state !== 'running') return { ready: false, reason: `the server is ${state}` };
  if (!input.someWorkerListens) return { ready: false, reason: 'no front worker listens yet' };
  // Degraded is still ready (200) while one backend serves: a probe reads only the status code,
  // and taking the instance out of rotation would only move its load onto the others.
  if (health.ready > 0 && health.degraded) {
    return { ready: true, degraded: true, reason: `degraded: ${health.degraded}` };
  }
  if (health.ready > 0)
    return { ready: true, reason: 'front workers listen and a backend is ready' };
  return {
    ready: false,
    reason: health.lastFailure ? `backends failing: ${health.lastFailure}` : 'starting',
  };
}

/**
 * Alive unless no backend has been ready for 3 × service_start_timeout_ms: a container stuck in a
 * crash loop is then restarted by its liveness probe rather than kept as "healthy".
 */
export function liveness(input: {
  readonly health: PoolHealth;
  readonly startTimeoutMs: number;
  readonly now: number;
}): { readonly alive: boolean; readonly reason: string } {
  const { noneReadySince, lastFailure } = input.health;
  const limit = 3 * input.startTimeoutMs;
  if (noneReadySince === undefined || input.now - noneReadySince < limit) {
    return { alive: true, reason: 'alive' };
  }
  return {
    alive: false,
    reason: `no backend has been ready for ${input.now - noneReadySince} ms (limit 3 × service_start_timeout_ms = ${limit} ms)${lastFailure ? `; last failure: ${lastFailure}` : ''}`,
  };
}
