import type { Config } from '../config/config.js';
import { backendBudget, serviceSpecs, type ServiceSpec } from '../config/services.js';
import type { Logger } from '../log.js';
import { enforceBudget, type BudgetMember } from './budget.js';
import type { PoolHealth } from './pool-health.js';
import {
  counter,
  type CheckinOutcome,
  type HeldEntry,
  type HeldReport,
  type Numbering,
  type PoolTotals,
} from './pool.js';
import type { PoolClock } from './pool.js';
import { defaultRestartPolicy, type RestartPolicy } from './restart-gate.js';
import {
  Supervisor,
  type BackendCounts,
  type BackendStatus,
  type SupervisorChange,
  type SupervisorHooks,
} from './supervisor.js';

/** A backend's status, with the service it belongs to. */
export type ServiceBackendStatus = BackendStatus & { service: string };

/** One service's pool, as /status shows it. */
export interface ServiceStatus {
  readonly name: string;
  readonly size: number;
  readonly maxOverflow: number;
  readonly queue: number;
  readonly rolling: boolean;
}

/**
 * The pools of every service (one Supervisor each) and the one backend budget they share
 * (max_backends), planned by budget.ts after every event of any pool. A config without `services`
 * is one service and one pool, and this only passes calls through.
 */
export class ServicePools {
  private readonly pools = new Map<string, Supervisor>();
  /** Services removed by a reload whose backends are still stopping. */
  private readonly leaving = new Map<Supervisor, string>();
  private readonly heldPorts = new Set<number>();
  private readonly numbering: { revokes: Numbering; backends: Numbering; leases: Numbering };
  private budget: number | undefined;
  private planning = false;
  private started = false;
  /** Services whose pool reported ready at start; the primary hears once all have. */
  private readonly readyServices = new Set<string>();
  private announcedReady = false;
  /** Backend starts and exits of services removed by a reload, kept for the counters. */
  private readonly pastCounts = new Map<string, BackendCounts>();

  constructor(
    config: Config,
    private readonly log: Logger,
    private readonly hooks: SupervisorHooks,
    sequence: Numbering = counter(),
    private readonly restart: RestartPolicy = defaultRestartPolicy,
    private readonly clock?: PoolClock,
  ) {
    this.numbering = { revokes: sequence, backends: counter(), leases: counter() };
    for (const spec of serviceSpecs(config)) this.pools.set(spec.name, this.create(spec));
    this.budget = this.budgetOf(config);
  }

  private create(spec: ServiceSpec): Supervisor {
    const several = spec.config.services && Object.keys(spec.config.services).length > 0;
    const log = several ? this.log.child({ service: spec.name }) : this.log;
    const hooks: SupervisorHooks = { ...this.hooks, poolReady: () => this.poolReady(spec.name) };
    return new Supervisor(spec.config, log, hooks, this.numbering, this.restart, this.clock, {
      heldPorts: this.heldPorts,
      changed: () => this.plan(),
    });
  }

  /** Every service's pool ready at start: the ready line may come (once). */
  private poolReady(service: string): void {
    this.readyServices.add(service);
    if (this.announcedReady || this.names.some((n) => !this.readyServices.has(n))) return;
    this.announcedReady = true;
    this.hooks.poolReady();
  }

  /** The budget binds only when max_backends is set: each pool's own ceiling does the rest. */
  private budgetOf(config: Config): number | undefined {
    return config.max_backends > 0 ? backendBudget(config) : undefined;
  }

  get names(): string[] {
    return [...this.pools.keys()];
  }

  start(): void {
    this.started = true;
    // Quotas before the first starts: the budget decides who starts what from the beginning.
    this.plan();
    for (const pool of this.pools.values()) pool.start();
  }

  /**
   * The budget, planned again: each pool may run what it has plus the starts planned for it;
   * idle backends of other services are lent, or their next free one reclaimed, for a service
   * that waits with the budget spent. Changes the plan itself causes are planned at the next event.
   */
  private plan(): void {
    if (this.planning || this.budget === undefined || !this.started) return;
    this.planning = true;
    try {
      const members = new Map<string, BudgetMember>();
      for (const [service, pool] of this.pools) {
        const { pool_size: minimum, pool_max_overflow: overflow } = pool.settings;
        members.set(service, {
          minimum,
          ceiling: minimum + overflow,
          demand: () => pool.demand(),
          setQuota: (quota) => pool.setQuota(quota),
          lend: (backend) => pool.lend(backend),
          reclaim: () => pool.reclaim(),
        });
      }
      // A removed service's backends still hold processes until they exit.
      let outside = 0;
      for (const pool of this.leaving.keys()) outside += pool.demand().processes;
      enforceBudget(members, this.budget, outside);
    } finally {
      this.planning = false;
    }
  }

  checkout(service: string, worker: number, seq: number, again: boolean, client: string): boolean {
    const pool = this.pools.get(service);
    if (!pool) return false;
    pool.checkout(worker, seq, again, client);
    return true;
  }

  cancel(service: string, worker: number, seq: number): void {
    this.pools.get(service)?.cancel(worker, seq);
  }

  checkin(
    service: string,
    worker: number,
    lease: number,
    outcome: CheckinOutcome,
    held: HeldReport,
  ): void {
    this.find(service)?.checkin(worker, lease, outcome, held);
  }

  held(service: string, worker: number, entries: readonly HeldEntry[]): void {
    this.find(service)?.held(worker, entries);
  }

  pass(service: string, worker: number, lease: number, to: number): void {
    this.find(service)?.pass(worker, lease, to);
  }

  upgraded(service: string, worker: number, lease: number): void {
    this.find(service)?.upgraded(worker, lease);
  }

  /** A revoke's number is the primary's: whichever pool sent it takes the confirmation. */
  revoked(worker: number, seq: number): void {
    for (const pool of this.all()) pool.revoked(worker, seq);
  }

  workerExited(worker: number): void {
    for (const pool of this.all()) pool.workerExited(worker);
  }

  /**
   * A new config: each service that stays takes its own settings (a rolling restart of its
   * backends only if how they start changed); a new service starts; a removed one stops.
   */
  reconfigure(next: Config): SupervisorChange {
    const change = { pool: false, backends: false };
    const specs = serviceSpecs(next);
    const added: Supervisor[] = [];
    const wanted = new Set(specs.map((s) => s.name));
    for (const [name, pool] of this.pools) {
      if (wanted.has(name)) continue;
      this.pools.delete(name);
      this.leaving.set(pool, name);
      change.pool = true;
      this.log.info({ event: 'service.removed', service: name }, `service ${name} removed`);
      void pool.stop().then(() => {
        this.leaving.delete(pool);
        this.keepCounts(name, pool);
        this.plan();
      });
    }
    const hadBudget = this.budget !== undefined;
    this.budget = this.budgetOf(next);
    // max_backends taken off: no quota any more, each pool's own ceiling is its limit.
    if (hadBudget && this.budget === undefined) {
      for (const pool of this.pools.values()) pool.setQuota(Infinity);
    }
    for (const spec of specs) {
      const pool = this.pools.get(spec.name);
      if (pool) {
        const c = pool.reconfigure(spec.config);
        change.pool ||= c.pool;
        change.backends ||= c.backends;
        continue;
      }
      const fresh = this.create(spec);
      this.pools.set(spec.name, fresh);
      added.push(fresh);
      change.pool = true;
      this.log.info({ event: 'service.added', service: spec.name }, `service ${spec.name} added`);
    }
    // The budget first, so that a new service starts within its quota.
    this.plan();
    if (this.started) for (const pool of added) pool.start();
    return change;
  }

  roll(): void {
    for (const pool of this.pools.values()) pool.roll();
  }

  get rolling(): boolean {
    return [...this.pools.values()].some((p) => p.rolling);
  }

  get poolTotals(): Readonly<PoolTotals> {
    const totals: PoolTotals = { overflowSpawns: 0, restarts: 0 };
    for (const pool of this.pools.values()) {
      totals.overflowSpawns += pool.poolTotals.overflowSpawns;
      totals.restarts += pool.poolTotals.restarts;
    }
    return totals;
  }

  get queueLength(): number {
    let n = 0;
    for (const pool of this.pools.values()) n += pool.queueLength;
    return n;
  }

  /** Backend starts and exits by reason, per service (removed ones included: counters only grow). */
  countsByService(): { service: string; starts: number; exits: ReadonlyMap<string, number> }[] {
    const sums = new Map<string, BackendCounts>();
    const add = (service: string, counts: BackendCounts): void => {
      const sum = sums.get(service) ?? { starts: 0, exits: new Map<string, number>() };
      sum.starts += counts.starts;
      for (const [reason, n] of counts.exits)
        sum.exits.set(reason, (sum.exits.get(reason) ?? 0) + n);
      sums.set(service, sum);
    };
    for (const [service, counts] of this.pastCounts) add(service, counts);
    for (const [service, pool] of this.pools) add(service, pool.backendCounts);
    for (const [pool, service] of this.leaving) add(service, pool.backendCounts);
    return [...sums].map(([service, c]) => ({ service, starts: c.starts, exits: c.exits }));
  }

  private keepCounts(service: string, pool: Supervisor): void {
    const past = this.pastCounts.get(service) ?? { starts: 0, exits: new Map<string, number>() };
    past.starts += pool.backendCounts.starts;
    for (const [reason, n] of pool.backendCounts.exits)
      past.exits.set(reason, (past.exits.get(reason) ?? 0) + n);
    this.pastCounts.set(service, past);
  }

  status(): ServiceBackendStatus[] {
    return [...this.pools].flatMap(([service, pool]) =>
      pool.status().map((b) => ({ ...b, service })),
    );
  }

  services(): ServiceStatus[] {
    return [...this.pools].map(([name, pool]) => ({
      name,
      size: pool.settings.pool_size,
      maxOverflow: pool.settings.pool_max_overflow,
      queue: pool.queueLength,
      rolling: pool.rolling,
    }));
  }

  /**
   * One service: its own health. Several: ready while every service that keeps a backend
   * (pool_size > 0) has one ready; degraded names the services that are.
   */
  health(): PoolHealth {
    const each = [...this.pools].map(([name, pool]) => ({ name, pool, health: pool.health() }));
    if (each.length === 1) return each[0]!.health;
    let noneReadySince: number | undefined;
    for (const { pool, health } of each) {
      if (pool.settings.pool_size === 0 || health.noneReadySince === undefined) continue;
      noneReadySince = Math.min(noneReadySince ?? Infinity, health.noneReadySince);
    }
    const degraded = each
      .filter((e) => e.health.degraded !== undefined)
      .map((e) => `${e.name}: ${e.health.degraded}`);
    return {
      ready: each.reduce((n, e) => n + e.health.ready, 0),
      noneReadySince,
      lastFailure: each.find((e) => e.health.lastFailure !== undefined)?.health.lastFailure,
      degraded: degraded.length > 0 ? degraded.join('; ') : undefined,
    };
  }

  recentEndings(): { backend: number; ending: string; service: string }[] {
    return [...this.pools].flatMap(([service, pool]) =>
      pool.recentEndings().map((e) => ({ ...e, service })),
    );
  }

  async stop(): Promise<void> {
    await Promise.all([...this.all()].map((p) => p.stop()));
  }

  killAllNow(): void {
    for (const pool of this.all()) pool.killAllNow();
  }

  /** The pool of `service`; a lease of a removed service is still returned to its pool. */
  private find(service: string): Supervisor | undefined {
    return this.pools.get(service) ?? [...this.leaving].find(([, name]) => name === service)?.[0];
  }

  private *all(): Iterable<Supervisor> {
    yield* this.pools.values();
    yield* this.leaving.keys();
  }
}
