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
  private bootFailures = 0;
  private replacing = true;

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
  ) {
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
    if (!this.replacing) return;
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
    if (worker?.isConnected()) worker.send(message);
  }

  drainAll(): void {
    for (const worker of this.list()) {
      if (worker.isConnected())
        worker.send({ ns: NAMESPACE, type: 'drain' } satisfies PrimaryMessage);
    }
  }

  killAll(signal: NodeJS.Signals): void {
    for (const worker of this.list()) worker.process.kill(signal);
  }

  list(): Worker[] {
    return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
  }

  private fork(): void {
    const worker = cluster.fork({ [WORKER_CONFIG_ENV]: JSON.stringify(this.config) });
    this.startedAt.set(worker.id, Date.now());
  }
}
