import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseFixture, request } from '../helpers/http.js';
import {
  adminAuth,
  arrived,
  fixtureCommand,
  launchMultiplexer,
  servicePids,
  startMultiplexer,
} from '../helpers/multiplexer.js';
import { freePort } from '../helpers/ports.js';
import { isAlive, pidsMatching } from '../helpers/procs.js';
import { waitFor } from '../helpers/wait.js';

describe('failures, end to end', () => {
  it('a backend that dies mid-request gives that request 502 and is replaced', async () => {
    const mpx = await startMultiplexer({ pool_size: 1, workers: 1 });
    const before = servicePids(mpx);
    const crashed = await request(mpx.port, '/crash');
    assert.equal(crashed.status, 502);
    assert.equal(crashed.headers['x-multiplexer-error'], 'MPX_BACKEND_CRASHED');
    assert.match(
      crashed.body,
      /^502 Bad Gateway: the backend closed the connection before answering/,
    );
    await mpx.waitForLog((r) => r.event === 'backend.crashed', 'the crash to be logged');
    const after = parseFixture(await request(mpx.port, '/after'));
    assert.ok(!before.includes(after.pid), 'a new backend process serves');
    assert.equal(servicePids(mpx).length, 1);
    assert.equal((await mpx.stop()).code, 0);
  });

  it('a backend that keeps failing at boot is restarted with exponential backoff, never spinning', async () => {
    const l = await launchMultiplexer({
      pool_size: 1,
      workers: 1,
      // Retrying, not giving up (that is service_boot_attempts' own test).
      service_boot_attempts: 100,
      service_start_process_cmd: fixtureCommand('boot-fail-service.mjs', '{marker}'),
    });
    const delays = () =>
      l
        .logs()
        .filter((r) => r.event === 'backend.backoff')
        .map((r) => r.delayMs as number);
    await waitFor(() => delays().includes(800), 'the backoff to reach 800 ms');
    assert.deepEqual(delays().slice(0, 3), [200, 400, 800]);
    const logs = l.logs();
    const starts = logs.filter((r) => r.event === 'backend.starting').length;
    const failures = logs.filter((r) => r.event === 'backend.boot-failed').length;
    assert.ok(failures >= 4, 'the log says why each one ended');
    assert.ok(
      starts <= failures + 1,
      `one start per failure, no spin (${starts} starts, ${failures} failures)`,
    );
    l.proc.kill('SIGTERM');
    assert.equal((await l.exited).code, 0);
    assert.deepEqual(pidsMatching(l.marker), []);
  });

  it('a backend silent on stdout is never ready with wait_first_output: killed after service_start_timeout_ms and started again', async () => {
    const l = await launchMultiplexer({
      pool_size: 1,
      workers: 1,
      service_start_process_cmd: fixtureCommand('stderr-only-service.mjs', '{marker}'),
      service_start_timeout_ms: 400,
    });
    await waitFor(
      () => l.logs().some((r) => r.event === 'backend.starting' && r.backend === 2),
      'a second start after the timeout',
    );
    const logs = l.logs();
    assert.ok(
      logs.some((r) => r.stream === 'stderr' && /listening/.test(r.msg)),
      'its stderr was logged',
    );
    assert.ok(logs.some((r) => r.reason === 'start-timeout'));
    assert.ok(
      !l.stdout().includes('"event":"ready"'),
      'stderr output does not make a backend ready',
    );
    l.proc.kill('SIGTERM');
    assert.equal((await l.exited).code, 0);
    assert.deepEqual(pidsMatching(l.marker), []);
  });

  it('with service_start_delay_ms, a silent backend is ready after the delay', async () => {
    const mpx = await startMultiplexer({
      pool_size: 1,
      workers: 1,
      service_start_delay_ms: 300,
      service_start_process_cmd: fixtureCommand('stderr-only-service.mjs', '{marker}'),
    });
    const starting = mpx.logs().find((r) => r.event === 'backend.starting')!;
    const ready = mpx.logs().find((r) => r.event === 'backend.ready')!;
    assert.ok((ready.time as number) - (starting.time as number) >= 300);
    assert.equal((await request(mpx.port, '/')).status, 200);
    await mpx.stop();
  });

  it('a backend that does not answer within http_proxy_timeout gives 504 and is stopped and replaced', async () => {
    const mpx = await startMultiplexer({ pool_size: 1, workers: 1, http_proxy_timeout: 300 });
    const stuckPid = servicePids(mpx)[0];
    const answer = await request(mpx.port, '/?ms=5000');
    assert.equal(answer.status, 504);
    assert.equal(answer.headers['x-multiplexer-error'], 'MPX_BACKEND_TIMEOUT');
    assert.ok(
      answer.ms < 2000,
      `504 came after the timeout, not after the backend (${answer.ms} ms)`,
    );
    await mpx.waitForLog((r) => r.reason === 'stuck', 'the stuck backend to be stopped');
    const next = parseFixture(await request(mpx.port, '/next'));
    assert.notEqual(next.pid, stuckPid);
    assert.equal(next.atArrival, 1);
    await waitFor(() => !isAlive(stuckPid!), 'the stuck process to end');
    await mpx.stop();
  });

  it('a SIGKILLed front worker is replaced, its leases are freed, the other worker keeps serving', async () => {
    const adminPort = await freePort();
    const mpx = await startMultiplexer({
      pool_size: 2,
      pool_max_overflow: 0,
      workers: 2,
      admin_port: adminPort,
    });
    const long = [
      request(mpx.port, '/long-a?ms=3000').catch((e: Error) => e),
      request(mpx.port, '/long-b?ms=3000').catch((e: Error) => e),
    ];
    await arrived(mpx, '/long-a');
    await arrived(mpx, '/long-b');
    // The kernel hands connections to whichever worker accepts first: ask which one holds what.
    const status = JSON.parse(
      (await request(adminPort, '/status', { headers: adminAuth(mpx) })).body,
    ) as {
      workers: { id: number; pid: number }[];
      backends: { leasedBy?: number }[];
    };
    const holders = status.backends.map((b) => b.leasedBy);
    const victim = status.workers.find((w) => w.id === holders[0])!;
    const survivor = status.workers.find((w) => w.id !== victim.id)!;
    const onVictim = holders.filter((id) => id === victim.id).length;
    process.kill(victim.pid, 'SIGKILL');
    await mpx.waitForLog((r) => r.event === 'worker.died', 'the worker death to be logged');
    // The dead worker's backends come back to the pool (replaced) while any other request runs.
    const quick = await request(mpx.port, '/quick');
    assert.equal(quick.status, 200);
    assert.ok(quick.ms < 2500, `served before the surviving long request ended (${quick.ms} ms)`);
    const results = await Promise.all(long);
    const failed = results.filter((r) => r instanceof Error);
    assert.equal(failed.length, onVictim, 'exactly the requests on the killed worker failed');
    for (const r of results) if (!(r instanceof Error)) assert.equal(r.status, 200);
    await waitFor(
      () => mpx.logs().filter((r) => r.event === 'worker.died').length === 1,
      'the replacement',
    );
    assert.ok(isAlive(survivor.pid));
    assert.equal((await mpx.stop()).code, 0);
  });
});

describe('shutdown while a front worker starts', () => {
  it('SIGTERM while a replacement worker boots: it is drained too, and the stop is clean and prompt', async () => {
    const mpx = await startMultiplexer({ pool_size: 1, workers: 2, shutdown_timeout_ms: 8000 });
    // A worker that dies within 1 s of its start is replaced after a backoff; one that lived
    // longer is replaced at once, which is the case here: its replacement is still booting (its
    // message handler not set up yet) when the drain comes, a moment later.
    const readyAt = Date.now();
    await waitFor(() => Date.now() - readyAt > 1100, 'the workers to be past their boot grace');
    process.kill(mpx.ready.workers[0]!, 'SIGKILL');
    await mpx.waitForLog((r) => r.event === 'worker.died', 'the replacement to be forked');
    const t0 = Date.now();
    const exit = await mpx.stop();
    assert.equal(exit.code, 0, mpx.stderr().slice(-2000));
    assert.ok(Date.now() - t0 < 5000, `the stop took ${Date.now() - t0} ms`);
  });
});
