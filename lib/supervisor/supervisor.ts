import { backendHost, type Config } from '../config/config.js';
import type { Logger } from '../log.js';
import type { EndReason } from './backend-state.js';
import { bufferedHint, describeStart, END_WHY, exitReport, HEALTH_FAILURES } from './ending.js';
import { HealthRecord, type PoolHealth } from './pool-health.js';
import { BackendProcess, type ExitInfo } from './backend-process.js';
import {
  counter,
  Pool,
  type CheckinOutcome,
  type Numbering,
  type PoolClock,
  type PoolDemand,
  type PoolEffect,
  type PoolNumbering,
  type HeldEntry,
  type HeldReport,
  type PoolSettings,
  type PoolTotals,
  type RejectCode,
} from './pool.js';
import { canBind, PortRing } from './port-ring.js';
import { diffConfig, reloadPlan } from '../config/diff.js';
import { checkHealth } from './health.js';
import { groupRssBytes } from './process-table.js';
import { defaultRestartPolicy, type RestartPolicy } from './restart-gate.js';

/** What the supervisor tells the outside world; the primary turns these into IPC messages. */
export interface SupervisorHooks {
  /** The pool's grant (see PoolEffect), with the backend's port. */
  grant(grant: Omit<Extract<PoolEffect, { type: 'grant' }>, 'type'> & { port: number }): void;
  /** The worker may pass `leases` only to its checkouts numbered ≤ upTo; it confirms `seq`. */
  revoke(worker: number, seq: number, leases: readonly number[], upTo: number): void;
  reject(worker: number, checkoutSeq: number, code: RejectCode): void;
  poolReady(): void;
  /** `worker` may hold an idle connection to the backend on `port`, now leased to another worker. */
  dropConnections(worker: number, port: number): void;
  /** The upgraded connection holding `lease` is to be closed after shutdown_timeout_ms. */
  closeUpgraded(worker: number, lease: number): void;
  /** The backend `worker` held under `lease` is gone: the worker forgets the lease. */
  lost(worker: number, lease: number): void;
  /** A backend process exists (for the state file that lets a later start end orphans). */
  backendStarted(pid: number, command: string): void;
  backendEnded(pid: number): void;
  /** No backend was ever ready and service_boot_attempts starts in a row failed. */
  bootFailed(failure: BootFailure): void;
}

/** The last failed start, as shown when the service cannot start at all. */
export interface BootFailure {
  readonly attempts: number;
  readonly command: string;
  /** How it ended: "exited with code 127", "killed by SIGKILL", "not ready within …". */
  readonly how: string;
  readonly tail: readonly string[];
  /** False when no process was started at all (no free port): there is no output to show. */
  readonly started: boolean;
  /**
   * Set when one failed start already said why no other will do better (a service that listens
   * but whose stdout is buffered): the start gives up at once instead of after
   * service_boot_attempts.
   */
  readonly conclusive?: boolean;
}

export interface BackendStatus {
  id: number;
  pid: number | undefined;
  port: number | undefined;
  state: string;
  ageMs: number;
  served: number;
  leasedBy: number | undefined;
  /** Being replaced by a rolling restart. */
  toRoll: boolean;
  /** Due for recycling (max-requests, max-rss): being replaced. */
  recycle: string | undefined;
  /** Resident memory of its process group at the last reading (every 2 s). */
  rssBytes: number | undefined;
}

/**
 * Backend processes started and ended since start; an end counts under its retirement reason,
 * or "crash" / "boot-failure" when the backend ended on its own. (Request counters live in the
 * front workers, which alone know what each client was sent.)
 */
export interface BackendCounts {
  starts: number;
  readonly exits: Map<string, number>;
}

/** What a reload changed in the supervisor's part of the config. */
export interface SupervisorChange {
  /** Pool settings (size, overflow, strategy, queue, start timeout) now in force. */
  pool: boolean;
  /** How backends start changed: they are being replaced by a rolling restart. */
  backends: boolean;
}

/** How often every backend's memory is read (status, service_max_rss_mb). */
const RSS_INTERVAL_MS = 2000;

/** How long a backend whose connection broke may take to exit on its own before it is stopped. */
const BROKEN_GRACE_MS = 250;

const realClock: PoolClock = { now: () => Date.now(), random: Math.random };

/** What the supervisors of several services share (see service-pools.ts). */
export interface SupervisorShare {
  /** Ports in use by any service's backend. */
  readonly heldPorts?: Set<number>;
  /** Something changed in this pool: the shared budget is planned again. */
  readonly changed?: () => void;
}

/**
 * The pool's edge: runs the pure Pool's decisions with real processes, ports and timers. It knows
 * nothing of cluster or HTTP; the primary wires it to the front workers.
 */
export class Supervisor {
  private readonly pool: Pool;
  readonly backendCounts: BackendCounts = { starts: 0, exits: new Map() };
  private readonly processes = new Map<number, BackendProcess>();
  /** Backend id → the front worker that last held its lease (and may keep a connection to it). */
  private readonly lastWorker = new Map<number, number>();
  private readonly ring: PortRing;
  private wakeTimer: NodeJS.Timeout | undefined;
  private wakeAt = Infinity;
  private onEmpty: (() => void) | undefined;
  /** The pool's past, for the probes, status and the boot-failure report. */
  private readonly record: HealthRecord;
  private readonly rss = new Map<number, number>();
  private rssTimer: NodeJS.Timeout | undefined;
  private healthTimer: NodeJS.Timeout | undefined;

  constructor(
    private config: Config,
    private readonly log: Logger,
    private readonly hooks: SupervisorHooks,
    /**
     * The primary's one numbering of what it asks the workers (the pool's revokes among them);
     * with several services, also their shared numbering of backends and leases.
     */
    sequence: Numbering | PoolNumbering = counter(),
    private readonly restart: RestartPolicy = defaultRestartPolicy,
    private readonly clock: PoolClock = realClock,
    private readonly share: SupervisorShare = {},
  ) {
    this.pool = new Pool(this.poolSettings(config), clock, sequence);
    this.ring = new PortRing(config.service_port_range, share.heldPorts);
    this.record = new HealthRecord(clock.now());
  }

  private poolSettings(config: Config): PoolSettings {
    return {
      size: config.pool_size,
      maxOverflow: config.pool_max_overflow,
      strategy: config.pool_strategy,
      queueTimeoutMs: config.queue_timeout_ms,
      queueMax: config.queue_max,
      queueMaxPerClient: config.queue_max_per_client,
      startTimeoutMs: config.service_start_timeout_ms,
      startConcurrency: config.service_start_concurrency,
      bootAttempts: config.service_boot_attempts,
      maxRequests: config.service_max_requests,
      maxRequestsJitter: config.service_max_requests_jitter,
      maxRssBytes: config.service_max_rss_mb * 1024 * 1024,
      healthFailures: HEALTH_FAILURES,
      restart: this.restart,
      idleRetireMs: config.pool_overflow_idle_ms,
    };
  }

  /**
   * Puts a new config in force: pool settings at once (busy backends are never interrupted), and
   * if anything about how backends start changed, a rolling restart onto the new way.
   */
  reconfigure(next: Config): SupervisorChange {
    const plan = reloadPlan(diffConfig(this.config, next));
    const change = { pool: plan.pool, backends: plan.backends };
    this.config = next;
    this.ring.retarget(next.service_port_range);
    if (change.pool) this.apply(this.pool.reconfigure(this.poolSettings(next)));
    if (change.backends) this.roll();
    return change;
  }

  /** Rolling restart of every backend (SIGUSR2, or a reload that changed how backends start). */
  roll(): void {
    this.log.info(
      { event: 'roll.started', backends: this.pool.view().length },
      'rolling restart of every backend',
    );
    this.apply(this.pool.roll());
  }

  get rolling(): boolean {
    return this.pool.rolling;
  }

  /** Its part in the shared budget (max_backends). */
  demand(): PoolDemand {
    return this.pool.demand();
  }

  /** Most processes it may run now, as the shared budget decided. */
  setQuota(quota: number): void {
    this.apply(this.pool.setQuota(quota));
  }

  /** The idle backend `id` retires: its place goes to another service. */
  lend(id: number): void {
    this.apply(this.pool.lend(id));
  }

  /** The next backend to become free retires: its place goes to another service. */
  reclaim(): void {
    this.apply(this.pool.reclaim());
  }

  /** The settings in force. */
  get settings(): Config {
    return this.config;
  }

  get poolTotals(): Readonly<PoolTotals> {
    return this.pool.totals;
  }

  start(): void {
    this.apply(this.pool.start());
    this.rssTimer = setInterval(() => this.measureRss(), RSS_INTERVAL_MS);
    this.rssTimer.unref();
    this.scheduleHealthChecks();
  }

  /** Every service_health_interval_ms (read each time: a reload may change it), when a path is set. */
  private scheduleHealthChecks(): void {
    this.healthTimer = setTimeout(() => {
      if (this.config.service_health_path !== '') this.apply(this.pool.checkHealth());
      this.scheduleHealthChecks();
    }, this.config.service_health_interval_ms);
    this.healthTimer.unref();
  }

  private async checkBackendHealth(id: number, lease: number): Promise<void> {
    const proc = this.processes.get(id);
    const path = this.config.service_health_path;
    const result = proc
      ? await checkHealth(proc.spec.host, proc.spec.port, path)
      : { healthy: false as const, reason: 'no process' };
    if (!result.healthy) {
      this.log.warn(
        { event: 'backend.unhealthy', backend: id, backend_pid: proc?.pid, port: proc?.spec.port },
        `backend failed its health check: ${result.reason}`,
      );
    }
    this.apply(this.pool.healthChecked(lease, result.healthy));
  }

  /** Reads every backend's memory; the pool recycles those over service_max_rss_mb. */
  private measureRss(): void {
    const byGroup = groupRssBytes(
      [...this.processes.values()].flatMap((p) => (p.pid === undefined ? [] : [p.pid])),
    );
    this.rss.clear();
    for (const [id, proc] of this.processes) {
      const bytes = proc.pid === undefined ? undefined : byGroup.get(proc.pid);
      if (bytes === undefined) continue;
      this.rss.set(id, bytes);
      this.apply(this.pool.backendRss(id, bytes));
    }
  }

  /** `again`: the request's backend refused its connection; it goes first in the queue. */
  checkout(worker: number, checkoutSeq: number, again = false, client = ''): void {
    const waiting = this.pool.queueLength;
    this.apply(this.pool.checkout(worker, checkoutSeq, again, client));
    if (this.pool.queueLength > waiting) {
      this.log.debug(
        { event: 'request.queued', worker, checkoutSeq, queue: this.pool.queueLength },
        'request waits for a free backend',
      );
    }
  }

  cancel(worker: number, checkoutSeq: number): void {
    this.apply(this.pool.cancel(worker, checkoutSeq));
  }

  checkin(worker: number, lease: number, outcome: CheckinOutcome, held: HeldReport): void {
    this.apply(this.pool.checkin(worker, lease, outcome, held));
  }

  /** A worker's batched report of the leases it holds (see Pool.held). */
  held(worker: number, entries: readonly HeldEntry[]): void {
    this.apply(this.pool.held(worker, entries));
  }

  pass(worker: number, lease: number, to: number): void {
    this.apply(this.pool.pass(worker, lease, to));
  }

  revoked(worker: number, seq: number): void {
    this.apply(this.pool.revoked(worker, seq));
  }

  upgraded(worker: number, lease: number): void {
    this.apply(this.pool.upgraded(worker, lease));
  }

  workerExited(worker: number): void {
    this.apply(this.pool.workerExited(worker));
  }

  /** Stops every backend (SIGTERM, SIGKILL after service_stop_timeout_ms); resolves when all are gone. */
  stop(): Promise<void> {
    clearInterval(this.rssTimer);
    clearTimeout(this.healthTimer);
    clearTimeout(this.wakeTimer);
    this.wakeAt = Infinity;
    const gone = new Promise<void>((resolve) => {
      this.onEmpty = resolve;
    });
    this.apply(this.pool.shutdown());
    this.resolveIfEmpty();
    return gone;
  }

  /** Synchronous SIGKILL of every backend group: the last resort on an abnormal exit. */
  killAllNow(): void {
    for (const proc of this.processes.values()) proc.killNow();
  }

  get queueLength(): number {
    return this.pool.queueLength;
  }

  health(): PoolHealth {
    return this.record.health(this.pool.readyCount, this.config.pool_size, this.clock.now());
  }

  /** Why recent backends ended, newest last: "crash: killed by SIGKILL". */
  recentEndings(): { backend: number; ending: string }[] {
    return this.record.recentEndings();
  }

  /** Called wherever the number of ready backends may change. */
  private noteReadiness(): void {
    this.record.readiness(this.pool.readyCount, this.clock.now());
  }

  status(): BackendStatus[] {
    const now = this.clock.now();
    return this.pool.view().map((b) => {
      const proc = this.processes.get(b.id);
      return {
        id: b.id,
        pid: proc?.pid,
        port: proc?.spec.port,
        // A lease held by a WebSocket (or other Upgrade) lasts as long as that connection. One a
        // worker holds idle for its next requests is idle (leasedBy says which worker has it).
        state:
          b.state.phase === 'busy' && b.state.use === 'upgraded'
            ? 'upgraded'
            : b.heldIdle
              ? 'idle'
              : b.state.phase,
        ageMs: now - b.spawnedAt,
        served: b.served,
        leasedBy: b.state.phase === 'busy' ? b.state.worker : undefined,
        toRoll: b.toRoll,
        recycle: b.recycle,
        rssBytes: this.rss.get(b.id),
      };
    });
  }

  private apply(effects: PoolEffect[]): void {
    for (const effect of effects) {
      switch (effect.type) {
        case 'spawn':
          // The spec is taken now: a reload while the port is found must not mix two configs.
          void this.launch(effect.backend, this.config);
          break;
        case 'end':
          this.end(effect.backend, effect.why);
          break;
        case 'grant': {
          const port = this.processes.get(effect.backend)?.spec.port;
          if (port === undefined)
            throw new Error(`granted backend ${effect.backend} has no process`);
          const previous = this.lastWorker.get(effect.backend);
          if (previous !== undefined && previous !== effect.worker)
            this.hooks.dropConnections(previous, port);
          this.lastWorker.set(effect.backend, effect.worker);
          this.hooks.grant({ ...effect, port });
          break;
        }
        case 'reject':
          this.hooks.reject(effect.worker, effect.checkoutSeq, effect.code);
          break;
        case 'revoke':
          this.hooks.revoke(effect.worker, effect.seq, effect.leases, effect.upTo);
          break;
        case 'close-upgraded':
          this.hooks.closeUpgraded(effect.worker, effect.lease);
          break;
        case 'lost':
          this.hooks.lost(effect.worker, effect.lease);
          break;
        case 'pool-ready':
          this.hooks.poolReady();
          break;
        case 'backoff':
          if (effect.streak > 1) {
            this.log.warn(
              { event: 'backend.backoff', streak: effect.streak, delayMs: effect.delayMs },
              `backends keep failing (${effect.streak} in a row); next start in ${effect.delayMs} ms`,
            );
          }
          break;
        case 'probe': {
          const proc = this.processes.get(effect.backend);
          this.log.warn(
            {
              event: 'backend.refused',
              backend: effect.backend,
              backend_pid: proc?.pid,
              port: proc?.spec.port,
            },
            'backend refused a connection: not listening; back to starting until its port accepts (the request is served by another)',
          );
          proc?.probePort();
          this.noteReadiness();
          break;
        }
        case 'boot-failed': {
          const last = this.record.lastFailure;
          this.hooks.bootFailed({
            attempts: effect.attempts,
            command: last?.command ?? this.config.service_start_process_cmd,
            how: last?.how ?? 'unknown',
            tail: last?.tail ?? [],
            started: last?.started ?? true,
            conclusive: effect.conclusive ?? false,
          });
          break;
        }
        case 'health-check':
          void this.checkBackendHealth(effect.backend, effect.lease);
          break;
        case 'anomaly':
          this.log.debug({ event: 'pool.anomaly' }, effect.message);
          break;
        default:
          effect satisfies never;
      }
    }
    this.scheduleWake();
    this.share.changed?.();
  }

  private async launch(id: number, config: Config): Promise<void> {
    const host = backendHost(config.service_http_base_url);
    const port = await this.ring.acquire((p) => canBind(host, p));
    // The pool may have given up on this backend (shutdown, start timeout) while a port was found.
    if (this.pool.backend(id)?.state.phase !== 'starting') {
      if (port !== undefined) this.ring.release(port);
      this.apply(this.pool.backendExited(id));
      this.resolveIfEmpty();
      return;
    }
    if (port === undefined) {
      const { first, last } = config.service_port_range;
      const why = `no free port in service_port_range ${first}..${last}: every port is held by a backend or another program`;
      this.log.error({ event: 'backend.no-port', backend: id }, why);
      this.record.lastFailure = {
        command: config.service_start_process_cmd,
        how: `was never started: ${why}`,
        tail: [],
        started: false,
      };
      this.apply(this.pool.backendExited(id));
      return;
    }
    const proc = new BackendProcess(
      {
        id,
        host,
        port,
        command: config.service_start_process_cmd,
        cwd: config.service_cwd,
        readiness: config.service_start_delay_ms,
        healthPath: config.service_health_path,
        stopGraceMs: config.service_stop_timeout_ms,
      },
      this.log,
      {
        onReady: () => {
          this.log.info(
            { event: 'backend.ready', backend: id, backend_pid: proc.pid, port },
            'backend ready',
          );
          this.apply(this.pool.backendReady(id));
          this.noteReadiness();
        },
        onExit: (info) => this.handleExit(id, port, info),
        onSilentListener: () =>
          this.log.warn(
            { event: 'backend.stdout-buffered', backend: id, backend_pid: proc.pid, port },
            `${bufferedHint(port)}; still waiting up to service_start_timeout_ms for it`,
          ),
      },
    );
    this.processes.set(id, proc);
    this.backendCounts.starts += 1;
    this.log.info(
      { event: 'backend.starting', backend: id, backend_pid: proc.pid, port },
      'backend starting',
    );
    if (proc.pid !== undefined) this.hooks.backendStarted(proc.pid, proc.command);
  }

  /** Stops a backend's process, as the pool decided (retired on purpose, or failed). */
  private end(id: number, reason: EndReason): void {
    const proc = this.processes.get(id);
    const level = reason === 'shrink' || reason === 'shutdown' ? 'info' : 'warn';
    let why: string = END_WHY[reason];
    if (reason === 'start-timeout' && proc) {
      const report = proc.startReport();
      why = `${why}: ${describeStart(report, this.config, proc.spec.port)}`;
      this.record.lastFailure = {
        command: proc.command,
        how: why,
        tail: report.tail,
        started: true,
      };
      // Another start would wait as long and end the same way: say so now.
      if (report.acceptedWithoutLine) this.apply(this.pool.giveUp());
    }
    this.log[level](
      { event: 'backend.stopping', backend: id, backend_pid: proc?.pid, reason },
      `stopping backend: ${why}`,
    );
    this.noteReadiness();
    // A backend still waiting for its port has no process yet; launch() sees it is no longer starting.
    proc?.stop(reason === 'broken' ? BROKEN_GRACE_MS : 0);
  }

  private handleExit(id: number, port: number, info: ExitInfo): void {
    const before = this.pool.backend(id)?.state;
    const ended = this.processes.get(id);
    const pid = ended?.pid;
    if (pid !== undefined) this.hooks.backendEnded(pid);
    this.processes.delete(id);
    this.lastWorker.delete(id);
    this.ring.release(port);
    const report = exitReport(before, info);
    if (!info.stopped && ended) {
      this.record.lastFailure = {
        command: ended.command,
        how: report.how,
        tail: ended.startReport().tail,
        started: true,
      };
    }
    const counts = this.backendCounts.exits;
    counts.set(report.reason, (counts.get(report.reason) ?? 0) + 1);
    if (report.failure) this.record.failed(this.clock.now());
    this.record.ended(id, `${report.reason}: ${report.how}`);
    this.log[report.level](
      { event: report.event, backend: id, port, code: info.code, signal: info.signal },
      report.message,
    );
    this.apply(this.pool.backendExited(id));
    this.noteReadiness();
    this.resolveIfEmpty();
  }

  private resolveIfEmpty(): void {
    if (this.onEmpty && this.pool.isEmpty) {
      this.onEmpty();
      this.onEmpty = undefined;
    }
  }

  private scheduleWake(): void {
    const next = this.pool.nextWakeAt();
    if (next === undefined || next >= this.wakeAt) return;
    clearTimeout(this.wakeTimer);
    this.wakeAt = next;
    this.wakeTimer = setTimeout(
      () => {
        this.wakeAt = Infinity;
        this.wakeTimer = undefined;
        this.apply(this.pool.tick());
      },
      Math.max(0, next - this.clock.now()),
    );
  }
}
