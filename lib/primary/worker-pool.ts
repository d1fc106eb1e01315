import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config/config.js';
import { NAMESPACE, WORKER_CONFIG_ENV, type PrimaryMessage } from '../ipc/protocol.js';
import type { Logger } from '../log.js';

const WORKER_ENTRY = fileURLToPath(new URL('../worker/main.js', import.meta.url));

/** A worker that dies sooner than this after its start counts as failing at boot. */
const BOOT_GRACE_MS = 1000;

/**
 * The front workers: forks `workers` of them on the shared http_port and forks a replacement when
 * one dies, with a backoff if they keep dying at boot so a broken setup never spins.
 */
export class FrontWorkers {
  private readonly startedAt = new Map<number, number>();
  /** Old workers a roll is draining: their exit is expected, not replaced. */
  private readonly retiring = new Set<number>();
  private bootFailures = 0;
  private replacing = true;

  constructor(
    private config: Config,
    private readonly log: Logger,
  ) {
    // The kernel hands connections to the workers, not the primary. With round-robin (Node's
    // default), the primary accepts each connection and passes it to a worker over IPC; if that
    // worker exits (a drain ending, a crash, kill -9) before it acknowledges the handle, nobody
    // ever closes or re-sends it, and the client hangs on an open connection forever (seen: a
    // lost request in reload tests). With SCHED_NONE, unaccepted connections stay in the shared
    // listen queue, which every live worker drains. Frozen by the first setupPrimary/fork.
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.setupPrimary({ exec: WORKER_ENTRY, args: [] });
  }

  startAll(): void {
    for (let i = 0; i < this.config.workers; i++) this.fork();
  }

  /** After this, dead workers are not replaced. */
  stopReplacing(): void {
    this.replacing = false;
  }

  /** Called for every worker exit; forks a replacement while the server runs. */
  replace(worker: Worker, code: number | null, signal: string | null): void {
    const lived = Date.now() - (this.startedAt.get(worker.id) ?? 0);
    this.startedAt.delete(worker.id);
    if (this.retiring.delete(worker.id) || !this.replacing) return;
    this.bootFailures = lived < BOOT_GRACE_MS ? this.bootFailures + 1 : 0;
    const delay = this.bootFailures === 0 ? 0 : Math.min(10_000, 100 * 2 ** this.bootFailures);
    this.log.error(
      { worker: worker.id, pid: worker.process.pid, code, signal },
      `front worker died (${signal ? `killed by ${signal}` : `exit code ${code}`}); starting a replacement${delay ? ` in ${delay} ms` : ''}`,
    );
    setTimeout(() => {
      if (this.replacing) this.fork();
    }, delay);
  }

  send(workerId: number, message: PrimaryMessage): void {
    const worker = cluster.workers?.[workerId];
    if (worker) sendTo(worker, message);
  }

  drainAll(): void {
    for (const worker of this.list()) sendTo(worker, { ns: NAMESPACE, type: 'drain' });
  }

  killAll(signal: NodeJS.Signals): void {
    for (const worker of this.list()) worker.process.kill(signal);
  }

  /**
   * Replaces every worker, one at a time, with one running `config`: the new worker listens before
   * the old one stops accepting and drains, so the port always has a listener. Then the count is
   * adjusted to config.workers. Rejects (leaving the remaining old workers serving) if a new worker
   * dies before it listens.
   */
  async roll(config: Config): Promise<number> {
    this.config = config;
    const old = this.list().filter((w) => !this.retiring.has(w.id));
    let started = 0;
    for (let i = 0; i < Math.max(old.length, config.workers); i++) {
      if (i < config.workers) {
        await this.forkListening();
        started++;
      }
      const previous = old[i];
      if (previous) await this.retire(previous, config.shutdown_timeout_ms);
    }
    return started;
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

  /** Drains one worker; SIGKILL if it is not gone within `timeoutMs`. */
  private retire(worker: Worker, timeoutMs: number): Promise<void> {
    this.retiring.add(worker.id);
    return new Promise((resolve) => {
      if (worker.isDead()) return resolve();
      const timer = setTimeout(() => {
        this.log.warn({ worker: worker.id }, 'old front worker still draining; ending it');
        worker.process.kill('SIGKILL');
      }, timeoutMs);
      worker.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      sendTo(worker, { ns: NAMESPACE, type: 'drain' });
    });
  }

  list(): Worker[] {
    return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
  }

  private fork(): Worker {
    const worker = cluster.fork({ [WORKER_CONFIG_ENV]: JSON.stringify(this.config) });
    this.startedAt.set(worker.id, Date.now());
    // A send that fails asynchronously is emitted here when it has no callback; unhandled, it
    // would take the primary down. Its exit is handled on 'exit'.
    worker.on('error', (err: Error) =>
      this.log.debug({ worker: worker.id, err: err.message }, 'front worker channel error'),
    );
    return worker;
  }
}

/**
 * Every message to a worker goes through here. `isConnected()` can still be true while the
 * worker's end of the channel is closing (it just exited): the write then fails with EPIPE,
 * reported to the callback. A message to a worker that is gone concerns nothing that still
 * exists (its leases are taken back on its exit), so the failure is dropped.
 */
function sendTo(worker: Worker, message: PrimaryMessage): void {
  if (!worker.isConnected()) return;
  worker.send(message, undefined, () => undefined);
}
