import cluster, { type Worker } from 'node:cluster';
import { onExit } from 'signal-exit';
import type { Config } from '../config/config.js';
import {
  decodeWorkerMessage,
  dispatch,
  NAMESPACE,
  type Handlers,
  type WorkerMessage,
} from '../ipc/protocol.js';
import type { Logger } from '../log.js';
import { MultiplexerError } from '../errors.js';
import { endLeftovers } from '../supervisor/leftovers.js';
import { canBind } from '../supervisor/port-ring.js';
import { Supervisor } from '../supervisor/supervisor.js';
import { FrontWorkers } from './worker-pool.js';

type State = 'starting' | 'running' | 'draining' | 'stopping';

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
  private readonly listening = new Set<number>();
  private readonly drained = new Set<number>();
  private poolReady = false;
  private failedAtStartup = false;
  private announced = false;
  private skipDrain: (() => void) | undefined;
  private onDrainProgress: (() => void) | undefined;
  private finish!: (code: number) => void;
  readonly finished = new Promise<number>((resolve) => {
    this.finish = resolve;
  });

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
  ) {
    this.supervisor = new Supervisor(config, log, {
      grant: (worker, id, lease, port) =>
        this.workers.send(worker, { ns: NAMESPACE, type: 'granted', id, lease, port }),
      reject: (worker, id, code) =>
        this.workers.send(worker, {
          ns: NAMESPACE,
          type: 'rejected',
          id,
          code,
          message: REJECTION[code],
        }),
      poolReady: () => {
        this.poolReady = true;
        this.announceIfReady();
      },
    });
    this.workers = new FrontWorkers(config, log);
  }

  async run(): Promise<number> {
    // Checked before anything starts: otherwise every front worker would fail on its own, later.
    const { http_host: host, http_port: port } = this.config;
    if (!(await canBind(host, port))) {
      throw new MultiplexerError(
        'MPX_LISTEN_FAILED',
        `http_port ${port} on ${host} cannot be bound: another program holds it (or the address is not local)`,
      );
    }
    if (this.config.service_kill_pattern !== '') {
      await endLeftovers(
        this.config.service_kill_pattern,
        this.config.service_stop_timeout_ms,
        this.log,
      );
    }
    // Whatever path leads to exit (uncaught error, unhandled signal), no backend outlives us.
    onExit(() => this.supervisor.killAllNow(), { alwaysLast: true });
    process.on('SIGTERM', () => this.requestShutdown('SIGTERM'));
    process.on('SIGINT', () => this.requestShutdown('SIGINT'));

    cluster.on('message', (worker, raw) => this.onWorkerMessage(worker, raw));
    cluster.on('listening', (worker) => {
      this.listening.add(worker.id);
      this.announceIfReady();
    });
    cluster.on('exit', (worker, code, signal) => this.onWorkerExit(worker, code, signal));

    this.state = 'running';
    this.log.info(
      {
        pool_size: this.config.pool_size,
        workers: this.config.workers,
        http_port: this.config.http_port,
      },
      'starting backends and front workers',
    );
    this.supervisor.start();
    this.workers.startAll();
    return this.finished;
  }

  private onWorkerMessage(worker: Worker, raw: unknown): void {
    const decoded = decodeWorkerMessage(raw);
    if (!decoded.ok) {
      this.log.warn(
        { worker: worker.id, reason: decoded.reason },
        'ignoring a malformed worker message',
      );
      return;
    }
    dispatch(this.handlers, decoded.message, worker.id);
  }

  /** One table for every message on the per-request path; the sending worker's id is the context. */
  private readonly handlers: Handlers<WorkerMessage, number> = {
    checkout: (m, worker) => this.supervisor.checkout(worker, m.id),
    cancel: (m, worker) => this.supervisor.cancel(worker, m.id),
    checkin: (m, worker) => this.supervisor.checkin(worker, m.lease, m.outcome),
    drained: (_m, worker) => this.drained.add(worker),
  };

  private onWorkerExit(worker: Worker, code: number | null, signal: string | null): void {
    this.listening.delete(worker.id);
    this.supervisor.workerExited(worker.id);
    if (this.state === 'running' && !this.announced && code === WORKER_SETUP_FAILED) {
      this.log.fatal('a front worker could not start (see its log line above); shutting down');
      this.failedAtStartup = true;
      this.requestShutdown('startup failure');
      return;
    }
    if (this.state === 'running') this.workers.replace(worker, code, signal);
    this.onDrainProgress?.();
  }

  private announceIfReady(): void {
    if (this.announced || !this.poolReady || this.listening.size < this.config.workers) return;
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
    this.log.info('ready: every backend of the pool is up and the front workers listen');
  }

  private requestShutdown(reason: string): void {
    if (this.state === 'draining') {
      this.log.warn(`${reason} again: skipping the drain`);
      this.skipDrain?.();
      return;
    }
    if (this.state !== 'running') return;
    this.state = 'draining';
    setImmediate(() => void this.shutdown(reason));
  }

  private async shutdown(reason: string): Promise<void> {
    this.workers.stopReplacing();
    this.log.info(
      { shutdown_timeout_ms: this.config.shutdown_timeout_ms },
      `${reason}: stopping; draining requests in flight`,
    );
    const complete = await this.drainWorkers();
    this.state = 'stopping';
    await this.supervisor.stop();
    this.log.info(
      complete ? 'stopped: every request in flight completed' : 'stopped: the drain was cut short',
    );
    this.finish(this.failedAtStartup ? WORKER_SETUP_FAILED : complete ? 0 : 1);
  }

  /**
   * Resolves true when every front worker reported its requests done and exited within
   * shutdown_timeout_ms; false when the drain was cut (timeout, second signal, a worker died).
   */
  private drainWorkers(): Promise<boolean> {
    const expected = this.workers.list().map((w) => w.id);
    return new Promise((resolve) => {
      let cut = false;
      const cutShort = (why: string): void => {
        cut = true;
        this.log.warn(`${why}; ending the front workers`);
        this.workers.killAll('SIGKILL');
      };
      const timer = setTimeout(
        () => cutShort('drain took longer than shutdown_timeout_ms'),
        this.config.shutdown_timeout_ms,
      );
      this.skipDrain = () => cutShort('drain skipped');
      this.onDrainProgress = () => {
        if (this.workers.list().some((w) => !w.isDead())) return;
        clearTimeout(timer);
        resolve(!cut && expected.every((id) => this.drained.has(id)));
      };
      this.workers.drainAll();
      this.onDrainProgress();
    });
  }
}

const REJECTION = {
  MPX_QUEUE_FULL: 'too many requests are waiting for a free backend (queue_max)',
  MPX_QUEUE_TIMEOUT: 'no backend became free within queue_timeout_ms',
  MPX_SHUTTING_DOWN: 'the server is shutting down',
} as const;
