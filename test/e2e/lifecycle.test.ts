import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { readProcessTable } from '../../lib/supervisor/process-table.js';
import { parseFixture, request } from '../helpers/http.js';
import {
  arrived,
  fixtureCommand,
  launch,
  servicePids,
  startMultiplexer,
  writeConfig,
} from '../helpers/multiplexer.js';
import { ROOT, uniqueMarker } from '../helpers/paths.js';
import { freePort, freePortRange } from '../helpers/ports.js';
import { isAlive, killQuietly, pidsMatching } from '../helpers/procs.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

function sleepers(duration: string): number[] {
  return readProcessTable({ commandLines: true })
    .filter((p) => p.commandLine === `sleep ${duration}`)
    .map((p) => p.pid);
}

function workerPids(primary: number): number[] {
  // This checkout's workers only: another checkout's tests may run on the same machine.
  return pidsMatching(join(ROOT, 'dist/lib/worker/main.js')).filter((pid) => pid !== primary);
}

describe('lifecycle, end to end', () => {
  it('starts the pool on the next free ports of the ring, skipping one another program holds; passes %PORT% and $PORT', async () => {
    const range = await freePortRange(6);
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(range.first, '127.0.0.1', resolve));
    try {
      const mpx = await startMultiplexer({
        pool_size: 2,
        service_port_range: [range.first, range.last],
      });
      const ports = mpx.ready.backends.map((b) => b.port).sort();
      assert.deepEqual(ports, [range.first + 1, range.first + 2]);
      assert.equal(mpx.ready.workers.length, 2);
      const seen = parseFixture(await request(mpx.port, '/'));
      assert.equal(String(seen.port), seen.envPort, '%PORT% and PORT agree');
      const tagged = mpx
        .logs()
        .find((r) => r.stream === 'stdout' && /counting-service ready/.test(r.msg));
      assert.ok(tagged && typeof tagged.backend === 'number' && ports.includes(tagged.port!));
      const stderrLine = mpx.logs().find((r) => r.stream === 'stderr');
      assert.ok(stderrLine, 'backend stderr flows to the log too');
      assert.equal((await mpx.stop()).code, 0);
    } finally {
      squatter.close();
    }
  });

  it('each backend runs in its own process group: stopping it ends everything its command started', async () => {
    const sleeper = `3600.${Math.floor(Math.random() * 1e6)}`;
    const mpx = await startMultiplexer({
      pool_size: 1,
      workers: 1,
      service_start_process_cmd: `sleep ${sleeper} & ${fixtureCommand('counting-service.mjs', '{marker}')}`,
    });
    const leader = mpx.ready.backends[0]!.pid;
    assert.equal(sleepers(sleeper).length, 1);
    assert.ok(
      pidsMatching(mpx.marker).includes(leader),
      'the status names the group leader (the shell running the command)',
    );
    assert.equal((await mpx.stop()).code, 0);
    assert.deepEqual(sleepers(sleeper), []);
    assert.deepEqual(pidsMatching(mpx.marker), []);
  });

  it('SIGTERM with requests in flight: they complete, then it exits 0 leaving no process', async () => {
    const mpx = await startMultiplexer({ pool_size: 2, workers: 2 });
    const workers = mpx.ready.workers;
    const inFlight = [request(mpx.port, '/a?ms=700'), request(mpx.port, '/b?ms=700')];
    await arrived(mpx, '/a');
    await arrived(mpx, '/b');
    const exit = await mpx.stop('SIGTERM');
    const answers = await Promise.all(inFlight);
    assert.deepEqual(
      answers.map((a) => a.status),
      [200, 200],
    );
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.deepEqual(pidsMatching(mpx.marker), []);
    assert.ok(workers.every((pid) => !isAlive(pid)));
  });

  it('a drain longer than shutdown_timeout_ms is cut: exit 1, no process left', async () => {
    const mpx = await startMultiplexer({ pool_size: 1, workers: 1, shutdown_timeout_ms: 300 });
    const cut = request(mpx.port, '/long?ms=5000').catch((e: Error) => e);
    await arrived(mpx, '/long');
    const started = Date.now();
    const exit = await mpx.stop('SIGTERM');
    assert.equal(exit.code, 1);
    assert.ok(Date.now() - started < 4000, 'it did not wait for the request');
    assert.ok((await cut) instanceof Error);
    assert.deepEqual(pidsMatching(mpx.marker), []);
  });

  it('a second SIGINT skips the drain', async () => {
    const mpx = await startMultiplexer({ pool_size: 1, workers: 1, shutdown_timeout_ms: 20_000 });
    const cut = request(mpx.port, '/long?ms=8000').catch((e: Error) => e);
    await arrived(mpx, '/long');
    mpx.proc.kill('SIGINT');
    await mpx.waitForLog((r) => r.event === 'shutdown.started', 'the drain to begin');
    const started = Date.now();
    mpx.proc.kill('SIGINT');
    const exit = await mpx.exited;
    assert.equal(exit.code, 1);
    assert.ok(Date.now() - started < 4000);
    assert.ok((await cut) instanceof Error);
    assert.deepEqual(pidsMatching(mpx.marker), []);
  });

  it('on an exit it does not handle (SIGALRM), signal-exit still ends every backend and the workers follow', async () => {
    const mpx = await startMultiplexer({ pool_size: 2, workers: 2 });
    const workers = mpx.ready.workers;
    const exit = await mpx.stop('SIGALRM');
    assert.equal(exit.signal, 'SIGALRM');
    await waitFor(() => pidsMatching(mpx.marker).length === 0, 'the backends to end');
    await waitFor(() => workers.every((pid) => !isAlive(pid)), 'the front workers to end');
  });

  it('service_kill_pattern ends leftovers at start (SIGTERM, then SIGKILL), never itself', async () => {
    const pattern = `${uniqueMarker()}-leftover`;
    const polite = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', pattern], {
      stdio: 'ignore',
    });
    const stubborn = spawn(
      process.execPath,
      ['-e', 'process.on("SIGTERM", () => {}); setInterval(() => {}, 1000)', pattern],
      { stdio: 'ignore' },
    );
    try {
      await waitFor(() => pidsMatching(pattern).length === 2, 'the leftovers to run');
      // The pattern is in multiplexer's own command line too (as a flag): it must spare itself.
      const mpx = await startMultiplexer(
        { pool_size: 1, workers: 1, service_stop_timeout_ms: 300 },
        { args: ['--service-kill-pattern', pattern] },
      );
      assert.deepEqual(pidsMatching(pattern), [mpx.pid]);
      const kills = mpx.logs().filter((r) => String(r.event).startsWith('leftover.'));
      assert.ok(
        kills.some((r) => r.event === 'leftover.killed'),
        'the stubborn one needed SIGKILL',
      );
      assert.equal((await mpx.stop()).code, 0);
    } finally {
      killQuietly(polite.pid!);
      killQuietly(stubborn.pid!);
    }
  });

  it("service_kill_pattern spares another user's process: neither signalled nor waited for", async (t) => {
    if (process.getuid?.() !== 0) {
      t.skip('needs root, to start a process as another user (uid 65534)');
      return;
    }
    const pattern = `${uniqueMarker()}-other-user`;
    // A shell, not node: the node binary may sit in a directory that user cannot read.
    const foreign = spawn('/bin/sh', ['-c', 'sleep 1000; :', pattern], {
      stdio: 'ignore',
      uid: 65534,
      gid: 65534,
      detached: true,
    });
    try {
      await waitFor(() => pidsMatching(pattern).length === 1, "the other user's process to run");
      const mpx = await startMultiplexer(
        { pool_size: 1, workers: 1, service_stop_timeout_ms: 300 },
        { args: ['--service-kill-pattern', pattern] },
      );
      assert.ok(isAlive(foreign.pid!), "the other user's process is alive");
      assert.ok(
        !mpx.logs().some((r) => String(r.event).startsWith('leftover.')),
        'nothing was ended',
      );
      assert.equal((await mpx.stop()).code, 0);
    } finally {
      // Its group: the shell and the sleep it started.
      killQuietly(-foreign.pid!);
    }
  });

  it("the admin token and the front workers' config never reach a backend's environment", async () => {
    const dump = join(tempDir().dir, 'env.txt');
    const mpx = await startMultiplexer(
      {
        pool_size: 1,
        workers: 1,
        service_start_process_cmd: `env > ${dump}; exec ${fixtureCommand('counting-service.mjs', '{marker}')}`,
      },
      { env: { MULTIPLEXER_ADMIN_TOKEN: 'sekrit-token-value' } },
    );
    const env = readFileSync(dump, 'utf8');
    assert.match(env, /^PORT=\d+$/m);
    assert.doesNotMatch(env, /sekrit-token-value/);
    assert.doesNotMatch(env, /^MULTIPLEXER_/m);
    assert.equal((await mpx.stop()).code, 0);
  });

  it('refuses a state directory whose parent others can write to (exit 73)', async () => {
    const parent = tempDir().dir;
    chmodSync(parent, 0o777);
    const l = launch(['start', '--config', writeConfig({ service_start_process_cmd: 'true' })], {
      env: { MULTIPLEXER_STATE_DIR: join(parent, 'state') },
    });
    assert.equal((await l.exited).code, 73);
    assert.match(l.stderr(), /its parent \S+ is writable by everyone \(mode 777\)/);
  });

  describe('a bad config: exit 78, every problem on its own line, nothing started', () => {
    const cases: [
      string,
      (base: Record<string, unknown>) => Record<string, unknown> | string,
      RegExp,
    ][] = [
      [
        'an out-of-range value',
        (b) => ({ ...b, pool_size: 0 }),
        /^multiplexer: config error: pool_size must be an integer ≥ 1, got 0 \(from config file\)$/m,
      ],
      [
        'a wrong type',
        (b) => ({ ...b, pool_strategy: 3 }),
        /^multiplexer: config error: pool_strategy must be one of "fifo", "lifo", got 3/m,
      ],
      [
        'an unknown key',
        (b) => ({ ...b, pool_max_overflw: 2 }),
        /^multiplexer: config error: pool_max_overflw is not a known setting \(did you mean pool_max_overflow\?\)/m,
      ],
      [
        'invalid JSON',
        () => '{ "pool_size": 2, }',
        /^multiplexer: config error: config file .*: invalid JSON at line 1, column 19/m,
      ],
      [
        'a port range too small',
        (b) => ({ ...b, pool_size: 4, pool_max_overflow: 4, service_port_range: '20000..20003' }),
        /service_port_range must hold at least pool_size \+ pool_max_overflow = 8 ports/m,
      ],
    ];
    for (const [name, make, expected] of cases) {
      it(name, async () => {
        const marker = uniqueMarker();
        const base = {
          service_start_process_cmd: fixtureCommand('counting-service.mjs', marker),
          http_port: await freePort(),
        };
        const content = make(base);
        const file = writeConfig(
          typeof content === 'string' ? (JSON.parse('{}') as Record<string, unknown>) : content,
        );
        if (typeof content === 'string') (await import('node:fs')).writeFileSync(file, content);
        const l = launch(['start', '--config', file], { marker });
        const exit = await l.exited;
        assert.equal(exit.code, 78);
        assert.match(l.stderr(), expected);
        assert.equal(l.stdout(), '', 'no ready line');
        assert.deepEqual(pidsMatching(marker), [], 'no backend was started');
      });
    }

    it('a missing config file', async () => {
      const l = launch(['start', '--config', '/nonexistent/app.json']);
      assert.equal((await l.exited).code, 78);
      assert.match(l.stderr(), /config file \/nonexistent\/app.json: cannot be read: no such file/);
    });
  });

  it('an http_port another program holds is a startup error naming http_port; nothing is started', async () => {
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    const { port } = squatter.address() as { port: number };
    try {
      const marker = uniqueMarker();
      const file = writeConfig({
        http_host: '127.0.0.1',
        http_port: port,
        service_start_process_cmd: fixtureCommand('counting-service.mjs', marker),
      });
      const l = launch(['start', '--config', file], { marker });
      assert.equal((await l.exited).code, 70);
      assert.match(l.stderr(), new RegExp(`http_port ${port} on 127.0.0.1 cannot be bound`));
      assert.deepEqual(pidsMatching(marker), []);
    } finally {
      squatter.close();
    }
  });

  describe('CLI', () => {
    it('--help names the commands and every setting; --version prints the version', async () => {
      const help = launch(['start', '--help']);
      assert.equal((await help.exited).code, 0);
      for (const key of [
        '--pool_size',
        '--pool-size',
        '--service_start_process_cmd',
        'MULTIPLEXER_QUEUE_MAX',
      ]) {
        assert.ok(help.stdout().includes(key), `help mentions ${key}`);
      }
      const version = launch(['--version']);
      assert.equal((await version.exited).code, 0);
      assert.match(version.stdout(), /^\d+\.\d+\.\d+\n$/);
    });

    it('check prints every resolved value with where it came from (flag > env > file > default)', async () => {
      const file = writeConfig({
        service_start_process_cmd: 'node app.js %PORT%',
        pool_size: 2,
        queue_max: 9,
      });
      const l = launch(['check', '--config', file, '--pool-max-overflow', '3'], {
        env: { MULTIPLEXER_POOL_SIZE: '5' },
      });
      assert.equal((await l.exited).code, 0);
      const out = l.stdout();
      assert.match(out, /pool_size\s+5\s+\(env\)/);
      assert.match(out, /pool_max_overflow\s+3\s+\(flag\)/);
      assert.match(out, /queue_max\s+9\s+\(file\)/);
      assert.match(out, /pool_strategy\s+"fifo"\s+\(default\)/);
      assert.match(out, /service_port_range\s+"10300\.\.10350"\s+\(default\)/);
    });

    it('an unknown command or option is a usage error (exit 64)', async () => {
      const l = launch(['launch-rockets']);
      assert.equal((await l.exited).code, 64);
      assert.match(l.stderr(), /Unknown argument|Unknown command/i);
      const typo = launch(['check', '--pool-sise', '3']);
      assert.equal((await typo.exited).code, 64);
    });
  });

  it('the default setup (conf/app.json with the bundled example) serves', async () => {
    const range = await freePortRange(8);
    const port = await freePort();
    const l = launch([
      'start',
      '--config',
      'conf/app.json',
      '--http-port',
      String(port),
      '--http-host',
      '127.0.0.1',
      '--service-port-range',
      `${range.first}..${range.last}`,
      '--service-kill-pattern',
      '',
      '--workers',
      '1',
    ]);
    await waitFor(() => l.stdout().includes('"event":"ready"'), 'the ready line', 15_000);
    const answer = await request(port, '/hi');
    assert.equal(answer.status, 200);
    assert.match(answer.body, /^hello from pid \d+ on port \d+: GET \/hi/);
    const pids = JSON.parse(l.stdout()) as { backends: { pid: number }[] };
    l.proc.kill('SIGTERM');
    assert.equal((await l.exited).code, 0);
    assert.ok(pids.backends.every((b) => !isAlive(b.pid)));
    assert.deepEqual(servicePids({ marker: `${range.first}` }), []);
  });

  it('no front worker is left after any of the above', () => {
    assert.deepEqual(
      workerPids(process.pid).filter((pid) => isAlive(pid)),
      [],
    );
  });
});
