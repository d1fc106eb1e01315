/**
 * The contestants, each started and stopped by the benchmark: multiplexer (spawning the fixture
 * itself), HAProxy with one request per backend and a queue, nginx round-robin and least_conn,
 * and direct to one backend. The peers run one worker process each (on 2 cores that leaves the
 * other core to the load generator and the backends); so does multiplexer's front (workers: 1).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, freePortRange } from '../test/helpers/ports.js';
import { waitFor } from '../test/helpers/wait.js';
import { childrenOf, commandLine } from './system.js';

const here = dirname(fileURLToPath(import.meta.url));
/** The project root, from dist/bench/ or bench/. */
export const ROOT = resolve(here, here.includes('/dist/') ? '../..' : '..');
export const FIXTURE = join(ROOT, 'bench/fixture.mjs');

export type ContestantName =
  | 'multiplexer'
  | 'haproxy'
  | 'nginx-rr'
  | 'nginx-lc'
  | 'direct'
  /** multiplexer with access_log off, and with access_log and metrics off: their cost. */
  | 'mpx-no-access-log'
  | 'mpx-no-observability'
  /** The floors of a node proxy (bench/floor-proxy.mjs): node:http's client, and the raw path. */
  | 'floor-node-http'
  | 'floor-raw'
  /** multiplexer with the raw backend path (MULTIPLEXER_RAW_PATH=1, not the default yet). */
  | 'mpx-raw'
  /** gunicorn alone, -w N sync workers (the Flask scenario). */
  | 'gunicorn';
export const PEERS: readonly ContestantName[] = ['haproxy', 'nginx-rr', 'nginx-lc'];

export interface Running {
  readonly name: ContestantName;
  readonly port: number;
  /** The proxy's own processes (not the backends), for CPU time and memory. */
  pids(): number[];
  stop(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => child.once('exit', () => done()));
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  child.kill(signal);
  const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited(child);
  clearTimeout(killer);
}

/** One GET; resolves with the status, or 0 when the connection failed. */
export function get(port: number, path = '/'): Promise<number> {
  return new Promise((done) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode ?? 0));
    });
    req.on('error', () => done(0));
  });
}

const answers = (port: number) => async () => (await get(port)) === 200;

/** Backends for the peers: `count` fixture processes on consecutive ports. */
export class FixtureSet {
  private constructor(
    readonly ports: number[],
    private readonly children: ChildProcess[],
  ) {}

  static async start(count: number): Promise<FixtureSet> {
    const { first } = await freePortRange(count);
    const ports = Array.from({ length: count }, (_, i) => first + i);
    const children = ports.map((port) =>
      spawn(process.execPath, [FIXTURE, String(port)], { stdio: 'ignore' }),
    );
    const set = new FixtureSet(ports, children);
    for (const port of ports) await waitFor(answers(port), `fixture on ${port}`, 30_000);
    return set;
  }

  async stop(): Promise<void> {
    await Promise.all(this.children.map((c) => stopChild(c)));
  }
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'mpx-bench-'));
}

async function runProcess(
  name: ContestantName,
  command: string,
  args: string[],
  port: number,
  cleanup: () => void,
): Promise<Running> {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`${name} exited: ${stderr.trim()}`);
      return (await get(port)) === 200;
    }, `${name} to answer on ${port}`);
  } catch (err) {
    await stopChild(child, 'SIGKILL');
    cleanup();
    throw err;
  }
  const descendants = (): number[] => [child.pid!, ...childrenOf(child.pid!)];
  return {
    name,
    port,
    pids: descendants,
    stop: async () => {
      await stopChild(child);
      cleanup();
    },
  };
}

/** A floor proxy (bench/floor-proxy.mjs) in front of the fixtures. */
export async function startFloor(
  mode: 'node-http' | 'raw',
  backends: FixtureSet,
): Promise<Running> {
  const port = await freePort();
  return runProcess(
    `floor-${mode}`,
    process.execPath,
    [join(ROOT, 'bench', 'floor-proxy.mjs'), mode, String(port), ...backends.ports.map(String)],
    port,
    () => undefined,
  );
}

export async function startHaproxy(backends: FixtureSet, queueTimeoutMs: number): Promise<Running> {
  const dir = tempDir();
  const port = await freePort();
  const servers = backends.ports
    .map((p, i) => `    server b${i} 127.0.0.1:${p} maxconn 1`)
    .join('\n');
  writeFileSync(
    join(dir, 'haproxy.cfg'),
    `global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout queue ${queueTimeoutMs}ms
    option http-keep-alive
    http-reuse safe
frontend front
    bind 127.0.0.1:${port}
    default_backend pool
backend pool
    balance roundrobin
${servers}
`,
  );
  return runProcess('haproxy', 'haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], port, () =>
    rmSync(dir, { recursive: true, force: true }),
  );
}

export async function startNginx(
  backends: FixtureSet,
  balance: 'round-robin' | 'least_conn',
): Promise<Running> {
  const dir = tempDir();
  const port = await freePort();
  const servers = backends.ports.map((p) => `    server 127.0.0.1:${p};`).join('\n');
  writeFileSync(
    join(dir, 'nginx.conf'),
    `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  upstream pool {
${balance === 'least_conn' ? '    least_conn;\n' : ''}${servers}
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://pool;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 60s;
    }
  }
}
`,
  );
  return runProcess(
    balance === 'least_conn' ? 'nginx-lc' : 'nginx-rr',
    'nginx',
    ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'],
    port,
    () => rmSync(dir, { recursive: true, force: true }),
  );
}

export function direct(backends: FixtureSet): Running {
  return {
    name: 'direct',
    port: backends.ports[0]!,
    pids: () => [],
    stop: () => Promise.resolve(),
  };
}

export interface MultiplexerOptions {
  readonly poolSize: number;
  readonly overflow?: number;
  readonly workers?: number;
  readonly adminPort?: number;
  readonly queueTimeoutMs?: number;
  /** Config keys on top of the benchmark's (access_log, metrics). */
  readonly config?: Record<string, unknown>;
  /** Its name in the results (default "multiplexer"). */
  readonly name?: ContestantName;
  /** Environment on top of this process's. */
  readonly env?: NodeJS.ProcessEnv;
  /** The backends are the Flask example on gunicorn, one sync worker each. */
  readonly flask?: boolean;
}

/** The admin token of every multiplexer the bench starts. */
export const BENCH_ADMIN_TOKEN = 'bench';

const FLASK_DIR = join(ROOT, 'examples', 'python-flask-gunicorn');
const GUNICORN = join(FLASK_DIR, '.venv', 'bin', 'gunicorn');

/** The Flask example as multiplexer runs it (examples/python-flask-gunicorn/multiplexer.json). */
const FLASK_SERVICE = {
  service_cwd: FLASK_DIR,
  service_start_process_cmd: `exec ${GUNICORN} --workers 1 --bind 127.0.0.1:%PORT% --no-control-socket app:app`,
  service_start_delay_ms: 'wait_port',
};

/** The Flask example's venv (gunicorn and Flask), made by its setup.sh when missing. */
export function ensureFlask(log: (line: string) => void): void {
  if (existsSync(GUNICORN)) return;
  log('installing the Flask example (examples/python-flask-gunicorn/setup.sh)');
  execFileSync('sh', [join(FLASK_DIR, 'setup.sh')], { stdio: 'inherit' });
}

/** gunicorn alone: `workers` sync workers sharing one listener, as people run it. */
export async function startGunicorn(workers: number): Promise<Running> {
  const port = await freePort();
  return runProcess(
    'gunicorn',
    GUNICORN,
    [
      '--chdir',
      FLASK_DIR,
      '--workers',
      String(workers),
      '--bind',
      `127.0.0.1:${port}`,
      '--no-control-socket',
      'app:app',
    ],
    port,
    () => undefined,
  );
}

export interface RunningMultiplexer extends Running {
  readonly primary: number;
  /** Its admin port, when one was asked for (0 or undefined: none). */
  readonly adminPort: number | undefined;
  /** Milliseconds from spawn to the "ready" log line (every pool_size backend ready). */
  readonly readyMs: number;
  /** Milliseconds from spawn to the first request served. */
  readonly firstServedMs: number;
  workers(): number[];
  /** Its log (JSON lines, the access log included) until stop() removes it. */
  readonly logFile: string;
}

export async function startMultiplexer(options: MultiplexerOptions): Promise<RunningMultiplexer> {
  const dir = tempDir();
  const port = await freePort();
  const slots = options.poolSize + (options.overflow ?? 0) + 2;
  const range = await freePortRange(slots);
  const config = {
    pool_size: options.poolSize,
    pool_max_overflow: options.overflow ?? 0,
    http_port: port,
    http_host: '127.0.0.1',
    service_port_range: `${range.first}..${range.last}`,
    service_start_process_cmd: `exec ${process.execPath} ${FIXTURE} %PORT%`,
    ...(options.flask ? FLASK_SERVICE : {}),
    service_stop_timeout_ms: 2000,
    workers: options.workers ?? 1,
    queue_timeout_ms: options.queueTimeoutMs ?? 30_000,
    queue_max: 100_000,
    shutdown_timeout_ms: 5000,
    admin_port: options.adminPort ?? 0,
    // Known, so that the bench can read /status and /metrics (an empty one is generated at start).
    admin_token: BENCH_ADMIN_TOKEN,
    ...options.config,
  };
  writeFileSync(join(dir, 'app.json'), JSON.stringify(config));
  // Logs (an access log line per request) go to a file, as in production, not through a pipe
  // that this process, sharing the machine with the load generator, would have to read.
  const logFile = join(dir, 'stderr.log');
  const stderr = openSync(logFile, 'w');
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [
      '--max-semi-space-size=2',
      join(ROOT, 'bin/multiplexer.js'),
      'start',
      '--config',
      join(dir, 'app.json'),
    ],
    {
      stdio: ['ignore', 'pipe', stderr],
      env: { ...process.env, ...options.env, MULTIPLEXER_STATE_DIR: join(dir, 'state') },
    },
  );
  closeSync(stderr);
  const logTail = (): string => {
    try {
      return readFileSync(logFile, 'utf8').slice(-2000);
    } catch {
      return '';
    }
  };
  let output = '';
  let readyMs = 0;
  // stdout carries only the ready line.
  const read = (d: Buffer): void => {
    output = (output + d.toString()).slice(-20_000);
    if (!readyMs && output.includes('"event":"ready"')) readyMs = performance.now() - started;
  };
  child.stdout!.on('data', read);
  let firstServedMs = 0;
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`multiplexer exited: ${logTail()}`);
        if (!firstServedMs && (await get(port)) === 200) {
          firstServedMs = performance.now() - started;
        }
        return firstServedMs > 0 && readyMs > 0;
      },
      'multiplexer to be ready and serve',
      60_000,
      5,
    );
  } catch (err) {
    await stopChild(child, 'SIGKILL');
    throw err;
  }
  const workers = (): number[] =>
    childrenOf(child.pid!).filter((pid) => commandLine(pid).includes('worker/main.js'));
  return {
    name: options.name ?? 'multiplexer',
    port,
    primary: child.pid!,
    adminPort: options.adminPort,
    logFile,
    readyMs,
    firstServedMs,
    workers,
    // The primary and its front workers; the watchdog (a sleeping shell) costs nothing.
    pids: () => [child.pid!, ...workers()],
    stop: async () => {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
