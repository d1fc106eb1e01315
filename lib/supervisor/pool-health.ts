import type { BootFailure } from './supervisor.js';

/** Whether the pool can serve, and why not, for /readyz and /healthz. */
export interface PoolHealth {
  readonly ready: number;
  /** Since when no backend has been ready (undefined while one is). */
  readonly noneReadySince: number | undefined;
  /** The last backend failure, in words. */
  readonly lastFailure: string | undefined;
  /** Set while backends keep failing (serving or not): how many, and since when, in words. */
  readonly degraded: string | undefined;
}

/** Backends that failed within this window... */
const DEGRADED_WINDOW_MS = 60_000;
/** ...at least this many of them: the pool is degraded (one crash now and then is not). */
const DEGRADED_FAILURES = 3;
/** Endings kept for status and the dashboard. */
const ENDINGS_KEPT = 64;

/**
 * What the probes, the boot-failure report and status read about the pool's past: when it last
 * had a ready backend, the last failure and how often backends failed lately, and why the last
 * backends ended. Pure: the time is given.
 */
export class HealthRecord {
  private noneReadySince: number | undefined;
  /** The last failed start or crash, as the boot-failure report shows it. */
  lastFailure: Omit<BootFailure, 'attempts'> | undefined;
  /** When backends failed (crashed, failed to start, failed as unhealthy...), oldest first. */
  private readonly failureTimes: number[] = [];
  /** Why the last backends ended, by id, oldest first out. */
  private readonly endings = new Map<number, string>();

  constructor(now: number) {
    this.noneReadySince = now;
  }

  /** Called wherever the number of ready backends may change. */
  readiness(ready: number, now: number): void {
    if (ready > 0) this.noneReadySince = undefined;
    else this.noneReadySince ??= now;
  }

  failed(now: number): void {
    this.failureTimes.push(now);
    if (this.failureTimes.length > 1000) this.failureTimes.shift();
  }

  ended(backend: number, text: string): void {
    this.endings.set(backend, text);
    if (this.endings.size > ENDINGS_KEPT) this.endings.delete(this.endings.keys().next().value!);
  }

  /** Why recent backends ended, newest last: "crash: killed by SIGKILL". */
  recentEndings(): { backend: number; ending: string }[] {
    return [...this.endings].map(([backend, ending]) => ({ backend, ending }));
  }

  health(ready: number, poolSize: number, now: number): PoolHealth {
    // A short cause only: the probes answer anyone who reaches the admin port, and a command
    // line or a service's output may hold secrets. The log and /status have the rest.
    const lastFailure = this.lastFailure?.how.split(':')[0];
    const since = now - DEGRADED_WINDOW_MS;
    while (this.failureTimes.length > 0 && this.failureTimes[0]! < since) this.failureTimes.shift();
    const failed = this.failureTimes.length;
    return {
      ready,
      noneReadySince: ready > 0 ? undefined : this.noneReadySince,
      lastFailure,
      degraded:
        failed >= DEGRADED_FAILURES
          ? `${failed} backends failed in the last ${DEGRADED_WINDOW_MS / 1000} s (last: ${lastFailure ?? 'unknown'}); ${ready} of pool_size ${poolSize} ready`
          : undefined,
    };
  }
}
