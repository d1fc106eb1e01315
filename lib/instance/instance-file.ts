import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MultiplexerError } from '../errors.js';
import { startTimeOf } from '../supervisor/process-table.js';

/** How the control commands reach a running instance. */
export interface InstanceRecord {
  readonly pid: number;
  /** From /proc: a stale record whose pid was reused is told apart from the real instance. */
  readonly startTime: string;
  readonly config: string;
  /** Where it serves (absent in records written before it was added). */
  readonly http?: { readonly host: string; readonly port: number };
  /** Absent when the admin API is off. */
  readonly admin?: { readonly host: string; readonly port: number; readonly token: string };
}

/** The plain pid file (for systemd's PIDFile= and scripts) and the full record beside it. */
export function instancePaths(stateDir: string): { pidFile: string; record: string } {
  return { pidFile: join(stateDir, 'multiplexer.pid'), record: join(stateDir, 'instance.json') };
}

/** Mode 0600: the record may hold the admin token. */
export function writeInstance(stateDir: string, record: InstanceRecord): void {
  const paths = instancePaths(stateDir);
  for (const [file, text, mode] of [
    [paths.record, `${JSON.stringify(record, null, 2)}\n`, 0o600],
    [paths.pidFile, `${record.pid}\n`, 0o644],
  ] as const) {
    try {
      writeFileSync(file, text, { mode });
    } catch (err) {
      throw new MultiplexerError(
        'MPX_STATE_DIR',
        `cannot write ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); free space on its disk or choose another state directory with --state-dir`,
        { cause: err },
      );
    }
  }
}

export function removeInstance(stateDir: string): void {
  const paths = instancePaths(stateDir);
  rmSync(paths.record, { force: true });
  rmSync(paths.pidFile, { force: true });
}

/** The record of the instance running with this state directory, if one is running. */
export function findRunningInstance(stateDir: string): InstanceRecord | undefined {
  let record: InstanceRecord;
  try {
    record = JSON.parse(readFileSync(instancePaths(stateDir).record, 'utf8')) as InstanceRecord;
  } catch {
    return undefined;
  }
  return isRunning(record) ? record : undefined;
}

export function isRunning(record: InstanceRecord): boolean {
  return startTimeOf(record.pid) === record.startTime;
}

/** Every instance of this user running with a state directory under `root`, with that directory. */
export function runningInstancesUnder(
  root: string,
): { stateDir: string; record: InstanceRecord }[] {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  return names.sort().flatMap((name) => {
    const stateDir = join(root, name);
    const record = findRunningInstance(stateDir);
    return record ? [{ stateDir, record }] : [];
  });
}

/** For the control commands: the running instance, or an error that says where we looked. */
export function requireRunningInstance(stateDir: string): InstanceRecord {
  const record = findRunningInstance(stateDir);
  if (!record) {
    throw new MultiplexerError(
      'MPX_NOT_RUNNING',
      `no running multiplexer found: ${instancePaths(stateDir).record} is missing or names a process that has ended (give the same --config or --state-dir as at start)`,
    );
  }
  return record;
}
