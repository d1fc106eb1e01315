/**
 * The scenarios. Throughput scenarios start every contestant once per variant, then take the runs
 * round-robin over the contestants (run 1 of each, then run 2 of each, ...), so drift in a noisy
 * machine spreads over all of them alike and every ratio compares runs of the same invocation.
 */
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  direct,
  FixtureSet,
  startHaproxy,
  startMultiplexer,
  startNginx,
  startFloor,
  startGunicorn,
  ensureFlask,
  BENCH_ADMIN_TOKEN,
  type ContestantName,
  type Running,
  type RunningMultiplexer,
} from './contestants.js';
import { runLoad, type LoadResult, type PathMix } from './load.js';
import { startSlowClients } from './slow-clients.js';
import { cpuSeconds, fileRssMB, rssMB } from './system.js';
import { freePort } from '../test/helpers/ports.js';
import { waitFor } from '../test/helpers/wait.js';

export interface Settings {
  readonly runs: number;
  readonly seconds: number;
  readonly log: (line: string) => void;
}

export interface LoadSample extends LoadResult {
  readonly contestant: ContestantName;
  readonly run: number;
  /** CPU seconds of the proxy's processes per request, in microseconds. */
  readonly cpuPerRequestUs: number;
  /** multiplexer only: the primary's own CPU per request, and cluster messages per request. */
  readonly primaryCpuPerRequestUs?: number;
  readonly ipcPerRequest?: number;
  /** Answers the slow clients read in full meanwhile (slow-clients scenario). */
  readonly slowAnswers?: number;
}

export interface MemorySample {
  readonly primaryMB: number;
  readonly workersMB: number[];
  /** Of which mapped files (RssFile), shared with every other node process. */
  readonly primaryFileMB?: number;
  readonly workersFileMB?: number[];
}

export interface VariantResult {
  readonly scenario: string;
  readonly variant: string;
  readonly backends: number;
  readonly clients: number;
  /** Requests per second the backends can serve at most (N / t), when t is fixed. */
  readonly limitRps?: number;
  readonly samples: LoadSample[];
  readonly memory: MemorySample[];
  readonly slow?: Variant['slow'];
}

interface Variant {
  /** The backends are the Flask example on gunicorn (else bench/fixture.mjs). */
  readonly flask?: boolean;
  readonly scenario: string;
  readonly variant: string;
  readonly backends: number;
  readonly clients: number;
  readonly mix: PathMix;
  readonly limitRps?: number;
  readonly contestants: readonly ContestantName[];
  /** Clients reading at a capped rate beside wrk's (slow-clients scenario). */
  readonly slow?: {
    readonly count: number;
    readonly bytesPerSecond: number;
    readonly path: string;
  };
}

async function startContestant(
  name: ContestantName,
  backends: number,
  peers: FixtureSet,
  flask = false,
): Promise<Running> {
  switch (name) {
    case 'multiplexer':
      return startMultiplexer({
        poolSize: backends,
        adminPort: await freePort(),
        config: { admin_token: ADMIN_TOKEN },
        flask,
      });
    case 'gunicorn':
      return startGunicorn(backends);
    case 'haproxy':
      return startHaproxy(peers, 30_000);
    case 'nginx-rr':
      return startNginx(peers, 'round-robin');
    case 'nginx-lc':
      return startNginx(peers, 'least_conn');
    case 'direct':
      return direct(peers);
    case 'mpx-raw':
      return startMultiplexer({
        poolSize: backends,
        name,
        adminPort: await freePort(),
        config: { admin_token: ADMIN_TOKEN },
        env: { MULTIPLEXER_RAW_PATH: '1' },
      });
    case 'floor-node-http':
      return startFloor('node-http', peers);
    case 'floor-raw':
      return startFloor('raw', peers);
    case 'mpx-no-access-log':
      return startMultiplexer({ poolSize: backends, name, config: { access_log: false } });
    case 'mpx-no-observability':
      return startMultiplexer({
        poolSize: backends,
        name,
        config: { access_log: false, metrics: false },
      });
  }
}

function memoryOf(running: Running): MemorySample | undefined {
  if (running.name !== 'multiplexer') return undefined; // the default configuration's only
  const mpx = running as RunningMultiplexer;
  const workers = mpx.workers();
  return {
    primaryMB: rssMB(mpx.primary),
    workersMB: workers.map(rssMB),
    primaryFileMB: fileRssMB(mpx.primary),
    workersFileMB: workers.map(fileRssMB),
  };
}

const ADMIN_TOKEN = BENCH_ADMIN_TOKEN;

/** GET an admin endpoint of a multiplexer the bench started; a refused answer is an error. */
function adminGet(adminPort: number, path: string): Promise<string> {
  return new Promise<string>((done, fail) => {
    http
      .get(
        {
          host: '127.0.0.1',
          port: adminPort,
          path,
          agent: false,
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        },
        (res) => {
          // A refused answer (401) comes at once: it would time and count nothing.
          if (res.statusCode !== 200) fail(new Error(`${path} answered ${res.statusCode}`));
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => done(text));
        },
      )
      .on('error', fail);
  });
}

/** The lease protocol's messages so far (the scrape's own and batch envelopes left out). */
async function ipcMessages(adminPort: number): Promise<number> {
  const body = await adminGet(adminPort, '/metrics');
  let total = 0;
  for (const line of body.split('\n')) {
    const m = /^multiplexer_ipc_messages_total\{([^}]*)\} (\S+)$/.exec(line);
    if (!m || /type="(metrics|metrics-request|batch)"/.test(m[1]!)) continue;
    total += Number(m[2]);
  }
  return total;
}

async function measureVariant(v: Variant, s: Settings): Promise<VariantResult> {
  const peers = await FixtureSet.start(v.backends);
  const running: Running[] = [];
  const result: VariantResult = { ...v, samples: [], memory: [] };
  try {
    for (const name of v.contestants)
      running.push(await startContestant(name, v.backends, peers, v.flask));
    // Warm-up: JIT, connection pools, the backends' own first requests.
    for (const r of running) await runLoad(r.port, v.clients, 1, v.mix);
    for (let run = 1; run <= s.runs; run++) {
      for (const r of running) {
        const mpx =
          r.name === 'multiplexer' || r.name === 'mpx-raw' ? (r as RunningMultiplexer) : undefined;
        const adminPort = mpx?.adminPort;
        const ipcBefore = adminPort ? await ipcMessages(adminPort) : 0;
        const primaryBefore = mpx ? cpuSeconds([mpx.primary]) : 0;
        const cpuBefore = cpuSeconds(r.pids());
        const slow =
          v.slow && startSlowClients(r.port, v.slow.count, v.slow.bytesPerSecond, v.slow.path);
        const load = await runLoad(r.port, v.clients, s.seconds, v.mix);
        const slowResult = await slow?.stop();
        const cpu = cpuSeconds(r.pids()) - cpuBefore;
        const primaryCpu = mpx ? cpuSeconds([mpx.primary]) - primaryBefore : 0;
        const ipc = adminPort ? (await ipcMessages(adminPort)) - ipcBefore : 0;
        const memory = memoryOf(r);
        if (memory) result.memory.push(memory);
        result.samples.push({
          ...load,
          contestant: r.name,
          run,
          cpuPerRequestUs: r.name === 'direct' ? 0 : (cpu / load.requests) * 1e6,
          ...(mpx && {
            primaryCpuPerRequestUs: (primaryCpu / load.requests) * 1e6,
            ipcPerRequest: ipc / load.requests,
          }),
          ...(slowResult && { slowAnswers: slowResult.answers }),
        });
        s.log(
          `${v.scenario} ${v.variant} ${r.name} run ${run}: ${load.rps.toFixed(0)} rps, ` +
            `p50 ${load.p50Ms.toFixed(2)} p99 ${load.p99Ms.toFixed(2)} max ${load.maxMs.toFixed(0)} ms, ` +
            `errors ${load.errors}` +
            (r.name === 'direct'
              ? ''
              : `, cpu ${((cpu / load.requests) * 1e6).toFixed(0)} µs/req`) +
            (mpx
              ? `, primary ${((primaryCpu / load.requests) * 1e6).toFixed(1)} µs/req, ` +
                `${(ipc / load.requests).toFixed(3)} messages/req`
              : '') +
            (slowResult
              ? `, slow clients read ${slowResult.answers} answers (${slowResult.errors} errors)`
              : ''),
        );
      }
    }
  } finally {
    for (const r of running) await r.stop();
    await peers.stop();
  }
  return result;
}

const ALL: readonly ContestantName[] = ['multiplexer', 'haproxy', 'nginx-rr', 'nginx-lc', 'direct'];
const PROXIES: readonly ContestantName[] = ['multiplexer', 'haproxy', 'nginx-rr', 'nginx-lc'];

/** The scenarios of one variant each. */
const SINGLE: Record<'blocking' | 'mixed' | 'trivial' | 'steady', Omit<Variant, 'scenario'>> = {
  // The steady state of held leases: as many clients as backends, so no request waits. Beside
  // HAProxy, the floors of a node proxy (bench/floor-proxy.mjs): what the design could reach.
  steady: {
    variant: '4 backends answering at once, 4 clients',
    backends: 4,
    clients: 4,
    mix: { '/': 1 },
    contestants: ['multiplexer', 'mpx-raw', 'haproxy', 'floor-node-http', 'floor-raw'],
  },
  blocking: {
    variant: '8 backends, ms=10, 64 clients',
    backends: 8,
    clients: 64,
    mix: { '/?ms=10': 1 },
    limitRps: 800,
    contestants: ALL,
  },
  mixed: {
    variant: '8 backends, 95% ms=5 + 5% ms=200, 32 clients',
    backends: 8,
    clients: 32,
    mix: { '/?ms=5': 95, '/?ms=200': 5 },
    contestants: ALL,
  },
  trivial: {
    variant: '4 backends answering at once, 32 clients',
    backends: 4,
    clients: 32,
    mix: { '/': 1 },
    contestants: [...ALL, 'mpx-raw'],
  },
};

/**
 * What the access log and the metrics cost: multiplexer as configured by default (both on) beside
 * itself with the access log off, and with both off, on the trivial and the blocking loads.
 */
export async function observability(s: Settings): Promise<VariantResult[]> {
  const contestants = ['multiplexer', 'mpx-no-access-log', 'mpx-no-observability'] as const;
  return [
    await measureVariant(
      {
        scenario: 'observability',
        ...SINGLE.trivial,
        variant: `trivial: ${SINGLE.trivial.variant}`,
        contestants,
      },
      s,
    ),
    await measureVariant(
      {
        scenario: 'observability',
        ...SINGLE.blocking,
        variant: `blocking: ${SINGLE.blocking.variant}`,
        contestants,
      },
      s,
    ),
  ];
}

/** How long one GET /metrics takes while 32 clients load 4 backends (2 front workers). */
export async function scrapeUnderLoad(s: Settings): Promise<number[]> {
  const adminPort = await freePort();
  const mpx = await startMultiplexer({ poolSize: 4, workers: 2, adminPort });
  const times: number[] = [];
  try {
    const load = runLoad(mpx.port, 32, s.seconds * s.runs, { '/': 1 });
    await sleep(500);
    for (let i = 0; i < 10 * s.runs; i++) {
      const started = performance.now();
      await adminGet(adminPort, '/metrics');
      times.push(performance.now() - started);
      await sleep(Math.max(0, (s.seconds * 1000) / 10 - (performance.now() - started)));
    }
    await load;
    s.log(`scrape under load: ${times.map((t) => t.toFixed(1)).join(' ')} ms`);
  } finally {
    await mpx.stop();
  }
  return times;
}

/**
 * The Flask example (examples/python-flask-gunicorn: each page hashes for ~10 ms, in one
 * process) on 5 backends behind multiplexer, against `gunicorn -w 5` alone, as people run it:
 * what multiplexer costs a real single-threaded app on the same 2 cores.
 */
export async function flask(s: Settings): Promise<VariantResult[]> {
  ensureFlask(s.log);
  return [
    await measureVariant(
      {
        scenario: 'flask',
        variant: 'Flask on gunicorn, 5 backends, 16 clients',
        backends: 5,
        clients: 16,
        mix: { '/': 1 },
        contestants: ['multiplexer', 'gunicorn'],
        flask: true,
      },
      s,
    ),
  ];
}

export async function single(scenario: keyof typeof SINGLE, s: Settings): Promise<VariantResult[]> {
  return [await measureVariant({ scenario, ...SINGLE[scenario] }, s)];
}

/**
 * Slow clients: 8 backends answering 256 KiB after 10 ms; 8 fast clients (wrk) alone, then beside
 * 32 clients that read at 256 KiB/s each. A proxy that holds the backend until the client has read
 * the answer gives the slow clients most of the pool.
 */
export async function slowClients(s: Settings): Promise<VariantResult[]> {
  const base = {
    scenario: 'slow-clients',
    backends: 8,
    clients: 8,
    mix: { '/?ms=10&kb=256': 1 },
    limitRps: 800,
    contestants: ['multiplexer', 'haproxy', 'nginx-lc'] as const,
  };
  return [
    await measureVariant({ ...base, variant: '8 fast clients alone' }, s),
    await measureVariant(
      {
        ...base,
        variant: '8 fast clients + 32 clients reading at 256 KiB/s',
        slow: { count: 32, bytesPerSecond: 256 * 1024, path: '/?ms=10&kb=256' },
      },
      s,
    ),
  ];
}

export const SCALE_STEPS = [1, 2, 4, 8, 16, 32, 64];

export async function scale(s: Settings): Promise<VariantResult[]> {
  const out: VariantResult[] = [];
  for (const n of SCALE_STEPS) {
    out.push(
      await measureVariant(
        {
          scenario: 'scale',
          variant: `N=${n}`,
          backends: n,
          clients: 4 * n,
          mix: { '/?ms=10': 1 },
          limitRps: n * 100,
          contestants: PROXIES,
        },
        s,
      ),
    );
  }
  return out;
}

/* ---------- burst: the pool grows under a sudden load and shrinks back ---------- */

interface Exchange {
  readonly sentMs: number;
  readonly doneMs: number;
  readonly port: number;
}

export interface BurstRun {
  /** From the jump to 8 clients until an overflow backend first answers. */
  readonly firstOverflowServedMs: number;
  /** From the jump until 8 distinct backends have answered. */
  readonly allEightServingMs: number;
  /** Latency of the requests sent in the first 500 ms after the jump. */
  readonly jumpP50Ms: number;
  readonly jumpMaxMs: number;
  /** The most backends /status showed during the load. */
  readonly backendsAtPeak: number;
  /** From the end of the load until the pool is back at pool_size. */
  readonly shrinkMs: number;
  readonly errors: number;
}

async function adminStatus(port: number): Promise<{ backends: { state: string }[] }> {
  return JSON.parse(await adminGet(port, '/status')) as { backends: { state: string }[] };
}

async function burstOnce(s: Settings): Promise<BurstRun> {
  const adminPort = await freePort();
  const mpx = await startMultiplexer({ poolSize: 2, overflow: 6, adminPort });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  try {
    return await burstAgainst(mpx, adminPort, agent, s);
  } finally {
    agent.destroy();
    await mpx.stop();
  }
}

async function burstAgainst(
  mpx: RunningMultiplexer,
  adminPort: number,
  agent: http.Agent,
  s: Settings,
): Promise<BurstRun> {
  const exchanges: Exchange[] = [];
  let errors = 0;
  const t0 = performance.now();
  const now = (): number => performance.now() - t0;
  const jumpMs = 1000;
  const stopAt = jumpMs + 3000;
  const client = async (startMs: number): Promise<void> => {
    await sleep(startMs);
    while (now() < stopAt) {
      const sentMs = now();
      const port = await new Promise<number>((resolve) => {
        const req = http.get(
          { port: mpx.port, host: '127.0.0.1', path: '/?ms=50', agent },
          (res) => {
            res.resume();
            res.on('end', () => resolve(Number(res.headers['x-backend-port'] ?? 0)));
          },
        );
        req.on('error', () => resolve(0));
      });
      if (port === 0) errors++;
      else exchanges.push({ sentMs, doneMs: now(), port });
    }
  };
  let peak = 0;
  const watcher = (async () => {
    while (now() < stopAt) {
      peak = Math.max(peak, (await adminStatus(adminPort)).backends.length);
      await sleep(20);
    }
  })();
  await Promise.all([
    ...Array.from({ length: 2 }, () => client(0)),
    ...Array.from({ length: 6 }, () => client(jumpMs)),
    watcher,
  ]);
  const endMs = now();
  await waitFor(
    async () => (await adminStatus(adminPort)).backends.length === 2,
    'the pool to shrink back to pool_size',
    30_000,
    10,
  );
  const shrinkMs = now() - endMs;

  const before = new Set(exchanges.filter((e) => e.doneMs < jumpMs).map((e) => e.port));
  const after = exchanges.filter((e) => e.doneMs >= jumpMs).sort((a, b) => a.doneMs - b.doneMs);
  const firstOverflow = after.find((e) => !before.has(e.port));
  const seen = new Set(before);
  let allEight = NaN;
  for (const e of after) {
    seen.add(e.port);
    if (seen.size >= 8) {
      allEight = e.doneMs - jumpMs;
      break;
    }
  }
  const jump = exchanges
    .filter((e) => e.sentMs >= jumpMs && e.sentMs < jumpMs + 500)
    .map((e) => e.doneMs - e.sentMs)
    .sort((a, b) => a - b);
  const run: BurstRun = {
    firstOverflowServedMs: firstOverflow ? firstOverflow.doneMs - jumpMs : NaN,
    allEightServingMs: allEight,
    jumpP50Ms: jump[Math.floor(jump.length / 2)] ?? NaN,
    jumpMaxMs: jump.at(-1) ?? NaN,
    backendsAtPeak: peak,
    shrinkMs,
    errors,
  };
  s.log(
    `burst: ${JSON.stringify(run, (_, v: unknown) => (typeof v === 'number' ? Math.round(v) : v))}`,
  );
  return run;
}

export async function burst(s: Settings): Promise<BurstRun[]> {
  const runs: BurstRun[] = [];
  for (let i = 0; i < s.runs; i++) runs.push(await burstOnce(s));
  return runs;
}

/* ---------- startup ---------- */

export interface StartupRun {
  readonly readyMs: number;
  readonly firstServedMs: number;
  /** One fixture alone: spawn until it answers, for scale. */
  readonly oneBackendMs: number;
}

export async function startup(s: Settings): Promise<StartupRun[]> {
  const runs: StartupRun[] = [];
  for (let i = 0; i < s.runs; i++) {
    const started = performance.now();
    const one = await FixtureSet.start(1);
    const oneBackendMs = performance.now() - started;
    await one.stop();
    const mpx = await startMultiplexer({ poolSize: 16 });
    await mpx.stop();
    const run = { readyMs: mpx.readyMs, firstServedMs: mpx.firstServedMs, oneBackendMs };
    s.log(
      `startup: pool 16 ready ${run.readyMs.toFixed(0)} ms, first served ${run.firstServedMs.toFixed(0)} ms, one backend alone ${oneBackendMs.toFixed(0)} ms`,
    );
    runs.push(run);
  }
  return runs;
}
