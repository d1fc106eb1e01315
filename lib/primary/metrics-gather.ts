import type { Worker } from 'node:cluster';
import { NAMESPACE, type PrimaryMessage } from '../ipc/protocol.js';

interface Pending {
  waiting: Set<number>;
  results: unknown[][];
  timer: NodeJS.Timeout;
  resolve(results: unknown[][]): void;
}

/**
 * Asks every front worker for its metrics (IPC metrics-request / metrics, matched by seq and ack) and
 * resolves with the replies. A worker that exits meanwhile is not waited for, and none is waited
 * for longer than `timeoutMs`: a scrape answers with what it has rather than hang. prom-client's
 * own clusterMetrics() would wait 5 s for a dead worker, then fail the whole scrape.
 */
export class MetricsGather {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(
    private readonly send: (worker: number, message: PrimaryMessage) => void,
    private readonly timeoutMs = 1000,
  ) {}

  collect(workers: readonly Worker[]): Promise<unknown[][]> {
    const id = this.nextId++;
    const live = workers.filter((w) => w.isConnected() && !w.isDead());
    if (live.length === 0) return Promise.resolve([]);
    return new Promise((resolve) => {
      const entry: Pending = {
        waiting: new Set(live.map((w) => w.id)),
        results: [],
        timer: setTimeout(() => this.finish(id), this.timeoutMs),
        resolve,
      };
      this.pending.set(id, entry);
      for (const w of live) this.send(w.id, { ns: NAMESPACE, type: 'metrics-request', seq: id });
    });
  }

  reply(worker: number, id: number, metrics: unknown[]): void {
    const entry = this.pending.get(id);
    if (!entry?.waiting.delete(worker)) return;
    entry.results.push(metrics);
    if (entry.waiting.size === 0) this.finish(id);
  }

  workerExited(worker: number): void {
    for (const [id, entry] of this.pending) {
      if (entry.waiting.delete(worker) && entry.waiting.size === 0) this.finish(id);
    }
  }

  private finish(id: number): void {
    const entry = this.pending.get(id);
    if (!entry) return;
    this.pending.delete(id);
    clearTimeout(entry.timer);
    entry.resolve(entry.results);
  }
}
