import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatLine } from '../../lib/log.js';

/** 12:00:01 local time today, as a pino record's `time`. */
const at = new Date(2026, 10, 30, 12, 0, 1).getTime();

describe('readable log lines (stderr on a terminal)', () => {
  it('one line per event, its subject first', () => {
    const lines = [
      {
        time: at,
        level: 30,
        role: 'primary',
        backend: 3,
        port: 10302,
        event: 'backend.ready',
        msg: 'backend ready',
      },
      {
        time: at,
        level: 30,
        role: 'primary',
        backend: 3,
        port: 10302,
        event: 'backend.output',
        stream: 'stderr',
        msg: 'Booting worker',
      },
      {
        time: at,
        level: 50,
        role: 'primary',
        backend: 4,
        port: 10303,
        event: 'backend.crashed',
        msg: 'backend killed by SIGKILL while idle (crash)',
      },
      {
        time: at,
        level: 30,
        role: 'worker',
        worker: 2,
        event: 'request.done',
        msg: 'GET /x 200',
        ms: 12.5,
        backend: 3,
        port: 10302,
        code: null,
      },
      {
        time: at,
        level: 30,
        role: 'worker',
        worker: 1,
        event: 'request.rejected',
        msg: 'POST /up 413',
        ms: 0.4,
        backend: null,
        code: 'MPX_BODY_TOO_LARGE',
      },
      {
        time: at,
        level: 40,
        role: 'primary',
        event: 'reload.refused',
        msg: 'SIGHUP: reload refused',
      },
      {
        time: at,
        level: 60,
        role: 'worker',
        worker: 2,
        event: 'worker.listen-failed',
        msg: 'cannot listen',
        err: { message: 'EADDRINUSE' },
      },
    ].map((r) => formatLine(r));
    assert.deepEqual(lines, [
      '12:00:01 backend 3 :10302 ready\n',
      '12:00:01 backend 3 :10302 ! Booting worker\n',
      '12:00:01 ERROR backend 4 :10303 killed by SIGKILL while idle (crash)\n',
      '12:00:01 worker 2 GET /x 200 12.5 ms → backend 3 :10302\n',
      '12:00:01 worker 1 POST /up 413 0.4 ms MPX_BODY_TOO_LARGE\n',
      '12:00:01 WARN SIGHUP: reload refused\n',
      '12:00:01 FATAL worker 2 cannot listen: EADDRINUSE\n',
    ]);
    for (const line of lines) assert.equal(line.split('\n').length, 2, 'one line each');
  });

  it('colours the level only when asked', () => {
    const line = formatLine({ time: at, level: 50, role: 'primary', event: 'x', msg: 'bad' }, true);
    assert.equal(line, '12:00:01 \x1b[31mERROR\x1b[0m bad\n');
  });
});
