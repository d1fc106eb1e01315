import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { readProcessTable } from '../../lib/supervisor/process-table.js';
import { request } from '../helpers/http.js';
import {
  launch,
  launchMultiplexer,
  startMultiplexer,
  type LogRecord,
} from '../helpers/multiplexer.js';
import { BIN, fixture, ROOT } from '../helpers/paths.js';
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
  after(() => clearInterval(remember));
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
    const parentOf = (pid: number) => readProcessTable().find((p) => p.pid === pid)?.ppid;
    await waitFor(() => parentOf(record.pid) !== shell.proc.pid, 'the primary to be re-parented');
    // A negative: nothing announces "not stopping", so the primary gets the time of two of the
    // polls exit_with_parent would make, then it must still serve.
    const pollsLater = Date.now() + 1200;
    await waitFor(() => Date.now() > pollsLater, 'two polls');
    assert.ok(isAlive(record.pid), 'the primary still runs');
    assert.equal((await request(Number(env.MULTIPLEXER_HTTP_PORT), '/')).status, 200);
    process.kill(record.pid, 'SIGTERM');
    await waitFor(() => pids.every((pid) => !isAlive(pid)), 'every process to end', 20_000);
  });

  it('a service whose stdout is buffered: said while it starts, and start gives up after its first start_timeout, not service_boot_attempts of them', async () => {
    const mpx = await launchMultiplexer({
      pool_size: 2,
      workers: 1,
      service_start_timeout_ms: 4000,
      service_start_concurrency: 0,
      service_start_process_cmd: `perl ${fixture('perl-service.pl')} %PORT% # {marker}`,
    });
    const exit = await waitFor(() => mpx.exited, 'start to give up', 20_000);
    assert.equal(exit.code, 1);
    const events = mpx.logs().map((r) => r.event);
    // Said while the backends were still starting, before either was given up on.
    const said = events.indexOf('backend.stdout-buffered');
    const timedOut = mpx.logs().findIndex((r) => r.reason === 'start-timeout');
    assert.ok(said >= 0 && said < timedOut, `said at ${said}, first timeout at ${timedOut}`);
    assert.match(
      mpx.logs()[said]!.msg,
      /^port \d+ accepts connections but no line arrived on stdout: the service's stdout is probably buffered \(python -u, flush=True, \$\|=1, or use "service_start_delay_ms": "wait_port"\)/,
    );
    // Only the first two backends were ever started: no second round of 4 s waits (before: 5
    // starts, 90 s with the default timeout, ending in "it wrote 0 lines to stderr").
    assert.equal(events.filter((e) => e === 'backend.starting').length, 2);
    const stderr = mpx.stderr();
    assert.match(
      stderr,
      /the service cannot start: the first start showed that another would end the same way: .*stdout is probably buffered/,
    );
    assert.match(
      stderr,
      /\n {2}not ready within service_start_timeout_ms: port \d+ accepts connections but no line arrived on stdout/,
    );
    assert.doesNotMatch(stderr, /for servers that log to stderr/);
  });

  it('the same service with its stdout flushed serves, and nothing is said about buffering', async () => {
    const mpx = await startMultiplexer({
      pool_size: 2,
      workers: 1,
      service_start_process_cmd: `perl ${fixture('perl-service.pl')} %PORT% flush # {marker}`,
    });
    const answer = await request(mpx.port, '/perl');
    assert.equal(answer.status, 200);
    assert.match(answer.body, /^hello from perl \d+ on port \d+: GET \/perl/);
    assert.ok(!mpx.logs().some((r) => r.event === 'backend.stdout-buffered'));
    assert.equal((await mpx.stop()).code, 0);
  });

  it('every port of service_port_range held by another program: the summary says so, not "it printed nothing"', async () => {
    const range = await freePortRange(2);
    const holders = await Promise.all(
      [range.first, range.last].map(
        (port) =>
          new Promise<Server>((resolve) => {
            const server = createServer();
            server.listen(port, '127.0.0.1', () => resolve(server));
          }),
      ),
    );
    after(() => holders.forEach((h) => h.close()));
    const mpx = await launchMultiplexer({
      pool_size: 1,
      workers: 1,
      service_port_range: [range.first, range.last],
    });
    const exit = await waitFor(() => mpx.exited, 'start to give up', 20_000);
    assert.equal(exit.code, 1);
    const stderr = mpx.stderr();
    assert.match(
      stderr,
      new RegExp(
        `\\n  was never started: no free port in service_port_range ${range.first}\\.\\.${range.last}: every port is held by a backend or another program\\n`,
      ),
    );
    assert.doesNotMatch(stderr, /printed nothing|unknown/);
  });

  it('the CLI finds the only running instance without --config, and asks which when there are several', async () => {
    // XDG_RUNTIME_DIR picks where derived state directories live: a private one, so that
    // instances elsewhere on this machine are not "this user's" here.
    const xdg = tempDir().dir;
    chmodSync(xdg, 0o700);
    const env = { XDG_RUNTIME_DIR: xdg, MULTIPLEXER_STATE_DIR: undefined };
    const cli = async (args: string[]) => {
      const l = launch(args, { env });
      const exit = await l.exited;
      return { code: exit.code, stdout: l.stdout(), stderr: l.stderr() };
    };
    const none = await cli(['status']);
    assert.equal(none.code, 69, none.stderr);
    assert.match(
      none.stderr,
      new RegExp(`no running multiplexer of this user found in ${xdg}/multiplexer-\\d+`),
    );

    const adminPort = await freePort();
    const first = await startMultiplexer(
      { admin_port: adminPort, pool_size: 2, workers: 1 },
      { env },
    );
    const one = await cli(['status']);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, new RegExp(`pid ${first.pid}, running`));
    assert.match(one.stdout, new RegExp(`config: ${first.configFile}`));

    // Three crashes within a minute: status says so, with the causes, and /readyz is degraded.
    for (let i = 0; i < 3; i++) {
      assert.equal((await request(first.port, '/crash')).status, 502);
      await first.waitForLog(
        (r) => r.event === 'backend.ready' && (r.backend as number) === 3 + i,
        `replacement ${i + 1}`,
      );
    }
    const degraded = await cli(['status']);
    assert.match(
      degraded.stdout,
      /^DEGRADED: 3 backends failed in the last 60 s \(last: exited with code 3\); 2 of pool_size 2 ready$/m,
    );
    assert.match(
      degraded.stdout,
      /^last backend endings \(newest last; every one in `status --json`\):\n {2}backend \d+: crash: exited with code 3$/m,
    );
    const readyz = await request(adminPort, '/readyz');
    assert.equal(readyz.status, 200, 'degraded is still ready while a backend serves');
    assert.deepEqual(JSON.parse(readyz.body), {
      ready: true,
      degraded: true,
      reason:
        'degraded: 3 backends failed in the last 60 s (last: exited with code 3); 2 of pool_size 2 ready',
    });

    const second = await startMultiplexer({ pool_size: 1, workers: 1 }, { env });
    const several = await cli(['status']);
    assert.equal(several.code, 64, several.stderr);
    assert.match(
      several.stderr,
      /2 multiplexers of this user are running; name one with --config:/,
    );
    for (const m of [first, second]) {
      assert.match(
        several.stderr,
        new RegExp(
          `--config ${m.configFile} {3}\\(pid ${m.pid}, http 127\\.0\\.0\\.1:${m.port}, admin (127\\.0\\.0\\.1:${adminPort}|off)\\)`,
        ),
      );
    }
    const named = await cli(['status', '--config', first.configFile]);
    assert.equal(named.code, 0, named.stderr);
    assert.equal((await second.stop()).code, 0);
    const stopped = await cli(['stop']);
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.deepEqual(await first.exited, { code: 0, signal: null });
  });

  it('words: a mistyped command or flag gets a did-you-mean as typed; check --explain KEY...', async () => {
    const cli = async (args: string[], env: NodeJS.ProcessEnv = {}) => {
      const l = launch(args, { env });
      const exit = await l.exited;
      return { code: exit.code, stdout: l.stdout(), stderr: l.stderr() };
    };
    const strat = await cli(['strat', '--config', 'x.json']);
    assert.equal(strat.code, 64);
    assert.equal(
      strat.stderr,
      'multiplexer: usage: "strat" is not a command (did you mean start?) (run "multiplexer --help" for usage)\n',
    );
    const flag = await cli(['check', '--config', 'conf/app.json', '--pool-sise', '3']);
    assert.equal(flag.code, 64);
    assert.match(flag.stderr, /--pool-sise is not an option \(did you mean --pool-size\?\)/);
    assert.doesNotMatch(flag.stderr, /poolSise/, 'no camelCase form the user never typed');

    const some = await cli([
      'check',
      '--config',
      'conf/app.json',
      '--explain',
      'pool_size',
      'queue_max',
    ]);
    assert.equal(some.code, 0, some.stderr);
    assert.deepEqual(
      some.stdout.split('\n').filter((l: string) => /^\S/.test(l)),
      ['pool_size', 'queue_max'],
    );
    const typo = await cli(['check', '--config', 'conf/app.json', '--explain', 'pool_sise']);
    assert.equal(typo.code, 64);
    assert.match(typo.stderr, /pool_sise is not a setting \(did you mean pool_size\?\)/);

    const env = await cli(['check', '--config', 'conf/app.json'], { MULTIPLEXER_POOL_SISE: '3' });
    assert.equal(env.code, 0, env.stderr);
    assert.match(
      env.stderr,
      /warning: environment variable MULTIPLEXER_POOL_SISE names no setting and is ignored \(did you mean MULTIPLEXER_POOL_SIZE\?\)/,
    );
  });

  it('a MULTIPLEXER_* typo is warned about at start, in the log', async () => {
    const mpx = await startMultiplexer(
      { pool_size: 1, workers: 1 },
      { env: { MULTIPLEXER_POOL_SISE: '3' } },
    );
    const note = mpx.logs().find((r) => r.event === 'config.note');
    assert.ok(note);
    assert.match(
      note.msg,
      /MULTIPLEXER_POOL_SISE names no setting .*did you mean MULTIPLEXER_POOL_SIZE/,
    );
    assert.equal((await mpx.stop()).code, 0);
  });
});
