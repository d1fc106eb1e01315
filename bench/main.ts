/**
 * `npm run bench`: every scenario against every contestant, then docs/BENCHMARKS.md, the chart and
 * the raw JSON. Options: --runs N (default 3), --seconds S per run (default 5),
 * --only a,b (scenarios: blocking, mixed, scale, trivial, slow-clients, observability, burst, startup,
 * ipc; and soak, never run unless named); --report-only
 * writes docs/BENCHMARKS.md and the chart again from docs/benchmarks.json, measuring nothing.
 * `--only soak` runs the 10-minute soak (--soak-seconds N to change that) and adds it to the
 * results already in docs/benchmarks.json; a full run keeps the last soak result.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './contestants.js';
import { measureIpc, type IpcResult } from './ipc-roundtrip.js';
import { writeReport, type BenchResults } from './report.js';
import * as scenarios from './scenarios.js';
import { soak } from './soak.js';
import { ensureTools, machineInfo } from './system.js';

const SCENARIOS = [
  'blocking',
  'mixed',
  'scale',
  'trivial',
  'steady',
  'flask',
  'slow-clients',
  'observability',
  'burst',
  'startup',
  'ipc',
  'soak',
] as const;
type Scenario = (typeof SCENARIOS)[number];

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

function positiveInt(name: string, fallback: number): number {
  const value = Number(option(name, String(fallback)));
  if (!Number.isInteger(value) || value < 1) {
    console.error(`--${name} must be a whole number ≥ 1, got ${option(name, '')}`);
    process.exit(64);
  }
  return value;
}

const docs = join(ROOT, 'docs');
if (process.argv.includes('--report-only')) {
  writeReport(
    JSON.parse(readFileSync(join(docs, 'benchmarks.json'), 'utf8')) as BenchResults,
    docs,
  );
  process.exit(0);
}

const runs = positiveInt('runs', 3);
const seconds = positiveInt('seconds', 5);
const only = option('only', SCENARIOS.filter((s) => s !== 'soak').join(',')).split(',');
for (const name of only) {
  if (!SCENARIOS.includes(name as Scenario)) {
    console.error(`--only: unknown scenario "${name}"; expected some of ${SCENARIOS.join(', ')}`);
    process.exit(64);
  }
}
const wanted = (name: Scenario): boolean => only.includes(name);
const log = (line: string): void => console.log(`[bench] ${line}`);

const resultsFile = join(docs, 'benchmarks.json');
const previous = existsSync(resultsFile)
  ? (JSON.parse(readFileSync(resultsFile, 'utf8')) as BenchResults)
  : undefined;
if (only.length === 1 && only[0] === 'soak') {
  if (!previous) {
    console.error('--only soak adds to docs/benchmarks.json: run npm run bench first');
    process.exit(64);
  }
  previous.soak = await soak(positiveInt('soak-seconds', 600), log);
  writeFileSync(resultsFile, `${JSON.stringify(previous, null, 1)}\n`);
  writeReport(previous, docs);
  log('soak added to docs/benchmarks.json and docs/BENCHMARKS.md');
  process.exit(0);
}

ensureTools(log);
const started = Date.now();
const results: BenchResults = {
  date: new Date().toISOString(),
  command: [
    'npm run bench',
    ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : []),
  ].join(' '),
  runs,
  seconds,
  machine: machineInfo(),
  variants: [],
  burst: [],
  startup: [],
  ipc: [],
  ...(previous?.soak ? { soak: previous.soak } : {}),
};
const settings = { runs, seconds, log };
if (wanted('blocking')) results.variants.push(...(await scenarios.single('blocking', settings)));
if (wanted('mixed')) results.variants.push(...(await scenarios.single('mixed', settings)));
if (wanted('scale')) results.variants.push(...(await scenarios.scale(settings)));
if (wanted('trivial')) results.variants.push(...(await scenarios.single('trivial', settings)));
if (wanted('steady')) results.variants.push(...(await scenarios.single('steady', settings)));
if (wanted('flask')) results.variants.push(...(await scenarios.flask(settings)));
if (wanted('slow-clients')) results.variants.push(...(await scenarios.slowClients(settings)));
if (wanted('observability')) {
  results.variants.push(...(await scenarios.observability(settings)));
  results.scrapeMs = await scenarios.scrapeUnderLoad(settings);
}
if (wanted('burst')) results.burst = await scenarios.burst(settings);
if (wanted('startup')) results.startup = await scenarios.startup(settings);
if (wanted('soak')) results.soak = await soak(positiveInt('soak-seconds', 600), log);
if (wanted('ipc')) {
  const ipc: IpcResult[] = [];
  for (let run = 0; run < runs; run++) {
    for (const serialization of ['json', 'advanced'] as const) {
      for (const inflight of [1, 32]) {
        const r = await measureIpc(serialization, inflight, Math.min(seconds, 3));
        log(
          `ipc ${serialization} inflight ${inflight}: ${r.roundTripsPerSecond.toFixed(0)} round trips/s`,
        );
        ipc.push(r);
      }
    }
  }
  results.ipc = ipc;
}

// A run of some scenarios keeps the others' last results, so the report stays whole (the
// command line, in the report, says which were measured now).
if (previous && process.argv.includes('--only')) {
  results.variants = [
    ...previous.variants.filter((v) => !only.includes(v.scenario)),
    ...results.variants,
  ];
  if (!wanted('burst')) results.burst = previous.burst;
  if (!wanted('startup')) results.startup = previous.startup;
  if (!wanted('ipc')) results.ipc = previous.ipc;
  if (!wanted('observability') && previous.scrapeMs) results.scrapeMs = previous.scrapeMs;
}
mkdirSync(docs, { recursive: true });
writeFileSync(resultsFile, `${JSON.stringify(results, null, 1)}\n`);
writeReport(results, docs);
log(
  `done in ${Math.round((Date.now() - started) / 1000)} s: docs/BENCHMARKS.md, docs/benchmarks.svg, docs/benchmarks.json`,
);
process.exit(0);
