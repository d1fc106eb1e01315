/**
 * One backend budget shared by several services (max_backends), as a pure decision over a snapshot
 * of the services' pools: who may start a backend now, and whose backend goes to make room.
 *
 * - Each service keeps its minimum (pool_size); the config guarantees the minimums fit. A place
 *   missing from a minimum (a crash, a backoff) stays free for that service.
 * - Room goes first to services below their minimum, then to the service whose oldest request
 *   has waited longest (Passenger gives the next slot to whoever asks; this is the fairness it
 *   lacks), never past a service's own ceiling (pool_size + pool_max_overflow).
 * - A service that still wants a backend when the budget is spent takes the place of the idle
 *   backend of another service above its minimum that has been idle longest (as Passenger's
 *   forceFreeCapacity); with none idle, the next backend to become free in a service above its
 *   minimum is reclaimed.
 */

export interface ServiceDemand {
  readonly service: string;
  /** pool_size: kept whatever the others need. */
  readonly minimum: number;
  /** pool_size + pool_max_overflow. */
  readonly ceiling: number;
  /** Its backend processes now, in any state (starting and retiring ones hold a process too). */
  readonly processes: number;
  /** Starts its pool would make now with room enough (below its minimum, or for waiting requests). */
  readonly wanted: number;
  /** When its oldest waiting request arrived; undefined when none waits. */
  readonly oldestWaitSince: number | undefined;
  /** Its idle backends, with since when each has been idle. */
  readonly idle: readonly { readonly backend: number; readonly since: number }[];
  /**
   * Its backends already lent or reclaimed by an earlier plan and not gone yet: places on their
   * way to a service that waits, so no further one is taken for it meanwhile.
   */
  readonly lent?: number;
}

export interface BudgetPlan {
  /** Starts allowed now, by service (absent: none). */
  readonly starts: ReadonlyMap<string, number>;
  /** Idle backends to retire now, to make room for a service that waits. */
  readonly evict: readonly { readonly service: string; readonly backend: number }[];
  /** Services whose next backend to become free is to retire, to make room. */
  readonly reclaim: readonly string[];
}

/** Below its minimum first, then the oldest waiting request first, then by name (stable). */
function priority(a: ServiceDemand, b: ServiceDemand): number {
  const below = Number(b.processes < b.minimum) - Number(a.processes < a.minimum);
  if (below !== 0) return below;
  const wa = a.oldestWaitSince ?? Infinity;
  const wb = b.oldestWaitSince ?? Infinity;
  if (wa !== wb) return wa - wb;
  return a.service < b.service ? -1 : a.service > b.service ? 1 : 0;
}

export function planBudget(demands: readonly ServiceDemand[], maxBackends: number): BudgetPlan {
  let free = maxBackends - demands.reduce((n, d) => n + d.processes, 0);
  const starts = new Map<string, number>();
  const evict: { service: string; backend: number }[] = [];
  const reclaim: string[] = [];
  /** Processes each service keeps once the evictions and reclaims planned so far are done. */
  const keeps = new Map(demands.map((d) => [d.service, d.processes - (d.lent ?? 0)]));
  const taken = new Set<number>();
  let returning = demands.reduce((n, d) => n + (d.lent ?? 0), 0);
  // A service below its minimum that cannot start now (its backoff after a crash) keeps its
  // missing places free: no other service may take them meanwhile.
  let reserved = demands.reduce((n, d) => n + Math.max(0, d.minimum - d.processes), 0);
  for (const d of [...demands].sort(priority)) {
    const room = Math.max(0, Math.min(d.wanted, d.ceiling - d.processes));
    const own = Math.max(0, d.minimum - d.processes);
    const others = reserved - own;
    const given = Math.min(room, Math.max(0, free - others));
    if (given > 0) starts.set(d.service, given);
    free -= given;
    reserved = others + Math.max(0, own - given);
    // Still short: one place per plan is made for it (the plan is made again at every event).
    if (room === given) continue;
    if (d.oldestWaitSince === undefined && d.processes >= d.minimum) continue;
    if (returning > 0) {
      returning--;
      continue;
    }
    const victim = longestIdle(demands, d.service, keeps, taken);
    if (victim) {
      evict.push(victim);
      taken.add(victim.backend);
      keeps.set(victim.service, keeps.get(victim.service)! - 1);
      continue;
    }
    const lender = demands.find(
      (o) =>
        o.service !== d.service &&
        keeps.get(o.service)! > o.minimum &&
        !reclaim.includes(o.service),
    );
    if (lender) {
      reclaim.push(lender.service);
      keeps.set(lender.service, keeps.get(lender.service)! - 1);
    }
  }
  return { starts, evict, reclaim };
}

/** The idle backend of another service above its minimum that has been idle longest. */
function longestIdle(
  demands: readonly ServiceDemand[],
  asking: string,
  keeps: ReadonlyMap<string, number>,
  taken: ReadonlySet<number>,
): { service: string; backend: number } | undefined {
  let best: { service: string; backend: number; since: number } | undefined;
  for (const o of demands) {
    if (o.service === asking || keeps.get(o.service)! <= o.minimum) continue;
    for (const b of o.idle) {
      if (!taken.has(b.backend) && (!best || b.since < best.since))
        best = { service: o.service, backend: b.backend, since: b.since };
    }
  }
  return best && { service: best.service, backend: best.backend };
}

/** One service's pool as the budget moves it (a Supervisor, or a Pool in the model test). */
export interface BudgetMember {
  readonly minimum: number;
  readonly ceiling: number;
  demand(): Omit<ServiceDemand, 'service' | 'minimum' | 'ceiling'>;
  /** Most processes it may run from now on (it never ends one for this). */
  setQuota(quota: number): void;
  /** Its idle backend `backend` retires: the place goes to another service. */
  lend(backend: number): void;
  /** Its next backend to become free retires: the place goes to another service. */
  reclaim(): void;
}

/**
 * Plans the budget over `members` and carries the plan out: each may run what it has plus the
 * starts planned for it; idle backends are lent, or a next free one reclaimed, for a service
 * that waits with the budget spent. `outside`: processes the budget holds that belong to no
 * member (a service removed by a reload, still stopping).
 */
export function enforceBudget(
  members: ReadonlyMap<string, BudgetMember>,
  budget: number,
  outside = 0,
): BudgetPlan {
  const demands: ServiceDemand[] = [...members].map(([service, m]) => ({
    service,
    minimum: m.minimum,
    ceiling: m.ceiling,
    ...m.demand(),
  }));
  const plan = planBudget(demands, budget - outside);
  for (const d of demands) {
    // A lent backend's place is already given away: not this service's to refill when it goes.
    const keeps = d.processes - (d.lent ?? 0);
    members.get(d.service)!.setQuota(keeps + (plan.starts.get(d.service) ?? 0));
  }
  for (const e of plan.evict) members.get(e.service)!.lend(e.backend);
  for (const service of plan.reclaim) members.get(service)!.reclaim();
  return plan;
}
