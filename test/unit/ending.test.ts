import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BackendState } from '../../lib/supervisor/backend-state.js';
import { exitReport } from '../../lib/supervisor/ending.js';
import { HealthRecord } from '../../lib/supervisor/pool-health.js';

const busy: BackendState = {
  phase: 'busy',
  lease: 1,
  worker: 1,
  checkoutSeq: 1,
  use: 'request',
  retireOnReturn: false,
  pass: { kind: 'open' },
};

describe('why a backend ended', () => {
  it('each exit, told and counted, case by case', () => {
    type Row = [
      BackendState | undefined,
      { stopped: boolean; code: number | null; signal: NodeJS.Signals | null; error?: string },
      { reason: string; failure: boolean; event: string; message: string },
    ];
    const table: Row[] = [
      [
        { phase: 'retiring', reason: 'shrink' },
        { stopped: true, code: null, signal: 'SIGTERM' },
        {
          reason: 'shrink',
          failure: false,
          event: 'backend.stopped',
          message: 'backend stopped (killed by SIGTERM)',
        },
      ],
      [
        { phase: 'failed', fault: 'unhealthy' },
        { stopped: true, code: 0, signal: null },
        {
          reason: 'unhealthy',
          failure: true,
          event: 'backend.stopped',
          message: 'backend stopped (exited with code 0)',
        },
      ],
      [
        undefined,
        { stopped: true, code: 0, signal: null },
        {
          reason: 'stopped',
          failure: false,
          event: 'backend.stopped',
          message: 'backend stopped (exited with code 0)',
        },
      ],
      [
        { phase: 'starting' },
        { stopped: false, code: 127, signal: null },
        {
          reason: 'boot-failure',
          failure: true,
          event: 'backend.boot-failed',
          message: 'backend exited with code 127 before it was ready (boot failure)',
        },
      ],
      [
        { phase: 'starting' },
        { stopped: false, code: null, signal: null, error: 'spawn ENOENT' },
        {
          reason: 'boot-failure',
          failure: true,
          event: 'backend.boot-failed',
          message: 'backend could not start: spawn ENOENT before it was ready (boot failure)',
        },
      ],
      [
        busy,
        { stopped: false, code: null, signal: 'SIGKILL' },
        {
          reason: 'crash',
          failure: true,
          event: 'backend.crashed',
          message: 'backend killed by SIGKILL while serving a request (crash)',
        },
      ],
      [
        { phase: 'failed', fault: 'broken' },
        { stopped: false, code: 1, signal: null },
        {
          reason: 'crash',
          failure: true,
          event: 'backend.crashed',
          message: 'backend exited with code 1 while serving a request (crash)',
        },
      ],
      [
        { phase: 'idle' },
        { stopped: false, code: 1, signal: null },
        {
          reason: 'crash',
          failure: true,
          event: 'backend.crashed',
          message: 'backend exited with code 1 while idle (crash)',
        },
      ],
    ];
    for (const [before, info, expected] of table) {
      const r = exitReport(before, info);
      assert.deepEqual(
        { reason: r.reason, failure: r.failure, event: r.event, message: r.message },
        expected,
        `${before?.phase ?? 'unknown'} + ${JSON.stringify(info)}`,
      );
    }
  });

  it('the pool is degraded at 3 failures within 60 s, and not once they are older', () => {
    const record = new HealthRecord(0);
    record.lastFailure = {
      command: 'x',
      how: 'exited with code 3: detail',
      tail: [],
      started: true,
    };
    record.failed(1000);
    record.failed(2000);
    assert.equal(record.health(1, 2, 3000).degraded, undefined);
    record.failed(3000);
    assert.equal(
      record.health(1, 2, 3000).degraded,
      '3 backends failed in the last 60 s (last: exited with code 3); 1 of pool_size 2 ready',
    );
    assert.equal(record.health(1, 2, 61_001).degraded, undefined);
  });

  it('remembers since when no backend was ready, and the last 64 endings', () => {
    const record = new HealthRecord(5);
    assert.equal(record.health(0, 1, 10).noneReadySince, 5);
    record.readiness(1, 20);
    record.readiness(0, 30);
    assert.equal(record.health(0, 1, 40).noneReadySince, 30);
    for (let id = 1; id <= 70; id++) record.ended(id, `crash: ${id}`);
    const endings = record.recentEndings();
    assert.equal(endings.length, 64);
    assert.deepEqual(endings[0], { backend: 7, ending: 'crash: 7' });
  });
});
