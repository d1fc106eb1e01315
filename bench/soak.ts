import http from 'node:http';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { startMultiplexer } from './contestants.js';
import { rssMB } from './system.js';

/**
 * The opt-in soak (`npm run bench -- --only soak`): multiplexer alone, 8 backends answering after
 * 10 ms (800 requests/s at most), at half of that for 10 minutes, by paced clients (each sends its
 * next request on a fixed beat, not as soon as it has an answer). What it checks: memory that
 * stays flat (no leak) and no request far slower than the rest (no stall, no GC pause that
 * matters).
 */
export interface SoakResult {
  readonly date: string;
  readonly seconds: number;
  readonly targetRps: number;
  readonly capacityRps: number;
  readonly requests: number;
  readonly errors: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** The slowest requests: when each was sent (s from the start) and how long it took. */
  readonly slowest: readonly { readonly atS: number; readonly ms: number }[];
  /** What each failed request got (a status, or the error code), with a count. */
  readonly failures: Readonly<Record<string, number>>;
  /** multiplexer's own log lines about failures (level warn and above), at most 10. */
  readonly problems: readonly string[];
  /** RSS every 10 s, from the first minute's end (after warm-up). */
  readonly samples: readonly {
    readonly atS: number;
    readonly primaryMB: number;
    readonly workerMB: number;
  }[];
}

const BACKENDS = 8;
const MS = 10;
const CLIENTS = 16;
const WARMUP_S = 60;
const SAMPLE_EVERY_S = 10;

export async function soak(seconds: number, log: (line: string) => void): Promise<SoakResult> {
  const capacityRps = (BACKENDS * 1000) / MS;
  const targetRps = capacityRps / 2;
  const beatMs = (CLIENTS * 1000) / targetRps;
  const mpx = await startMultiplexer({ poolSize: BACKENDS });
  const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
  const latencies: number[] = [];
  const slowest: { atS: number; ms: number }[] = [];
  const failures: Record<string, number> = {};
  let errors = 0;
  const started = performance.now();
  const elapsedS = (): number => (performance.now() - started) / 1000;
  const samples: { atS: number; primaryMB: number; workerMB: number }[] = [];
  const problems: string[] = [];
  try {
    const client = async (offsetMs: number): Promise<void> => {
      await sleep(offsetMs);
      for (let next = performance.now(); elapsedS() < seconds;) {
        const sent = performance.now();
        const failure = await new Promise<string | undefined>((resolve) => {
          const req = http.get(
            { host: '127.0.0.1', port: mpx.port, path: `/?ms=${MS}`, agent },
            (res) => {
              res.resume();
              res.on('end', () =>
                resolve(res.statusCode === 200 ? undefined : `status ${res.statusCode}`),
              );
            },
          );
          req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
        });
        if (failure === undefined) {
          const ms = performance.now() - sent;
          if (elapsedS() >= WARMUP_S || seconds <= WARMUP_S) {
            latencies.push(ms);
            slowest.push({
              atS: Math.round((sent - started) / 100) / 10,
              ms: Math.round(ms * 10) / 10,
            });
            if (slowest.length > 20) slowest.sort((a, b) => b.ms - a.ms).splice(10);
          }
        } else {
          errors++;
          failures[failure] = (failures[failure] ?? 0) + 1;
        }
        next += beatMs;
        const wait = next - performance.now();
        if (wait > 0) await sleep(wait);
        else next = performance.now();
      }
    };
    const sampler = async (): Promise<void> => {
      let nextAt = Math.min(WARMUP_S, seconds / 2);
      while (elapsedS() < seconds) {
        await sleep(Math.max(0, (nextAt - elapsedS()) * 1000));
        if (elapsedS() >= seconds) break;
        const [worker] = mpx.workers();
        samples.push({
          atS: Math.round(elapsedS()),
          primaryMB: Math.round(rssMB(mpx.primary) * 10) / 10,
          workerMB: worker === undefined ? NaN : Math.round(rssMB(worker) * 10) / 10,
        });
        log(
          `soak: ${samples.at(-1)!.atS} s, RSS primary ${samples.at(-1)!.primaryMB} MB, worker ${samples.at(-1)!.workerMB} MB`,
        );
        nextAt += SAMPLE_EVERY_S;
      }
    };
    await Promise.all([
      ...Array.from({ length: CLIENTS }, (_, i) => client((i * beatMs) / CLIENTS)),
      sampler(),
    ]);
  } finally {
    agent.destroy();
    problems.push(
      ...readFileSync(mpx.logFile, 'utf8')
        .split('\n')
        .filter((line) => /"level":(4|5|6)0/.test(line))
        .slice(0, 10),
    );
    await mpx.stop();
  }
  const sorted = latencies.sort((a, b) => a - b);
  const at = (q: number): number =>
    sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  const result: SoakResult = {
    date: new Date().toISOString(),
    seconds,
    targetRps,
    capacityRps,
    requests: sorted.length,
    errors,
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    maxMs: sorted.at(-1) ?? NaN,
    slowest: slowest.sort((a, b) => b.ms - a.ms).slice(0, 10),
    failures,
    problems,
    samples,
  };
  log(
    `soak: ${result.requests} requests, ${errors} errors, p50 ${result.p50Ms.toFixed(1)} p99 ${result.p99Ms.toFixed(1)} max ${result.maxMs.toFixed(1)} ms`,
  );
  return result;
}
