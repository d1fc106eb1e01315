import type { Logger } from '../log.js';
import { readProcessTable, type ProcessEntry } from './process-table.js';
import { terminate } from './terminate.js';

/**
 * Processes of our own user whose command line contains `pattern`, never this process, its
 * ancestors or anything it started (those are ours, and the pattern may well appear in our own
 * command line). Another user's processes are never ours to end: two instances of one service on
 * a host under two users (staging, production) must not kill each other's backends.
 */
export function findLeftovers(
  table: readonly ProcessEntry[],
  pattern: string,
  self: number,
  uid: number | undefined = process.getuid?.(),
): ProcessEntry[] {
  if (pattern === '') return [];
  const byPid = new Map(table.map((p) => [p.pid, p]));
  const protectedPids = new Set<number>();
  for (let pid: number | undefined = self; pid !== undefined && pid > 0;) {
    if (protectedPids.has(pid)) break;
    protectedPids.add(pid);
    pid = byPid.get(pid)?.ppid;
  }
  const isOurDescendant = (entry: ProcessEntry): boolean => {
    const seen = new Set<number>();
    for (let pid = entry.ppid; pid > 0 && !seen.has(pid); pid = byPid.get(pid)?.ppid ?? 0) {
      if (pid === self) return true;
      seen.add(pid);
    }
    return false;
  };
  return table.filter(
    (p) =>
      (uid === undefined || p.uid === uid) &&
      !protectedPids.has(p.pid) &&
      !isOurDescendant(p) &&
      p.commandLine.includes(pattern),
  );
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function send(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Gone already, or not ours to signal: either way nothing more to do for it.
  }
}

/**
 * Ends leftovers matching service_kill_pattern: SIGTERM, then SIGKILL for those still alive after
 * `graceMs`. Resolves with the pids it signalled once they are gone.
 */
export async function endLeftovers(
  pattern: string,
  graceMs: number,
  log: Logger,
): Promise<number[]> {
  const victims = findLeftovers(readProcessTable({ commandLines: true }), pattern, process.pid);
  if (victims.length === 0) return [];
  for (const victim of victims) {
    log.warn(
      { event: 'leftover.ending', leftover_pid: victim.pid, command: victim.commandLine },
      'ending leftover process (service_kill_pattern)',
    );
  }
  const pids = victims.map((v) => v.pid);
  const stubborn = await terminate({ ids: pids, signal: send, alive: isAlive }, graceMs);
  if (stubborn.length > 0) {
    log.warn(
      { event: 'leftover.killed', pids: stubborn },
      'leftover processes ignored SIGTERM; they got SIGKILL',
    );
  }
  return pids;
}
