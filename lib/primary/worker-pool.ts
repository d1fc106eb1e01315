import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config/config.js';
import { Batcher } from '../ipc/batch.js';
import type { MessageCounts } from '../ipc/message-counts.js';
import { WORKER_BUFFER_DIR_ENV, WORKER_CONFIG_ENV, type PrimaryMessage } from '../ipc/protocol.js';
import type { Logger } from '../log.js';

/** See the FrontWorkers constructor. */
const WORKER_HEAP_FLAGS = ['--max-semi-space-size=2', '--heap-growing-percent=50'];

const WORKER_ENTRY = fileURLToPath(new URL('../worker/main.js', import.meta.url));

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
 * The front worker processes, as the front core (front.ts) decides them: forks on the shared
 * http_port, messages, signals. Which workers should exist, and when one drains or is killed, is
 * the core's; this only carries it out.
 */
export class FrontWorkers {
  /** Each worker's outgoing messages, written once per turn of the event loop. */
  private readonly channels = new Map<number, Batcher<PrimaryMessage>>();

  constructor(
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

  /** A new worker running `config`. */
  fork(config: Config): Worker {
    const worker = cluster.fork({
      [WORKER_CONFIG_ENV]: JSON.stringify(config),
      [WORKER_BUFFER_DIR_ENV]: this.bufferDir,
    });
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

  /** Its channel is gone with it. */
  exited(workerId: number): void {
    this.channels.delete(workerId);
  }

  send(workerId: number, message: PrimaryMessage): void {
    const worker = cluster.workers?.[workerId];
    if (worker) this.sendTo(worker, message);
  }

  kill(workerId: number, signal: NodeJS.Signals): void {
    const worker = cluster.workers?.[workerId];
    if (worker && !worker.isDead()) worker.process.kill(signal);
  }

  pidOf(workerId: number): number | undefined {
    return cluster.workers?.[workerId]?.process.pid;
  }

  list(): Worker[] {
    return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
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
