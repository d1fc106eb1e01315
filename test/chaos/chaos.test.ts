/**
 * The resilience suite: what breaks around multiplexer, under looping clients (keep-alive and
 * not). Each scenario reports requests, failures by kind and hangs. `npm test` runs it short;
 * `npm run test:chaos` (MPX_CHAOS=full) runs it at full length: 30 s of backend kills, 500 config
 * mutations, 100,000 requests for memory.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, it, type TestContext } from 'node:test';
import { configKeys } from '../../lib/config/schema.js';
import { request } from '../helpers/http.js';
import { startLoad, type LoadResult } from '../helpers/load.js';
import { launch, servicePids, startWithAdmin, writeConfig } from '../helpers/multiplexer.js';
import { isAlive } from '../helpers/procs.js';
import { waitFor } from '../helpers/wait.js';

const FULL = process.env.MPX_CHAOS === 'full';
const scale = {
  killSeconds: FULL ? 30 : 3,
  mutations: FULL ? 500 : 40,
  memoryRequests: FULL ? 100_000 : 14_000,
  /** Requests before the first memory reading: a short run is mostly the heap's own warm-up. */
  memoryWarmUp: FULL ? 20_000 : 8_000,
};

/** Failures grouped by kind: "502", "504", "error: socket hang up", "hang". */
function byKind(result: LoadResult): Record<string, number> {
  const kinds: Record<string, number> = {};
  for (const f of result.failures) {
    const kind = /no answer within/.test(f)
      ? 'hang'
      : f.split(':')[0]!.startsWith('error')
        ? f
        : f.split(':')[0]!;
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  return kinds;
}

function report(t: TestContext, what: string, result: LoadResult, extra = ''): void {
  t.diagnostic(
    `${what}: ${result.sent} requests, ${result.failures.length} failed ${JSON.stringify(byKind(result))}${extra}`,
  );
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('chaos', () => {
  it(`kill -9 of random backends every 300 ms for ${scale.killSeconds} s: failures ≤ kills, all 502, none hang`, async (t) => {
    const mpx = await startWithAdmin({ pool_size: 4, workers: 2 });
    const load = startLoad(mpx.port, { clients: 8, path: '/?ms=20', timeoutMs: 10_000 });
    await waitFor(() => load.result.ok >= 40, 'load to flow');
    let kills = 0;
    const until = Date.now() + scale.killSeconds * 1000;
    while (Date.now() < until) {
      const pids = servicePids(mpx);
      const victim = pids[Math.floor(Math.random() * pids.length)];
      if (victim !== undefined) {
        process.kill(victim, 'SIGKILL');
        kills++;
      }
      await sleep(300);
    }
    const ok = load.result.ok;
    await waitFor(() => load.result.ok >= ok + 40, 'load after the kills', 15_000);
    const result = await load.stop();
    report(t, `${kills} backends killed`, result);
    assert.ok(kills > 0);
    assert.ok(
      result.failures.length <= kills,
      `${result.failures.length} failures for ${kills} kills`,
    );
    for (const f of result.failures) assert.match(f, /^502: /);
    assert.equal((await mpx.stop()).code, 0);
  });

  it('kill -9 of a front worker: only its in-flight connections fail, and it is replaced', async (t) => {
    const mpx = await startWithAdmin({ pool_size: 2, workers: 2 });
    const clients = 6;
    const load = startLoad(mpx.port, { clients, timeoutMs: 10_000 });
    await waitFor(() => load.result.ok >= 40, 'load to flow');
    const victim = (await mpx.status()).workers[0]!.pid;
    const killedAt = Date.now();
    process.kill(victim, 'SIGKILL');
    await waitFor(
      async () => {
        const workers = (await mpx.status()).workers;
        return workers.length === 2 && workers.every((w) => w.listening && w.pid !== victim);
      },
      'a replacement worker to listen',
      5000,
      5,
    );
    const replacedMs = Date.now() - killedAt;
    const ok = load.result.ok;
    await waitFor(() => load.result.ok >= ok + 40, 'load after the kill');
    const result = await load.stop();
    report(t, 'a front worker killed', result, `, replaced in ${replacedMs} ms`);
    // How long the replacement takes is reported, not asserted: it is a fork and a Node start on
    // this machine, under this load (1.2 s here beside 6 looping clients on 2 cores); a time
    // target belongs in bench/, measured against a bare fork side by side.
    // At most one request per client was in flight on the killed worker.
    assert.ok(result.failures.length <= clients, `${result.failures.length} failures`);
    assert.ok(!result.failures.some((f) => /no answer/.test(f)), 'no request hangs');
    assert.equal((await mpx.stop()).code, 0);
  });

  it('SIGSTOP of a backend: its request gets 504 after http_proxy_timeout, and it is replaced', async (t) => {
    const mpx = await startWithAdmin({
      pool_size: 2,
      workers: 1,
      http_proxy_timeout: 1000,
      service_stop_timeout_ms: 300,
    });
    const load = startLoad(mpx.port, { clients: 4, timeoutMs: 10_000 });
    await waitFor(() => load.result.ok >= 20, 'load to flow');
    const [victim] = servicePids(mpx);
    process.kill(victim!, 'SIGSTOP');
    await mpx.waitForLog((r) => r.reason === 'stuck', 'the stopped backend to be given up on');
    await waitFor(async () => {
      const s = await mpx.status();
      const ready = s.backends.filter((b) => b.state === 'idle' || b.state === 'busy');
      return ready.length === 2 && !isAlive(victim!);
    }, 'a replacement, and the stopped one gone');
    const ok = load.result.ok;
    await waitFor(() => load.result.ok >= ok + 20, 'load after the replacement');
    const result = await load.stop();
    report(t, 'a backend stopped (SIGSTOP)', result);
    assert.ok(result.failures.length >= 1, 'the request on the stopped backend failed');
    for (const f of result.failures) assert.match(f, /^504: /);
    assert.equal((await mpx.stop()).code, 0);
  });

  it(`config fuzzing: ${scale.mutations} random mutations to check and to a SIGHUP reload are applied or refused naming the key, and never crash the primary`, async (t) => {
    const mpx = await startWithAdmin({ pool_size: 2, workers: 1 });
    const base = JSON.parse(readFileSync(mpx.configFile, 'utf8')) as Record<string, unknown>;
    const seed = Number(process.env.MPX_CHAOS_SEED ?? Date.now() % 100_000);
    let state = seed;
    const random = (): number => {
      state = (state * 48271) % 2147483647;
      return state / 2147483647;
    };
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const values: unknown[] = [
      -1,
      0,
      1,
      2,
      3,
      1.5,
      2_147_483_648,
      '2',
      '',
      'x',
      'fifo',
      'wait_port',
      true,
      null,
      [],
      [10, 5],
      {},
      '1..2',
      'http://[::1]',
      '0.0.0.0',
      'echo hi',
    ];
    const tally = { checkOk: 0, checkRefused: 0, reloaded: 0, refused: 0 };
    for (let i = 0; i < scale.mutations; i++) {
      const mutated: Record<string, unknown> = { ...base };
      const key = random() < 0.1 ? `${pick(configKeys)}x` : pick(configKeys);
      if (random() < 0.1) delete mutated[key];
      else mutated[key] = pick(values);
      const described = `mutation ${i} (seed ${seed}): ${key} = ${JSON.stringify(mutated[key])}`;

      const check = launch(['check', '--config', writeConfig(mutated)]);
      const exit = await check.exited;
      assert.ok(exit.code === 0 || exit.code === 78, `${described}: check exited ${exit.code}`);
      if (exit.code === 78) {
        tally.checkRefused++;
        assert.match(check.stderr(), /^multiplexer: config error: \w+/m, described);
        const named = [...check.stderr().matchAll(/^multiplexer: config error: (\w+)/gm)].map(
          (m) => m[1],
        );
        assert.ok(
          named.some((k) => configKeys.includes(k as never) || k === key || k === 'config'),
          `${described}: the message names a key: ${check.stderr()}`,
        );
      } else tally.checkOk++;

      writeFileSync(mpx.configFile, JSON.stringify(mutated));
      const seen = mpx
        .logs()
        .filter((r) => /^reload\.(done|refused)$/.test(String(r.event))).length;
      mpx.proc.kill('SIGHUP');
      await waitFor(
        () =>
          mpx.logs().filter((r) => /^reload\.(done|refused)$/.test(String(r.event))).length > seen,
        `${described}: the reload's outcome`,
        20_000,
      );
      const outcome = mpx.logs().filter((r) => /^reload\.(done|refused)$/.test(String(r.event)))[
        seen
      ]!;
      if (outcome.event === 'reload.done') tally.reloaded++;
      else tally.refused++;
      assert.ok(isAlive(mpx.pid), `${described}: the primary is alive`);
    }
    // Back to the valid config: it serves again.
    writeFileSync(mpx.configFile, JSON.stringify(base));
    mpx.proc.kill('SIGHUP');
    await waitFor(
      async () => (await request(mpx.port, '/').catch(() => undefined))?.status === 200,
      'service after the fuzzing',
      20_000,
    );
    t.diagnostic(`seed ${seed}: ${JSON.stringify(tally)}`);
    assert.ok(tally.checkRefused > 0 && tally.checkOk > 0, 'both outcomes were exercised');
    const exit = await mpx.stop();
    // A stop that was not clean says why: the primary's last lines.
    const last = mpx
      .logs()
      .filter((r) => r.level >= 40 || /^(reload|shutdown|worker)\./.test(String(r.event)))
      .slice(-12)
      .map((r) => JSON.stringify(r).slice(0, 300));
    assert.equal(exit.code, 0, `seed ${seed}: the stop exited ${exit.code}:\n${last.join('\n')}`);
  });

  it(`${scale.memoryRequests} requests: the primary's and each worker's memory stays flat (growth under 10% after warm-up)`, async (t) => {
    const mpx = await startWithAdmin({ pool_size: 4, workers: 2 });
    const pids = [mpx.pid, ...(await mpx.status()).workers.map((w) => w.pid)];
    const load = startLoad(mpx.port, { clients: 8, path: '/', timeoutMs: 10_000 });
    await waitFor(() => load.result.sent >= scale.memoryWarmUp, 'the warm-up', 120_000);
    const before = pids.map(rssOf);
    await waitFor(() => load.result.sent >= scale.memoryRequests, 'the requests', 600_000);
    const result = await load.stop();
    const after = pids.map(rssOf);
    const lines = pids.map((pid, i) => `${pid}: ${mb(before[i]!)} → ${mb(after[i]!)} MB`);
    report(t, 'memory', result, `; ${lines.join(', ')}`);
    assert.deepEqual(result.failures, []);
    for (const [i, pid] of pids.entries()) {
      assert.ok(
        after[i]! < before[i]! * 1.1,
        `${pid} grew from ${mb(before[i]!)} to ${mb(after[i]!)} MB`,
      );
    }
    assert.equal((await mpx.stop()).code, 0);
  });
});

function rssOf(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * 4096;
}

function mb(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}
