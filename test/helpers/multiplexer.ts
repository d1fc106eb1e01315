import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after } from 'node:test';
import { request } from './http.js';
import { BIN, fixture, ROOT, uniqueMarker } from './paths.js';
import { freePort, freePortRange } from './ports.js';
import { readProcessTable } from '../../lib/supervisor/process-table.js';
import { isAlive, killQuietly, pidsMatching } from './procs.js';
import { tempDir } from './temp.js';
import { waitFor } from './wait.js';

export interface ReadyLine {
  event: 'ready';
  pid: number;
  http_port: number;
  workers: number[];
  backends: { id: number; pid: number; port: number; state: string }[];
}

export interface LogRecord {
  level: number;
  role: string;
  msg: string;
  backend?: number;
  port?: number;
  stream?: string;
  [key: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Running {
  proc: ChildProcess;
  configFile: string;
  /** Its state directory (pid file, backend record), private to the test. */
  stateDir: string;
  pid: number;
  port: number;
  marker: string;
  ready: ReadyLine;
  logs: () => LogRecord[];
  stderr: () => string;
  waitForLog(
    predicate: (r: LogRecord) => boolean,
    what: string,
    timeoutMs?: number,
  ): Promise<LogRecord>;
  exited: Promise<Exit>;
  /** Sends `signal` (SIGTERM by default) and resolves with how the process ended. */
  stop(signal?: NodeJS.Signals): Promise<Exit>;
}

export interface Launch {
  proc: ChildProcess;
  stateDir: string;
  marker: string;
  stdout: () => string;
  stderr: () => string;
  /** The JSON log lines written to stderr so far. */
  logs: () => LogRecord[];
  exited: Promise<Exit>;
}

const launched: Launch[] = [];

// Whatever a test did, nothing it started outlives its file.
after(async () => {
  for (const l of launched) {
    if (l.proc.exitCode === null && l.proc.signalCode === null) l.proc.kill('SIGKILL');
    await l.exited;
    for (const pid of pidsMatching(l.marker)) killQuietly(pid);
  }
});

/** The command line of a fixture backend, tagged with the test's marker. */
export function fixtureCommand(name: string, marker: string, extra = ''): string {
  return `node ${fixture(name)} %PORT% ${marker}${extra}`;
}

/** Runs bin/multiplexer with `args` and a config file holding `config`; does not wait for anything. */
export function launch(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; marker?: string; cwd?: string } = {},
): Launch {
  const stateDir = options.env?.MULTIPLEXER_STATE_DIR ?? join(tempDir().dir, 'state');
  const proc = spawn(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? ROOT,
    env: {
      ...process.env,
      MULTIPLEXER_LOG_FORMAT: 'json',
      MULTIPLEXER_STATE_DIR: stateDir,
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  proc.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<Exit>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const l: Launch = {
    proc,
    stateDir,
    marker: options.marker ?? uniqueMarker(),
    stdout: () => out,
    stderr: () => err,
    logs: () =>
      err
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as LogRecord),
    exited,
  };
  launched.push(l);
  return l;
}

/** Changes keys in a running instance's config file (for a reload). */
export function rewriteConfig(mpx: { configFile: string }, changes: Record<string, unknown>): void {
  const current = JSON.parse(readFileSync(mpx.configFile, 'utf8')) as Record<string, unknown>;
  writeFileSync(mpx.configFile, JSON.stringify({ ...current, ...changes }, null, 2));
}

export function writeConfig(config: Record<string, unknown>): string {
  return tempDir().write('app.json', JSON.stringify(config, null, 2));
}

/**
 * Launches multiplexer on an ephemeral port with a fresh backend port range and the counting
 * fixture (unless the config says otherwise; "{marker}" in the command becomes the test's marker).
 * Does not wait for anything.
 */
export async function launchMultiplexer(
  config: Record<string, unknown> = {},
  options: { env?: NodeJS.ProcessEnv; args?: string[] } = {},
): Promise<Launch & { port: number; configFile: string }> {
  const marker = uniqueMarker();
  const port = await freePort();
  const range = await freePortRange(12);
  const full = {
    pool_size: 2,
    workers: 2,
    http_host: '127.0.0.1',
    http_port: port,
    service_port_range: [range.first, range.last],
    service_start_process_cmd: fixtureCommand('counting-service.mjs', marker),
    service_stop_timeout_ms: 2000,
    shutdown_timeout_ms: 5000,
    ...config,
  };
  if (typeof full.service_start_process_cmd === 'string') {
    full.service_start_process_cmd = full.service_start_process_cmd.replaceAll('{marker}', marker);
  }
  // Several services: each one's command too, so every backend carries the test's marker.
  const services = (full as { services?: unknown }).services;
  if (typeof services === 'object' && services !== null && !Array.isArray(services)) {
    (full as { services?: unknown }).services = Object.fromEntries(
      Object.entries(services as Record<string, Record<string, unknown>>).map(([name, own]) => [
        name,
        typeof own.service_start_process_cmd === 'string'
          ? {
              ...own,
              service_start_process_cmd: own.service_start_process_cmd.replaceAll(
                '{marker}',
                marker,
              ),
            }
          : own,
      ]),
    );
  }
  const file = writeConfig(full);
  const l = launch(['start', '--config', file, ...(options.args ?? [])], {
    env: options.env,
    marker,
  });
  return { ...l, port, configFile: file };
}

/**
 * Launches multiplexer with a config file as shipped (an example's, conf/app.json), only its
 * ports moved to free ones, by environment variables: the file itself is what is tested.
 */
export async function launchShipped(
  file: string,
  options: { env?: NodeJS.ProcessEnv } = {},
): Promise<Launch & { port: number; configFile: string }> {
  const port = await freePort();
  const range = await freePortRange(12);
  const l = launch(['start', '--config', file], {
    env: {
      MULTIPLEXER_HTTP_PORT: String(port),
      MULTIPLEXER_SERVICE_PORT_RANGE: `${range.first}..${range.last}`,
      MULTIPLEXER_ADMIN_PORT: '0',
      ...options.env,
    },
    cwd: tempDir().dir,
  });
  return { ...l, port, configFile: file };
}

/** launchMultiplexer, then waits for the ready line. */
export async function startMultiplexer(
  config: Record<string, unknown> = {},
  options: {
    env?: NodeJS.ProcessEnv;
    args?: string[];
    readyTimeoutMs?: number;
    /** A shipped config file to run instead of `config` (see launchShipped). */
    shipped?: string;
  } = {},
): Promise<Running> {
  const l = options.shipped
    ? await launchShipped(options.shipped, options)
    : await launchMultiplexer(config, options);
  const line = await Promise.race([
    waitFor(
      () =>
        l
          .stdout()
          .split('\n')
          .find((s) => s.includes('"event":"ready"')),
      'the ready line',
      options.readyTimeoutMs ?? 15_000,
    ),
    l.exited.then((exit) => {
      throw new Error(`multiplexer exited before ready (${JSON.stringify(exit)}):\n${l.stderr()}`);
    }),
  ]);
  return {
    proc: l.proc,
    configFile: l.configFile,
    stateDir: l.stateDir,
    pid: l.proc.pid!,
    port: l.port,
    marker: l.marker,
    ready: JSON.parse(line) as ReadyLine,
    logs: l.logs,
    stderr: l.stderr,
    waitForLog: (predicate, what, timeoutMs = 10_000) =>
      waitFor(() => l.logs().find(predicate), what, timeoutMs),
    exited: l.exited,
    stop: (signal = 'SIGTERM') => {
      if (isAlive(l.proc.pid!)) l.proc.kill(signal);
      return l.exited;
    },
  };
}

/** The service processes of this instance still alive (by marker), not the /bin/sh wrapping each. */
export function servicePids(running: { marker: string }): number[] {
  return readProcessTable({ commandLines: true })
    .filter((p) => p.commandLine.includes(running.marker) && !p.commandLine.startsWith('/bin/sh'))
    .map((p) => p.pid);
}

/** Waits until a backend logged the arrival of a request whose URL starts with `path`. */
export function arrived(mpx: Running, path: string) {
  return mpx.waitForLog(
    (r) =>
      r.stream === 'stdout' &&
      r.msg.startsWith('arrived ') &&
      r.msg.split(' ')[2]!.startsWith(path),
    `the backend to receive ${path}`,
  );
}

/** Runs a control command (status, reload, scale, stop) against `mpx`; resolves once it exits. */
export async function control(
  mpx: { stateDir: string },
  ...args: string[]
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const l = launch(args, { env: { MULTIPLEXER_STATE_DIR: mpx.stateDir } });
  const exit = await l.exited;
  return { code: exit.code, stdout: l.stdout(), stderr: l.stderr() };
}

/**
 * The admin token an instance uses, its own admin_token or the one it made at start, as the CLI
 * finds it: in instance.json of its state directory.
 */
export function adminTokenOf(mpx: { stateDir: string }): string {
  const record = JSON.parse(readFileSync(join(mpx.stateDir, 'instance.json'), 'utf8')) as {
    admin?: { token: string };
  };
  return record.admin?.token ?? '';
}

/** The Authorization header for an instance's admin API. */
export function adminAuth(mpx: { stateDir: string }): { authorization: string } {
  return { authorization: `Bearer ${adminTokenOf(mpx)}` };
}

/** What GET /status answers, as far as tests read it. */
export interface AdminStatus {
  state: string;
  pool: { size: number; maxOverflow: number; rolling: boolean };
  workers: { id: number; pid: number; listening: boolean }[];
  backends: {
    id: number;
    pid: number;
    state: string;
    toRoll: boolean;
    served: number;
    leasedBy?: number;
    rssBytes?: number;
  }[];
  totals: Record<string, number>;
  /** Requests waiting for a free backend. */
  queue: number;
}

/** startMultiplexer with its admin API on an ephemeral loopback port, and a way to read /status. */
export async function startWithAdmin(
  config: Record<string, unknown> = {},
): Promise<Running & { adminPort: number; status(): Promise<AdminStatus> }> {
  const adminPort = await freePort();
  const mpx = await startMultiplexer({ admin_port: adminPort, ...config });
  const status = async (): Promise<AdminStatus> => {
    const answer = await request(adminPort, '/status', { headers: adminAuth(mpx) });
    if (answer.status !== 200) throw new Error(`/status answered ${answer.status}: ${answer.body}`);
    return JSON.parse(answer.body) as AdminStatus;
  };
  return { ...mpx, adminPort, status };
}
