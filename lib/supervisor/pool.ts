import {
  isInvalid,
  passLimit,
  transition,
  type BackendEvent,
  type BackendState,
  type Phase,
  endReasonOf,
  type EndReason,
  type Fault,
  type RetireReason,
} from './backend-state.js';
import { boundsForNewcomer, passRightFor } from './pass-order.js';
import { RestartGate, type RestartPolicy } from './restart-gate.js';

/**
 * The pool's decisions, and nothing else: who gets which backend, when to grow, whom to retire,
 * what a front worker's death frees. Like poolboy, it is one state record moved by events; each
 * event returns the effects the edge must carry out (start or stop a process, answer a worker).
 * Time and randomness are injected, so every decision is testable without processes or timers.
 */
export interface PoolSettings {
  readonly size: number;
  readonly maxOverflow: number;
  readonly strategy: 'fifo' | 'lifo';
  /** 0 = a request may wait forever. */
  readonly queueTimeoutMs: number;
  /** 0 = no request may wait. */
  readonly queueMax: number;
  /** Requests one client may have waiting; 0 = no limit. */
  readonly queueMaxPerClient: number;
  readonly startTimeoutMs: number;
  /** Most backends starting at once (0 = no limit). */
  readonly startConcurrency: number;
  /** Failed starts in a row, before any backend was ever ready, after which the pool gives up. */
  readonly bootAttempts: number;
  /** A backend that served this many requests (plus up to maxRequestsJitter) is recycled; 0 = off. */
  readonly maxRequests: number;
  readonly maxRequestsJitter: number;
  /** A backend whose process group uses more memory than this is recycled; 0 = off. */
  readonly maxRssBytes: number;
  /** Failed health checks in a row after which an idle backend is replaced. */
  readonly healthFailures: number;
  readonly restart: RestartPolicy;
  /**
   * A backend beyond pool_size retires only once it has been idle this long (0 = at once, as the
   * original tool does). Closed-loop clients send their next request a moment after each answer,
   * so at 0 a load near pool_size + overflow starts and stops processes continuously.
   */
  readonly idleRetireMs: number;
}

export interface PoolClock {
  now(): number;
  /** A number in [0, 1), as Math.random. */
  random(): number;
}

/**
 * Numbers the pool's revokes. The primary passes its one sequence for everything it asks the
 * workers (lib/ipc/request.ts), so that revokes and metrics requests never share a number.
 */
export interface Numbering {
  next(): number;
}

/** A numbering of its own, for a pool tested alone. */
export function counter(): Numbering {
  let last = 0;
  return { next: () => ++last };
}

export type RejectCode =
  | 'MPX_QUEUE_FULL'
  | 'MPX_CLIENT_QUEUE_FULL'
  | 'MPX_QUEUE_TIMEOUT'
  | 'MPX_SHUTTING_DOWN'
  | 'MPX_NO_SERVICE';

/**
 * How a front worker's use of a backend ended. 'refused': the backend refused the connection, so
 * it never saw the request; it is not listening (yet, or any more) and goes back to starting.
 * 'bad-response': its answer could not be parsed (502 to the client), but the process is fine.
 * 'abandoned': its client left an answer that did not end within the discard limits (an endless
 * stream): it is replaced.
 */
export type CheckinOutcome = 'ok' | 'stuck' | 'broken' | 'refused' | 'bad-response' | 'abandoned';

export type PoolEffect =
  | { readonly type: 'spawn'; readonly backend: number }
  /** Stop the backend's process: retired on purpose, or failed. */
  | { readonly type: 'end'; readonly backend: number; readonly why: EndReason }
  | {
      readonly type: 'grant';
      readonly worker: number;
      readonly checkoutSeq: number;
      readonly lease: number;
      readonly backend: number;
      /** The highest of the worker's checkout numbers it may pass the lease to (Infinity: any). */
      readonly upTo: number;
      /**
       * How many times the worker may pass it on (Infinity: no limit): what is left of the
       * backend's max_requests after this request, so the limit holds without a round trip.
       */
      readonly passes: number;
      /**
       * How long the worker may keep the backend while it is idle, for its own next requests (a
       * held lease, no message per request): Infinity within pool_size; pool_overflow_idle_ms for
       * a backend beyond it, so the pool can shrink; 0 when it must come back after each request.
       */
      readonly holdMs: number;
    }
  /**
   * The backend held under `lease` by `worker` is gone (it exited): the worker forgets the lease,
   * so that a request it would serve there never reaches whatever starts on that port next.
   */
  | { readonly type: 'lost'; readonly worker: number; readonly lease: number }
  /**
   * The worker may pass these leases only to its checkouts numbered ≤ upTo from now on; it
   * answers with revoked(seq).
   */
  | {
      readonly type: 'revoke';
      readonly worker: number;
      readonly seq: number;
      readonly leases: readonly number[];
      readonly upTo: number;
    }
  | {
      readonly type: 'reject';
      readonly worker: number;
      readonly checkoutSeq: number;
      readonly code: RejectCode;
    }
  | { readonly type: 'pool-ready' }
  /** Check the health of the backend, leased for it under `lease`; answer with healthChecked(). */
  | { readonly type: 'health-check'; readonly backend: number; readonly lease: number }
  /**
   * A backend held by an upgraded connection is to retire: its worker closes that connection
   * after shutdown_timeout_ms, which returns the lease.
   */
  | { readonly type: 'close-upgraded'; readonly worker: number; readonly lease: number }
  /** Find out again whether the backend listens (it refused a connection). */
  | { readonly type: 'probe'; readonly backend: number }
  /** No backend was ever ready and bootAttempts starts in a row failed: the service cannot start. */
  | { readonly type: 'boot-failed'; readonly attempts: number; readonly conclusive?: boolean }
  | { readonly type: 'backoff'; readonly streak: number; readonly delayMs: number }
  | { readonly type: 'anomaly'; readonly message: string };

export interface BackendView {
  readonly id: number;
  readonly state: BackendState;
  readonly spawnedAt: number;
  readonly readyAt: number | undefined;
  readonly served: number;
  /** Started before the last rolling restart: it is being replaced. */
  readonly toRoll: boolean;
  /** Due for recycling, and why: it is being replaced. */
  readonly recycle: RecycleReason | undefined;
  /** Leased, and held idle by its worker for its next requests (as of the worker's last report). */
  readonly heldIdle: boolean;
}

/** One lease in a worker's report of what it holds: requests served on it unreported, idle ms (-1: in use). */
export type HeldEntry = readonly [lease: number, reused: number, idleMs: number];

/** What a worker tells of a lease it held, as it gives it back (see Pool.checkin). */
export interface HeldReport {
  /** Requests it served on the lease without a message each, not reported yet. */
  readonly reused?: number;
  /** How long it held the backend idle before giving it back. */
  readonly idleMs?: number;
}

/** Counters since start, for /status. */
export interface PoolTotals {
  /** Backends started beyond pool_size because requests were waiting. */
  overflowSpawns: number;
  /** Backends that ended on their own or failed (crash, boot failure, stuck, broken) and were replaced. */
  restarts: number;
}

interface BackendRecord {
  readonly id: number;
  state: BackendState;
  readonly spawnedAt: number;
  /** Since when it has been starting: its start timeout counts from here. */
  startingSince: number;
  readyAt: number | undefined;
  served: number;
  /** Which rolling-restart generation started it. */
  readonly generation: number;
  /** Its own max_requests, jitter included (Infinity when off). */
  readonly requestLimit: number;
  /** Its place goes to another service (max_backends): it retires when its lease ends. */
  lent: boolean;
  /** Set once it is due for recycling: replaced first, then retired, as in a rolling restart. */
  recycle: 'max-requests' | 'max-rss' | undefined;
  /** Health checks failed in a row. */
  unhealthy: number;
  /** Since when it has been idle (undefined while it is not). */
  idleSince: number | undefined;
  /** Busy, but its worker said it holds it idle (a `held` report); cleared by any lease event. */
  heldIdle: boolean;
  /** A health check came while a worker held it: it is checked when it comes back. */
  healthDue: boolean;
}

/**
 * The "worker" that holds a backend while its health is checked: the supervisor itself. Front
 * workers are numbered from 1, so a health check is a lease like any other and no request can
 * reach the backend meanwhile (it serves one at a time).
 */
export const HEALTH_CHECKER = 0;

/** Why a recycled backend retires, for the log and status. */
type RecycleReason = NonNullable<BackendRecord['recycle']>;

interface Waiter {
  readonly worker: number;
  readonly checkoutSeq: number;
  readonly deadline: number;
  /** Asked again after a refusal: at the head of the queue, and never the target of a pass. */
  readonly again: boolean;
  /** When it started waiting (the budget serves the service whose oldest waiter came first). */
  readonly since: number;
  /** Who asked (queue_max_per_client): an address, or '' when not told. */
  readonly client: string;
}

/** Faults after which the backend's end counts as a failure for the restart backoff. */
const BACKOFF_FAULTS: ReadonlySet<Fault> = new Set(['start-timeout', 'broken']);

/** Idle, or busy and not yet marked to retire: a backend that will take requests. */
function isLive(b: BackendRecord): boolean {
  return b.state.phase === 'idle' || (b.state.phase === 'busy' && !b.state.retireOnReturn);
}

/**
 * What the shared budget (budget.ts) needs of one service's pool: see ServiceDemand there. Lent:
 * its backends already on their way out to make room for another service.
 */
export interface PoolDemand {
  readonly processes: number;
  readonly wanted: number;
  readonly oldestWaitSince: number | undefined;
  readonly idle: readonly { readonly backend: number; readonly since: number }[];
  readonly lent: number;
}

/** Numberings shared by the pools of several services, so a backend id or lease names one. */
export interface PoolNumbering {
  /** The revokes: the primary's one sequence for what it asks the workers. */
  readonly revokes: Numbering;
  readonly backends: Numbering;
  readonly leases: Numbering;
}

export class Pool {
  private readonly backends = new Map<number, BackendRecord>();
  private readonly waiters: Waiter[] = [];
  private readonly backendIds: Numbering;
  private readonly leaseIds: Numbering;
  private readonly sequence: Numbering;
  /** Most processes it may have now: Infinity alone, else what the shared budget gives it. */
  private quota = Infinity;
  /** Failure streak, backoff, boot failures, gave up: what holds starts back. */
  private readonly gate = new RestartGate();
  private announcedReady = false;
  private stopping = false;
  private generation = 1;
  private effects: PoolEffect[] = [];
  readonly totals: PoolTotals = { overflowSpawns: 0, restarts: 0 };

  constructor(
    private settings: PoolSettings,
    private readonly clock: PoolClock,
    /** Numbers the revokes (or, shared among pools, revokes, backends and leases). */
    numbering: Numbering | PoolNumbering = counter(),
  ) {
    const shared = 'revokes' in numbering ? numbering : undefined;
    this.sequence = shared ? shared.revokes : (numbering as Numbering);
    this.backendIds = shared ? shared.backends : counter();
    this.leaseIds = shared ? shared.leases : counter();
  }

  /**
   * What the shared budget gives this pool: at most `quota` processes from now on (it never has
   * to end one for it; the budget lends and reclaims for that). Starts what it now may.
   */
  setQuota(quota: number): PoolEffect[] {
    const raised = quota > this.quota;
    this.quota = quota;
    if (raised) this.reconcile({ shrink: false });
    return this.flush();
  }

  /** Its part in the shared budget, for planBudget. */
  demand(): PoolDemand {
    const idle: { backend: number; since: number }[] = [];
    let lent = 0;
    for (const b of this.backends.values()) {
      if (b.state.phase === 'idle' && b.idleSince !== undefined)
        idle.push({ backend: b.id, since: b.idleSince });
      if (b.lent) lent++;
    }
    return {
      processes: this.backends.size,
      wanted: this.stopping || this.gate.gaveUp ? 0 : Math.max(0, this.startsWanted().wanted),
      oldestWaitSince: this.waiters.reduce<number | undefined>(
        (oldest, w) => (oldest === undefined || w.since < oldest ? w.since : oldest),
        undefined,
      ),
      idle,
      lent,
    };
  }

  /** Gives the place of idle backend `id` to another service: it retires now. */
  lend(id: number): PoolEffect[] {
    const backend = this.backends.get(id);
    if (backend?.state.phase === 'idle') {
      backend.lent = true;
      // The place is given away: once the backend is gone, it is not this pool's to refill.
      this.quota -= 1;
      this.retire(backend, 'lent');
    }
    return this.flush();
  }

  /**
   * Gives the place of the next backend to become free to another service: a busy one (by
   * pool_strategy) retires when its lease ends, before serving this pool's own waiters.
   */
  reclaim(): PoolEffect[] {
    // Never an upgraded connection's backend: taking it would close a client's WebSocket.
    const busy = [...this.backends.values()].filter(
      (b) =>
        b.state.phase === 'busy' &&
        b.state.use !== 'upgraded' &&
        !b.lent &&
        b.state.worker !== HEALTH_CHECKER,
    );
    if (busy.length > 0) {
      const victim = this.byStrategy(busy);
      victim.lent = true;
      this.quota -= 1;
      if (victim.state.phase === 'busy' && !victim.state.retireOnReturn)
        this.markForRetirement(victim);
    }
    return this.flush();
  }

  /**
   * New settings (reload, scale) take effect at once: the pool grows, or shrinks by retiring idle
   * backends now and busy ones when they are returned. Waiters keep the deadline they were given.
   */
  reconfigure(settings: PoolSettings): PoolEffect[] {
    this.settings = settings;
    this.reconcile({ shrink: true });
    return this.flush();
  }

  /**
   * Rolling restart: every backend running now is replaced. One replacement starts at a time (even
   * beyond pool_size + pool_max_overflow, by one); when it is ready an old backend retires, idle at
   * once or busy when returned, so the ready backends never drop below pool_size. Old backends
   * still starting are not worth waiting for and go at once.
   */
  roll(): PoolEffect[] {
    this.generation += 1;
    for (const backend of this.backends.values()) {
      if (backend.state.phase === 'starting') this.retire(backend, 'rolled');
    }
    this.reconcile({ shrink: true });
    return this.flush();
  }

  /** True while a rolling restart has backends left to replace. */
  get rolling(): boolean {
    return this.find((b) => b.generation < this.generation && isLive(b)) !== undefined;
  }

  /**
   * One failed start already said why every other would fail (its port accepts, its first line
   * never comes): the same end as service_boot_attempts failures, at once. No further backend is
   * started.
   */
  giveUp(): PoolEffect[] {
    const attempts = this.stopping ? undefined : this.gate.giveUp();
    if (attempts !== undefined) this.emit({ type: 'boot-failed', attempts, conclusive: true });
    return this.flush();
  }

  get readyCount(): number {
    return this.count('idle', 'busy');
  }

  /** Starts pool_size backends at once (a pool of none is ready at once). */
  start(): PoolEffect[] {
    this.reconcile({ shrink: false });
    if (this.settings.size === 0 && !this.announcedReady) {
      this.announcedReady = true;
      this.emit({ type: 'pool-ready' });
    }
    return this.flush();
  }

  /**
   * A request wants a backend. `first`: it was already granted one that refused its connection,
   * so it goes back to the head of the queue rather than the end.
   */
  checkout(worker: number, checkoutSeq: number, first = false, client = ''): PoolEffect[] {
    if (this.stopping) {
      this.emit({ type: 'reject', worker, checkoutSeq, code: 'MPX_SHUTTING_DOWN' });
      return this.flush();
    }
    const idle = this.pickIdle();
    if (idle) {
      this.grant(idle, worker, checkoutSeq);
    } else if (this.waiters.length >= this.settings.queueMax) {
      this.emit({ type: 'reject', worker, checkoutSeq, code: 'MPX_QUEUE_FULL' });
    } else if (!first && this.clientQueueFull(client)) {
      this.emit({ type: 'reject', worker, checkoutSeq, code: 'MPX_CLIENT_QUEUE_FULL' });
    } else {
      const timeout = this.settings.queueTimeoutMs;
      const deadline = timeout > 0 ? this.clock.now() + timeout : Infinity;
      const since = this.clock.now();
      const waiter = { worker, checkoutSeq, deadline, again: first, client, since };
      if (first) this.waiters.unshift(waiter);
      else this.waiters.push(waiter);
      this.limitPasses(first ? 0 : this.waiters.length - 1);
      this.reconcile({ shrink: false });
    }
    return this.flush();
  }

  /** Whether `client` already has queue_max_per_client requests waiting. */
  private clientQueueFull(client: string): boolean {
    const limit = this.settings.queueMaxPerClient;
    if (limit <= 0 || client === '') return false;
    let waiting = 0;
    for (const w of this.waiters) if (w.client === client && ++waiting >= limit) return true;
    return false;
  }

  /**
   * The worker gave up on a checkout (its client left, or it timed out). If the checkout was already
   * granted, the grant is in flight to a worker that will ignore it, so the lease comes back here.
   */
  cancel(worker: number, checkoutSeq: number): PoolEffect[] {
    if (this.dropWaiter(worker, checkoutSeq)) return this.flush();
    const leased = this.grantedTo(worker, checkoutSeq);
    // Granted, and given back unused: the backend is free again, and served nothing.
    if (leased && leased.state.phase === 'busy')
      return this.checkin(worker, leased.state.lease, 'ok', { served: false });
    return this.flush();
  }

  /**
   * `served`: false for a lease given back unused. `reused`: requests the worker served on the
   * lease while holding it, not reported yet (see held()). `idleMs`: how long the worker held it
   * idle before giving it back, which counts toward pool_overflow_idle_ms as idle here would.
   */
  checkin(
    worker: number,
    lease: number,
    outcome: CheckinOutcome,
    { served = true, reused = 0, idleMs = 0 }: HeldReport & { served?: boolean } = {},
  ): PoolEffect[] {
    const backend = this.holding(worker, lease);
    if (backend && backend.state.phase === 'busy') this.countReused(backend, reused);
    if (!backend || backend.state.phase !== 'busy') {
      // The backend died or was taken back while the request was in flight: nothing to return.
      this.emit({
        type: 'anomaly',
        message: `checkin of unknown lease ${lease} from worker ${worker}`,
      });
      return this.flush();
    }
    if (outcome === 'refused') {
      // Not a crash: it printed before it listened, or is restarting its listener. It gets its
      // start timeout again to listen; the request it refused was never seen by it.
      backend.startingSince = this.clock.now();
      this.move(backend, { type: 'unready' });
      this.emit({ type: 'probe', backend: backend.id });
    } else if (outcome === 'stuck' || outcome === 'broken') {
      this.fail(backend, outcome);
    } else if (outcome === 'abandoned') {
      this.fail(backend, 'abandoned-stream');
    } else {
      if (served) this.countServed(backend);
      this.takeBack(backend);
      // Held idle by the worker: idle here as long, for pool_overflow_idle_ms.
      if ((backend.state as BackendState).phase === 'idle' && idleMs > 0)
        backend.idleSince = this.clock.now() - Math.min(idleMs, this.clock.now());
    }
    this.reconcile({ shrink: true });
    return this.flush();
  }

  /**
   * The worker's batched report of the leases it holds: the requests it served on them with no
   * message each (counted toward /status and recycling; the grant's `passes` already bounds
   * them), and which ones sit idle there (shown idle, as of this report).
   */
  held(worker: number, entries: readonly HeldEntry[]): PoolEffect[] {
    for (const [lease, reused, idleMs] of entries) {
      const backend = this.holding(worker, lease);
      if (backend?.state.phase !== 'busy') continue;
      this.countReused(backend, reused);
      backend.heldIdle = idleMs >= 0;
    }
    return this.flush();
  }

  private countReused(backend: BackendRecord, count: number): void {
    for (let i = 0; i < count; i++) this.countServed(backend);
  }

  /**
   * The worker's request on `lease` ended well and the worker handed the backend to its own
   * checkout `to` (a sticky lease): a checkin and a grant in one, decided by the worker. The
   * request is on the backend already, so this is taken as a fact; whatever the pool still kept
   * for `to` (its place in the queue, or a grant crossing the pass) is let go.
   */
  pass(worker: number, lease: number, to: number): PoolEffect[] {
    if (!this.dropWaiter(worker, to)) {
      // Granted while the pass was on its way: the worker ignores that grant.
      const crossed = this.grantedTo(worker, to);
      if (crossed) this.takeBack(crossed);
    }
    const backend = this.holding(worker, lease);
    if (!backend || backend.state.phase !== 'busy') {
      // The backend died or was taken back meanwhile: the worker will find that out itself.
      this.emit({
        type: 'anomaly',
        message: `pass of unknown lease ${lease} from worker ${worker}`,
      });
    } else {
      if (backend.state.pass.kind === 'bounded' && to > backend.state.pass.upTo) {
        this.emit({
          type: 'anomaly',
          message: `worker ${worker} passed lease ${lease} to request ${to}, beyond its confirmed bound ${backend.state.pass.upTo}`,
        });
      }
      this.countServed(backend);
      this.move(backend, { type: 'pass', checkoutSeq: to });
    }
    this.reconcile({ shrink: true });
    return this.flush();
  }

  /** The worker confirmed the revoke `seq`: its bounds are in force. */
  revoked(worker: number, seq: number): PoolEffect[] {
    for (const b of this.backends.values()) {
      if (b.state.phase === 'busy' && b.state.worker === worker && b.state.pass.kind === 'revoking')
        this.move(b, { type: 'revoke-confirmed', seq });
    }
    // What the revoke did not bring back (the backends were busy, not held idle) is busy
    // indeed: starts that waited for it are due now (see startsWanted).
    this.reconcile({ shrink: false });
    return this.flush();
  }

  backendReady(id: number): PoolEffect[] {
    const backend = this.backends.get(id);
    if (!backend || backend.state.phase !== 'starting') return this.flush();
    backend.readyAt = this.clock.now();
    this.gate.ready();
    this.move(backend, { type: 'ready' });
    if (!this.announcedReady && this.count('idle', 'busy') >= this.settings.size) {
      this.announcedReady = true;
      this.emit({ type: 'pool-ready' });
    }
    this.reconcile({ shrink: true });
    return this.flush();
  }

  backendExited(id: number): PoolEffect[] {
    const backend = this.backends.get(id);
    if (!backend) return this.flush();
    const before = backend.state;
    this.move(backend, { type: 'exit' });
    this.backends.delete(id);
    // A held lease may sit idle in its worker, which would not find out on its own.
    if (before.phase === 'busy' && before.worker !== HEALTH_CHECKER)
      this.emit({ type: 'lost', worker: before.worker, lease: before.lease });
    // Ended by a fault, or on its own (a crash): another takes its place.
    const replaced = before.phase !== 'retiring';
    const failed = before.phase === 'failed' ? BACKOFF_FAULTS.has(before.fault) : replaced;
    if (failed && !this.stopping) this.recordFailure();
    const bootFailure =
      before.phase === 'starting' ||
      (before.phase === 'failed' && before.fault === 'start-timeout');
    if (bootFailure && !this.stopping) {
      const attempts = this.gate.bootFailed(this.settings.bootAttempts);
      if (attempts !== undefined) this.emit({ type: 'boot-failed', attempts });
    }
    if (replaced && !this.stopping) this.totals.restarts += 1;
    this.reconcile({ shrink: false });
    return this.flush();
  }

  /**
   * A front worker died. Its waiters go; the backends it held are retired rather than returned,
   * because nothing tells whether they are still working on the dead worker's requests.
   */
  workerExited(worker: number): PoolEffect[] {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      if (this.waiters[i]!.worker === worker) this.waiters.splice(i, 1);
    }
    for (const backend of this.backends.values()) {
      if (backend.state.phase === 'busy' && backend.state.worker === worker) {
        this.fail(backend, 'owner-died');
      }
    }
    this.reconcile({ shrink: false });
    return this.flush();
  }

  /** The worker holding `lease` upgraded its connection: the backend is held until it closes. */
  upgraded(worker: number, lease: number): PoolEffect[] {
    const backend = this.holding(worker, lease);
    if (backend) this.move(backend, { type: 'upgrade' });
    return this.flush();
  }

  /** Expires queue deadlines and start timeouts, and starts backends whose backoff has passed. */
  tick(): PoolEffect[] {
    const now = this.clock.now();
    for (let i = 0; i < this.waiters.length;) {
      const waiter = this.waiters[i]!;
      if (waiter.deadline <= now) {
        this.waiters.splice(i, 1);
        this.emit({ ...this.replyTo(waiter), type: 'reject', code: 'MPX_QUEUE_TIMEOUT' });
      } else i++;
    }
    for (const backend of this.backends.values()) {
      if (
        backend.state.phase === 'starting' &&
        now - backend.startingSince >= this.settings.startTimeoutMs
      ) {
        this.fail(backend, 'start-timeout');
      }
    }
    this.reconcile({ shrink: this.settings.idleRetireMs > 0 });
    return this.flush();
  }

  /** Rejects every waiter and stops every backend; busy ones too (the drain is over by now). */
  shutdown(): PoolEffect[] {
    this.stopping = true;
    for (const waiter of this.waiters.splice(0)) {
      this.emit({ ...this.replyTo(waiter), type: 'reject', code: 'MPX_SHUTTING_DOWN' });
    }
    for (const backend of this.backends.values()) {
      if (endReasonOf(backend.state) === undefined) this.retire(backend, 'shutdown');
    }
    return this.flush();
  }

  /** When the edge should call tick() next, if anything is pending. */
  nextWakeAt(): number | undefined {
    let wake = Infinity;
    for (const waiter of this.waiters) wake = Math.min(wake, waiter.deadline);
    for (const backend of this.backends.values()) {
      if (backend.state.phase === 'starting') {
        wake = Math.min(wake, backend.startingSince + this.settings.startTimeoutMs);
      }
    }
    const held = this.stopping ? undefined : this.gate.wakeAt();
    if (held !== undefined) wake = Math.min(wake, held);
    const surplus = this.nextSurplusAt();
    if (surplus !== undefined) wake = Math.min(wake, surplus);
    return Number.isFinite(wake) ? wake : undefined;
  }

  get queueLength(): number {
    return this.waiters.length;
  }

  get isEmpty(): boolean {
    return this.backends.size === 0;
  }

  view(): BackendView[] {
    return [...this.backends.values()].map((b) => this.toView(b));
  }

  backend(id: number): BackendView | undefined {
    const b = this.backends.get(id);
    return b && this.toView(b);
  }

  private toView(b: BackendRecord): BackendView {
    return {
      id: b.id,
      state: b.state,
      spawnedAt: b.spawnedAt,
      readyAt: b.readyAt,
      served: b.served,
      toRoll: b.generation < this.generation,
      recycle: b.recycle,
      heldIdle: b.heldIdle,
    };
  }

  private reconcile({ shrink }: { shrink: boolean }): void {
    if (this.stopping || this.gate.gaveUp) return;
    this.serveWaiters();
    this.retireRolled();
    this.grow();
    if (shrink) this.shrink();
  }

  /**
   * During a rolling restart: retire old backends (idle first, then the oldest) while the ready
   * ones would still number at least pool_size without them.
   */
  private retireRolled(): void {
    let toRoll = 0;
    let current = 0;
    for (const b of this.backends.values()) {
      if (this.awaitsRoll(b)) toRoll++;
      else if (isLive(b)) current++;
    }
    if (toRoll === 0) return;
    const victims = [...this.backends.values()]
      .filter((b) => this.awaitsRoll(b))
      .sort(
        (a, b) =>
          Number(b.state.phase === 'idle') - Number(a.state.phase === 'idle') || a.id - b.id,
      );
    for (const victim of victims) {
      if (current + toRoll <= this.settings.size) return;
      if (victim.state.phase === 'idle') this.retire(victim, victim.recycle ?? 'rolled');
      else this.markForRetirement(victim);
      toRoll--;
    }
  }

  /**
   * A backend started before the last roll(), or due for recycling, that still takes requests:
   * it is replaced first, then retired.
   */
  private awaitsRoll(b: BackendRecord): boolean {
    return (b.generation < this.generation || b.recycle !== undefined) && isLive(b);
  }

  /** True while some backend awaits its replacement (a rolling restart or recycling). */
  private get someAwaitRoll(): boolean {
    return this.find((b) => this.awaitsRoll(b)) !== undefined;
  }

  /**
   * The edge measured a backend's memory (its whole process group). Over the limit, it is
   * recycled: replaced first, then retired.
   */
  backendRss(id: number, bytes: number): PoolEffect[] {
    const backend = this.backends.get(id);
    const limit = this.settings.maxRssBytes;
    if (backend && limit > 0 && bytes > limit && isLive(backend)) {
      this.markForRecycling(backend, 'max-rss');
    }
    return this.flush();
  }

  /** Leases every idle backend to the health checker (service_health_interval_ms). */
  checkHealth(): PoolEffect[] {
    if (this.stopping) return this.flush();
    // A backend a worker holds is taken back, and checked as it comes back (see takeBack): a
    // pool its workers hold is still checked, between two requests.
    const held = new Map<number, BackendRecord[]>();
    for (const backend of this.backends.values()) {
      const s = backend.state;
      if (s.phase === 'idle') this.startHealthCheck(backend);
      else if (s.phase === 'busy' && s.use === 'request' && s.pass.kind === 'open') {
        backend.healthDue = true;
        held.set(s.worker, [...(held.get(s.worker) ?? []), backend]);
      }
    }
    for (const [worker, backends] of held) this.revoke(worker, backends, 0);
    return this.flush();
  }

  private startHealthCheck(backend: BackendRecord): void {
    backend.healthDue = false;
    const lease = this.leaseIds.next();
    const pass = { kind: 'bounded', upTo: 0 } as const;
    this.move(backend, { type: 'lease', lease, worker: HEALTH_CHECKER, checkoutSeq: 0, pass });
    this.emit({ type: 'health-check', backend: backend.id, lease });
  }

  /**
   * A health check's answer. Healthy: the backend is free again. Failed healthFailures times in
   * a row: it is replaced (the check itself asked nothing of a request).
   */
  healthChecked(lease: number, healthy: boolean): PoolEffect[] {
    const backend = this.find(
      (b) =>
        b.state.phase === 'busy' && b.state.lease === lease && b.state.worker === HEALTH_CHECKER,
    );
    if (!backend) return this.flush();
    backend.unhealthy = healthy ? 0 : backend.unhealthy + 1;
    if (backend.unhealthy >= this.settings.healthFailures) this.fail(backend, 'unhealthy');
    else this.takeBack(backend);
    this.reconcile({ shrink: true });
    return this.flush();
  }

  /**
   * A busy backend whose lease ended well: free again, or retired if it was marked meanwhile. A
   * backend marked by a shrink serves a waiting request instead; a replaced one never does.
   */
  private takeBack(backend: BackendRecord): void {
    if (backend.state.phase !== 'busy') return;
    const toRoll = backend.generation < this.generation;
    // Its place was lent to another service: it goes even if requests of this one wait.
    if (backend.lent) {
      this.retire(backend, 'lent');
    } else if (backend.recycle === 'max-requests') {
      // max_requests is a limit, as gunicorn's, uWSGI's and Passenger's: at it, the backend takes
      // no further request and goes at once; its replacement starts while the others carry the load.
      this.retire(backend, 'max-requests');
    } else if (backend.state.retireOnReturn && (toRoll || backend.recycle)) {
      this.retire(backend, backend.recycle ?? 'rolled');
    } else if (backend.state.retireOnReturn && this.waiters.length === 0) {
      this.retire(backend, 'shrink');
    } else {
      this.move(backend, { type: 'checkin' });
      if (backend.healthDue && !this.stopping) this.startHealthCheck(backend);
    }
  }

  private markForRecycling(backend: BackendRecord, reason: RecycleReason): void {
    if (backend.recycle) return;
    backend.recycle = reason;
    this.reconcile({ shrink: true });
  }

  private serveWaiters(): void {
    while (this.waiters.length > 0) {
      const idle = this.pickIdle();
      if (!idle) return;
      const waiter = this.waiters.shift()!;
      this.grant(idle, waiter.worker, waiter.checkoutSeq);
    }
  }

  /**
   * Keep pool_size backends that are not on their way out, and start one more for every waiting
   * request that no starting backend will serve, up to pool_size + pool_max_overflow processes
   * (retiring ones still hold a process and a port, so they count). After repeated failures,
   * starts wait for the backoff and only one probe starts at a time.
   */
  private grow(): void {
    const now = this.clock.now();
    const { wanted: asked, surge } = this.startsWanted();
    // The shared budget counts every process, a retiring one too.
    const wanted = Math.min(asked, this.quota - this.backends.size);
    const active = this.count('starting', 'idle') + this.countBusy({ marked: false });
    for (let i = 0; i < wanted; i++) {
      const id = this.backendIds.next();
      this.backends.set(id, {
        id,
        state: { phase: 'starting' },
        spawnedAt: now,
        startingSince: now,
        readyAt: undefined,
        served: 0,
        generation: this.generation,
        requestLimit: this.requestLimit(),
        recycle: undefined,
        lent: false,
        unhealthy: 0,
        idleSince: undefined,
        heldIdle: false,
        healthDue: false,
      });
      if (!surge && active + i >= this.settings.size) this.totals.overflowSpawns += 1;
      this.emit({ type: 'spawn', backend: id });
    }
  }

  /**
   * How many backends grow() would start now, the shared budget aside: pool_size backends not on
   * their way out, and one more for every waiting request no starting backend will serve, up to
   * pool_size + pool_max_overflow processes (retiring ones still hold a process and a port, so
   * they count). After repeated failures, starts wait for the backoff and only one probe starts
   * at a time. `surge`: the one start is a rolling restart's replacement, beyond the ceiling.
   */
  private startsWanted(): { wanted: number; surge: boolean } {
    const now = this.clock.now();
    if (this.gate.holdsBack(now)) return { wanted: 0, surge: false };
    const starting = this.count('starting');
    const active = starting + this.count('idle') + this.countBusy({ marked: false });
    // A backend retiring at its max_requests is replaced at once, while it finishes exiting.
    let total = 0;
    for (const b of this.backends.values()) {
      if (!(b.state.phase === 'retiring' && b.state.reason === 'max-requests')) total++;
    }
    const cap = this.settings.size + this.settings.maxOverflow;
    // A lease being revoked may be held idle by its worker, and then comes back within one round
    // trip: a waiter it can serve starts nothing until the worker confirms (revoked()).
    let returning = 0;
    for (const b of this.backends.values()) {
      const s = b.state;
      if (
        s.phase === 'busy' &&
        s.pass.kind === 'revoking' &&
        s.pass.upTo === 0 &&
        !s.retireOnReturn
      )
        returning++;
    }
    let wanted = Math.max(this.settings.size - active, this.waiters.length - starting - returning);
    wanted = Math.min(wanted, cap - total);
    // A rolling restart's replacement: one at a time, allowed one process beyond the cap.
    const surge = wanted <= 0 && starting === 0 && this.someAwaitRoll && total < cap + 1;
    if (surge) wanted = 1;
    if (this.gate.probing(now, this.settings.restart))
      wanted = Math.min(wanted, starting === 0 ? 1 : 0);
    const concurrency = this.settings.startConcurrency;
    if (concurrency > 0) wanted = Math.min(wanted, concurrency - starting);
    return { wanted, surge };
  }

  /**
   * While no request waits and more than pool_size backends are live, retire by strategy among the
   * live ones: fifo the one started longest ago, lifo the one started last. An idle choice goes at
   * once; a busy one is marked and goes when it is returned.
   */
  private shrink(): void {
    if (this.waiters.length > 0) return;
    const grace = this.settings.idleRetireMs;
    for (;;) {
      const live = [...this.backends.values()].filter(isLive);
      if (live.length <= this.settings.size) return;
      // With a grace, a backend idle that long shows the pool is larger than the load needs; the
      // one to go is still pool_strategy's pick among all (a busy one goes when it is returned).
      if (grace > 0 && !this.surplusSince(live)) return;
      const victim = this.byStrategy(live);
      if (victim.state.phase === 'idle') this.retire(victim, 'shrink');
      else this.markForRetirement(victim);
    }
  }

  /**
   * With pool_overflow_idle_ms, while nobody waits and more than pool_size backends are live:
   * whether one of them has been idle for the whole grace.
   */
  private surplusSince(live: readonly BackendRecord[]): boolean {
    const now = this.clock.now();
    return live.some(
      (b) => b.state.phase === 'idle' && now - b.idleSince! >= this.settings.idleRetireMs,
    );
  }

  /**
   * With pool_overflow_idle_ms, while nobody waits and more than pool_size backends are live:
   * when the first idle one will have been idle for the whole grace (then the pool shrinks).
   */
  private nextSurplusAt(): number | undefined {
    if (this.settings.idleRetireMs <= 0 || this.waiters.length > 0) return undefined;
    const live = [...this.backends.values()].filter(isLive);
    if (live.length <= this.settings.size) return undefined;
    let first = Infinity;
    for (const b of live) {
      if (b.state.phase === 'idle')
        first = Math.min(first, b.idleSince! + this.settings.idleRetireMs);
    }
    return first === Infinity ? undefined : first;
  }

  /** The one pool_strategy picks: fifo the backend started longest ago, lifo the one started last. */
  private byStrategy(among: readonly BackendRecord[]): BackendRecord {
    // Ids grow with each start, so the smallest id is the backend started longest ago.
    const ids = among.map((b) => b.id);
    const id = this.settings.strategy === 'fifo' ? Math.min(...ids) : Math.max(...ids);
    return this.backends.get(id)!;
  }

  /** max_requests plus a jitter drawn per backend, so a pool started together does not recycle together. */
  private requestLimit(): number {
    const { maxRequests, maxRequestsJitter } = this.settings;
    if (maxRequests <= 0) return Infinity;
    return maxRequests + Math.floor(this.clock.random() * (maxRequestsJitter + 1));
  }

  private recordFailure(): void {
    const { streak, delayMs } = this.gate.failed(this.clock.now(), this.settings.restart);
    this.emit({ type: 'backoff', streak, delayMs });
  }

  private grant(backend: BackendRecord, worker: number, checkoutSeq: number): void {
    const lease = this.leaseIds.next();
    const pass = passRightFor(this.waiters, worker);
    this.move(backend, { type: 'lease', lease, worker, checkoutSeq, pass });
    const upTo = passLimit(pass);
    const passes = Math.max(0, backend.requestLimit - backend.served - 1);
    const holdMs = this.holdFor(backend);
    this.emit({
      type: 'grant',
      worker,
      checkoutSeq,
      lease,
      backend: backend.id,
      upTo,
      passes,
      holdMs,
    });
  }

  /**
   * How long the worker granted `backend` may hold it idle: for good within pool_size; beyond it,
   * for the shrink grace (pool_overflow_idle_ms; 0 = not at all), after which it is given back
   * and retires as an idle one would. One to roll or recycle is not held at all.
   */
  private holdFor(backend: BackendRecord): number {
    if (this.awaitsRoll(backend) || backend.lent) return 0;
    let live = 0;
    for (const b of this.backends.values()) if (isLive(b)) live++;
    return live > this.settings.size ? this.settings.idleRetireMs : Infinity;
  }

  /** The checkout at `index` just joined the queue: bound the other workers' passes behind it. */
  private limitPasses(index: number): void {
    for (const bound of boundsForNewcomer(this.waiters, index, this.backends.values()))
      this.revoke(bound.worker, bound.backends, bound.upTo);
  }

  private revoke(worker: number, backends: readonly BackendRecord[], upTo: number): void {
    const seq = this.sequence.next();
    const leases: number[] = [];
    for (const b of backends) {
      if (b.state.phase !== 'busy') continue;
      leases.push(b.state.lease);
      this.move(b, { type: 'revoke', seq, upTo });
    }
    this.emit({ type: 'revoke', worker, seq, leases, upTo });
  }

  /** A busy backend goes when returned: its worker must not pass it on any more. */
  private markForRetirement(backend: BackendRecord): void {
    this.move(backend, { type: 'mark-for-retirement' });
    const state = backend.state;
    // A health check's lease is bounded to 0 from the start: nothing to revoke.
    if (state.phase === 'busy' && passLimit(state.pass) > 0)
      this.revoke(state.worker, [backend], 0);
  }

  /** Ends a backend on purpose (it did nothing wrong). */
  private retire(backend: BackendRecord, reason: RetireReason): void {
    this.move(backend, { type: 'retire', reason });
    this.emit({ type: 'end', backend: backend.id, why: reason });
  }

  /** Ends a backend that failed (a fault); another takes its place. */
  private fail(backend: BackendRecord, fault: Fault): void {
    this.move(backend, { type: 'fail', fault });
    this.emit({ type: 'end', backend: backend.id, why: fault });
  }

  private move(backend: BackendRecord, event: BackendEvent): void {
    const next = transition(backend.state, event);
    if (isInvalid(next)) {
      this.emit({ type: 'anomaly', message: `backend ${backend.id}: ${next.message}` });
      return;
    }
    const before = backend.state;
    backend.state = next;
    // A new use of the lease (a request passed to, upgraded, returned): the worker's last
    // report no longer says. A bound lowered does not change what the backend is doing.
    if (event.type !== 'revoke' && event.type !== 'revoke-confirmed') backend.heldIdle = false;
    if (next.phase === 'idle' && before.phase !== 'idle') backend.idleSince = this.clock.now();
    else if (next.phase !== 'idle') backend.idleSince = undefined;
    if (
      next.phase === 'busy' &&
      next.use === 'upgraded' &&
      next.retireOnReturn &&
      !(before.phase === 'busy' && before.use === 'upgraded' && before.retireOnReturn)
    ) {
      this.emit({ type: 'close-upgraded', worker: next.worker, lease: next.lease });
    }
  }

  /** A free backend at random (as the original tool picks), in one pass without allocating. */
  private pickIdle(): BackendRecord | undefined {
    const idle = this.count('idle');
    if (idle === 0) return undefined;
    let nth = Math.floor(this.clock.random() * idle);
    for (const backend of this.backends.values()) {
      if (backend.state.phase === 'idle' && nth-- === 0) return backend;
    }
    return undefined;
  }

  /** A request ended well on the backend: counted, and due for recycling at its limit. */
  private countServed(backend: BackendRecord): void {
    backend.served += 1;
    // At the limit it goes when returned, even if already due for recycling for its memory
    // (then it waited for a replacement and would otherwise go on serving past max_requests).
    if (backend.served >= backend.requestLimit) backend.recycle = 'max-requests';
  }

  /** Takes the request out of the queue; false when it was not waiting. */
  private dropWaiter(worker: number, checkoutSeq: number): boolean {
    const index = this.waiters.findIndex(
      (w) => w.worker === worker && w.checkoutSeq === checkoutSeq,
    );
    if (index < 0) return false;
    this.waiters.splice(index, 1);
    return true;
  }

  /** The backend granted to the request, if any (its grant may still be on its way). */
  private grantedTo(worker: number, checkoutSeq: number): BackendRecord | undefined {
    return this.find(
      (b) =>
        b.state.phase === 'busy' &&
        b.state.worker === worker &&
        b.state.checkoutSeq === checkoutSeq,
    );
  }

  /** The backend `worker` holds under `lease`, if it still does. */
  private holding(worker: number, lease: number): BackendRecord | undefined {
    return this.find(
      (b) => b.state.phase === 'busy' && b.state.lease === lease && b.state.worker === worker,
    );
  }

  private find(predicate: (b: BackendRecord) => boolean): BackendRecord | undefined {
    for (const backend of this.backends.values()) if (predicate(backend)) return backend;
    return undefined;
  }

  private count(...phases: Phase[]): number {
    let n = 0;
    for (const backend of this.backends.values()) if (phases.includes(backend.state.phase)) n++;
    return n;
  }

  private countBusy({ marked }: { marked: boolean }): number {
    let n = 0;
    for (const b of this.backends.values()) {
      if (b.state.phase === 'busy' && b.state.retireOnReturn === marked) n++;
    }
    return n;
  }

  private replyTo(waiter: Waiter): { worker: number; checkoutSeq: number } {
    return { worker: waiter.worker, checkoutSeq: waiter.checkoutSeq };
  }

  private emit(effect: PoolEffect): void {
    this.effects.push(effect);
  }

  private flush(): PoolEffect[] {
    const out = this.effects;
    this.effects = [];
    return out;
  }
}
