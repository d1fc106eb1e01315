import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { request } from '../helpers/http.js';
import { startLoad, type LoadResult } from '../helpers/load.js';
import {
  control,
  fixtureCommand,
  launch,
  rewriteConfig,
  startWithAdmin,
  type AdminStatus,
  servicePids,
  startMultiplexer,
  writeConfig,
} from '../helpers/multiplexer.js';
import { isAlive, killQuietly, pidsMatching } from '../helpers/procs.js';
import { waitFor } from '../helpers/wait.js';

type Status = AdminStatus;

const status = (mpx: { status(): Promise<AdminStatus> }): Promise<Status> => mpx.status();

/** Backends that take requests: idle or busy. */
function ready(s: Status): Status['backends'] {
  return s.backends.filter((b) => b.state === 'idle' || b.state === 'busy');
}

function report(t: TestContext, what: string, load: LoadResult, ms: number): void {
  t.diagnostic(
    `${what}: ${load.sent} requests sent, ${load.failures.length} failed, roll took ${ms} ms`,
  );
}

describe('operations under load', () => {
  it('SIGHUP with a new pool_size and backend command: no request fails, new backends and settings in force, the front workers kept', async (t) => {
    const mpx = await startWithAdmin({
      pool_size: 2,
      workers: 2,
      service_start_process_cmd: fixtureCommand('counting-service.mjs', '{marker}', ' v1'),
    });
    const before = mpx.ready.backends.map((b) => b.pid);
    const load = startLoad(mpx.port, { clients: 6 });
    await waitFor(() => load.result.ok >= 30, 'load to flow');

    rewriteConfig(mpx, {
      pool_size: 3,
      service_start_process_cmd: fixtureCommand('counting-service.mjs', mpx.marker, ' v2'),
    });
    const started = Date.now();
    mpx.proc.kill('SIGHUP');
    await mpx.waitForLog((r) => r.event === 'reload.done', 'the reload to finish', 20_000);
    const after = await waitFor(
      async () => {
        const s = await status(mpx);
        return !s.pool.rolling && ready(s).length === 3 && s.backends.length === 3 ? s : undefined;
      },
      'every backend to be replaced',
      20_000,
    );
    const rollMs = Date.now() - started;
    const sentAtRoll = load.result.sent;
    await waitFor(() => load.result.sent >= sentAtRoll + 30, 'load on the new backends');
    const result = await load.stop();

    report(t, 'SIGHUP (pool_size 2 → 3, new command)', result, rollMs);
    assert.deepEqual(result.failures, []);
    assert.ok(result.tags.has('v2'), 'answers come from the new command');
    assert.equal(after.pool.size, 3);
    for (const b of after.backends) assert.ok(!before.includes(b.pid), `backend ${b.pid} is new`);
    // Pool and backend settings touch no front worker.
    assert.deepEqual(after.workers.map((w) => w.pid).sort(), [...mpx.ready.workers].sort());
    assert.equal((await mpx.stop()).code, 0);
  });

  it('SIGHUP with a broken config: no request fails, the old config stays, problems are logged and `reload` exits non-zero with them', async () => {
    const mpx = await startWithAdmin({ pool_size: 2, workers: 1 });
    const load = startLoad(mpx.port, { clients: 4 });
    await waitFor(() => load.result.ok >= 20, 'load to flow');

    rewriteConfig(mpx, { pool_size: 'many', pool_sise: 3 });
    mpx.proc.kill('SIGHUP');
    await mpx.waitForLog((r) => r.event === 'reload.refused', 'the refusal');
    const logged = mpx.logs().map((r) => r.msg);
    assert.ok(
      logged.some((m) => /config problem: pool_size must be an integer ≥ 1, got "many"/.test(m)),
    );
    assert.ok(
      logged.some((m) =>
        /config problem: pool_sise is not a known setting \(did you mean pool_size\?\)/.test(m),
      ),
    );

    const cli = await control(mpx, 'reload');
    assert.equal(cli.code, 78);
    assert.match(cli.stderr, /pool_size must be an integer ≥ 1, got "many"/);
    assert.match(cli.stderr, /pool_sise is not a known setting/);
    assert.match(cli.stderr, /reload refused; the running configuration stays in force/);

    const sentAfter = load.result.sent;
    await waitFor(() => load.result.sent >= sentAfter + 20, 'load to go on');
    const result = await load.stop();
    assert.deepEqual(result.failures, []);
    const s = await status(mpx);
    assert.equal(s.pool.size, 2);
    assert.equal(ready(s).length, 2);
    await mpx.stop();
  });

  it('SIGUSR2 replaces every backend, never with fewer than pool_size ready, and no request fails', async (t) => {
    const mpx = await startWithAdmin({ pool_size: 3, workers: 2 });
    const before = mpx.ready.backends.map((b) => b.pid);
    const load = startLoad(mpx.port, { clients: 6 });
    await waitFor(() => load.result.ok >= 30, 'load to flow');

    const started = Date.now();
    mpx.proc.kill('SIGUSR2');
    let fewestReady = Infinity;
    await waitFor(
      async () => {
        const s = await status(mpx);
        fewestReady = Math.min(fewestReady, ready(s).length);
        const pids = s.backends.map((b) => b.pid);
        return before.every((pid) => !pids.includes(pid)) && !s.pool.rolling;
      },
      'every old backend to be gone',
      20_000,
    );
    const rollMs = Date.now() - started;
    const result = await load.stop();

    report(t, 'SIGUSR2 (3 backends)', result, rollMs);
    assert.deepEqual(result.failures, []);
    assert.ok(fewestReady >= 3, `ready backends dropped to ${fewestReady}`);
    const now = servicePids(mpx);
    assert.equal(now.length, 3);
    assert.ok(
      result.pids.some((pid) => now.includes(pid)),
      'new backends served requests',
    );
    await mpx.stop();
  });
});

describe('runtime scaling', () => {
  it('SIGTTIN and SIGTTOU change pool_size by one; `scale N` sets it, and refuses what the config would', async () => {
    const mpx = await startWithAdmin({ pool_size: 2, workers: 1 });
    const liveCount = async (n: number) =>
      waitFor(async () => {
        const s = await status(mpx);
        return s.pool.size === n && s.backends.length === n && ready(s).length === n;
      }, `${n} backends`);

    mpx.proc.kill('SIGTTIN');
    await liveCount(3);
    mpx.proc.kill('SIGTTOU');
    await liveCount(2);
    mpx.proc.kill('SIGTTOU');
    await liveCount(1);
    mpx.proc.kill('SIGTTOU');
    await mpx.waitForLog(
      (r) => /SIGTTOU: pool_size must be an integer ≥ 1, got 0/.test(r.msg),
      'the refusal',
    );

    const up = await control(mpx, 'scale', '4');
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, /pool_size 1 → 4/);
    await liveCount(4);

    const zero = await control(mpx, 'scale', '0');
    assert.equal(zero.code, 78);
    assert.match(zero.stderr, /pool_size must be an integer ≥ 1, got 0/);
    const huge = await control(mpx, 'scale', '500');
    assert.equal(huge.code, 78);
    assert.match(
      huge.stderr,
      /service_port_range must hold at least pool_size \+ pool_max_overflow = 500 ports/,
    );
    assert.equal((await status(mpx)).pool.size, 4);
    await mpx.stop();
  });
});

describe('no orphans', () => {
  it('after kill -9 of the primary, its backends end on their own (the watchdog)', async () => {
    const mpx = await startMultiplexer({ pool_size: 2, workers: 1, service_stop_timeout_ms: 1000 });
    assert.equal(servicePids(mpx).length, 2);
    mpx.proc.kill('SIGKILL');
    await mpx.exited;
    await waitFor(() => pidsMatching(mpx.marker).length === 0, 'the backends to end', 10_000);
    await waitFor(() => pidsMatching(mpx.stateDir).length === 0, 'the watchdog to exit');
  });

  it('when the watchdog is gone too, the next start ends what the first run left, and nothing else', async () => {
    const first = await startMultiplexer({ pool_size: 2, workers: 1 });
    const orphans = servicePids(first);
    // The watchdog's command line names the state file, which lives in the state directory.
    const watchdogs = pidsMatching(first.stateDir);
    assert.equal(watchdogs.length, 1);
    killQuietly(watchdogs[0]!);
    first.proc.kill('SIGKILL');
    await first.exited;
    // Give the orphaned front worker time to go; the backends have nobody left to end them.
    await waitFor(() => first.ready.workers.every((pid) => !isAlive(pid)), 'the worker to exit');
    assert.deepEqual(
      servicePids(first).sort(),
      orphans.sort(),
      'the backends outlived the primary',
    );

    const second = await startMultiplexer(
      { pool_size: 1, workers: 1 },
      { env: { MULTIPLEXER_STATE_DIR: first.stateDir } },
    );
    assert.deepEqual(pidsMatching(first.marker), [], 'the first run left nothing');
    assert.ok(second.logs().some((r) => r.event === 'leftover.ending'));
    await second.stop();
  });
});

describe('control CLI and admin API', () => {
  it('status shows workers and backends; the token guards all but health; stop returns once it exited', async () => {
    const mpx = await startWithAdmin({ pool_size: 2, workers: 2, admin_token: 's3cret' });
    assert.equal((await request(mpx.port, '/?ms=1')).status, 200);

    assert.equal((await request(mpx.adminPort, '/healthz')).status, 200);
    assert.equal((await request(mpx.adminPort, '/readyz')).status, 200);
    const refused = await request(mpx.adminPort, '/status');
    assert.equal(refused.status, 401);
    assert.equal(refused.headers['www-authenticate'], 'Bearer');
    const wrong = await request(mpx.adminPort, '/status', {
      headers: { authorization: 'Bearer nope' },
    });
    assert.equal(wrong.status, 401);
    assert.equal((await request(mpx.adminPort, '/reload', { method: 'POST' })).status, 401);

    const shown = await control(mpx, 'status');
    assert.equal(shown.code, 0, shown.stderr);
    for (const b of mpx.ready.backends) assert.match(shown.stdout, new RegExp(`\\b${b.pid}\\b`));
    for (const pid of mpx.ready.workers) assert.match(shown.stdout, new RegExp(`\\b${pid}\\b`));
    assert.match(shown.stdout, /requests 1, 502: 0, 503: 0, 504: 0/);
    const json = await control(mpx, 'status', '--json');
    const parsed = JSON.parse(json.stdout) as Status;
    assert.equal(parsed.backends.length, 2);
    assert.equal(parsed.totals.requests, 1);

    const stopped = await control(mpx, 'stop');
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.match(stopped.stdout, /stopped \(pid \d+\)/);
    assert.ok(!isAlive(mpx.pid), 'the primary has exited when stop returns');
    assert.deepEqual(pidsMatching(mpx.marker), []);
    const again = await control(mpx, 'status');
    assert.equal(again.code, 69);
    assert.match(again.stderr, /no running multiplexer found/);
  });

  it('/readyz answers 503 while a graceful shutdown drains', async () => {
    const mpx = await startWithAdmin({ pool_size: 1, workers: 1, shutdown_timeout_ms: 10_000 });
    const slow = request(mpx.port, '/?ms=1500');
    await waitFor(async () => (await status(mpx)).backends[0]!.state === 'busy', 'the request');
    mpx.proc.kill('SIGTERM');
    await mpx.waitForLog((r) => r.event === 'shutdown.started', 'the drain');
    const readyz = await request(mpx.adminPort, '/readyz');
    assert.equal(readyz.status, 503);
    assert.equal((await request(mpx.adminPort, '/healthz')).status, 200);
    assert.equal((await slow).status, 200);
    assert.equal((await mpx.exited).code, 0);
  });

  it('reload reports what changed, and what needs a restart', async () => {
    const mpx = await startWithAdmin({ pool_size: 1, workers: 1, queue_max: 5 });
    rewriteConfig(mpx, { queue_max: 9, service_kill_pattern: 'nothing-matches-this' });
    const cli = await control(mpx, 'reload');
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /queue_max: 5 → 9/);
    assert.match(cli.stdout, /front workers: kept \(no setting they read changed\)/);
    assert.match(cli.stdout, /backends: kept/);
    assert.match(cli.stdout, /takes effect at the next start: service_kill_pattern/);
    await mpx.stop();
  });

  it('refuses at start: an admin_port in use, a second instance on the same state directory', async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const held = (holder.address() as { port: number }).port;
    try {
      const busy = await startMultiplexer({ admin_port: held }).catch((e: Error) => e);
      assert.ok(busy instanceof Error);
      assert.match(busy.message, /admin_port \d+ on admin_host 127\.0\.0\.1 cannot be bound/);
    } finally {
      holder.close();
    }

    const first = await startMultiplexer({ pool_size: 1, workers: 1 });
    const second = launch(['start', '--config', first.configFile], {
      env: { MULTIPLEXER_STATE_DIR: first.stateDir },
    });
    assert.equal((await second.exited).code, 70);
    assert.match(second.stderr(), new RegExp(`another multiplexer \\(pid ${first.pid}`));
    await first.stop();
  });

  it('a non-loopback admin_host without admin_token is refused at config check', async () => {
    const file = writeConfig({
      service_start_process_cmd: 'node app.js',
      admin_host: '0.0.0.0',
      admin_port: 9901,
    });
    const l = launch(['check', '--config', file]);
    assert.equal((await l.exited).code, 78);
    assert.match(l.stderr(), /admin_token must be set when the admin API listens beyond loopback/);
  });
});
