import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { countLogEvents } from './log-events.js';

/** What the primary knows at the moment of a scrape; read then, never copied on every change. */
export interface PoolReadings {
  backends(): readonly {
    id: number;
    state: string;
    rssBytes: number | undefined;
    service: string;
  }[];
  /** Every service's queue (one service: "default"). */
  queues(): readonly { service: string; length: number }[];
  workers(): number;
  /** Backend starts and exits by reason, per service. */
  backendCounts(): readonly {
    service: string;
    starts: number;
    exits: ReadonlyMap<string, number>;
  }[];
  ipcMessages(): Iterable<{ direction: string; type: string; count: number }>;
}

/** Every state a backend can be in, so each has a series (at 0) before it first happens. */
const BACKEND_STATES = ['starting', 'idle', 'busy', 'upgraded', 'retiring', 'failed'];

/**
 * The primary's metrics: the pool and its backends, read at scrape time from the supervisor.
 * Node's own process metrics carry process="primary" (each worker's, process="worker-N").
 */
export class PoolMetrics {
  readonly registry = new Registry();

  constructor(read: PoolReadings) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, labels: { process: 'primary' } });
    countLogEvents(this.registry);
    new Gauge({
      name: 'multiplexer_backends',
      help: 'Backends by state.',
      labelNames: ['state', 'service'] as const,
      registers,
      collect() {
        const counts = new Map<string, Map<string, number>>();
        for (const { service } of read.queues())
          counts.set(service, new Map(BACKEND_STATES.map((s) => [s, 0])));
        for (const b of read.backends()) {
          const byState = counts.get(b.service) ?? new Map<string, number>();
          byState.set(b.state, (byState.get(b.state) ?? 0) + 1);
          counts.set(b.service, byState);
        }
        this.reset();
        for (const [service, byState] of counts)
          for (const [state, n] of byState) this.set({ state, service }, n);
      },
    });
    new Gauge({
      name: 'multiplexer_queue_length',
      help: 'Requests waiting for a free backend, by service.',
      labelNames: ['service'] as const,
      registers,
      collect() {
        this.reset();
        for (const { service, length } of read.queues()) this.set({ service }, length);
      },
    });
    new Gauge({
      name: 'multiplexer_workers',
      help: 'Front worker processes alive.',
      registers,
      collect() {
        this.set(read.workers());
      },
    });
    new Gauge({
      name: 'multiplexer_backend_rss_bytes',
      help: "Resident memory of each backend's process group, read every 2 s (label: backend id).",
      labelNames: ['backend'] as const,
      registers,
      collect() {
        this.reset();
        for (const b of read.backends()) {
          if (b.rssBytes !== undefined) this.set({ backend: String(b.id) }, b.rssBytes);
        }
      },
    });
    new Counter({
      name: 'multiplexer_backend_starts_total',
      help: 'Backend processes started, by service.',
      labelNames: ['service'] as const,
      registers,
      collect() {
        this.reset();
        for (const { service, starts } of read.backendCounts()) this.inc({ service }, starts);
      },
    });
    new Counter({
      name: 'multiplexer_ipc_messages_total',
      help: 'Messages between the primary and the front workers, by direction (in: to the primary) and type.',
      labelNames: ['direction', 'type'] as const,
      registers,
      collect() {
        this.reset();
        for (const { direction, type, count } of read.ipcMessages())
          this.inc({ direction, type }, count);
      },
    });
    new Counter({
      name: 'multiplexer_backend_exits_total',
      help: 'Backend processes ended, by reason: a retirement (shrink, rolled, max-requests, …), a fault (unhealthy, stuck, …), "crash" or "boot-failure".',
      labelNames: ['reason', 'service'] as const,
      registers,
      collect() {
        this.reset();
        for (const { service, exits } of read.backendCounts())
          for (const [reason, n] of exits) this.inc({ reason, service }, n);
      },
    });
  }
}

/** A metric as prom-client's getMetricsAsJSON gives it (what aggregate() takes). */
type MetricJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>[number];

/**
 * One registry from the primary's and every worker's metrics, by prom-client's cluster
 * aggregation (counters and histograms summed; series with distinct labels kept apart).
 */
export async function aggregate(
  pool: PoolMetrics,
  workers: readonly unknown[][],
): Promise<Registry> {
  const own = await pool.registry.getMetricsAsJSON();
  return AggregatorRegistry.aggregate([own, ...(workers as MetricJson[][])]);
}

/** Requests by the status code sent, from the same counters /metrics shows (/status, dashboard). */
export async function countsByCode(registry: Registry): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  const metric = registry.getSingleMetric('multiplexer_requests_total');
  if (!metric) return counts;
  for (const { labels, value } of (await metric.get()).values) {
    const code = String(labels.code);
    counts[code] = (counts[code] ?? 0) + value;
  }
  return counts;
}

/** A histogram's cumulative bucket counts, upper bounds in seconds (+Inf last). */
export async function bucketsOf(
  registry: Registry,
  name: string,
): Promise<{ le: number[]; counts: number[] }> {
  const metric = registry.getSingleMetric(name);
  const le: number[] = [];
  const counts: number[] = [];
  if (!metric) return { le, counts };
  for (const v of (await metric.get()).values) {
    if ((v as { metricName?: string }).metricName !== `${name}_bucket`) continue;
    le.push(v.labels.le === '+Inf' ? Infinity : Number(v.labels.le));
    counts.push(v.value);
  }
  return { le, counts };
}
