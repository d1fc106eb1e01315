import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Logger } from '../log.js';
import { groupHasLiveMembers, orphanedGroupOf, startTimeOf } from '../supervisor/process-table.js';
import { terminate } from '../supervisor/terminate.js';

export interface RecordedBackend {
  /** The group leader's pid, which is also the group id (backends run detached). */
  readonly pid: number;
  /** From /proc: proves a live pid is still the process we started, not a reuse. */
  readonly startTime: string;
  readonly command: string;
}

const RETRY_MS = 1000;

const HEADER = '# multiplexer backends: pid start-time command (one line each)\n';

/**
 * The state file of every backend process this instance started and has not yet seen end. It is
 * rewritten (atomically) on every start and end, so whatever way the primary dies, the file names
 * exactly the processes that may have outlived it. Plain lines, so the watchdog (a shell script)
 * reads it too.
 */
export class BackendRegistry {
  private readonly entries = new Map<number, RecordedBackend>();
  private retry: NodeJS.Timeout | undefined;
  private failing = false;

  /**
   * `failed` is told when the file cannot be written (a full disk: ENOSPC, EIO) and again when
   * it can (err undefined). The record in memory stays right; the file is written again every
   * RETRY_MS until it succeeds. The primary never dies of it (it once exited 1 with ENOSPC while
   * replacing a backend, and took the whole service down).
   */
  constructor(
    readonly file: string,
    private readonly failed: (err: Error | undefined) => void = () => undefined,
  ) {}

  record(pid: number, command: string): void {
    const startTime = startTimeOf(pid);
    // Gone already (a command that failed at once): nothing can be left of it.
    if (startTime === undefined) return;
    this.entries.set(pid, { pid, startTime, command: command.replace(/\s+/g, ' ') });
    this.write();
  }

  forget(pid: number): void {
    if (this.entries.delete(pid)) this.write();
  }

  /** Starts a fresh, empty record (after endRecordedBackends dealt with the previous one). */
  reset(): void {
    this.entries.clear();
    this.write();
  }

  /** Stops retrying a failed write (the instance is ending). */
  close(): void {
    clearTimeout(this.retry);
    this.retry = undefined;
  }

  private write(): void {
    const lines = [...this.entries.values()].map((e) => `${e.pid} ${e.startTime} ${e.command}\n`);
    const temp = `${this.file}.tmp`;
    try {
      writeFileSync(temp, HEADER + lines.join(''), { mode: 0o600 });
      renameSync(temp, this.file);
    } catch (err) {
      if (!this.failing) this.failed(err as Error);
      this.failing = true;
      this.retry ??= setTimeout(() => {
        this.retry = undefined;
        this.write();
      }, RETRY_MS).unref();
      return;
    }
    if (this.failing) this.failed(undefined);
    this.failing = false;
  }
}

export function readRecordedBackends(file: string): RecordedBackend[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const entries: RecordedBackend[] = [];
  for (const line of text.split('\n')) {
    const match = /^(\d+) (\d+) (.*)$/.exec(line);
    if (match) entries.push({ pid: Number(match[1]), startTime: match[2]!, command: match[3]! });
  }
  return entries;
}

/**
 * True when `entry` names a group we started: its leader is still the process we started (same
 * pid, same start), or the leader is gone and what is left of its group started after it did.
 */
function isOurGroup(entry: RecordedBackend): boolean {
  const start = startTimeOf(entry.pid);
  if (start !== undefined) return start === entry.startTime;
  return orphanedGroupOf(entry.pid, entry.startTime);
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group ended meanwhile.
  }
}

/**
 * Ends the backends a previous run recorded and left behind (the primary was killed before it
 * could stop them): SIGTERM to each group, SIGKILL after `graceMs`. A recorded pid that now
 * belongs to another process (different start time) is never touched. Resolves with the pids ended.
 */
export async function endRecordedBackends(
  file: string,
  graceMs: number,
  log: Logger,
): Promise<number[]> {
  const survivors = readRecordedBackends(file).filter(isOurGroup);
  for (const entry of survivors) {
    log.warn(
      { event: 'leftover.ending', leftover_pid: entry.pid, command: entry.command },
      'ending a backend left behind by a previous run',
    );
  }
  const pids = survivors.map((e) => e.pid);
  await terminate({ ids: pids, signal: signalGroup, alive: groupHasLiveMembers }, graceMs);
  return pids;
}
