import assert from 'node:assert/strict';
import { createConnection } from 'node:net';
import { describe, it } from 'node:test';
import { request } from '../helpers/http.js';
import {
  fixtureCommand,
  launchMultiplexer,
  startMultiplexer,
  type Launch,
} from '../helpers/multiplexer.js';
import { freePort } from '../helpers/ports.js';
import { startLoad } from '../helpers/load.js';
import { pidsMatching } from '../helpers/procs.js';
import { waitFor } from '../helpers/wait.js';

/** Resolves once something accepts TCP connections on `port`. */
function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Resolves as soon as the front port accepts, before any backend is ready. Not before the front
 * workers are started: the primary's check that http_port is free binds it for a moment.
 */
async function frontPortOpen(mpx: Launch & { port: number }): Promise<void> {
  await waitFor(
    () => mpx.logs().some((r) => r.event === 'pool.starting'),
    'the front workers to be started',
  );
  await waitFor(() => portOpen(mpx.port), 'the front port to open');
}

describe('readiness that is true', () => {
  it('a service that prints a banner 800 ms before it listens: 12 requests sent as soon as the port opens all get 200', async () => {
    const mpx = await launchMultiplexer({
      pool_size: 2,
      workers: 1,
      service_start_process_cmd: fixtureCommand('banner-service.mjs', '{marker}', ' 800'),
    });
    await frontPortOpen(mpx);
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        request(mpx.port, `/early?i=${i}&ms=20`).catch((e: Error) => e),
      ),
    );
    const statuses = answers.map((a) => (a instanceof Error ? a.message : a.status));
    assert.deepEqual(statuses, Array<number>(12).fill(200));
    for (const a of answers) {
      if (!(a instanceof Error))
        assert.equal((JSON.parse(a.body) as { atArrival: number }).atArrival, 1);
    }
    const logs = mpx.logs();
    assert.ok(
      !logs.some((r) => r.event === 'backend.crashed' || r.event === 'backend.boot-failed'),
      'no backend counted as failed',
    );
    mpx.proc.kill('SIGTERM');
    assert.equal((await mpx.exited).code, 0);
  });

  it('"wait_port": a server that logs only to stderr is ready once its port accepts', async () => {
    const mpx = await startMultiplexer({
      pool_size: 1,
      workers: 1,
      service_start_delay_ms: 'wait_port',
      service_start_process_cmd: fixtureCommand('stderr-only-service.mjs', '{marker}'),
    });
    assert.equal((await request(mpx.port, '/')).status, 200);
    assert.equal((await mpx.stop()).code, 0);
  });

  it('under the default readiness, a stderr-only server is given up on with a hint to use wait_port', async () => {
    const mpx = await launchMultiplexer({
      pool_size: 1,
      workers: 1,
      service_start_timeout_ms: 700,
      service_boot_attempts: 1,
      service_start_process_cmd: fixtureCommand('stderr-only-service.mjs', '{marker}'),
    });
    const exit = await mpx.exited;
    assert.equal(exit.code, 1);
    assert.match(
      mpx.stderr(),
      /no line on stdout in 700 ms; it wrote 1 line to stderr; for servers that log to stderr use "service_start_delay_ms": "wait_port"/,
    );
    assert.deepEqual(pidsMatching(mpx.marker), []);
  });
});

describe('service_health_path', () => {
  it('a backend is ready only once GET service_health_path answers 2xx: no request reaches it before', async () => {
    const mpx = await launchMultiplexer({
      pool_size: 2,
      workers: 1,
      service_health_path: '/health',
      service_start_process_cmd: fixtureCommand('banner-service.mjs', '{marker}', ' 0 600'),
    });
    await frontPortOpen(mpx);
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) => request(mpx.port, `/early?i=${i}&ms=20`)),
    );
    for (const a of answers) {
      assert.equal(a.status, 200, a.body);
      assert.equal((JSON.parse(a.body) as { healthy: boolean }).healthy, true);
    }
    mpx.proc.kill('SIGTERM');
    assert.equal((await mpx.exited).code, 0);
  });

  it('an idle backend failing its health check 3 times in a row is replaced; no request fails meanwhile', async () => {
    const mpx = await startMultiplexer({
      pool_size: 2,
      workers: 1,
      service_health_path: '/health',
      service_health_interval_ms: 150,
      service_start_process_cmd: fixtureCommand('banner-service.mjs', '{marker}', ' 0 0'),
    });
    const sick = JSON.parse((await request(mpx.port, '/sicken')).body) as { pid: number };
    const load = startLoad(mpx.port, { clients: 2, path: '/?ms=5' });
    await mpx.waitForLog((r) => r.reason === 'unhealthy', 'the sick backend to be replaced');
    const warnings = mpx
      .logs()
      .filter((r) => /failed its health check: GET \/health answered 503/.test(r.msg));
    assert.ok(warnings.length >= 3, `${warnings.length} failed checks logged`);
    const ok = load.result.ok;
    await waitFor(() => load.result.ok > ok + 20, 'load after the replacement');
    const result = await load.stop();
    assert.deepEqual(result.failures, []);
    await waitFor(() => !pidsMatching(mpx.marker).includes(sick.pid), 'the sick backend to end');
    assert.equal((await mpx.stop()).code, 0);
  });
});

describe('boot failure stops the process', () => {
  it('a command that does not exist: start exits 1 within 10 s, showing the shell\'s "not found"', async () => {
    const adminPort = await freePort();
    const t0 = Date.now();
    const mpx = await launchMultiplexer({
      pool_size: 2,
      workers: 1,
      admin_port: adminPort,
      service_start_process_cmd: 'no-such-program-{marker} --port %PORT%',
    });
    const exit = await waitFor(() => mpx.exited.then((e) => e), 'start to give up', 10_000);
    assert.equal(exit.code, 1, mpx.stderr().slice(-3000));
    assert.ok(Date.now() - t0 < 10_000);
    const stderr = mpx.stderr();
    assert.match(stderr, /the service cannot start/);
    assert.match(stderr, /command: no-such-program-\S+ --port \d+/);
    assert.match(stderr, /exited with code 127/);
    assert.match(stderr, /stderr: .*no-such-program-\S+: (command )?not found/);
    assert.ok(
      mpx.logs().some((r) => r.attempts === 5 && /5 starts in a row failed/.test(r.msg)),
      'service_boot_attempts (5) starts were made',
    );
  });

  it('/readyz says why it is not ready, and /healthz turns 503 when no backend has been ready for 3 × service_start_timeout_ms', async () => {
    const adminPort = await freePort();
    const mpx = await launchMultiplexer({
      pool_size: 1,
      workers: 1,
      admin_port: adminPort,
      service_start_timeout_ms: 300,
      service_boot_attempts: 1000,
      service_start_process_cmd: 'echo starting; exit 3 # {marker}',
    });
    const readyz = await waitFor(async () => {
      const a = await request(adminPort, '/readyz').catch(() => undefined);
      return a && /backends failing/.test(a.body) ? a : undefined;
    }, 'readyz to name the failure');
    assert.equal(readyz.status, 503);
    assert.match(readyz.body, /backends failing: exited with code 3/);
    assert.doesNotMatch(readyz.body, /echo starting/, 'no command line in an open probe');
    const healthz = await waitFor(async () => {
      const a = await request(adminPort, '/healthz');
      return a.status === 503 ? a : undefined;
    }, 'healthz to fail');
    assert.match(
      healthz.body,
      /no backend has been ready for \d+ ms \(limit 3 × service_start_timeout_ms = 900 ms\)/,
    );
    assert.doesNotMatch(healthz.body, /echo starting|"pid"/, 'no command line, no pid');
    mpx.proc.kill('SIGTERM');
    await mpx.exited;
  });
});
