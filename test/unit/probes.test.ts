import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { liveness, readiness } from '../../lib/primary/probes.js';
import type { PoolHealth } from '../../lib/supervisor/pool-health.js';

const health = (h: Partial<PoolHealth>): PoolHealth => ({
  ready: 0,
  noneReadySince: undefined,
  lastFailure: undefined,
  degraded: undefined,
  ...h,
});

describe('the probes', () => {
  it('/readyz, case by case', () => {
    const cases: [Parameters<typeof readiness>[0], ReturnType<typeof readiness>][] = [
      [
        { state: 'draining', someWorkerListens: true, health: health({ ready: 2 }) },
        { ready: false, reason: 'the server is draining' },
      ],
      [
        { state: 'running', someWorkerListens: false, health: health({ ready: 2 }) },
        { ready: false, reason: 'no front worker listens yet' },
      ],
      [
        { state: 'running', someWorkerListens: true, health: health({}) },
        { ready: false, reason: 'starting' },
      ],
      [
        {
          state: 'running',
          someWorkerListens: true,
          health: health({ lastFailure: 'exited with code 1' }),
        },
        { ready: false, reason: 'backends failing: exited with code 1' },
      ],
      [
        { state: 'running', someWorkerListens: true, health: health({ ready: 1 }) },
        { ready: true, reason: 'front workers listen and a backend is ready' },
      ],
      [
        {
          state: 'running',
          someWorkerListens: true,
          health: health({ ready: 1, degraded: '3 backends failed' }),
        },
        { ready: true, degraded: true, reason: 'degraded: 3 backends failed' },
      ],
    ];
    for (const [input, expected] of cases) assert.deepEqual(readiness(input), expected);
  });

  it('/healthz fails only once no backend has been ready for 3 start timeouts', () => {
    const since = 1000;
    assert.deepEqual(
      liveness({
        health: health({ noneReadySince: since }),
        startTimeoutMs: 100,
        now: since + 299,
      }),
      {
        alive: true,
        reason: 'alive',
      },
    );
    assert.deepEqual(
      liveness({
        health: health({ noneReadySince: since, lastFailure: 'killed by SIGKILL' }),
        startTimeoutMs: 100,
        now: since + 300,
      }),
      {
        alive: false,
        reason:
          'no backend has been ready for 300 ms (limit 3 × service_start_timeout_ms = 300 ms); last failure: killed by SIGKILL',
      },
    );
  });
});
