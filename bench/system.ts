/**
 * What the benchmark needs from the machine: the peer proxies and the load generator (installed
 * from Debian's packages when missing), versions for the report, and per-process CPU time and
 * memory read from /proc.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';

const TOOLS = { haproxy: 'haproxy', nginx: 'nginx-light', wrk: 'wrk' } as const;

function onPath(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/** Installs HAProxy, nginx and wrk with apt-get when one is missing; throws a clear error if it cannot. */
export function ensureTools(log: (line: string) => void): void {
  const missing = Object.entries(TOOLS).filter(([command]) => !onPath(command));
  if (missing.length === 0) return;
  const packages = missing.map(([, pkg]) => pkg);
  log(`installing ${packages.join(', ')} with apt-get`);
  const asRoot = process.getuid?.() === 0 ? [] : ['sudo', '-n'];
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [
    ['apt-get', 'update', '-qq'],
    ['apt-get', 'install', '-y', '-qq', ...packages],
  ]) {
    const [cmd, ...rest] = [...asRoot, ...args];
    const result = spawnSync(cmd!, rest, { stdio: 'inherit', env });
    if (result.status !== 0) {
      throw new Error(`"${args.join(' ')}" failed; install ${packages.join(', ')} by hand`);
    }
  }
}

function firstLine(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  return `${result.stdout}${result.stderr}`.split('\n')[0]!.trim();
}

export interface MachineInfo {
  readonly cpus: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly haproxy: string;
  readonly nginx: string;
  readonly wrk: string;
}

export function machineInfo(): MachineInfo {
  return {
    cpus: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    node: process.version,
    haproxy: firstLine('haproxy', ['-v']),
    nginx: firstLine('nginx', ['-v']),
    wrk: firstLine('wrk', ['--version']).replace(/ Copyright.*/, ''),
  };
}

interface Stat {
  readonly ppid: number;
  /** utime + stime, in clock ticks. */
  readonly ticks: number;
}

function stat(pid: number): Stat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // Fields from the third on: state(3) ppid(4) ... utime(14) stime(15).
    return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return undefined;
  }
}

const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** CPU seconds (user + system) used so far by these processes. */
export function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) ticks += stat(pid)?.ticks ?? 0;
  return ticks / TICKS_PER_SECOND;
}

export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

export function childrenOf(parent: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (Number.isInteger(pid) && stat(pid)?.ppid === parent) out.push(pid);
  }
  return out;
}

/** Resident set size in MB, or 0 when the process is gone. */
export function rssMB(pid: number): number {
  return statusMB(pid, 'VmRSS');
}

/**
 * The part of the resident set that is mapped files (RssFile: the node binary's and libraries'
 * pages, the same physical pages in every node process), in MB.
 */
export function fileRssMB(pid: number): number {
  return statusMB(pid, 'RssFile');
}

function statusMB(pid: number, field: string): number {
  try {
    const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(
      readFileSync(`/proc/${pid}/status`, 'utf8'),
    );
    return match ? Number(match[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}
