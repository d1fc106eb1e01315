import type { Registry } from 'prom-client';
import type { AdminActions } from '../admin/admin-server.js';
import type { Config } from '../config/config.js';
import { aggregate, bucketsOf, countsByCode, PoolMetrics } from '../metrics/pool-metrics.js';
import type { ServicePools } from '../supervisor/service-pools.js';
import type { Ask, ReloadOutcome, ScaleOutcome } from './actions.js';
import type { FrontEdge } from './front-edge.js';
import { listens } from './front.js';
import type { MetricsGather } from './metrics-gather.js';
import { liveness, readiness } from './probes.js';
import type { FrontWorkers } from './worker-pool.js';

/** What the admin API's answers read from the running server. */
export interface AnsweringServer {
  readonly state: 'starting' | 'running' | 'draining' | 'stopping';
  readonly config: Config;
  readonly configFile: string;
  readonly stateDir: string;
  readonly version: string;
  readonly startedAt: number;
  readonly supervisor: ServicePools;
  readonly front: FrontEdge;
  readonly workers: FrontWorkers;
  readonly poolMetrics: PoolMetrics;
  readonly gather: MetricsGather;
  /** The admin token in force (admin_token, or the one generated at start). */
  readonly adminToken: string;
  ask(action: Ask): void;
}

/** The primary's and every front worker's metrics in one registry (one scrape, one truth). */
async function metricsOf(server: AnsweringServer): Promise<Registry> {
  return aggregate(server.poolMetrics, await server.gather.collect(server.workers.list()));
}

/** /status: `byCode` is the request counters, when the caller has just read them. */
export async function statusOf(
  server: AnsweringServer,
  byCode?: Record<string, number>,
): Promise<object> {
  byCode ??= await countsByCode(await metricsOf(server));
  const totals = {
    requests: Object.values(byCode).reduce((a, b) => a + b, 0),
    status502: byCode['502'] ?? 0,
    status503: byCode['503'] ?? 0,
    status504: byCode['504'] ?? 0,
  };
  const { config, supervisor } = server;
  return {
    pid: process.pid,
    version: server.version,
    state: server.state,
    uptimeMs: Date.now() - server.startedAt,
    config: server.configFile,
    stateDir: server.stateDir,
    pool: {
      size: config.pool_size,
      maxOverflow: config.pool_max_overflow,
      strategy: config.pool_strategy,
      rolling: supervisor.rolling,
    },
    services: supervisor.services(),
    workers: [...server.front.workers].map(([id, w]) => ({
      id,
      pid: server.workers.pidOf(id),
      listening: listens(w),
      phase: w.state,
    })),
    backends: supervisor.status(),
    queue: supervisor.queueLength,
    totals: { ...totals, ...supervisor.poolTotals },
    degraded: supervisor.health().degraded,
    endings: supervisor.recentEndings(),
  };
}

/** The admin API's answers: probes, status, metrics, and the actions it may ask for. */
export function adminAnswers(server: AnsweringServer): AdminActions {
  const queued = <T>(make: (reply: (outcome: T) => void) => Ask): Promise<T> =>
    new Promise((reply) => server.ask(make(reply)));
  return {
    readiness: () =>
      readiness({
        state: server.state,
        someWorkerListens: server.front.someListens,
        health: server.supervisor.health(),
      }),
    liveness: () =>
      liveness({
        health: server.supervisor.health(),
        startTimeoutMs: server.config.service_start_timeout_ms,
        now: Date.now(),
      }),
    status: () => statusOf(server),
    metrics: async () => {
      const registry = await metricsOf(server);
      return { contentType: registry.contentType, text: await registry.metrics() };
    },
    sample: async () => {
      const registry = await metricsOf(server);
      const byCode = await countsByCode(registry);
      return {
        status: await statusOf(server, byCode),
        byCode,
        duration: await bucketsOf(registry, 'multiplexer_request_duration_seconds'),
        queueWait: await bucketsOf(registry, 'multiplexer_queue_wait_seconds'),
      };
    },
    roll: () => {
      const backends = server.supervisor.status().length;
      server.ask({ type: 'roll', trigger: 'POST /roll' });
      return Promise.resolve({ status: 202, body: { rolling: true, backends } });
    },
    hostnames: () => server.config.admin_hostnames,
    reload: async () => {
      const outcome = await queued<ReloadOutcome>((reply) => ({
        type: 'reload',
        trigger: 'POST /reload',
        reply,
      }));
      return { status: outcome.reloaded ? 200 : 422, body: outcome };
    },
    scale: async (body: unknown) => {
      const asked = body as { pool_size?: unknown; service?: unknown } | null;
      const service = asked?.service;
      if (service !== undefined && typeof service !== 'string') {
        return {
          status: 422,
          body: {
            ok: false,
            problems: [`service must be a service's name, got ${JSON.stringify(service)}`],
          },
        };
      }
      const outcome = await queued<ScaleOutcome>((reply) => ({
        type: 'scale',
        trigger: 'POST /scale',
        ...(service === undefined ? {} : { service }),
        size: { to: asked?.pool_size },
        reply,
      }));
      return { status: outcome.ok ? 200 : 422, body: outcome };
    },
    token: () => server.adminToken,
  };
}
