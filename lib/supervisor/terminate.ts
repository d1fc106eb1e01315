import { setTimeout as sleep } from 'node:timers/promises';

/** How to reach one kind of target (a process, a process group) and tell whether it is gone. */
export interface Targets {
  readonly ids: readonly number[];
  signal(id: number, signal: NodeJS.Signals): void;
  alive(id: number): boolean;
}

/** No event tells when an unrelated process ends: it is polled. */
const POLL_MS = 25;
/** SIGKILL ends a process promptly unless it is stuck in the kernel; that is not waited on forever. */
const KILL_WAIT_MS = 5000;

/**
 * SIGTERM to every target, SIGKILL to those still alive after `graceMs`; resolves once all are
 * gone (or KILL_WAIT_MS after the SIGKILL). Returns the ids that needed the SIGKILL.
 */
export async function terminate(targets: Targets, graceMs: number): Promise<number[]> {
  const { ids } = targets;
  for (const id of ids) targets.signal(id, 'SIGTERM');
  const termDeadline = Date.now() + graceMs;
  while (ids.some((id) => targets.alive(id)) && Date.now() < termDeadline) await sleep(POLL_MS);
  const stubborn = ids.filter((id) => targets.alive(id));
  for (const id of stubborn) targets.signal(id, 'SIGKILL');
  const killDeadline = Date.now() + KILL_WAIT_MS;
  while (stubborn.some((id) => targets.alive(id)) && Date.now() < killDeadline)
    await sleep(POLL_MS);
  return stubborn;
}
