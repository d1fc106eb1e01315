import { passLimit, type BackendState, type PassRight } from './backend-state.js';

/**
 * The sticky-lease pass rules, pure: where a worker may pass a backend it holds on to its own next
 * request without asking the pool, so that first-come-first-served holds across workers to within
 * one request per backend.
 */

/** A request waiting in the pool's queue, as these rules read it. */
export interface QueuedCheckout {
  readonly worker: number;
  /** The worker's own checkout number (they grow per worker). */
  readonly checkoutSeq: number;
  /** Asked again after a refusal: never the target of a pass. */
  readonly again: boolean;
}

/** A backend as these rules read it. */
export interface HeldBackend {
  readonly state: BackendState;
}

/**
 * The right a new lease of `worker` carries: to its waiting checkouts ahead of every other
 * worker's waiting request; to any later one of its own while no other worker has one waiting.
 */
export function passRightFor(queue: readonly QueuedCheckout[], worker: number): PassRight {
  let upTo = 0;
  for (const w of queue) {
    if (w.worker !== worker) return { kind: 'bounded', upTo };
    if (!w.again) upTo = Math.max(upTo, w.checkoutSeq);
  }
  return { kind: 'open' };
}

/** A bound to tell one worker, once for all the listed backends it holds. */
export interface PassBound<B> {
  readonly worker: number;
  readonly backends: readonly B[];
  readonly upTo: number;
}

/**
 * The checkout at `index` just joined the queue: no other worker may pass a backend on to a
 * checkout of its own that is behind it. The bounds to send: each worker whose leases allow more
 * than its checkouts ahead of the newcomer, with those leases.
 */
export function boundsForNewcomer<B extends HeldBackend>(
  queue: readonly QueuedCheckout[],
  index: number,
  backends: Iterable<B>,
): PassBound<B>[] {
  const newcomer = queue[index];
  if (!newcomer) return [];
  const ahead = new Map<number, number>();
  for (let i = 0; i < index; i++) {
    const w = queue[i]!;
    if (!w.again) ahead.set(w.worker, Math.max(ahead.get(w.worker) ?? 0, w.checkoutSeq));
  }
  const byWorker = new Map<number, B[]>();
  for (const b of backends) {
    const s = b.state;
    // Health checks' leases are bounded to 0: never among these.
    if (s.phase !== 'busy' || s.worker === newcomer.worker) continue;
    if (passLimit(s.pass) <= (ahead.get(s.worker) ?? 0)) continue;
    const list = byWorker.get(s.worker) ?? [];
    list.push(b);
    byWorker.set(s.worker, list);
  }
  return [...byWorker].map(([worker, list]) => ({
    worker,
    backends: list,
    upTo: ahead.get(worker) ?? 0,
  }));
}
