import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { readProcessTable } from '../../lib/supervisor/process-table.js';
import { request } from '../helpers/http.js';
import type { LogRecord } from '../helpers/multiplexer.js';
import { BIN, ROOT } from '../helpers/paths.js';
import { freePort, freePortRange } from '../helpers/ports.js';
import { isAlive, killQuietly } from '../helpers/procs.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

/**
 * What a new user meets in the first hour (issue 18): each case failed before its fix.
 */

/** Every live process below `root` in the process tree, `root` included. */
function treeOf(root: number): number[] {
  const table = readProcessTable().filter((p) => p.state !== 'Z');
  const found = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const p of table) {
      if (found.has(p.ppid) && !found.has(p.pid)) {
        found.add(p.pid);
        grew = true;
      }
    }
  }
  return [...found].filter(isAlive);
}

interface Started {
  proc: ChildProcess;
  out: () => string;
  logs: () => LogRecord[];
  exited: Promise<number | null>;
}

const spawned: { proc: ChildProcess; pids: () => number[] }[] = [];
after(() => {
  for (const s of spawned) for (const pid of s.pids()) killQuietly(pid);
});

function run(command: string, args: string[], env: NodeJS.ProcessEnv): Started {
  const proc = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, MULTIPLEXER_LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  proc.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve));
  // Everything it started, as last seen: killed after the file if a test left any.
  let seen: number[] = [];
  spawned.push({ proc, pids: () => seen.filter(isAlive) });
  const remember = setInterval(() => {
    if (proc.pid !== undefined) seen = [...new Set([...seen, ...treeOf(proc.pid)])];
  }, 100);
  remember.unref();
  return {
    proc,
    out: () => out,
    logs: () =>
      (out + err)
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as LogRecord),
    exited,
  };
}

/** The shipped conf/app.json on free ports, with a private state directory. */
async function shippedConfigEnv(): Promise<NodeJS.ProcessEnv> {
  const range = await freePortRange(8);
  return {
    MULTIPLEXER_HTTP_PORT: String(await freePort()),
    MULTIPLEXER_HTTP_HOST: '127.0.0.1',
    MULTIPLEXER_ADMIN_PORT: String(await freePort()),
    MULTIPLEXER_SERVICE_PORT_RANGE: `${range.first}..${range.last}`,
    MULTIPLEXER_STATE_DIR: join(tempDir().dir, 'state'),
  };
}

async function readyTree(started: Started, what: string): Promise<number[]> {
  await Promise.race([
    waitFor(() => started.out().includes('"event":"ready"'), `${what} to be ready`, 30_000),
    started.exited.then((code) => assert.fail(`${what} exited ${code} before ready`)),
  ]);
  const pids = treeOf(started.proc.pid!);
  // npm, the primary, its front worker, the watchdog, four backends (each a shell and a node)
  assert.ok(pids.length >= 6, `the process tree: ${pids.join(' ')}`);
  return pids;
}

describe('the first hour', () => {
  it("SIGTERM to `npm start` (the README's command) ends everything it started", async () => {
    const env = await shippedConfigEnv();
    const npm = run('npm', ['start'], env);
    const pids = await readyTree(npm, 'npm start');
    assert.equal((await request(Number(env.MULTIPLEXER_HTTP_PORT), '/')).status, 200);
    npm.proc.kill('SIGTERM');
    await npm.exited;
    await waitFor(
      () => pids.every((pid) => !isAlive(pid)),
      `every process of npm start to end (left: ${pids.filter(isAlive).join(' ')})`,
      20_000,
    );
    const done = npm.logs().find((r) => r.event === 'shutdown.done');
    assert.ok(done, 'the primary shut down gracefully');
  });

  it('the primary shuts down gracefully when the process that started it is gone', async () => {
    const env = await shippedConfigEnv();
    // A shell that does not exec (another command follows), killed outright: the primary is
    // re-parented, as under `npm start` with npm's shell killed.
    const shell = run(
      '/bin/sh',
      ['-c', `node ${BIN} start --config conf/app.json; echo never-reached`],
      env,
    );
    const pids = await readyTree(shell, 'the shell');
    shell.proc.kill('SIGKILL');
    await waitFor(
      () => pids.every((pid) => !isAlive(pid)),
      `every process to end (left: ${pids.filter(isAlive).join(' ')})`,
      20_000,
    );
    const gone = shell.logs().find((r) => r.event === 'parent.exited');
    assert.ok(gone, 'the primary said why it stopped');
    assert.equal(gone['parent'], shell.proc.pid);
    assert.ok(shell.logs().some((r) => r.event === 'shutdown.done'));
  });

  it('exit_with_parent false keeps a deliberately detached start serving', async () => {
    const env: NodeJS.ProcessEnv = {
      ...(await shippedConfigEnv()),
      MULTIPLEXER_EXIT_WITH_PARENT: 'false',
    };
    const shell = run(
      '/bin/sh',
      ['-c', `node ${BIN} start --config conf/app.json; echo never-reached`],
      env,
    );
    const pids = await readyTree(shell, 'the shell');
    const record = JSON.parse(
      readFileSync(join(env.MULTIPLEXER_STATE_DIR!, 'instance.json'), 'utf8'),
    ) as { pid: number };
    shell.proc.kill('SIGKILL');
    await waitFor(() => !isAlive(shell.proc.pid!), 'the shell to end');
    // Two of the primary's polls of its parent, then it must still serve.
    const pollsLater = Date.now() + 1200;
    await waitFor(() => Date.now() > pollsLater, 'two polls');
    assert.ok(isAlive(record.pid), 'the primary still runs');
    assert.equal((await request(Number(env.MULTIPLEXER_HTTP_PORT), '/')).status, 200);
    process.kill(record.pid, 'SIGTERM');
    await waitFor(() => pids.every((pid) => !isAlive(pid)), 'every process to end', 20_000);
  });
});
