import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findLeftovers } from '../../lib/supervisor/leftovers.js';
import type { ProcessEntry } from '../../lib/supervisor/process-table.js';

const table: ProcessEntry[] = [
  { pid: 1, ppid: 0, pgid: 1, state: 'S', commandLine: '/sbin/init' },
  { pid: 10, ppid: 1, pgid: 10, state: 'S', commandLine: 'bash -c multiplexer start # index.js' },
  {
    pid: 20,
    ppid: 10,
    pgid: 20,
    state: 'S',
    commandLine: 'node bin/multiplexer.js start --service_kill_pattern index.js',
  },
  { pid: 21, ppid: 20, pgid: 21, state: 'S', commandLine: 'node index.js 10300' },
  { pid: 22, ppid: 21, pgid: 22, state: 'S', commandLine: 'node index.js worker' },
  { pid: 30, ppid: 1, pgid: 30, state: 'S', commandLine: 'node index.js 10301' },
  { pid: 31, ppid: 1, pgid: 31, state: 'S', commandLine: 'node other.js' },
];

describe('leftover processes (service_kill_pattern)', () => {
  it('match by command line, never this process, its ancestors or its descendants', () => {
    const found = findLeftovers(table, 'index.js', 20).map((p) => p.pid);
    assert.deepEqual(found, [30]);
  });

  it('an empty pattern matches nothing', () => {
    assert.deepEqual(findLeftovers(table, '', 20), []);
  });
});
