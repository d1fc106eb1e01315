import type { Worker } from 'node:cluster';
import { NAMESPACE, type PrimaryMessage } from '../ipc/protocol.js';
import { Pending, type Sequence } from '../ipc/request.js';

interface Gathering {
  readonly waiting: Set<number>;
  readonly results: unknown[][];
  readonly resolve: (results: unknown[][]) => void;
}

/**
 * Asks every front worker for its metrics (IPC metrics-request / metrics, matched by seq and ack) and
 * resolves with the replies. A worker that exits meanwhile is not waited for, and none is waited
 * for longer than `timeoutMs`: a scrape answers with what it has rather than hang. prom-client's
 * own clusterMetrics() would wait 5 s for a dead worker, then fail the whole scrape.
 */
export class MetricsGather {
  private readonly pending: Pending<Gathering>;

  constructor(
    private readonly send: (worker: number, message: PrimaryMessage) => void,
    sequence: Sequence,
    private readonly timeoutMs = 1000,
  ) {
    this.pending = new Pending(sequence);
  }

  collect(workers: readonly Worker[]): Promise<unknown[][]> {
    const live = workers.filter((w) => w.isConnected() && !w.isDead());
    if (live.length === 0) return Promise.resolve([]);
    return new Promise((resolve) => {
      const gathering = { waiting: new Set(live.map((w) => w.id)), results: [], resolve };
      const seq = this.pending.open(gathering, {
        ms: this.timeoutMs,
        onTimeout: (_, g) => g.resolve(g.results),
      });
      for (const w of live) this.send(w.id, { ns: NAMESPACE, type: 'metrics-request', seq });
    });
  }

  reply(worker: number, ack: number, metrics: unknown[]): void {
    const gathering = this.pending.peek(ack);
    if (!gathering?.waiting.delete(worker)) return;
    gathering.results.push(metrics);
    if (gathering.waiting.size === 0) this.finish(ack);
  }

  workerExited(worker: number): void {
    for (const [seq, gathering] of this.pending.entries()) {
      if (gathering.waiting.delete(worker) && gathering.waiting.size === 0) this.finish(seq);
    }
  }

  private finish(seq: number): void {
    const gathering = this.pending.take(seq);
    gathering?.resolve(gathering.results);
  }
}
