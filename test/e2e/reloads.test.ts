import assert from 'node:assert/strict';
import { createConnection } from 'node:net';
import { describe, it } from 'node:test';
import { request } from '../helpers/http.js';
import { startLoad } from '../helpers/load.js';
import {
  adminAuth,
  arrived,
  rewriteConfig,
  startMultiplexer,
  type Running,
} from '../helpers/multiplexer.js';
import { freePort } from '../helpers/ports.js';
import { isAlive } from '../helpers/procs.js';
import { waitFor } from '../helpers/wait.js';

/** The primary's last log lines without backend output: what a failed stop explains itself with. */
function lastLogLines(mpx: Running): string {
  return mpx
    .stderr()
    .split('\n')
    .filter((line) => !line.includes('"stream":'))
    .slice(-40)
    .join('\n');
}

/** Sends SIGHUP and resolves with the "reloaded" log record it produced. */
async function sighup(mpx: Running): Promise<{ workersReplaced: number }> {
  const seen = mpx.logs().filter((r) => r.event === 'reload.done').length;
  mpx.proc.kill('SIGHUP');
  await waitFor(
    () => mpx.logs().filter((r) => r.event === 'reload.done').length > seen,
    'the reload',
    20_000,
  );
  const done = mpx.logs().filter((r) => r.event === 'reload.done')[seen]!;
  return done as unknown as { workersReplaced: number };
}

describe('reloads cut nothing', () => {
  it('a 6 s request survives a no-op SIGHUP and a worker-replacing SIGHUP, though both outlast shutdown_timeout_ms', async () => {
    const mpx = await startMultiplexer({ pool_size: 1, workers: 1, shutdown_timeout_ms: 1000 });
    const long = request(mpx.port, '/long?ms=6000');
    await arrived(mpx, '/long');
    const noop = await sighup(mpx);
    assert.equal(noop.workersReplaced, 0, 'a reload that changes nothing replaces no worker');
    rewriteConfig(mpx, { http_proxy_timeout: 120_000 });
    const replacing = await sighup(mpx);
    assert.equal(replacing.workersReplaced, 1);
    const answer = await long;
    assert.equal(answer.status, 200);
    assert.ok(answer.ms >= 6000);
    const exit = await mpx.stop();
    assert.equal(exit.code, 0, lastLogLines(mpx));
  });
});

describe('draining front workers', () => {
  it('a client that connected before a worker-replacing reload and sends its request after the drain closed idle keep-alive connections is answered', async () => {
    const mpx = await startMultiplexer({ pool_size: 1, workers: 1, shutdown_timeout_ms: 2000 });
    const connect = async () => {
      const socket = createConnection({ port: mpx.port, host: '127.0.0.1' });
      await new Promise((resolve) => socket.once('connect', resolve));
      const state = { text: '', closed: false };
      socket.setEncoding('utf8').on('data', (c: string) => (state.text += c));
      socket.on('error', () => undefined);
      socket.once('close', () => (state.closed = true));
      return { socket, state };
    };
    // A: a keep-alive client that was answered once and is now idle.
    const keptAlive = await connect();
    keptAlive.socket.write('GET /once HTTP/1.1\r\nHost: test\r\n\r\n');
    await waitFor(() => keptAlive.state.text.includes('"url":"/once"'), 'the first answer');
    // B: a client that connected and has not sent its request yet (a browser's preconnect).
    const silent = await connect();
    rewriteConfig(mpx, { http_proxy_timeout: 120_000 });
    assert.equal((await sighup(mpx)).workersReplaced, 1);
    // The old worker drains: after its idle grace it closes A, which was answered and is idle.
    await waitFor(() => keptAlive.state.closed, 'the idle keep-alive connection to be closed');
    assert.ok(!silent.state.closed, 'the connection that sent nothing yet is kept');
    silent.socket.write('GET /late HTTP/1.1\r\nHost: test\r\n\r\n');
    await waitFor(() => silent.state.closed, 'the answer, then the close');
    assert.match(silent.state.text, /^HTTP\/1\.1 200 /);
    assert.match(silent.state.text, /connection: close/i);
    const exit = await mpx.stop();
    assert.equal(exit.code, 0, lastLogLines(mpx));
  });
});

describe('reloads under load', () => {
  it('worker-replacing reloads in a row lose no connection, however the clients connect', async () => {
    const mpx = await startMultiplexer({ pool_size: 2, workers: 2 });
    const load = startLoad(mpx.port, { clients: 6, keepAlive: 'none', timeoutMs: 8000 });
    await waitFor(() => load.result.ok >= 30, 'load to flow');
    for (let i = 1; i <= 8; i++) {
      rewriteConfig(mpx, { http_proxy_timeout: 300_000 + i });
      assert.equal((await sighup(mpx)).workersReplaced, 2, `reload ${i}`);
    }
    const result = await load.stop();
    assert.deepEqual(result.failures, []);
    const exit = await mpx.stop();
    assert.equal(exit.code, 0, lastLogLines(mpx));
  });

  it('the primary survives front workers killed under load, and no connection hangs', async () => {
    const adminPort = await freePort();
    const mpx = await startMultiplexer({ pool_size: 2, workers: 2, admin_port: adminPort });
    const load = startLoad(mpx.port, { clients: 8, timeoutMs: 8000 });
    await waitFor(() => load.result.ok >= 30, 'load to flow');
    /** Pids of the workers that listen, once both do. */
    const workerPids = async (): Promise<number[]> => {
      const answer = await request(adminPort, '/status', { headers: adminAuth(mpx) });
      const { workers } = JSON.parse(answer.body) as {
        workers: { pid: number; listening: boolean }[];
      };
      const listening = workers.filter((w) => w.listening).map((w) => w.pid);
      return listening.length === 2 ? listening : [];
    };
    let kills = 0;
    const killed = new Set<number>();
    while (kills < 12) {
      // The next victim: a worker that is up and not already killed.
      const victim = await waitFor(
        async () => (await workerPids()).find((pid) => !killed.has(pid)),
        'a live front worker',
      ).catch((err: Error) => {
        // What the primary said of its workers, to tell a fork that never came from one that
        // never listened.
        const said = mpx
          .logs()
          .filter((r) => String(r.event).startsWith('worker.'))
          .slice(-8)
          .map((r) => JSON.stringify(r));
        throw new Error(`${err.message}; the primary's last worker events:\n${said.join('\n')}`);
      });
      const ok = load.result.ok;
      await waitFor(() => load.result.ok >= ok + 10, 'requests served after the last kill');
      killed.add(victim);
      process.kill(victim, 'SIGKILL');
      kills++;
      // Until the primary has seen the exit, status still lists the victim as listening.
      await waitFor(
        async () => !(await workerPids()).includes(victim) && !isAlive(victim),
        'the primary to see the worker gone',
      );
    }
    const sent = load.result.sent;
    await waitFor(() => load.result.sent >= sent + 30, 'load after the kills', 15_000);
    const result = await load.stop();
    assert.ok(isAlive(mpx.pid), 'the primary is alive');
    assert.deepEqual(
      result.failures.filter((f) => /no answer/.test(f)),
      [],
    );
    // Only requests in flight in a killed worker may fail: at most one per client per kill.
    assert.ok(
      result.failures.length <= kills * 8,
      `${result.failures.length} failures: ${result.failures.slice(0, 5).join('; ')}`,
    );
    const exit = await mpx.stop();
    assert.equal(exit.code, 0, lastLogLines(mpx));
  });
});
