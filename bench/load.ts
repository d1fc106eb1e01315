/**
 * The load generator: wrk, one thread (the other core is left to the proxy and the backends),
 * bounded in time, on loopback. A Lua script picks each request's path and prints the result as
 * JSON, so nothing is parsed out of wrk's human-readable report.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PathMix {
  /** Weighted request paths; weights need not add up to 1. */
  readonly [path: string]: number;
}

export interface LoadResult {
  readonly requests: number;
  readonly seconds: number;
  readonly rps: number;
  /** Connect/read/write/timeout errors and non-2xx/3xx answers. */
  readonly errors: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

function script(mix: PathMix): string {
  const total = Object.values(mix).reduce((a, b) => a + b, 0);
  let cumulative = 0;
  const branches = Object.entries(mix).map(([path, weight]) => {
    cumulative += weight / total;
    return `  if r <= ${cumulative.toFixed(6)} then return wrk.format(nil, "${path}") end`;
  });
  return `
math.randomseed(os.time())
request = function()
  local r = math.random()
${branches.join('\n')}
  return wrk.format(nil, "${Object.keys(mix).at(-1)}")
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"micros":%d,"errors":%d,"p50":%d,"p99":%d,"max":%d}\\n',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
`;
}

/** `connections` clients, each sending its next request as soon as the last is answered. */
export async function runLoad(
  port: number,
  connections: number,
  seconds: number,
  mix: PathMix,
): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), 'mpx-bench-wrk-'));
  const lua = join(dir, 'mix.lua');
  writeFileSync(lua, script(mix));
  try {
    const output = await new Promise<string>((resolve, reject) => {
      const wrk = spawn(
        'wrk',
        [
          '-t1',
          `-c${connections}`,
          `-d${seconds}s`,
          '--timeout',
          '30s',
          '-s',
          lua,
          `http://127.0.0.1:${port}/`,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      wrk.stdout.on('data', (d: Buffer) => (out += d.toString()));
      wrk.stderr.on('data', (d: Buffer) => (out += d.toString()));
      wrk.on('error', reject);
      wrk.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`wrk: ${out}`))));
    });
    const line = output.split('\n').find((l) => l.startsWith('RESULT '));
    if (!line) throw new Error(`wrk printed no result: ${output}`);
    const raw = JSON.parse(line.slice(7)) as Record<string, number>;
    const secondsRun = raw.micros! / 1e6;
    return {
      requests: raw.requests!,
      seconds: secondsRun,
      rps: raw.requests! / secondsRun,
      errors: raw.errors!,
      p50Ms: raw.p50! / 1000,
      p99Ms: raw.p99! / 1000,
      maxMs: raw.max! / 1000,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
