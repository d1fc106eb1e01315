import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { request } from '../helpers/http.js';
import { startLoad } from '../helpers/load.js';
import {
  adminAuth,
  fixtureCommand,
  launch,
  rewriteConfig,
  startWithAdmin,
  writeConfig,
} from '../helpers/multiplexer.js';
import { parsePrometheus, sumOf } from '../helpers/prometheus.js';
import { isAlive } from '../helpers/procs.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Several services behind one port (the `services` map): routing by Host and path, one backend
 * budget shared by all (max_backends), per-service reload and scale, and what status, metrics
 * and the access log say of each service. Every backend is the counting fixture, tagged with its
 * service's name, so an answer says which service's backend gave it.
 */

interface Fixture {
  tag: string;
  url: string;
  pid: number;
  atArrival: number;
}

type ServiceStatus = { service: string; pid: number; state: string; id: number };

function service(tag: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    service_start_process_cmd: fixtureCommand('counting-service.mjs', '{marker}', ` ${tag}`),
    ...extra,
  };
}

/** startWithAdmin with `services`, each command's {marker} replaced by the test's. */
async function startServices(config: Record<string, unknown>) {
  return startWithAdmin({ workers: 1, ...config });
}

async function backendsOf(mpx: Awaited<ReturnType<typeof startServices>>) {
  return (await mpx.status()).backends as unknown as ServiceStatus[];
}

describe('several services behind one port', () => {
  it('routes by Host, then the longest path prefix, then the catch-all; strips the prefix when asked; 404 MPX_NO_SERVICE when none matches; status, metrics and the access log name the service', async () => {
    const mpx = await startServices({
      access_log: true,
      services: {
        api: service('api', { match: { path_prefix: '/api', strip_prefix: true }, pool_size: 1 }),
        v2: service('v2', { match: { path_prefix: '/api/v2' }, pool_size: 1 }),
        admin: service('admin', { match: { host: ['admin.example.test'] }, pool_size: 1 }),
        site: service('site', { match: { host: '*.example.test' }, pool_size: 1 }),
      },
    });
    const ask = async (path: string, host?: string) => {
      const answer = await request(mpx.port, path, host ? { headers: { host } } : {});
      return { status: answer.status, body: answer.body, headers: answer.headers };
    };
    const tagged = async (path: string, host?: string): Promise<Fixture> => {
      const answer = await ask(path, host);
      assert.equal(answer.status, 200, `${host ?? ''}${path}: ${answer.body}`);
      return JSON.parse(answer.body) as Fixture;
    };
    const users = await tagged('/api/users?x=1');
    assert.deepEqual([users.tag, users.url], ['api', '/users?x=1'], 'the prefix taken off');
    assert.equal((await tagged('/api')).url, '/', 'the bare prefix becomes /');
    assert.equal((await tagged('/api/v2/items')).tag, 'v2', 'the longest prefix wins');
    assert.equal((await tagged('/api/v2/items')).url, '/api/v2/items', 'v2 keeps its prefix');
    assert.equal((await ask('/apix')).status, 404, '/api is no prefix of /apix');
    assert.equal((await tagged('/', 'admin.example.test:8080')).tag, 'admin', 'exact host');
    assert.equal((await tagged('/', 'www.example.test')).tag, 'site', 'wildcard host');
    // An exact host is taken before the path: admin.example.test/api goes to admin.
    assert.equal((await tagged('/api/x', 'admin.example.test')).tag, 'admin');
    const none = await ask('/elsewhere', 'other.test');
    assert.equal(none.status, 404);
    assert.equal(none.headers['x-multiplexer-error'], 'MPX_NO_SERVICE');

    const backends = await backendsOf(mpx);
    assert.deepEqual(
      backends.map((b) => b.service).sort(),
      ['admin', 'api', 'site', 'v2'],
      'one backend per service, each labelled',
    );
    const status = (await mpx.status()) as unknown as { services: { name: string }[] };
    assert.deepEqual(
      status.services.map((s) => s.name),
      ['api', 'v2', 'admin', 'site'],
    );
    const scrape = async () =>
      parsePrometheus((await request(mpx.adminPort, '/metrics', { headers: adminAuth(mpx) })).body);
    // The worker holds each backend for its next request, and reports it idle once it is quiet.
    let samples = await scrape();
    await waitFor(
      async () =>
        sumOf((samples = await scrape()), 'multiplexer_backends', {
          service: 'admin',
          state: 'idle',
        }) === 1,
      'the admin backend shown idle',
    );
    assert.ok(
      sumOf(samples, 'multiplexer_requests_total', { service: 'api', code: '200' }) === 2,
      JSON.stringify(samples.filter((x) => x.name === 'multiplexer_requests_total')),
    );
    assert.equal(sumOf(samples, 'multiplexer_requests_total', { service: 'none', code: '404' }), 2);
    const logged = await mpx.waitForLog(
      (r) => r.event === 'request.done' && r.path === '/api/v2/items',
      'the access log line',
    );
    assert.equal(logged.service, 'v2');
    assert.equal((await mpx.stop()).code, 0);
  });

  it('max_backends 6 over three services of pool_size 1: two saturated services never exceed the budget and fail nothing, the third is served at once and takes places back when it waits', async (t) => {
    const mpx = await startServices({
      max_backends: 6,
      pool_overflow_idle_ms: 60_000,
      queue_timeout_ms: 20_000,
      services: {
        a: service('a', { match: { path_prefix: '/a' }, pool_size: 1, pool_max_overflow: 5 }),
        b: service('b', { match: { path_prefix: '/b' }, pool_size: 1, pool_max_overflow: 5 }),
        c: service('c', { match: { path_prefix: '/c' }, pool_size: 1, pool_max_overflow: 5 }),
      },
    });
    const loadA = startLoad(mpx.port, { clients: 8, path: '/a?ms=40' });
    const loadB = startLoad(mpx.port, { clients: 8, path: '/b?ms=40' });
    let most = 0;
    const count = async (): Promise<Map<string, number>> => {
      const backends = await backendsOf(mpx);
      most = Math.max(most, backends.length);
      const by = new Map<string, number>();
      for (const b of backends) by.set(b.service, (by.get(b.service) ?? 0) + 1);
      return by;
    };
    // The two busy services grow into the whole budget, c keeping its one.
    await waitFor(
      async () => {
        const by = await count();
        return (by.get('a') ?? 0) + (by.get('b') ?? 0) === 5 && by.get('c') === 1;
      },
      'a and b to fill the budget beside c',
      20_000,
    );
    // c, idle until now: its first request is served by the backend it keeps.
    const started = performance.now();
    const first = await request(mpx.port, '/c/first');
    t.diagnostic(
      `c's first request, under load of a and b: ${Math.round(performance.now() - started)} ms`,
    );
    assert.equal(first.status, 200);
    // Now c waits with several at once: the budget is spent and nothing is idle, so the next
    // backends of a and b to become free retire (reason lent) and c's start in their place.
    const burstStarted = performance.now();
    const burst = await Promise.all(
      Array.from({ length: 6 }, (_, i) => request(mpx.port, `/c/burst/${i}?ms=300`)),
    );
    const burstMs = Math.round(performance.now() - burstStarted);
    for (const answer of burst) assert.equal(answer.status, 200, answer.body);
    const pidsOfC = new Set(burst.map((a) => (JSON.parse(a.body) as Fixture).pid));
    t.diagnostic(`6 requests of 300 ms to c: ${burstMs} ms, on ${pidsOfC.size} backends`);
    assert.ok(pidsOfC.size > 1, 'c got places from the budget beyond its own backend');
    await waitFor(
      () => mpx.logs().some((r) => r.event === 'backend.stopping' && r.reason === 'lent'),
      'a backend lent to c',
    );
    for (let i = 0; i < 5; i++) await count();
    const [a, b] = [await loadA.stop(), await loadB.stop()];
    t.diagnostic(`a: ${a.ok} answers, b: ${b.ok}; most backends at once: ${most}`);
    assert.deepEqual(a.failures, [], 'the busy services fail nothing');
    assert.deepEqual(b.failures, []);
    assert.ok(most <= 6, `at most max_backends processes, saw ${most}`);
    assert.ok(
      !mpx.logs().some((r) => r.event === 'pool.anomaly'),
      'no lease went astray between services',
    );
    assert.equal((await mpx.stop()).code, 0);
  });

  it('a service of pool_size 0 starts a backend for its first request, and goes back to none after pool_overflow_idle_ms', async (t) => {
    const mpx = await startServices({
      pool_overflow_idle_ms: 300,
      services: {
        main: service('main', { pool_size: 1 }),
        rare: service('rare', {
          match: { path_prefix: '/rare' },
          pool_size: 0,
          pool_max_overflow: 1,
        }),
      },
    });
    assert.deepEqual(
      mpx.ready.backends.length,
      1,
      'ready with the one backend of main; rare has none',
    );
    const asked = performance.now();
    const answer = await request(mpx.port, '/rare/x');
    t.diagnostic(
      `rare's first request, with a backend to start: ${Math.round(performance.now() - asked)} ms`,
    );
    assert.equal(answer.status, 200);
    assert.equal((JSON.parse(answer.body) as Fixture).tag, 'rare');
    await waitFor(
      async () => (await backendsOf(mpx)).filter((b) => b.service === 'rare').length === 0,
      'rare back to no backend',
    );
    assert.equal((await backendsOf(mpx)).filter((b) => b.service === 'main').length, 1);
    assert.equal((await request(mpx.port, '/rare/again')).status, 200, 'and it starts again');
    assert.equal((await mpx.stop()).code, 0);
  });

  it("a SIGHUP that changes one service's command rolls that service only: the others keep their pids, and no request fails under load; scale SERVICE N sets one service's pool_size", async () => {
    const mpx = await startServices({
      services: {
        api: service('api', { match: { path_prefix: '/api' }, pool_size: 2 }),
        web: service('web', { pool_size: 2 }),
      },
    });
    const before = await backendsOf(mpx);
    const webPids = before
      .filter((b) => b.service === 'web')
      .map((b) => b.pid)
      .sort();
    const loadApi = startLoad(mpx.port, { clients: 4, path: '/api?ms=5' });
    const loadWeb = startLoad(mpx.port, { clients: 4, path: '/web?ms=5' });
    await waitFor(() => loadApi.result.ok >= 20 && loadWeb.result.ok >= 20, 'load to flow');
    const config = JSON.parse(readFileSync(mpx.configFile, 'utf8')) as {
      services: Record<string, Record<string, unknown>>;
    };
    const api = config.services.api!;
    rewriteConfig(mpx, {
      services: {
        ...config.services,
        api: {
          ...api,
          service_start_process_cmd: String(api.service_start_process_cmd).replace(
            / api$/,
            ' api2',
          ),
        },
      },
    });
    mpx.proc.kill('SIGHUP');
    await mpx.waitForLog((r) => r.event === 'reload.done', 'the reload', 20_000);
    await waitFor(
      async () => {
        const now = await backendsOf(mpx);
        return (
          now.filter((b) => b.service === 'api' && b.state !== 'retiring').length === 2 &&
          !now.some((b) => b.service === 'api' && before.some((o) => o.pid === b.pid))
        );
      },
      "api's backends replaced",
      20_000,
    );
    const okBefore = loadApi.result.ok;
    await waitFor(() => loadApi.result.ok >= okBefore + 20, 'load after the roll');
    const [a, w] = [await loadApi.stop(), await loadWeb.stop()];
    assert.deepEqual(a.failures, []);
    assert.deepEqual(w.failures, []);
    assert.ok(a.tags.has('api2'), 'the new command serves');
    const after = await backendsOf(mpx);
    assert.deepEqual(
      after
        .filter((b) => b.service === 'web')
        .map((b) => b.pid)
        .sort(),
      webPids,
      "web's backends kept their pids",
    );

    const scaled = launch(['scale', 'web', '3', '--config', mpx.configFile], {
      env: { MULTIPLEXER_STATE_DIR: mpx.stateDir },
    });
    assert.equal((await scaled.exited).code, 0, scaled.stderr());
    assert.match(scaled.stdout(), /web: pool_size 2 → 3/);
    await waitFor(
      async () =>
        (await backendsOf(mpx)).filter((b) => b.service === 'web' && b.state === 'idle').length ===
        3,
      'web at 3 backends',
    );
    const shown = launch(['status', '--config', mpx.configFile], {
      env: { MULTIPLEXER_STATE_DIR: mpx.stateDir },
    });
    assert.equal((await shown.exited).code, 0, shown.stderr());
    assert.match(shown.stdout(), /^service api: size 2, max overflow 0; 0 waiting$/m);
    assert.match(shown.stdout(), /^service web: size 3, max overflow 0; 0 waiting$/m);
    assert.match(shown.stdout(), /^SERVICE +ID +PID/m);
    assert.equal(shown.stdout().match(/^web +\d+/gm)?.length, 3, 'web: 3 backends listed');
    const unnamed = launch(['scale', '3', '--config', mpx.configFile], {
      env: { MULTIPLEXER_STATE_DIR: mpx.stateDir },
    });
    assert.notEqual((await unnamed.exited).code, 0);
    assert.match(unnamed.stderr(), /several services \(api, web\): name the one to scale/);
    const unknown = launch(['scale', 'nope', '1', '--config', mpx.configFile], {
      env: { MULTIPLEXER_STATE_DIR: mpx.stateDir },
    });
    assert.notEqual((await unknown.exited).code, 0);
    assert.match(unknown.stderr(), /no service named "nope"; the services are api, web/);
    assert.equal((await mpx.stop()).code, 0);
  });

  it("a SIGHUP adds a service and removes another: the new one serves at once, the removed one's requests go where the routes now say and its backends end", async () => {
    const mpx = await startServices({
      services: {
        api: service('api', { match: { path_prefix: '/api' }, pool_size: 1 }),
        web: service('web', { pool_size: 1 }),
      },
    });
    const tagOf = async (path: string, host?: string): Promise<string> => {
      const answer = await request(mpx.port, path, host ? { headers: { host } } : {});
      assert.equal(answer.status, 200, answer.body);
      return (JSON.parse(answer.body) as Fixture).tag;
    };
    assert.equal(await tagOf('/api/x'), 'api');
    const apiPids = (await backendsOf(mpx)).filter((b) => b.service === 'api').map((b) => b.pid);
    const config = JSON.parse(readFileSync(mpx.configFile, 'utf8')) as {
      services: Record<string, Record<string, unknown>>;
    };
    const cmd = String(config.services.web!.service_start_process_cmd);
    rewriteConfig(mpx, {
      services: {
        web: config.services.web,
        admin: {
          match: { host: 'admin.example.test' },
          pool_size: 1,
          service_start_process_cmd: cmd.replace(/ web$/, ' admin'),
        },
      },
    });
    mpx.proc.kill('SIGHUP');
    const done = await mpx.waitForLog((r) => r.event === 'reload.done', 'the reload', 20_000);
    assert.ok(done);
    const changes = mpx.logs().find((r) => r.event === 'reload.started')!.changes as string[];
    assert.deepEqual(changes, [
      'services.api: "(a service)" → "(none)"',
      'services.admin: "(none)" → "(a service)"',
    ]);
    assert.equal(await tagOf('/', 'admin.example.test'), 'admin', 'the new service serves');
    assert.equal(await tagOf('/api/x'), 'web', '/api now goes to the catch-all');
    await waitFor(
      () => apiPids.every((pid) => !isAlive(pid)),
      "the removed service's backends to end",
    );
    const status = (await mpx.status()) as unknown as { services: { name: string }[] };
    assert.deepEqual(
      status.services.map((s) => s.name),
      ['web', 'admin'],
    );
    assert.equal((await mpx.stop()).code, 0);
  });

  it('check refuses a bad services map, naming the service, the key and what was expected', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        {
          max_backends: 2,
          services: {
            a: service('a', { pool_size: 2 }),
            b: service('b', { match: { path_prefix: '/b' }, pool_size: 1 }),
          },
        },
        /max_backends must be at least the sum of every service's pool_size, 3 \(a 2, b 1\), got 2/,
      ],
      [
        { services: { a: { ...service('a'), http_port: 80 } } },
        /services\.a\.http_port is a global setting/,
      ],
      [
        { services: { a: { ...service('a'), pool_sise: 2 } } },
        /services\.a\.pool_sise is not a service setting \(did you mean pool_size\?\)/,
      ],
      [
        { services: { a: service('a', { pool_size: -1 }) } },
        /services\.a\.pool_size must be an integer ≥ 0, got -1/,
      ],
      [
        { services: { a: service('a', { match: { path_prefix: 'api' } }) } },
        /services\.a\.match\.path_prefix must be a path beginning with "\/"/,
      ],
      [{ services: { a: { pool_size: 1 } } }, /services\.a\.service_start_process_cmd is required/],
      [
        { services: { a: service('a'), b: service('b') } },
        /services\.b\.match is the same as services\.a\.match/,
      ],
      [{ services: { 'A B': service('a') } }, /services\.A B: a service name must be/],
      [{ services: [] }, /services must be an object of service name/],
    ];
    for (const [config, expected] of cases) {
      const file = writeConfig({ http_port: 3999, ...config });
      const check = launch(['check', '--config', file]);
      const exit = await check.exited;
      assert.equal(exit.code, 78, `${JSON.stringify(config)}: ${check.stderr()}`);
      assert.match(check.stderr(), expected);
    }
  });
});
