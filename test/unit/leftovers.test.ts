import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findLeftovers } from '../../lib/supervisor/leftovers.js';
import type { ProcessEntry } from '../../lib/supervisor/process-table.js';

const table: ProcessEntry[] = [
  { pid: 1, ppid: 0, pgid: 1, state: 'S', uid: 1000, commandLine: '/sbin/init' },
  {
    pid: 10,
    ppid: 1,
    pgid: 10,
    state: 'S',
    uid: 1000,
    commandLine: 'bash -c multiplexer start # index.js',
  },
  {
    pid: 20,
    ppid: 10,
    pgid: 20,
    state: 'S',
    uid: 1000,
    commandLine: 'node bin/multiplexer.js start --service_kill_pattern index.js',
  },
  { pid: 21, ppid: 20, pgid: 21, state: 'S', uid: 1000, commandLine: 'node index.js 10300' },
  { pid: 22, ppid: 21, pgid: 22, state: 'S', uid: 1000, commandLine: 'node index.js worker' },
  { pid: 30, ppid: 1, pgid: 30, state: 'S', uid: 1000, commandLine: 'node index.js 10301' },
  { pid: 31, ppid: 1, pgid: 31, state: 'S', uid: 1000, commandLine: 'node other.js' },
  { pid: 40, ppid: 1, pgid: 40, state: 'S', uid: 1001, commandLine: 'node index.js 10302' },
];

describe('leftover processes (service_kill_pattern)', () => {
  it("match by command line among our own user's processes, never this process, its ancestors or its descendants", () => {
    const found = findLeftovers(table, 'index.js', 20, 1000).map((p) => p.pid);
    assert.deepEqual(found, [30]);
  });

  it('an empty pattern matches nothing', () => {
    assert.deepEqual(findLeftovers(table, '', 20, 1000), []);
  });
});
