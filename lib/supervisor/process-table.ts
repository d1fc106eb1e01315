import { readdirSync, readFileSync, statSync } from 'node:fs';

export interface ProcessEntry {
  readonly pid: number;
  readonly ppid: number;
  readonly pgid: number;
  /** One letter from /proc/PID/stat: R, S, D, Z (zombie), … */
  readonly state: string;
  /** Its effective user: the owner of /proc/PID. Only read with command lines. */
  readonly uid: number | undefined;
  /** Empty unless asked for. */
  readonly commandLine: string;
}

/** The process table, read from /proc (no `ps | grep` pipeline). */
export function readProcessTable(options: { commandLines?: boolean } = {}): ProcessEntry[] {
  const entries: ProcessEntry[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // The command name in field 2 may hold spaces and parentheses: fields resume after the last ')'.
      const [state = '?', ppid, pgid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const commandLine = options.commandLines
        ? readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0+$/, '').replaceAll('\0', ' ')
        : '';
      entries.push({
        pid: Number(name),
        ppid: Number(ppid),
        pgid: Number(pgid),
        state,
        commandLine,
        uid: options.commandLines ? statSync(`/proc/${name}`).uid : undefined,
      });
    } catch {
      // The process ended while the table was read.
    }
  }
  return entries;
}

/**
 * True while a process group has a member that is not a zombie. kill(-pgid, 0) alone counts
 * zombies, and orphans wait to be reaped by PID 1 for as long as PID 1 takes (a second, here).
 */
export function groupHasLiveMembers(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch {
    return false;
  }
  return readProcessTable().some((p) => p.pgid === pgid && p.state !== 'Z' && p.state !== 'X');
}

/**
 * When a process started, in clock ticks since boot (field 22 of /proc/PID/stat), as text. With
 * the pid it names one process for the life of the machine: a reused pid has another start time.
 */
export function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/**
 * Whether the live members of process group `pgid` are all that is left of a group whose leader
 * started at `leaderStart` and is gone: there is at least one, and none started before it. A pid
 * is not reused as a group id while the group has members, so such a group is still the one that
 * leader made (a child of its `sh -c` that ignored SIGTERM, say).
 */
export function orphanedGroupOf(pgid: number, leaderStart: string): boolean {
  let members = 0;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) !== pgid || fields[0] === 'Z' || fields[0] === 'X') continue;
      if (Number(fields[19]) < Number(leaderStart)) return false;
      members++;
    } catch {
      // It ended while the table was read.
    }
  }
  return members > 0;
}

/** Bytes per page, for /proc/PID/statm (4 KiB on every Linux this runs on). */
const PAGE_BYTES = 4096;

/**
 * Resident memory of whole process groups (a backend is its shell and everything it started),
 * summed over their live members from /proc/PID/statm. Groups with no member read are absent.
 */
export function groupRssBytes(pgids: readonly number[]): Map<number, number> {
  const wanted = new Set(pgids);
  const totals = new Map<number, number>();
  for (const entry of readProcessTable()) {
    if (!wanted.has(entry.pgid) || entry.state === 'Z') continue;
    try {
      const resident = Number(readFileSync(`/proc/${entry.pid}/statm`, 'utf8').split(' ')[1]);
      totals.set(entry.pgid, (totals.get(entry.pgid) ?? 0) + resident * PAGE_BYTES);
    } catch {
      // It ended while the table was read.
    }
  }
  return totals;
}
