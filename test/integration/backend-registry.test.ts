import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  BackendRegistry,
  endRecordedBackends,
  readRecordedBackends,
} from '../../lib/instance/backend-registry.js';
import { startTimeOf } from '../../lib/supervisor/process-table.js';
import { captureLog } from '../helpers/capture-log.js';
import { uniqueMarker } from '../helpers/paths.js';
import { killQuietly, pidsMatching } from '../helpers/procs.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

const children: ChildProcess[] = [];
after(() => children.forEach((c) => c.pid && killQuietly(-c.pid)));

/** A process group like a backend's: a shell leading a child, both tagged with `marker`. */
function group(marker: string): ChildProcess {
  const child = spawn('/bin/sh', ['-c', `node -e "setInterval(() => {}, 1000)" ${marker} & wait`], {
    detached: true,
    stdio: 'ignore',
  });
  children.push(child);
  return child;
}

describe('the backend record', () => {
  it('is written on every start and end, one line per live backend', () => {
    const file = join(tempDir().dir, 'backends');
    const registry = new BackendRegistry(file);
    registry.reset();
    registry.record(process.pid, 'node  app.js\n10300');
    assert.deepEqual(readRecordedBackends(file), [
      { pid: process.pid, startTime: startTimeOf(process.pid), command: 'node app.js 10300' },
    ]);
    registry.forget(process.pid);
    assert.deepEqual(readRecordedBackends(file), []);
  });

  it('a later start ends recorded groups still alive, and never a pid now used by another process', async () => {
    const marker = uniqueMarker();
    const orphan = group(`${marker}-orphan`);
    const bystander = group(`${marker}-bystander`);
    await waitFor(() => pidsMatching(marker).length === 4, 'both groups to run');
    const file = join(tempDir().dir, 'backends');
    writeFileSync(
      file,
      [
        '# header',
        `${orphan.pid} ${startTimeOf(orphan.pid!)} sh -c sleep`,
        // The bystander's pid as if recorded long ago: same pid, another start time.
        `${bystander.pid} 1 sh -c old-backend`,
        '',
      ].join('\n'),
    );
    const { log } = captureLog();
    const ended = await endRecordedBackends(file, 2000, log);
    assert.deepEqual(ended, [orphan.pid]);
    await waitFor(() => pidsMatching(`${marker}-orphan`).length === 0, 'the orphan group to end');
    assert.equal(pidsMatching(`${marker}-bystander`).length, 2, 'the bystander is untouched');
  });
});
