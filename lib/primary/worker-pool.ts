import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config/config.js';
import { Batcher } from '../ipc/batch.js';
import type { MessageCounts } from '../ipc/message-counts.js';
import {
  NAMESPACE,
  WORKER_BUFFER_DIR_ENV,
  WORKER_CONFIG_ENV,
  type PrimaryMessage,
} from '../ipc/protocol.js';
import type { Logger } from '../log.js';

/** See the FrontWorkers constructor. */
const WORKER_HEAP_FLAGS = ['--max-semi-space-size=2', '--heap-growing-percent=50'];

const WORKER_ENTRY = fileURLToPath(new URL('../worker/main.js', import.meta.url));

/** A worker that dies sooner than this after its start counts as failing at boot. */
const BOOT_GRACE_MS = 1000;

/**
 * Where a front worker is in its life. A draining worker no longer accepts connections and
 * finishes the requests it carries; at its deadline it is killed with whatever is left.
 */
export type WorkerPhase =
  | { readonly phase: 'serving' }
  | {
      readonly phase: 'draining';
      readonly deadline: number;
      readonly why: 'replaced' | 'surplus' | 'shutdown';
    };

interface WorkerRecord {
  readonly worker: Worker;
  readonly startedAt: number;
  phase: WorkerPhase;
  /** It listens: its own code runs, so it receives our messages (see drain()). */
  listening: boolean;
  /** Killed at its drain deadline: said once. */
  killed: boolean;
}

/**
 * How long a worker replaced by a reload may drain: as long as its longest request may take by
 * that request's own limits (waiting in the queue, then http_proxy_timeout to the answer), so a
 * reload cuts nothing that would not have failed anyway; never less than shutdown_timeout_ms.
 */
export function replacedDrainMs(config: Config): number {
  return Math.max(
    config.shutdown_timeout_ms,
    config.queue_timeout_ms + config.http_proxy_timeout + 1000,
  );
}

/**
 * The front workers: forks `workers` of them on the shared http_port and forks a replacement when
 * one dies, with a backoff if they keep dying at boot so a broken setup never spins. Workers on
 * their way out are in the 'draining' phase with a deadline; one timer enforces the nearest.
 */
export class FrontWorkers {
  private readonly records = new Map<number, WorkerRecord>();
  /** Each worker's outgoing messages, written once per turn of the event loop. */
  private readonly channels = new Map<number, Batcher<PrimaryMessage>>();
  private bootFailures = 0;
  private replacing = true;
  private deadlineTimer: NodeJS.Timeout | undefined;

  constructor(
    private config: Config,
    private readonly log: Logger,
    /** Where workers spill bodies that outgrow memory (see lib/worker/buffer-store.ts). */
    private readonly bufferDir: string,
    private readonly counts: MessageCounts,
  ) {
    // The kernel hands connections to the workers, not the primary. With round-robin (Node's
    // default), the primary accepts each connection and passes it to a worker over IPC; if that
    // worker exits (a drain ending, a crash, kill -9) before it acknowledges the handle, nobody
    // ever closes or re-sends it, and the client hangs on an open connection forever (seen: a
    // lost request in reload tests). With SCHED_NONE, unaccepted connections stay in the shared
    // listen queue, which every live worker drains. Frozen by the first setupPrimary/fork.
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.setupPrimary({
      exec: WORKER_ENTRY,
      args: [],
      // V8 grows a busy process's young generation up to 3 × 16 MiB or more: a front worker's RSS
      // climbed from 99 to 145 MB over its first 200,000 requests, then stayed there (the same
      // before and after buffering; not a leak). Capped at 2 MiB it stays at 91-93 MB at the same
      // throughput (trivial load, 8 clients: 5,600-8,800 requests/s either way).
      // The old generation: a heap snapshot of a worker at 94 MB RSS (256 clients) held 7.9 MB of
      // live objects; the rest was garbage V8 let pile up to 4× the live size before a full
      // collection. Grown by 1.5× instead, the worker stays at 73 MB under that load and at 74
      // MB after 64 KiB answers (81 before), with no measurable CPU cost (trivial: 121 against
      // 128 µs a request, medians of 3).
      execArgv: [...process.execArgv, ...WORKER_HEAP_FLAGS],
    });
  }

  startAll(): void {
    for (let i = 0; i < this.config.workers; i++) this.fork();
  }

  /** After this, dead workers are not replaced. */
  stopReplacing(): void {
    this.replacing = false;
  }

  /** Called for every worker exit; forks a replacement for a serving worker while the server runs. */
  exited(worker: Worker, code: number | null, signal: string | null): void {
    this.channels.delete(worker.id);
    const record = this.records.get(worker.id);
    this.records.delete(worker.id);
    if (!record || record.phase.phase === 'draining' || !this.replacing) return;
    const lived = Date.now() - record.startedAt;
    this.bootFailures = lived < BOOT_GRACE_MS ? this.bootFailures + 1 : 0;
    const delay = this.bootFailures === 0 ? 0 : Math.min(10_000, 100 * 2 ** this.bootFailures);
    this.log.error(
      { event: 'worker.died', worker: worker.id, worker_pid: worker.process.pid, code, signal },
      `front worker died (${signal ? `killed by ${signal}` : `exit code ${code}`}); starting a replacement${delay ? ` in ${delay} ms` : ''}`,
    );
    setTimeout(() => {
      if (this.replacing) this.fork();
    }, delay);
  }

  send(workerId: number, message: PrimaryMessage): void {
    const worker = cluster.workers?.[workerId];
    if (worker) this.sendTo(worker, message);
  }

  /** Every worker drains (shutdown); those left at `deadline` are killed. */
  drainAll(deadline: number): void {
    for (const record of this.records.values()) this.drain(record, deadline, 'shutdown');
  }

  killAll(signal: NodeJS.Signals): void {
    for (const worker of this.list()) worker.process.kill(signal);
  }

  /**
   * Replaces every serving worker, one at a time, with one running `config`: the new worker
   * listens before the old one stops accepting, so the port always has a listener. The old ones
   * drain in the background, bounded by replacedDrainMs; this resolves once the new ones listen.
   * Rejects (leaving the remaining old workers serving) if a new worker dies before it listens.
   */
  async roll(config: Config): Promise<number> {
    this.config = config;
    const old = this.serving();
    const deadline = Date.now() + replacedDrainMs(config);
    let started = 0;
    for (let i = 0; i < Math.max(old.length, config.workers); i++) {
      // A shutdown began meanwhile: it drains every worker, old and new; start no more.
      if (!this.replacing) break;
      if (i < config.workers) {
        await this.forkListening();
        started++;
      }
      const previous = old[i];
      if (previous) this.drain(previous, deadline, 'replaced');
    }
    return started;
  }

  /**
   * Brings the number of serving workers to config.workers without replacing any: new ones are
   * forked (resolves once they listen), surplus ones drain, the newest first.
   */
  async resize(config: Config): Promise<{ started: number; retired: number }> {
    this.config = config;
    const serving = this.serving();
    let started = 0;
    for (let n = serving.length; n < config.workers && this.replacing; n++) {
      await this.forkListening();
      started++;
    }
    const surplus = serving.slice(config.workers).reverse();
    const deadline = Date.now() + replacedDrainMs(config);
    for (const record of surplus) this.drain(record, deadline, 'surplus');
    return { started, retired: surplus.length };
  }

  list(): Worker[] {
    return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
  }

  phaseOf(workerId: number): WorkerPhase | undefined {
    return this.records.get(workerId)?.phase;
  }

  private serving(): WorkerRecord[] {
    return [...this.records.values()].filter((r) => r.phase.phase === 'serving');
  }

  private drain(record: WorkerRecord, deadline: number, why: 'replaced' | 'surplus' | 'shutdown') {
    const current = record.phase;
    // A worker already draining keeps the nearer of the two deadlines.
    const bound = current.phase === 'draining' ? Math.min(current.deadline, deadline) : deadline;
    record.phase = { phase: 'draining', deadline: bound, why };
    // A message that reaches a worker before its own code has set up its handler is dropped
    // (cluster's worker object already listens, so Node does not keep it): a worker still
    // booting gets its drain once it listens, which is after its handler is in place.
    if (current.phase === 'serving') {
      if (record.listening) this.sendTo(record.worker, { ns: NAMESPACE, type: 'drain' });
      else
        record.worker.once('listening', () =>
          this.sendTo(record.worker, { ns: NAMESPACE, type: 'drain' }),
        );
    }
    this.scheduleDeadline();
  }

  /** One timer, set for the nearest drain deadline; a worker past its own is killed. */
  private scheduleDeadline(): void {
    clearTimeout(this.deadlineTimer);
    let nearest = Infinity;
    for (const record of this.records.values()) {
      if (record.phase.phase === 'draining' && !record.killed) {
        nearest = Math.min(nearest, record.phase.deadline);
      }
    }
    if (!Number.isFinite(nearest)) return;
    this.deadlineTimer = setTimeout(
      () => {
        const now = Date.now();
        for (const record of this.records.values()) {
          const { phase } = record;
          if (
            phase.phase !== 'draining' ||
            phase.deadline > now ||
            record.killed ||
            record.worker.isDead()
          ) {
            continue;
          }
          record.killed = true;
          this.log.warn(
            {
              event: 'worker.drain-cut',
              worker: record.worker.id,
              worker_pid: record.worker.process.pid,
              why: phase.why,
            },
            'front worker still draining at its deadline; ending it with what it carries',
          );
          record.worker.process.kill('SIGKILL');
        }
        this.scheduleDeadline();
      },
      Math.max(0, nearest - Date.now()),
    );
    this.deadlineTimer.unref();
  }

  private forkListening(): Promise<void> {
    const worker = this.fork();
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null, signal: string | null): void =>
        reject(
          new Error(
            `a new front worker exited before it listened (${signal ?? `exit code ${code}`})`,
          ),
        );
      worker.once('exit', onExit);
      worker.once('listening', () => {
        worker.off('exit', onExit);
        resolve();
      });
    });
  }

  private fork(): Worker {
    const worker = cluster.fork({
      [WORKER_CONFIG_ENV]: JSON.stringify(this.config),
      [WORKER_BUFFER_DIR_ENV]: this.bufferDir,
    });
    const record: WorkerRecord = {
      worker,
      startedAt: Date.now(),
      phase: { phase: 'serving' },
      listening: false,
      killed: false,
    };
    this.records.set(worker.id, record);
    worker.once('listening', () => (record.listening = true));
    // A send that fails asynchronously is emitted here when it has no callback; unhandled, it
    // would take the primary down. Its exit is handled on 'exit'.
    worker.on('error', (err: Error) =>
      this.log.debug(
        { event: 'worker.channel-error', worker: worker.id, err: err.message },
        'front worker channel error',
      ),
    );
    return worker;
  }

  /**
   * Every message to a worker goes through here. `isConnected()` can still be true while the
   * worker's end of the channel is closing (it just exited): the write then fails with EPIPE,
   * reported to the callback. A message to a worker that is gone concerns nothing that still
   * exists (its leases are taken back on its exit), so the failure is dropped.
   */
  private sendTo(worker: Worker, message: PrimaryMessage): void {
    if (!worker.isConnected()) return;
    this.counts.count('out', message.type);
    let channel = this.channels.get(worker.id);
    if (!channel) {
      channel = new Batcher((m) => {
        if (!worker.isConnected()) return;
        if (m.type === 'batch') this.counts.count('out', 'batch');
        worker.send(m, undefined, () => undefined);
      });
      this.channels.set(worker.id, channel);
    }
    channel.send(message);
  }
}
