import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import cluster, { type Worker } from 'node:cluster';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Registry } from 'prom-client';
import { onExit } from 'signal-exit';
import { AdminServer } from '../admin/admin-server.js';
import type { Config } from '../config/config.js';
import { crossKeyProblems } from '../config/load.js';
import { schema } from '../config/schema.js';
import { unbatch } from '../ipc/batch.js';
import { MessageCounts } from '../ipc/message-counts.js';
import {
  decodeWorkerMessage,
  dispatch,
  NAMESPACE,
  UNBOUNDED,
  type Handlers,
  type WorkerMessage,
} from '../ipc/protocol.js';
import type { Logger } from '../log.js';
import { MultiplexerError } from '../errors.js';
import { BackendRegistry, endRecordedBackends } from '../instance/backend-registry.js';
import { ListenerHold } from './listener-hold.js';
import { watchParent } from './parent-watch.js';
import { findRunningInstance, removeInstance, writeInstance } from '../instance/instance-file.js';
import { bufferDirOf, ensureStateDir, resetPrivateDir } from '../instance/state-dir.js';
import { endLeftovers } from '../supervisor/leftovers.js';
import { canBind } from '../supervisor/port-ring.js';
import { startTimeOf } from '../supervisor/process-table.js';
import { Supervisor, type BootFailure } from '../supervisor/supervisor.js';
import { aggregate, bucketsOf, countsByCode, PoolMetrics } from '../metrics/pool-metrics.js';
import { describeChange, diffConfig, reloadPlan } from '../config/diff.js';
import { MetricsGather } from './metrics-gather.js';
import { FrontWorkers } from './worker-pool.js';
import { FrontEdge } from './front-edge.js';
import { listens } from './front.js';
import { liveness, readiness } from './probes.js';

type State = 'starting' | 'running' | 'draining' | 'stopping';

/**
 * What an operator can ask for, by signal or by the admin API. Signal handlers and API calls only
 * enqueue one of these; step() performs them one at a time, in arrival order, so a reload during
 * a roll during a scale is well-defined: each starts from the state the previous one left.
 */
type Action =
  | { readonly type: 'reload'; readonly trigger: string; reply?(outcome: ReloadOutcome): void }
  | { readonly type: 'roll'; readonly trigger: string }
  | {
      readonly type: 'scale';
      readonly trigger: string;
      /** A new pool_size, or a change of the current one. */
      readonly size: { readonly to: unknown } | { readonly by: number };
      reply?(outcome: ScaleOutcome): void;
    };

/** What can be asked: a queued action, or a stop, which never waits in the queue. */
type Ask = Action | { readonly type: 'stop'; readonly trigger: string };

/** The signal table: what each signal asks for. */
const SIGNALS = {
  SIGHUP: { type: 'reload' },
  SIGUSR2: { type: 'roll' },
  SIGTTIN: { type: 'scale', size: { by: +1 } },
  SIGTTOU: { type: 'scale', size: { by: -1 } },
  SIGTERM: { type: 'stop' },
  SIGINT: { type: 'stop' },
} as const satisfies Record<string, Untriggered>;

/** What a signal asks for, before it is tagged with its trigger. */
type Untriggered = Ask extends infer A ? (A extends unknown ? Omit<A, 'trigger'> : never) : never;

export type ScaleOutcome =
  { ok: true; from: number; to: number } | { ok: false; problems: string[] };

export interface PrimaryOptions {
  readonly configFile: string;
  /** Loads the config again (file, environment, flags); throws MPX_CONFIG_INVALID. */
  readonly reloadConfig: () => Config;
  readonly stateDir: string;
  readonly version: string;
}

/** The outcome of a reload, as the admin API and the CLI report it. */
export type ReloadOutcome =
  | {
      readonly reloaded: true;
      readonly changes: string[];
      /** Keys that changed but take effect only at the next start. */
      readonly needsRestart: string[];
      readonly backendsReplaced: boolean;
      readonly workersReplaced: number;
    }
  | { readonly reloaded: false; readonly problems: string[] };

const WATCHDOG = fileURLToPath(new URL('../../../bin/backend-watchdog.sh', import.meta.url));

/** Exit code of a front worker that could not set itself up (e.g. http_port in use). */
const WORKER_SETUP_FAILED = 70;

/**
 * The cluster primary: owns the supervisor (backend pool) and the front workers, routes the lease
 * protocol between them, and turns signals into a graceful shutdown. Signal handlers only record
 * what was asked; the work runs from the event loop.
 */
export class Primary {
  private state: State = 'starting';
  private readonly supervisor: Supervisor;
  private readonly workers: FrontWorkers;
  private readonly registry: BackendRegistry;
  /**
   * The admin token when admin_token is empty: made at start, kept in instance.json (mode 0600,
   * where the CLI reads it) and printed in the dashboard's address. Without it, any local process
   * could POST /scale or /reload.
   */
  private readonly generatedToken = randomBytes(24).toString('base64url');
  /** http_port's socket, kept open while no worker accepts (see listener-hold.ts). */
  private readonly listenerHold = new ListenerHold();
  private readonly startedAt = Date.now();
  private admin: AdminServer | undefined;
  /** Held open for the primary's whole life: the watchdog acts when it closes. */
  private watchdog: ChildProcess | undefined;
  private readonly actions: Action[] = [];
  private stepping = false;
  private readonly ipcCounts = new MessageCounts();
  /** Which front workers should exist and what becomes of them (front.ts, through its edge). */
  private readonly front: FrontEdge;
  /** Set when the server stops because of a failure, whatever the drain does. */
  private exitCode: number | undefined;
  private announced = false;
  private finish!: (code: number) => void;
  readonly finished = new Promise<number>((resolve) => {
    this.finish = resolve;
  });

  constructor(
    private config: Config,
    private readonly log: Logger,
    private readonly options: PrimaryOptions,
  ) {
    this.registry = new BackendRegistry(join(options.stateDir, 'backends'), (err) => {
      if (err) {
        this.log.error(
          { event: 'state.write-failed', file: this.registry.file, err },
          `cannot write the backend record (${(err as NodeJS.ErrnoException).code ?? err.message}); serving on, retrying every second`,
        );
      } else {
        this.log.info(
          { event: 'state.write-recovered', file: this.registry.file },
          'the backend record is written again',
        );
      }
    });
    this.supervisor = new Supervisor(config, log, {
      grant: (g) =>
        this.workers.send(g.worker, {
          ns: NAMESPACE,
          type: 'granted',
          ack: g.checkoutSeq,
          lease: g.lease,
          port: g.port,
          backend: g.backend,
          upTo: Math.min(g.upTo, UNBOUNDED),
          passes: Math.min(g.passes, UNBOUNDED),
        }),
      revoke: (worker, seq, leases, upTo) =>
        this.workers.send(worker, {
          ns: NAMESPACE,
          type: 'revoke',
          seq,
          leases,
          upTo,
        }),
      reject: (worker, ack, code) =>
        this.workers.send(worker, {
          ns: NAMESPACE,
          type: 'rejected',
          ack,
          code,
          message: REJECTION[code],
        }),
      release: (worker, port) =>
        this.workers.send(worker, { ns: NAMESPACE, type: 'release', port }),
      closeUpgraded: (worker, lease) =>
        this.workers.send(worker, { ns: NAMESPACE, type: 'close-upgraded', lease }),
      poolReady: () => this.front.feed({ type: 'pool-ready' }),
      backendStarted: (pid, command) => this.registry.record(pid, command),
      bootFailed: (failure) => this.bootFailed(failure),
      backendEnded: (pid) => this.registry.forget(pid),
    });
    this.workers = new FrontWorkers(log, bufferDirOf(options.stateDir), this.ipcCounts);
    this.front = new FrontEdge(config, this.workers, log, {
      config: () => this.config,
      announce: () => this.announce(),
      finished: (complete) => void this.finishShutdown(complete),
    });
    this.gather = new MetricsGather((worker, message) => this.workers.send(worker, message));
    this.poolMetrics = new PoolMetrics({
      backends: () => this.supervisor.status(),
      queueLength: () => this.supervisor.queueLength,
      workers: () => this.workers.list().filter((w) => !w.isDead()).length,
      backendStarts: () => this.supervisor.backendCounts.starts,
      backendExits: () => this.supervisor.backendCounts.exits,
      ipcMessages: () => this.ipcCounts.entries(),
    });
  }

  private readonly poolMetrics: PoolMetrics;
  private readonly gather: MetricsGather;

  /** The primary's and every front worker's metrics in one registry (one scrape, one truth). */
  private async metrics(): Promise<Registry> {
    return aggregate(this.poolMetrics, await this.gather.collect(this.workers.list()));
  }

  async run(): Promise<number> {
    const { stateDir } = this.options;
    ensureStateDir(stateDir);
    const other = findRunningInstance(stateDir);
    if (other) {
      throw new MultiplexerError(
        'MPX_ALREADY_RUNNING',
        `another multiplexer (pid ${other.pid}, config ${other.config}) is running with state directory ${stateDir}; stop it first, or give this one another --state-dir`,
      );
    }
    // Checked before anything starts: otherwise every front worker would fail on its own, later.
    const { http_host: host, http_port: port } = this.config;
    if (!(await canBind(host, port))) {
      throw new MultiplexerError(
        'MPX_LISTEN_FAILED',
        `http_port ${port} on ${host} cannot be bound: another program holds it (or the address is not local)`,
      );
    }
    // Temp files are unlinked as soon as they are opened; a worker killed in between leaves one.
    resetPrivateDir(bufferDirOf(stateDir));
    await endRecordedBackends(this.registry.file, this.config.service_stop_timeout_ms, this.log);
    if (this.config.service_kill_pattern !== '') {
      await endLeftovers(
        this.config.service_kill_pattern,
        this.config.service_stop_timeout_ms,
        this.log,
      );
    }
    this.registry.reset();
    this.startWatchdog();
    if (this.config.admin_port !== 0) {
      this.admin = new AdminServer(this.adminActions);
      const port = await this.admin.listen(this.config.admin_host, this.config.admin_port);
      const host = this.config.admin_host.includes(':')
        ? `[${this.config.admin_host}]`
        : this.config.admin_host;
      // The generated token rides in the fragment, as Jupyter prints its address: the page reads
      // it, the browser never sends it. A token of the operator's own is never printed.
      const dashboard = `http://${host}:${port}/${this.config.admin_token ? '' : `#token=${this.generatedToken}`}`;
      this.log.info(
        {
          event: 'admin.listening',
          admin_host: this.config.admin_host,
          admin_port: port,
          dashboard,
        },
        `admin API listening; dashboard: ${dashboard}`,
      );
    }
    writeInstance(stateDir, {
      pid: process.pid,
      startTime: startTimeOf(process.pid) ?? '',
      config: this.options.configFile,
      http: { host: this.config.http_host, port: this.config.http_port },
      ...(this.config.admin_port !== 0 && {
        admin: {
          host: this.config.admin_host,
          port: this.config.admin_port,
          token: this.adminToken,
        },
      }),
    });
    // Whatever path leads to exit (uncaught error, unhandled signal), no backend outlives us.
    onExit(
      () => {
        this.supervisor.killAllNow();
        removeInstance(stateDir);
        rmSync(bufferDirOf(stateDir), { recursive: true, force: true });
      },
      { alwaysLast: true },
    );
    for (const [signal, action] of Object.entries(SIGNALS)) {
      process.on(signal, () => this.enqueue({ ...action, trigger: signal }));
    }
    if (this.config.exit_with_parent) {
      watchParent((parent, ppid) => {
        // Already stopping (a SIGTERM first): a second stop would skip the drain.
        if (this.state !== 'running') return;
        this.log.warn(
          { event: 'parent.exited', parent, ppid },
          `the process that started multiplexer (pid ${parent}) has exited: shutting down as for SIGTERM (exit_with_parent)`,
        );
        this.enqueue({ type: 'stop', trigger: 'parent exited' });
      });
    }

    cluster.on('message', (worker, raw) => this.onWorkerMessage(worker, raw));
    cluster.on('listening', (worker) => this.front.feed({ type: 'listening', worker: worker.id }));
    cluster.on('exit', (worker, code, signal) => this.onWorkerExit(worker, code, signal));

    this.state = 'running';
    this.log.info(
      {
        event: 'pool.starting',
        pool_size: this.config.pool_size,
        workers: this.config.workers,
        http_port: this.config.http_port,
      },
      'starting backends and front workers',
    );
    this.supervisor.start();
    if (!this.listenerHold.install()) {
      this.log.warn(
        { event: 'listener.not-held' },
        'this Node has no net._createServerHandle: http_port closes while no front worker accepts',
      );
    }
    this.front.start();
    return this.finished;
  }

  /**
   * The watchdog ends our backends if we die without doing it ourselves (kill -9): it reads the
   * state file once its stdin, a pipe only we hold, reaches end of input.
   */
  private startWatchdog(): void {
    const graceTenths = String(Math.ceil(this.config.service_stop_timeout_ms / 100));
    this.watchdog = spawn('/bin/sh', [WATCHDOG, this.registry.file, graceTenths], {
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    this.watchdog.unref();
    (this.watchdog.stdin as unknown as { unref(): void }).unref();
    // Without listeners, a watchdog that cannot start, or a pipe error, would crash the primary.
    this.watchdog.on('error', (err) =>
      this.log.error(
        { event: 'watchdog.failed', err: err.message },
        'the watchdog could not start: kill -9 of multiplexer would leave its backends running',
      ),
    );
    this.watchdog.stdin?.on('error', () => undefined);
  }

  private enqueue(action: Ask): void {
    // A stop never waits behind a reload still waiting for a new worker to listen: it begins at
    // once, and what is queued after it finds the server draining and is refused. A second
    // stop skips the drain.
    if (action.type === 'stop') {
      if (this.state === 'draining') {
        this.log.warn({ event: 'shutdown.hurried' }, `${action.trigger} again: skipping the drain`);
        this.front.act({ type: 'stop-now' });
      } else this.beginShutdown(action.trigger);
      return;
    }
    this.actions.push(action);
    void this.step();
  }

  /** Performs queued actions one at a time, in order; only one step runs at a time. */
  private async step(): Promise<void> {
    if (this.stepping) return;
    this.stepping = true;
    try {
      for (let action = this.actions.shift(); action; action = this.actions.shift()) {
        await this.perform(action);
      }
    } finally {
      this.stepping = false;
    }
  }

  private async perform(action: Action): Promise<void> {
    switch (action.type) {
      case 'reload': {
        const outcome = await this.reloadNow(action.trigger);
        action.reply?.(outcome);
        return;
      }
      case 'roll':
        return this.renew(action.trigger);
      case 'scale': {
        const outcome = this.scaleNow(action);
        if (!outcome.ok && !action.reply) {
          this.log.warn(
            { event: 'scale.refused' },
            `${action.trigger}: ${outcome.problems.join('; ')}`,
          );
        }
        action.reply?.(outcome);
        return;
      }
      default:
        action satisfies never;
    }
  }

  /** POST /reload: queued like SIGHUP; resolves once it has been performed. */
  reload(trigger: string): Promise<ReloadOutcome> {
    return new Promise((reply) => this.enqueue({ type: 'reload', trigger, reply }));
  }

  /**
   * Reads the config again. Invalid: log every problem and change nothing. Valid: pool settings at
   * once, a rolling restart of the backends if how they start changed, and the front workers
   * replaced one at a time only if a key they read changed (a count change alone adds or retires).
   */
  private async reloadNow(trigger: string): Promise<ReloadOutcome> {
    if (this.state !== 'running') {
      return { reloaded: false, problems: [`cannot reload: the server is ${this.state}`] };
    }
    let next: Config;
    try {
      next = this.options.reloadConfig();
    } catch (err) {
      const problems =
        err instanceof MultiplexerError && err.problems.length > 0
          ? [...err.problems]
          : [err instanceof Error ? err.message : String(err)];
      for (const problem of problems)
        this.log.error({ event: 'reload.problem' }, `${trigger}: config problem: ${problem}`);
      this.log.error(
        { event: 'reload.refused' },
        `${trigger}: reload refused; the running configuration stays in force`,
      );
      return { reloaded: false, problems };
    }
    const changes = diffConfig(this.config, next);
    const plan = reloadPlan(changes);
    const { needsRestart } = plan;
    this.log.info(
      { event: 'reload.started', changes: changes.map(describeChange) },
      `${trigger}: reloading (${changes.length} change${changes.length === 1 ? '' : 's'})`,
    );
    this.config = next;
    const { backends } = this.supervisor.reconfigure(next);
    let workersReplaced = 0;
    try {
      // Moving to another address: the old socket closes with the last old worker.
      if (changes.some((c) => c.key === 'http_port' || c.key === 'http_host')) {
        this.listenerHold.release();
      }
      const answer = await this.front.reload(next, plan.replaceWorkers);
      if (answer.type !== 'settled') throw new Error(answer.reason);
      if (plan.replaceWorkers) workersReplaced = answer.started;
    } catch (err) {
      const problem = `pool and backends follow the new config, but front workers could not start with it (${(err as Error).message}); the old ones keep serving, and replacements are retried`;
      this.log.error({ event: 'reload.refused' }, `${trigger}: ${problem}`);
      return { reloaded: false, problems: [problem] };
    }
    this.log.info(
      { event: 'reload.done', workersReplaced, backendsReplaced: backends },
      `${trigger}: reloaded`,
    );
    return {
      reloaded: true,
      changes: changes.map(describeChange),
      needsRestart: [...needsRestart],
      backendsReplaced: backends,
      workersReplaced,
    };
  }

  /** SIGUSR2: replace every backend, never fewer than pool_size ready meanwhile. */
  private renew(trigger: string): void {
    if (this.state !== 'running') return;
    this.log.info({ event: 'roll.requested' }, `${trigger}: rolling restart of the backends`);
    this.supervisor.renew();
  }

  /** POST /scale: queued like SIGTTIN/SIGTTOU; resolves once it has been performed. */
  scale(poolSize: unknown, trigger: string): Promise<ScaleOutcome> {
    return new Promise((reply) =>
      this.enqueue({ type: 'scale', trigger, size: { to: poolSize }, reply }),
    );
  }

  /** A new pool_size, checked like the config file's. */
  private scaleNow(action: Extract<Action, { type: 'scale' }>): ScaleOutcome {
    const { trigger } = action;
    if (this.state !== 'running') {
      return { ok: false, problems: [`cannot scale: the server is ${this.state}`] };
    }
    const poolSize = 'to' in action.size ? action.size.to : this.config.pool_size + action.size.by;
    if (!schema.pool_size.format.valid(poolSize)) {
      return {
        ok: false,
        problems: [
          `pool_size must be ${schema.pool_size.format.expected}, got ${JSON.stringify(poolSize)}`,
        ],
      };
    }
    const next = { ...this.config, pool_size: poolSize as number };
    const problems = crossKeyProblems(next);
    if (problems.length > 0) return { ok: false, problems };
    const from = this.config.pool_size;
    this.config = Object.freeze(next);
    this.supervisor.reconfigure(this.config);
    this.log.info(
      { event: 'scale.done', from, to: next.pool_size },
      `${trigger}: pool_size ${from} → ${next.pool_size} (a reload returns to the config file's value)`,
    );
    return { ok: true, from, to: next.pool_size };
  }

  private get adminToken(): string {
    return this.config.admin_token || this.generatedToken;
  }

  private readonly adminActions = {
    readiness: () =>
      readiness({
        state: this.state,
        someWorkerListens: this.front.someListens,
        health: this.supervisor.health(),
      }),
    liveness: () =>
      liveness({
        health: this.supervisor.health(),
        startTimeoutMs: this.config.service_start_timeout_ms,
        now: Date.now(),
      }),
    status: () => this.status(),
    metrics: async () => {
      const registry = await this.metrics();
      return { contentType: registry.contentType, text: await registry.metrics() };
    },
    sample: async () => {
      const registry = await this.metrics();
      const byCode = await countsByCode(registry);
      return {
        status: await this.status(byCode),
        byCode,
        duration: await bucketsOf(registry, 'multiplexer_request_duration_seconds'),
        queueWait: await bucketsOf(registry, 'multiplexer_queue_wait_seconds'),
      };
    },
    roll: () => {
      const backends = this.supervisor.status().length;
      this.enqueue({ type: 'roll', trigger: 'POST /roll' });
      return Promise.resolve({ status: 202, body: { rolling: true, backends } });
    },
    hostnames: () => this.config.admin_hostnames,
    reload: async () => {
      const outcome = await this.reload('POST /reload');
      return { status: outcome.reloaded ? 200 : 422, body: outcome };
    },
    scale: async (body: unknown) => {
      const size = (body as { pool_size?: unknown } | null)?.pool_size;
      const outcome = await this.scale(size, 'POST /scale');
      return { status: outcome.ok ? 200 : 422, body: outcome };
    },
    token: () => this.adminToken,
  };

  /** `byCode`: the request counters, when the caller has just read them. */
  async status(byCode?: Record<string, number>): Promise<object> {
    byCode ??= await countsByCode(await this.metrics());
    const totals = {
      requests: Object.values(byCode).reduce((a, b) => a + b, 0),
      status502: byCode['502'] ?? 0,
      status503: byCode['503'] ?? 0,
      status504: byCode['504'] ?? 0,
    };
    const backends = this.supervisor.status();
    return {
      pid: process.pid,
      version: this.options.version,
      state: this.state,
      uptimeMs: Date.now() - this.startedAt,
      config: this.options.configFile,
      stateDir: this.options.stateDir,
      pool: {
        size: this.config.pool_size,
        maxOverflow: this.config.pool_max_overflow,
        strategy: this.config.pool_strategy,
        renewing: this.supervisor.renewing,
      },
      workers: [...this.front.workers].map(([id, w]) => ({
        id,
        pid: this.workers.pidOf(id),
        listening: listens(w),
        phase: w.state,
      })),
      backends,
      queue: this.supervisor.queueLength,
      totals: { ...totals, ...this.supervisor.poolTotals },
      degraded: this.supervisor.health().degraded,
      endings: this.supervisor.recentEndings(),
    };
  }

  private onWorkerMessage(worker: Worker, raw: unknown): void {
    const messages = unbatch(raw);
    if (messages.length > 1) this.ipcCounts.count('in', 'batch');
    for (const one of messages) {
      const decoded = decodeWorkerMessage(one);
      if (!decoded.ok) {
        // prom-client's cluster messages and node's own share this channel: not ours to judge.
        if (decoded.foreign) continue;
        this.log.warn(
          { event: 'ipc.malformed', worker: worker.id, reason: decoded.reason },
          'ignoring a malformed worker message',
        );
        continue;
      }
      this.ipcCounts.count('in', decoded.message.type);
      dispatch(this.handlers, decoded.message, worker.id);
    }
  }

  /** One table for every message on the per-request path; the sending worker's id is the context. */
  private readonly handlers: Handlers<WorkerMessage, number> = {
    checkout: (m, worker) => this.supervisor.checkout(worker, m.seq, false, m.client),
    'checkout-again': (m, worker) => this.supervisor.checkout(worker, m.seq, true, m.client),
    cancel: (m, worker) => this.supervisor.cancel(worker, m.seq),
    checkin: (m, worker) => this.supervisor.checkin(worker, m.lease, m.outcome),
    pass: (m, worker) => this.supervisor.pass(worker, m.lease, m.to),
    revoked: (m, worker) => this.supervisor.revoked(worker, m.ack),
    upgraded: (m, worker) => this.supervisor.upgraded(worker, m.lease),
    drained: (m, worker) => this.front.feed({ type: 'drained', worker, complete: m.complete }),
    metrics: (m, worker) => this.gather.reply(worker, m.ack, m.metrics),
  };

  private onWorkerExit(worker: Worker, code: number | null, signal: string | null): void {
    this.supervisor.workerExited(worker.id);
    this.gather.workerExited(worker.id);
    this.workers.exited(worker.id);
    // Stopped first, so that the core drains the rest instead of replacing this one.
    if (this.state === 'running' && !this.announced && code === WORKER_SETUP_FAILED) {
      this.log.fatal(
        { event: 'worker.setup-failed' },
        'a front worker could not start (see its log line above); shutting down',
      );
      this.exitCode = WORKER_SETUP_FAILED;
      this.enqueue({ type: 'stop', trigger: 'startup failure' });
    }
    this.front.feed({ type: 'exited', worker: worker.id, code, signal });
  }

  /**
   * The service cannot start at all (a wrong command, a missing module): retrying forever would
   * hide that behind a process that looks alive. Say what was run and what it printed, and exit 1,
   * as gunicorn does when a worker fails to boot.
   */
  private bootFailed(failure: BootFailure): void {
    if (this.state !== 'running') return;
    const why = failure.conclusive
      ? `the first start showed that another would end the same way: ${failure.how}`
      : `${failure.attempts} starts in a row failed before any backend was ever ready (service_boot_attempts); the last one ${failure.how}`;
    this.log.fatal(
      { event: 'service.boot-failed', attempts: failure.attempts, command: failure.command },
      `the service cannot start: ${why}`,
    );
    const output = failure.started
      ? [
          '  its last output:',
          ...(failure.tail.length > 0 ? failure.tail : ['(it printed nothing)']).map(
            (l) => `    ${l}`,
          ),
        ]
      : [];
    process.stderr.write(
      `${['multiplexer: the service cannot start.', `  command: ${failure.command}`, `  ${failure.how}`, ...output].join('\n')}\n`,
    );
    this.exitCode = 1;
    this.enqueue({ type: 'stop', trigger: 'boot failure' });
  }

  /** The front core says every wanted worker listens and the pool is ready: the ready line. */
  private announce(): void {
    if (this.announced) return;
    this.announced = true;
    const line = {
      event: 'ready',
      pid: process.pid,
      http_host: this.config.http_host,
      http_port: this.config.http_port,
      workers: this.workers.list().map((w) => w.process.pid),
      backends: this.supervisor
        .status()
        .map((b) => ({ id: b.id, pid: b.pid, port: b.port, state: b.state })),
    };
    process.stdout.write(`${JSON.stringify(line)}\n`);
    this.log.info(
      { event: 'ready' },
      'ready: every backend of the pool is up and the front workers listen',
    );
  }

  private beginShutdown(reason: string): void {
    if (this.state !== 'running') return;
    this.state = 'draining';
    this.shutdown(reason);
  }

  private shutdown(reason: string): void {
    // From now a connection nobody will accept is refused, not left waiting in the backlog.
    this.listenerHold.release();
    this.log.info(
      { event: 'shutdown.started', shutdown_timeout_ms: this.config.shutdown_timeout_ms },
      `${reason}: stopping; draining requests in flight`,
    );
    // Workers close their upgraded connections themselves at shutdown_timeout_ms (they have no
    // end of their own); the kill comes a moment later, so that a closed WebSocket is a
    // completed drain, not one cut short.
    this.front.act({
      type: 'stop',
      drainMs: this.config.shutdown_timeout_ms + UPGRADED_CLOSE_MARGIN_MS,
    });
  }

  /**
   * Every front worker is gone (the core's finish): `complete` when each reported its requests
   * done and exited within shutdown_timeout_ms, false when the drain was cut (the deadline, a
   * second signal, a death). Then the backends stop, and the process ends.
   */
  private async finishShutdown(complete: boolean): Promise<void> {
    this.state = 'stopping';
    await this.supervisor.stop();
    this.log.info(
      { event: 'shutdown.done', complete },
      complete ? 'stopped: every request in flight completed' : 'stopped: the drain was cut short',
    );
    await this.admin?.close();
    this.registry.close();
    removeInstance(this.options.stateDir);
    this.finish(this.exitCode ?? (complete ? 0 : 1));
  }
}

/** See shutdown(). */
const UPGRADED_CLOSE_MARGIN_MS = 500;

const REJECTION = {
  MPX_QUEUE_FULL: 'too many requests are waiting for a free backend (queue_max)',
  MPX_CLIENT_QUEUE_FULL:
    'this client has too many requests waiting for a free backend (queue_max_per_client)',
  MPX_QUEUE_TIMEOUT: 'no backend became free within queue_timeout_ms',
  MPX_SHUTTING_DOWN: 'the server is shutting down',
} as const;
