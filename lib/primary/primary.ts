import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import cluster, { type Worker } from 'node:cluster';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { onExit } from 'signal-exit';
import { AdminServer } from '../admin/admin-server.js';
import type { Config } from '../config/config.js';
import { MessageCounts } from '../ipc/message-counts.js';
import { Sequence } from '../ipc/request.js';
import type { Logger } from '../log.js';
import { BackendRegistry } from '../instance/backend-registry.js';
import { removeInstance, writeInstance } from '../instance/instance-file.js';
import { bufferDirOf } from '../instance/state-dir.js';
import { startTimeOf } from '../supervisor/process-table.js';
import { ServicePools } from '../supervisor/service-pools.js';
import { backendBudget } from '../config/services.js';
import type { BootFailure } from '../supervisor/supervisor.js';
import { PoolMetrics } from '../metrics/pool-metrics.js';
import { ActionQueue, SIGNALS, type Action, type Ask } from './actions.js';
import { adminAnswers } from './admin-answers.js';
import { FrontEdge } from './front-edge.js';
import { leaseMessages, WorkerMessageRouter } from './lease-relay.js';
import { ListenerHold } from './listener-hold.js';
import { MetricsGather } from './metrics-gather.js';
import { watchParent } from './parent-watch.js';
import { reload, roll, scale } from './reload.js';
import { bootFailureReport, dashboardAddress, prepareStart, startWatchdog } from './startup.js';
import { FrontWorkers } from './worker-pool.js';

type State = 'starting' | 'running' | 'draining' | 'stopping';

export interface PrimaryOptions {
  readonly configFile: string;
  /** Loads the config again (file, environment, flags); throws MPX_CONFIG_INVALID. */
  readonly reloadConfig: () => Config;
  readonly stateDir: string;
  readonly version: string;
}

/** Exit code of a front worker that could not set itself up (e.g. http_port in use). */
const WORKER_SETUP_FAILED = 70;

/**
 * The cluster primary: puts the parts together (the supervisor and its backend pool, the front
 * workers' core, the lease relay between them, the admin API) and turns signals into queued
 * actions and a graceful shutdown. What each part does lives in its own module: startup.ts
 * (before anything starts), actions.ts (the queue), reload.ts (reload, scale, roll),
 * admin-answers.ts (the admin API's answers), lease-relay.ts (messages in and out), front.ts (the
 * front workers).
 */
export class Primary {
  private stateNow: State = 'starting';
  readonly supervisor: ServicePools;
  readonly workers: FrontWorkers;
  private readonly registry: BackendRegistry;
  /**
   * The admin token when admin_token is empty: made at start, kept in instance.json (mode 0600,
   * where the CLI reads it) and printed in the dashboard's address. Without it, any local process
   * could POST /scale or /reload.
   */
  private readonly generatedToken = randomBytes(24).toString('base64url');
  /** http_port's socket, kept open while no worker accepts (see listener-hold.ts). */
  private readonly listenerHold = new ListenerHold();
  readonly startedAt = Date.now();
  private admin: AdminServer | undefined;
  /** Held open for the primary's whole life: the watchdog acts when it closes. */
  private watchdog: ChildProcess | undefined;
  private readonly actions = new ActionQueue((action) => this.perform(action));
  private readonly ipcCounts = new MessageCounts();
  /** One numbering of every request the primary sends (revokes, metrics requests). */
  private readonly sequence = new Sequence();
  /** Which front workers should exist and what becomes of them (front.ts, through its edge). */
  readonly front: FrontEdge;
  readonly poolMetrics: PoolMetrics;
  readonly gather: MetricsGather;
  private readonly router: WorkerMessageRouter;
  /** Set when the server stops because of a failure, whatever the drain does. */
  private exitCode: number | undefined;
  private announced = false;
  private finish!: (code: number) => void;
  readonly finished = new Promise<number>((resolve) => {
    this.finish = resolve;
  });

  constructor(
    private configNow: Config,
    readonly log: Logger,
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
    this.workers = new FrontWorkers(log, bufferDirOf(options.stateDir), this.ipcCounts);
    const messages = leaseMessages(this.workers);
    this.supervisor = new ServicePools(
      configNow,
      log,
      {
        ...messages,
        poolReady: () => this.front.feed({ type: 'pool-ready' }),
        backendStarted: (pid, command) => this.registry.record(pid, command),
        bootFailed: (failure) => this.bootFailed(failure),
        backendEnded: (pid) => this.registry.forget(pid),
      },
      this.sequence,
    );
    this.front = new FrontEdge(configNow, this.workers, log, {
      config: () => this.configNow,
      announce: () => this.announce(),
      finished: (complete) => void this.finishShutdown(complete),
    });
    this.gather = new MetricsGather(
      (worker, message) => this.workers.send(worker, message),
      this.sequence,
    );
    this.poolMetrics = new PoolMetrics({
      backends: () => this.supervisor.status(),
      queues: () => this.supervisor.services().map((s) => ({ service: s.name, length: s.queue })),
      workers: () => this.workers.list().filter((w) => !w.isDead()).length,
      backendCounts: () => this.supervisor.countsByService(),
      ipcMessages: () => this.ipcCounts.entries(),
    });
    this.router = new WorkerMessageRouter(
      {
        supervisor: this.supervisor,
        front: this.front,
        gather: this.gather,
        reject: messages.reject,
      },
      this.ipcCounts,
      log,
    );
  }

  /** The server's phase, for the admin answers and the actions. */
  get state(): State {
    return this.stateNow;
  }

  /** The config in force (a reload or a scale replaces it). */
  get config(): Config {
    return this.configNow;
  }

  get configFile(): string {
    return this.options.configFile;
  }

  get stateDir(): string {
    return this.options.stateDir;
  }

  get version(): string {
    return this.options.version;
  }

  get adminToken(): string {
    return this.configNow.admin_token || this.generatedToken;
  }

  async run(): Promise<number> {
    const { stateDir } = this.options;
    await prepareStart(this.configNow, stateDir, this.registry, this.log);
    this.watchdog = startWatchdog(
      this.registry.file,
      this.configNow.service_stop_timeout_ms,
      this.log,
    );
    if (this.configNow.admin_port !== 0) {
      this.admin = new AdminServer(adminAnswers(this));
      const port = await this.admin.listen(this.configNow.admin_host, this.configNow.admin_port);
      const dashboard = dashboardAddress(this.configNow, port, this.generatedToken);
      this.log.info(
        {
          event: 'admin.listening',
          admin_host: this.configNow.admin_host,
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
      http: { host: this.configNow.http_host, port: this.configNow.http_port },
      ...(this.configNow.admin_port !== 0 && {
        admin: {
          host: this.configNow.admin_host,
          port: this.configNow.admin_port,
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
      process.on(signal, () => this.ask({ ...action, trigger: signal }));
    }
    if (this.configNow.exit_with_parent) {
      watchParent((parent, ppid) => {
        // Already stopping (a SIGTERM first): a second stop would skip the drain.
        if (this.stateNow !== 'running') return;
        this.log.warn(
          { event: 'parent.exited', parent, ppid },
          `the process that started multiplexer (pid ${parent}) has exited: shutting down as for SIGTERM (exit_with_parent)`,
        );
        this.ask({ type: 'stop', trigger: 'parent exited' });
      });
    }

    cluster.on('message', (worker, raw) => this.router.route(worker, raw));
    cluster.on('listening', (worker) => this.front.feed({ type: 'listening', worker: worker.id }));
    cluster.on('exit', (worker, code, signal) => this.onWorkerExit(worker, code, signal));

    this.stateNow = 'running';
    this.log.info(
      {
        event: 'pool.starting',
        ...(this.supervisor.names.length > 1
          ? {
              services: Object.fromEntries(this.supervisor.services().map((s) => [s.name, s.size])),
              max_backends: backendBudget(this.configNow),
            }
          : { pool_size: this.configNow.pool_size }),
        workers: this.configNow.workers,
        http_port: this.configNow.http_port,
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

  /** Signals, the admin API and failures ask here; only a stop skips the action queue. */
  ask(action: Ask): void {
    if (action.type !== 'stop') return this.actions.push(action);
    if (this.stateNow === 'draining') {
      this.log.warn({ event: 'shutdown.hurried' }, `${action.trigger} again: skipping the drain`);
      this.front.act({ type: 'stop-now' });
    } else if (this.stateNow === 'running') {
      this.stateNow = 'draining';
      this.shutdown(action.trigger);
    }
  }

  private async perform(action: Action): Promise<void> {
    const server = {
      state: this.stateNow,
      config: this.configNow,
      adopt: (next: Config) => (this.configNow = next),
      load: this.options.reloadConfig,
      supervisor: this.supervisor,
      front: this.front,
      addressChanged: () => this.listenerHold.close(),
      log: this.log,
    };
    switch (action.type) {
      case 'reload': {
        const outcome = await reload(server, action.trigger);
        action.reply?.(outcome);
        return;
      }
      case 'roll':
        return roll(server, action.trigger);
      case 'scale': {
        const outcome = scale(server, action);
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

  private onWorkerExit(worker: Worker, code: number | null, signal: string | null): void {
    this.supervisor.workerExited(worker.id);
    this.gather.workerExited(worker.id);
    this.workers.exited(worker.id);
    // Stopped first, so that the core drains the rest instead of replacing this one.
    if (this.stateNow === 'running' && !this.announced && code === WORKER_SETUP_FAILED) {
      this.log.fatal(
        { event: 'worker.setup-failed' },
        'a front worker could not start (see its log line above); shutting down',
      );
      this.exitCode = WORKER_SETUP_FAILED;
      this.ask({ type: 'stop', trigger: 'startup failure' });
    }
    this.front.feed({ type: 'exited', worker: worker.id, code, signal });
  }

  /** The service cannot start at all (a wrong command, a missing module): exit 1, saying why. */
  private bootFailed(failure: BootFailure): void {
    if (this.stateNow !== 'running') return;
    const report = bootFailureReport(failure);
    this.log.fatal(
      { event: 'service.boot-failed', attempts: failure.attempts, command: failure.command },
      `the service cannot start: ${report.why}`,
    );
    process.stderr.write(report.stderr);
    this.exitCode = 1;
    this.ask({ type: 'stop', trigger: 'boot failure' });
  }

  /** The front core says every wanted worker listens and the pool is ready: the ready line. */
  private announce(): void {
    if (this.announced) return;
    this.announced = true;
    const line = {
      event: 'ready',
      pid: process.pid,
      http_host: this.configNow.http_host,
      http_port: this.configNow.http_port,
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

  private shutdown(reason: string): void {
    // From now a connection nobody will accept is refused, not left waiting in the backlog.
    this.listenerHold.close();
    this.log.info(
      { event: 'shutdown.started', shutdown_timeout_ms: this.configNow.shutdown_timeout_ms },
      `${reason}: stopping; draining requests in flight`,
    );
    // Workers close their upgraded connections themselves at shutdown_timeout_ms (they have no
    // end of their own); the kill comes a moment later, so that a closed WebSocket is a
    // completed drain, not one cut short.
    this.front.act({
      type: 'stop',
      drainMs: this.configNow.shutdown_timeout_ms + UPGRADED_CLOSE_MARGIN_MS,
    });
  }

  /**
   * Every front worker is gone (the core's finish): `complete` when each reported its requests
   * done and exited within shutdown_timeout_ms, false when the drain was cut (the deadline, a
   * second signal, a death). Then the backends stop, and the process ends.
   */
  private async finishShutdown(complete: boolean): Promise<void> {
    this.stateNow = 'stopping';
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
