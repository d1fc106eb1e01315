/**
 * Writes docs/BENCHMARKS.md (machine, command, settings, tables, targets) and docs/benchmarks.svg
 * (the scale and mixed scenarios) from one invocation's results; the hand-written analysis in
 * bench/ANALYSIS.md is appended as it is.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SoakResult } from './soak.js';
import type { ContestantName } from './contestants.js';
import { ROOT } from './contestants.js';
import type { IpcResult } from './ipc-roundtrip.js';
import type { BurstRun, LoadSample, StartupRun, VariantResult } from './scenarios.js';
import { SCALE_STEPS } from './scenarios.js';
import { fmt, fmtSpread, spread, type Spread } from './stats.js';
import type { MachineInfo } from './system.js';

export interface BenchResults {
  date: string;
  command: string;
  runs: number;
  seconds: number;
  machine: MachineInfo;
  variants: VariantResult[];
  burst: BurstRun[];
  startup: StartupRun[];
  ipc: IpcResult[];
  /** Milliseconds per GET /metrics under load (observability scenario). */
  scrapeMs?: number[];
  /** The opt-in soak, kept from its own run (npm run bench -- --only soak). */
  soak?: SoakResult;
}

const ORDER: ContestantName[] = [
  'multiplexer',
  'haproxy',
  'nginx-rr',
  'nginx-lc',
  'direct',
  'mpx-no-access-log',
  'mpx-no-observability',
  'floor-node-http',
  'floor-raw',
  'mpx-raw',
  'gunicorn',
];
const LABEL: Record<ContestantName, string> = {
  multiplexer: 'multiplexer',
  haproxy: 'HAProxy (maxconn 1, queue)',
  'nginx-rr': 'nginx round-robin',
  'nginx-lc': 'nginx least_conn',
  direct: 'direct (one backend)',
  'mpx-no-access-log': 'multiplexer, access_log off',
  'mpx-no-observability': 'multiplexer, access_log and metrics off',
  'floor-node-http': 'floor: minimal node:http proxy (Agent)',
  'floor-raw': 'floor: node:http server, raw backend path (llhttp)',
  'mpx-raw': 'multiplexer, raw backend path (MULTIPLEXER_RAW_PATH=1)',
  gunicorn: 'gunicorn -w 5 alone',
};

function of(v: VariantResult, who: ContestantName, pick: (s: LoadSample) => number): Spread {
  return spread(v.samples.filter((s) => s.contestant === who).map(pick));
}

function contestantsIn(v: VariantResult): ContestantName[] {
  return ORDER.filter((c) => v.samples.some((s) => s.contestant === c));
}

function table(head: string[], rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

function variant(r: BenchResults, scenario: string): VariantResult[] {
  return r.variants.filter((v) => v.scenario === scenario);
}

/** A ratio per run pair (same run number), then its spread: never a ratio of medians. */
function pairedRatio(
  v: VariantResult,
  a: ContestantName,
  b: ContestantName,
  pick: (s: LoadSample) => number,
): Spread {
  const ratios: number[] = [];
  for (const sa of v.samples.filter((s) => s.contestant === a)) {
    const sb = v.samples.find((s) => s.contestant === b && s.run === sa.run);
    if (sb && pick(sb) !== 0) ratios.push(pick(sa) / pick(sb));
  }
  return spread(ratios);
}

/** p50, p99 and max latency of `c`'s runs, p50 with `p50Digits` decimals. */
function latencyCells(v: VariantResult, c: ContestantName, p50Digits: number): string[] {
  return [
    fmtSpread(
      of(v, c, (s) => s.p50Ms),
      p50Digits,
    ),
    fmtSpread(
      of(v, c, (s) => s.p99Ms),
      1,
    ),
    fmtSpread(
      of(v, c, (s) => s.maxMs),
      0,
    ),
  ];
}

function loadTable(v: VariantResult, columns: ('rps' | 'eff' | 'lat' | 'cpu')[]): string {
  const head = ['contestant'];
  if (columns.includes('rps')) head.push('requests/s');
  if (columns.includes('eff')) head.push(`efficiency (rps / ${v.limitRps})`);
  if (columns.includes('lat')) head.push('p50 ms', 'p99 ms', 'max ms');
  if (columns.includes('cpu')) head.push('proxy CPU µs/request');
  head.push('errors');
  const rows = contestantsIn(v).map((c) => {
    const row = [LABEL[c]];
    if (columns.includes('rps')) row.push(fmtSpread(of(v, c, (s) => s.rps)));
    if (columns.includes('eff'))
      row.push(
        fmtSpread(
          of(v, c, (s) => s.rps / v.limitRps!),
          3,
        ),
      );
    if (columns.includes('lat')) row.push(...latencyCells(v, c, 2));
    if (columns.includes('cpu')) {
      row.push(
        c === 'direct'
          ? '–'
          : fmtSpread(
              of(v, c, (s) => s.cpuPerRequestUs),
              0,
            ),
      );
    }
    row.push(String(v.samples.filter((s) => s.contestant === c).reduce((a, s) => a + s.errors, 0)));
    return row;
  });
  return table(head, rows);
}

interface Target {
  what: string;
  measured: string;
  met: boolean | undefined;
}

function targets(r: BenchResults): Target[] {
  const out: Target[] = [];
  const [blocking] = variant(r, 'blocking');
  if (blocking) {
    const eff = of(blocking, 'multiplexer', (s) => s.rps / 800);
    const vsHa = pairedRatio(blocking, 'multiplexer', 'haproxy', (s) => s.rps);
    out.push({
      what: 'blocking: efficiency ≥ 0.95',
      measured: fmtSpread(eff, 3),
      met: eff.median >= 0.95,
    });
    out.push({
      what: "blocking: efficiency ≥ HAProxy's (multiplexer rps / HAProxy rps ≥ 1)",
      measured: fmtSpread(vsHa, 3),
      met: vsHa.median >= 1,
    });
  }
  const [mixed] = variant(r, 'mixed');
  if (mixed) {
    const p99 = (s: LoadSample): number => s.p99Ms;
    const vsHa = pairedRatio(mixed, 'multiplexer', 'haproxy', p99);
    const vsRr = pairedRatio(mixed, 'multiplexer', 'nginx-rr', p99);
    out.push({
      what: 'mixed: p99 ≤ HAProxy p99 (ratio ≤ 1)',
      measured: fmtSpread(vsHa, 2),
      met: vsHa.median <= 1,
    });
    out.push({
      what: 'mixed: p99 ≤ ½ nginx round-robin p99 (ratio ≤ 0.5)',
      measured: fmtSpread(vsRr, 2),
      met: vsRr.median <= 0.5,
    });
  }
  const scale = variant(r, 'scale');
  if (scale.length) {
    const effs = scale.map((v) => ({
      n: v.backends,
      eff: of(v, 'multiplexer', (s) => s.rps / v.limitRps!),
    }));
    const upTo32 = effs.filter((e) => e.n <= 32);
    const worst = upTo32.reduce((a, b) => (b.eff.median < a.eff.median ? b : a));
    out.push({
      what: 'scale: efficiency ≥ 0.93 at every N = 1…32',
      measured: `lowest median ${fmt(worst.eff.median, 3)} at N=${worst.n}`,
      met: upTo32.every((e) => e.eff.median >= 0.93),
    });
    const n64 = scale.find((v) => v.backends === 64);
    if (n64) {
      const vsHa = pairedRatio(n64, 'multiplexer', 'haproxy', (s) => s.rps);
      out.push({
        what: "scale: at N = 64, efficiency ≥ HAProxy's (rps ratio ≥ 1)",
        measured: fmtSpread(vsHa, 3),
        met: vsHa.median >= 1,
      });
    }
  }
  const [trivial] = variant(r, 'trivial');
  if (trivial) {
    const cpu = pairedRatio(trivial, 'multiplexer', 'haproxy', (s) => s.cpuPerRequestUs);
    out.push({
      what: 'trivial: proxy CPU per request ≤ 3× HAProxy',
      measured: `${fmtSpread(cpu, 1)}×`,
      met: cpu.median <= 3,
    });
    const primary = of(trivial, 'multiplexer', (s) => s.primaryCpuPerRequestUs ?? NaN);
    if (Number.isFinite(primary.median)) {
      out.push({
        what: 'trivial (1 worker, 32 clients on 4 backends): primary CPU per request ≤ 2 µs',
        measured: `${fmtSpread(primary, 1)} µs`,
        met: primary.median <= 2,
      });
      const ipc = of(trivial, 'multiplexer', (s) => s.ipcPerRequest ?? NaN);
      out.push({
        what: 'trivial (pool saturated: 28 requests always wait): cluster messages per request ≤ 0.05',
        measured: fmtSpread(ipc, 3),
        met: ipc.median <= 0.05,
      });
    }
    const added = spread(
      trivial.samples
        .filter((s) => s.contestant === 'multiplexer')
        .map(
          (s) =>
            s.p50Ms -
            (trivial.samples.find((d) => d.contestant === 'direct' && d.run === s.run)?.p50Ms ??
              NaN),
        ),
    );
    out.push({
      what: 'trivial: p50 added over direct ≤ 1 ms',
      measured: `${fmtSpread(added, 2)} ms`,
      met: added.median <= 1,
    });
  }
  const [steady] = variant(r, 'steady');
  if (steady) {
    const ipc = of(steady, 'multiplexer', (s) => s.ipcPerRequest ?? NaN);
    out.push({
      what: 'steady (1 worker, 4 clients on 4 backends): cluster messages per request ≤ 0.05',
      measured: fmtSpread(ipc, 4),
      met: ipc.median <= 0.05,
    });
    const primary = of(steady, 'multiplexer', (s) => s.primaryCpuPerRequestUs ?? NaN);
    out.push({
      what: 'steady: primary CPU per request ≤ 2 µs',
      measured: `${fmtSpread(primary, 2)} µs`,
      met: primary.median <= 2,
    });
    const cpu = pairedRatio(steady, 'multiplexer', 'haproxy', (s) => s.cpuPerRequestUs);
    out.push({
      what: 'steady: proxy CPU per request ≤ 3× HAProxy (no IPC on this load)',
      measured: `${fmtSpread(cpu, 1)}×`,
      met: cpu.median <= 3,
    });
    for (const floor of ['floor-node-http', 'floor-raw'] as const) {
      if (!steady.samples.some((s) => s.contestant === floor)) continue;
      const vsHa = pairedRatio(steady, floor, 'haproxy', (s) => s.cpuPerRequestUs);
      const mpx = pairedRatio(steady, 'multiplexer', floor, (s) => s.cpuPerRequestUs);
      out.push({
        what: `steady: the floor "${LABEL[floor]}", CPU per request against HAProxy; multiplexer against it`,
        measured: `${fmtSpread(vsHa, 1)}×; multiplexer ${fmtSpread(mpx, 2)}×`,
        met: undefined,
      });
    }
  }
  const [flask] = variant(r, 'flask');
  if (flask) {
    const ratio = pairedRatio(flask, 'multiplexer', 'gunicorn', (s) => s.rps);
    out.push({
      what: 'Flask on gunicorn, 5 backends: throughput ≥ 0.98× `gunicorn -w 5` alone',
      measured: `${fmtSpread(ratio, 3)}×`,
      met: ratio.median >= 0.98,
    });
  }
  const [alone, beside] = variant(r, 'slow-clients');
  if (alone && beside) {
    const p99Alone = of(alone, 'multiplexer', (s) => s.p99Ms);
    const p99Beside = of(beside, 'multiplexer', (s) => s.p99Ms);
    const ratio = p99Beside.median / p99Alone.median;
    out.push({
      what: "slow-clients: fast clients' p99 beside 32 slow ones ≤ 2× their p99 alone",
      measured: `${fmt(p99Beside.median, 1)} ms vs ${fmt(p99Alone.median, 1)} ms (${fmt(ratio, 2)}×)`,
      met: ratio <= 2,
    });
    for (const other of (['nginx-rr', 'nginx-lc', 'haproxy'] as const).filter((c) =>
      contestantsIn(beside).includes(c),
    )) {
      const vs = pairedRatio(beside, 'multiplexer', other, (s) => s.p99Ms);
      out.push({
        what: `slow-clients: fast clients' p99 beside 32 slow ones ≤ ${LABEL[other]}'s (ratio ≤ 1)`,
        measured: fmtSpread(vs, 2),
        met: vs.median <= 1,
      });
    }
    const vsNginx = pairedRatio(beside, 'multiplexer', 'nginx-lc', (s) => s.rps);
    out.push({
      what: "slow-clients: fast clients' throughput ≥ nginx least_conn's (ratio ≥ 1)",
      measured: fmtSpread(vsNginx, 2),
      met: vsNginx.median >= 1,
    });
  }
  if (r.burst.length) {
    const alone = spread(r.startup.map((x) => x.oneBackendMs));
    // The overflow backend's first answer includes its request's own 50 ms (ms=50).
    const first = spread(r.burst.map((x) => x.firstOverflowServedMs - 50));
    out.push({
      what: "burst: jump → first answer from an overflow backend (less the request's 50 ms) ≤ one backend's own start + 20 ms",
      measured: `${fmtSpread(first, 0)} ms vs ${Number.isFinite(alone.median) ? `${fmt(alone.median)} + 20` : '(startup not run)'} ms`,
      met: Number.isFinite(alone.median) ? first.median <= alone.median + 20 : undefined,
    });
  }
  const memory = r.variants.flatMap((v) => v.memory);
  if (memory.length) {
    const primary = Math.max(...memory.map((m) => m.primaryMB));
    const worker = Math.max(...memory.flatMap((m) => m.workersMB));
    const over = r.variants
      .filter((v) => v.memory.some((m) => m.primaryMB > 80 || m.workersMB.some((w) => w > 80)))
      .map((v) => `${v.scenario} ${v.variant}`);
    // What of it is mapped files (the node binary's pages, shared by every node process), and
    // so the process's own memory: measured since this round, absent from older results.
    const files = memory.flatMap((m) => [m.primaryFileMB ?? NaN, ...(m.workersFileMB ?? [])]);
    const shared = files.some(Number.isFinite) ? spread(files.filter(Number.isFinite)) : undefined;
    const own = (mb: number, file: number | undefined): number => mb - (file ?? NaN);
    const highest = (values: number[]): number => Math.max(...values.filter(Number.isFinite));
    const ownPrimary = highest(memory.map((m) => own(m.primaryMB, m.primaryFileMB)));
    const ownWorker = highest(
      memory.flatMap((m) => m.workersMB.map((w, i) => own(w, m.workersFileMB?.[i]))),
    );
    out.push({
      what: 'memory: primary and each front worker ≤ 80 MB RSS after every scenario',
      measured:
        `highest seen: primary ${fmt(primary)} MB, worker ${fmt(worker)} MB` +
        (over.length ? `; over 80 after: ${over.join('; ')}` : '') +
        (shared
          ? `. Of each process's RSS, ${fmtSpread(shared)} MB are mapped files (the node binary, the same pages in every node process); the rest, its own: at most primary ${fmt(ownPrimary)} MB, worker ${fmt(ownWorker)} MB`
          : ''),
      met: primary <= 80 && worker <= 80,
    });
  }
  if (r.soak) {
    const { samples, p99Ms, maxMs } = r.soak;
    const growth = (pick: (x: SoakResult['samples'][number]) => number): number => {
      const values = samples.map(pick);
      const first = values[0] ?? NaN;
      return (Math.max(...values) - Math.min(...values)) / first;
    };
    const flat = Math.max(
      growth((x) => x.primaryMB),
      growth((x) => x.workerMB),
    );
    out.push({
      what: `soak (${r.soak.seconds} s at half capacity): RSS flat within 10%`,
      measured: `largest spread ${fmt(flat * 100, 1)}% (primary ${fmt(Math.min(...samples.map((x) => x.primaryMB)))}–${fmt(Math.max(...samples.map((x) => x.primaryMB)))} MB, worker ${fmt(Math.min(...samples.map((x) => x.workerMB)))}–${fmt(Math.max(...samples.map((x) => x.workerMB)))} MB)`,
      met: flat <= 0.1,
    });
    out.push({
      what: 'soak: no request over 2× its p99',
      measured: `max ${fmt(maxMs, 1)} ms, p99 ${fmt(p99Ms, 1)} ms (${fmt(maxMs / p99Ms, 2)}×)`,
      met: maxMs <= 2 * p99Ms,
    });
  } else {
    out.push({
      what: 'soak: 10 minutes at half capacity, RSS flat within 10%, no request over 2× p99',
      measured: 'not run (npm run bench -- --only soak)',
      met: undefined,
    });
  }
  return out;
}

function chart(r: BenchResults): string {
  const W = 960;
  const H = 400;
  const colors: Record<ContestantName, string> = {
    multiplexer: '#d62728',
    haproxy: '#1f77b4',
    'nginx-rr': '#2ca02c',
    'nginx-lc': '#9467bd',
    direct: '#7f7f7f',
    'mpx-no-access-log': '#ff9896',
    'mpx-no-observability': '#ffbb78',
    'floor-node-http': '#c7c7c7',
    'floor-raw': '#7f7f7f',
    'mpx-raw': '#9467bd',
    gunicorn: '#8c564b',
  };
  const parts: string[] = [];
  const text = (x: number, y: number, s: string, extra = ''): void => {
    const size = extra.includes('font-size') ? '' : 'font-size="12" ';
    parts.push(`<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${size}${extra}>${s}</text>`);
  };
  // Left: scale efficiency by N.
  const scale = variant(r, 'scale');
  const L = { x: 60, y: 40, w: 380, h: 300 };
  parts.push(
    `<rect x="${L.x}" y="${L.y}" width="${L.w}" height="${L.h}" fill="none" stroke="#999"/>`,
  );
  text(
    L.x,
    25,
    'scale: efficiency (rps / (N × 100)) by backends N, ms=10, 4N clients',
    'font-weight="bold"',
  );
  const effMin = 0;
  const yOf = (e: number): number =>
    L.y + L.h - ((Math.min(e, 1.05) - effMin) / (1.05 - effMin)) * L.h;
  const xOf = (i: number): number => L.x + 20 + (i / (SCALE_STEPS.length - 1)) * (L.w - 40);
  for (const e of [0, 0.25, 0.5, 0.75, 0.95, 1]) {
    parts.push(`<line x1="${L.x}" x2="${L.x + L.w}" y1="${yOf(e)}" y2="${yOf(e)}" stroke="#eee"/>`);
    text(L.x - 35, yOf(e) + 4, e.toFixed(2));
  }
  SCALE_STEPS.forEach((n, i) => text(xOf(i) - 6, L.y + L.h + 16, String(n)));
  const scaleWho = ORDER.filter((c) =>
    scale.some((v) => v.samples.some((s) => s.contestant === c)),
  );
  scaleWho.forEach((c, k) => {
    const points = SCALE_STEPS.map((n, i) => {
      const v = scale.find((x) => x.backends === n);
      return v
        ? `${xOf(i).toFixed(1)},${yOf(of(v, c, (s) => s.rps / v.limitRps!).median).toFixed(1)}`
        : '';
    }).filter(Boolean);
    parts.push(
      `<polyline fill="none" stroke="${colors[c]}" stroke-width="2" points="${points.join(' ')}"/>`,
    );
    parts.push(
      `<rect x="${L.x + 10}" y="${L.y + L.h - 80 + k * 16}" width="10" height="10" fill="${colors[c]}"/>`,
    );
    text(L.x + 25, L.y + L.h - 71 + k * 16, LABEL[c]);
  });
  // Right: mixed latency, log scale.
  const [mixed] = variant(r, 'mixed');
  const R = { x: 540, y: 40, w: 400, h: 300 };
  parts.push(
    `<rect x="${R.x}" y="${R.y}" width="${R.w}" height="${R.h}" fill="none" stroke="#999"/>`,
  );
  text(R.x, 25, 'mixed: latency ms (log scale), 95% ms=5 + 5% ms=200', 'font-weight="bold"');
  if (mixed) {
    const lo = Math.log10(1);
    const hi = Math.log10(5000);
    const yl = (ms: number): number =>
      R.y + R.h - ((Math.log10(Math.max(ms, 1)) - lo) / (hi - lo)) * R.h;
    for (const ms of [1, 10, 100, 1000]) {
      parts.push(
        `<line x1="${R.x}" x2="${R.x + R.w}" y1="${yl(ms)}" y2="${yl(ms)}" stroke="#eee"/>`,
      );
      text(R.x - 35, yl(ms) + 4, String(ms));
    }
    const who = contestantsIn(mixed);
    const group = R.w / who.length;
    who.forEach((c, i) => {
      const stats: [string, number][] = [
        ['p50', of(mixed, c, (s) => s.p50Ms).median],
        ['p99', of(mixed, c, (s) => s.p99Ms).median],
        ['max', of(mixed, c, (s) => s.maxMs).median],
      ];
      stats.forEach(([name, ms], j) => {
        const x = R.x + i * group + 8 + j * ((group - 16) / 3);
        const y = yl(ms);
        const w = (group - 16) / 3 - 3;
        const opacity = [1, 0.7, 0.4][j];
        parts.push(
          `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${w.toFixed(1)}" height="${(R.y + R.h - y).toFixed(1)}" fill="${colors[c]}" fill-opacity="${opacity}"/>`,
        );
        text(x, y - 3, fmt(ms, 0), 'font-size="9"');
        text(x + 2, R.y + R.h + 14, name, 'font-size="9"');
      });
      text(R.x + i * group + 6, R.y + R.h + 30, c, 'font-size="11"');
    });
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
${parts.join('\n')}
</svg>
`;
}

/**
 * Backend utilisation: the share of the backends' time spent on answers (10 ms each), fast and slow
 * clients' together, over the run.
 */
function slowClientsSection(v: VariantResult): string[] {
  const busyMs = 10;
  const rows = contestantsIn(v).map((c) => {
    const runs = v.samples.filter((s) => s.contestant === c);
    const util = spread(
      runs.map(
        (s) => ((s.requests + (s.slowAnswers ?? 0)) * busyMs) / (v.backends * s.seconds * 1000),
      ),
    );
    return [
      LABEL[c],
      fmtSpread(of(v, c, (s) => s.rps)),
      ...latencyCells(v, c, 1),
      v.slow
        ? fmtSpread(
            of(v, c, (s) => (s.slowAnswers ?? 0) / s.seconds),
            1,
          )
        : '–',
      fmtSpread(util, 2),
      String(runs.reduce((a, s) => a + s.errors, 0)),
    ];
  });
  return [
    `## slow-clients: 8 backends answering 256 KiB after 10 ms; ${v.variant}`,
    '',
    table(
      [
        'contestant',
        'fast clients: requests/s',
        'p50 ms',
        'p99 ms',
        'max ms',
        'slow clients: answers/s',
        'backend utilisation',
        'errors',
      ],
      rows,
    ),
    '',
  ];
}

export function writeReport(r: BenchResults, docs: string): void {
  const m = r.machine;
  const out: string[] = [];
  out.push(
    '# Benchmarks',
    '',
    `Generated by \`${r.command}\` on ${r.date.slice(0, 10)}. Every figure is the median of ${r.runs} runs ` +
      `of ${r.seconds} s each, with (min–max); ratios are taken run by run within this invocation, ` +
      'then their median. Raw results: [benchmarks.json](benchmarks.json).',
    '',
    `Machine: ${m.cores} × ${m.cpus}, ${m.memoryGiB} GiB, Linux ${m.kernel}. Node ${m.node}. ` +
      `${m.haproxy}. ${m.nginx}. ${m.wrk}.`,
    '',
    'Settings: every proxy runs one worker process (HAProxy `nbthread 1`, nginx `worker_processes 1`, ' +
      'multiplexer `workers: 1` plus its primary). HAProxy: `balance roundrobin`, `server … maxconn 1`, ' +
      '`timeout queue 30s`, `http-reuse safe`. nginx: `proxy_http_version 1.1` with `keepalive 64` to the ' +
      'upstream, round-robin or `least_conn`. The backends are bench/fixture.mjs, single-threaded. ' +
      'Load: wrk, one thread, each connection sending its next request when the last is answered.',
    '',
    '![scale and mixed](benchmarks.svg)',
    '',
    '## Targets',
    '',
    table(
      ['target', 'measured', 'met'],
      targets(r).map((t) => [
        t.what,
        t.measured,
        t.met === undefined ? '–' : t.met ? 'yes' : '**no**',
      ]),
    ),
    '',
  );
  for (const v of variant(r, 'blocking'))
    out.push(`## blocking: ${v.variant}`, '', loadTable(v, ['rps', 'eff', 'lat']), '');
  for (const v of variant(r, 'mixed'))
    out.push(`## mixed: ${v.variant}`, '', loadTable(v, ['lat', 'rps']), '');
  const scale = variant(r, 'scale');
  if (scale.length) {
    const who = ORDER.filter((c) => scale.some((v) => v.samples.some((s) => s.contestant === c)));
    out.push(
      '## scale: ms=10, N backends, 4N clients; efficiency = rps / (N × 100)',
      '',
      table(
        ['N', ...who.map((c) => LABEL[c])],
        scale.map((v) => [
          String(v.backends),
          ...who.map((c) =>
            fmtSpread(
              of(v, c, (s) => s.rps / v.limitRps!),
              3,
            ),
          ),
        ]),
      ),
      '',
    );
  }
  for (const v of variant(r, 'trivial'))
    out.push(`## trivial: ${v.variant}`, '', loadTable(v, ['rps', 'lat', 'cpu']), '');
  for (const v of variant(r, 'steady')) {
    out.push(
      `## steady: ${v.variant}`,
      '',
      'As many clients as backends: no request waits, so a worker serves every request on the ' +
        'backends it holds (held leases), with no message to the primary.',
      '',
      loadTable(v, ['rps', 'lat', 'cpu']),
      '',
    );
  }
  for (const v of variant(r, 'flask')) {
    out.push(
      `## flask: ${v.variant}`,
      '',
      'examples/python-flask-gunicorn (each page hashes for about 10 ms): five gunicorn processes ' +
        'of one sync worker behind multiplexer (1 front worker), against `gunicorn -w 5` on one ' +
        'port, on the same 2 cores. gunicorn closes the connection after each answer, so ' +
        'multiplexer opens one per request to its backends.',
      '',
      loadTable(v, ['rps', 'lat', 'cpu']),
      '',
    );
  }
  for (const v of variant(r, 'slow-clients')) out.push(...slowClientsSection(v));
  const observed = variant(r, 'observability');
  if (observed.length || r.scrapeMs?.length) {
    out.push(
      '## observability: the cost of the access log and of the metrics',
      '',
      'multiplexer as configured by default (access log and metrics on) beside itself with the ' +
        'access log off, and with both off (`metrics: false`); the access log is written to a file, ' +
        'as in production. Ratios run by run against both off.',
      '',
    );
    for (const v of observed) {
      const rows = (['multiplexer', 'mpx-no-access-log'] as const).map((c) => [
        LABEL[c],
        fmtSpread(
          pairedRatio(v, c, 'mpx-no-observability', (s) => s.rps),
          3,
        ),
        fmtSpread(
          pairedRatio(v, c, 'mpx-no-observability', (s) => s.cpuPerRequestUs),
          3,
        ),
      ]);
      out.push(
        `### ${v.variant}`,
        '',
        loadTable(v, ['rps', 'lat', 'cpu']),
        '',
        table(['against both off', 'throughput ratio', 'CPU per request ratio'], rows),
        '',
      );
    }
    if (r.scrapeMs?.length) {
      out.push(
        `GET /metrics while 32 clients load 4 backends through 2 front workers: median ${fmtSpread(spread(r.scrapeMs), 1)} ms over ${r.scrapeMs.length} scrapes.`,
        '',
      );
    }
  }
  if (r.burst.length) {
    const b = (pick: (x: BurstRun) => number, d = 0): string =>
      fmtSpread(spread(r.burst.map(pick)), d);
    out.push(
      '## burst: pool_size 2, pool_max_overflow 6, 2 → 8 clients of ms=50 (multiplexer only)',
      '',
      table(
        ['measure', 'value'],
        [
          ['jump → first answer from an overflow backend, ms', b((x) => x.firstOverflowServedMs)],
          ['jump → 8 distinct backends have answered, ms', b((x) => x.allEightServingMs)],
          [
            'latency of requests sent in the first 500 ms after the jump, p50 ms',
            b((x) => x.jumpP50Ms),
          ],
          ['… max ms', b((x) => x.jumpMaxMs)],
          ['backends at the peak', b((x) => x.backendsAtPeak)],
          ['end of load → pool back at 2 backends, ms', b((x) => x.shrinkMs)],
          ['failed requests', b((x) => x.errors)],
        ],
      ),
      '',
    );
  }
  if (r.startup.length) {
    const s = (pick: (x: StartupRun) => number): string => fmtSpread(spread(r.startup.map(pick)));
    out.push(
      '## startup: pool_size 16, at most service_start_concurrency (the CPUs) starting at once',
      '',
      table(
        ['measure', 'ms'],
        [
          [
            '`multiplexer start` → ready (all 16 backends up, workers listening)',
            s((x) => x.readyMs),
          ],
          ['`multiplexer start` → first request served', s((x) => x.firstServedMs)],
          ['one fixture alone: spawn → answering', s((x) => x.oneBackendMs)],
        ],
      ),
      '',
    );
  }
  if (r.soak) {
    const k = r.soak;
    const every = Math.max(1, Math.ceil(k.samples.length / 8));
    out.push(
      `## soak: 8 backends, ms=10, paced clients at ${k.targetRps} requests/s (half of ${k.capacityRps}) for ${k.seconds} s`,
      '',
      `Run on ${k.date.slice(0, 10)} by \`npm run bench -- --only soak\`. ${k.requests} requests${k.seconds > 60 ? ' after the first minute' : ''}, ` +
        `${k.errors} errors${
          k.errors
            ? ` (${Object.entries(k.failures ?? {})
                .map(([what, n]) => `${what}: ${n}`)
                .join(', ')})`
            : ''
        }; latency p50 ${fmt(k.p50Ms, 1)} ms, p99 ${fmt(k.p99Ms, 1)} ms, max ${fmt(k.maxMs, 1)} ms. ` +
        `Slowest requests (sent at s: ms): ${(k.slowest ?? []).map((x) => `${x.atS}: ${fmt(x.ms, 1)}`).join(', ')}.` +
        ((k.problems ?? []).length
          ? ` multiplexer logged: ${(k.problems ?? []).map((l) => `\`${l.slice(0, 300)}\``).join('; ')}.`
          : ''),
      '',
      table(
        ['at s', 'primary RSS MB', 'front worker RSS MB'],
        k.samples
          .filter((_, i) => i % every === 0 || i === k.samples.length - 1)
          .map((x) => [String(x.atS), fmt(x.primaryMB, 1), fmt(x.workerMB, 1)]),
      ),
      '',
    );
  }
  if (r.ipc.length) {
    const rows: string[][] = [];
    for (const serialization of ['json', 'advanced'] as const) {
      for (const inflight of [1, 32]) {
        const sel = r.ipc.filter(
          (x) => x.serialization === serialization && x.inflight === inflight,
        );
        rows.push([
          serialization,
          String(inflight),
          fmtSpread(spread(sel.map((x) => x.roundTripsPerSecond))),
        ]);
      }
    }
    out.push(
      '## IPC: checkout → granted → checkin over cluster IPC',
      '',
      table(['serialization', 'in flight', 'round trips/s'], rows),
      '',
    );
  }
  const memory = r.variants.flatMap((v) => v.memory);
  if (memory.length) {
    out.push(
      "## memory: RSS of multiplexer's processes after each run",
      '',
      table(
        ['process', 'RSS MB', 'of which mapped files (shared) MB'],
        [
          [
            'primary',
            fmtSpread(spread(memory.map((x) => x.primaryMB))),
            fmtOptional(memory.map((x) => x.primaryFileMB)),
          ],
          [
            'front worker',
            fmtSpread(spread(memory.flatMap((x) => x.workersMB))),
            fmtOptional(memory.flatMap((x) => x.workersFileMB ?? [undefined])),
          ],
        ],
      ),
      '',
    );
  }
  const analysis = join(ROOT, 'bench/ANALYSIS.md');
  if (existsSync(analysis)) out.push(readFileSync(analysis, 'utf8'));
  writeFileSync(join(docs, 'BENCHMARKS.md'), `${out.join('\n').trimEnd()}\n`);
  writeFileSync(join(docs, 'benchmarks.svg'), chart(r));
}

/** The spread of the values measured, or a dash when none were (results older than the field). */
function fmtOptional(values: readonly (number | undefined)[]): string {
  const measured = values.filter((v): v is number => v !== undefined && Number.isFinite(v));
  return measured.length ? fmtSpread(spread(measured)) : '–';
}
