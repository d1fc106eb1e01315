import { readProcessTable } from '../../lib/supervisor/process-table.js';

/** Pids of live processes whose command line contains `marker` (zombies excluded). */
export function pidsMatching(marker: string): number[] {
  return readProcessTable({ commandLines: true })
    .filter((p) => p.commandLine.includes(marker))
    .map((p) => p.pid);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function killQuietly(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}
