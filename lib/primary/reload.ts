import type { Config } from '../config/config.js';
import { describeChange, diffConfig, reloadPlan } from '../config/diff.js';
import { crossKeyProblems } from '../config/load.js';
import {
  budgetProblems,
  SERVICE_POOL_SIZE,
  serviceSpecs,
  type ServiceSpec,
} from '../config/services.js';
import { schema } from '../config/schema.js';
import { MultiplexerError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ServicePools } from '../supervisor/service-pools.js';
import type { Action, ReloadOutcome, ScaleOutcome } from './actions.js';
import type { FrontEdge } from './front-edge.js';

/** What a reload or a scale reads and changes in the running server. */
export interface Reconfigurable {
  /** 'running', or why nothing may change now. */
  readonly state: string;
  readonly config: Config;
  /** The new config in force, for everything that reads it from now on. */
  adopt(next: Config): void;
  /** Loads the config again (file, environment, flags); throws MPX_CONFIG_INVALID. */
  load(): Config;
  readonly supervisor: ServicePools;
  readonly front: FrontEdge;
  /** http_port's socket moves to another address: the held one closes with the last old worker. */
  addressChanged(): void;
  readonly log: Logger;
}

/**
 * Reads the config again. Invalid: log every problem and change nothing. Valid: pool settings at
 * once, a rolling restart of the backends if how they start changed, and the front workers
 * replaced one at a time only if a key they read changed (a count change alone adds or drains).
 */
export async function reload(server: Reconfigurable, trigger: string): Promise<ReloadOutcome> {
  const { log } = server;
  if (server.state !== 'running') {
    return { reloaded: false, problems: [`cannot reload: the server is ${server.state}`] };
  }
  let next: Config;
  try {
    next = server.load();
  } catch (err) {
    const problems =
      err instanceof MultiplexerError && err.problems.length > 0
        ? [...err.problems]
        : [err instanceof Error ? err.message : String(err)];
    for (const problem of problems)
      log.error({ event: 'reload.problem' }, `${trigger}: config problem: ${problem}`);
    log.error(
      { event: 'reload.refused' },
      `${trigger}: reload refused; the running configuration stays in force`,
    );
    return { reloaded: false, problems };
  }
  const changes = diffConfig(server.config, next);
  const plan = reloadPlan(changes);
  log.info(
    { event: 'reload.started', changes: changes.map(describeChange) },
    `${trigger}: reloading (${changes.length} change${changes.length === 1 ? '' : 's'})`,
  );
  server.adopt(next);
  const { backends } = server.supervisor.reconfigure(next);
  let workersReplaced = 0;
  try {
    if (changes.some((c) => c.key === 'http_port' || c.key === 'http_host')) {
      server.addressChanged();
    }
    const answer = await server.front.reload(next, plan.replaceWorkers);
    if (answer.type !== 'settled') throw new Error(answer.reason);
    if (plan.replaceWorkers) workersReplaced = answer.started;
  } catch (err) {
    const problem = `pool and backends follow the new config, but front workers could not start with it (${(err as Error).message}); the old ones keep serving, and replacements are retried`;
    log.error({ event: 'reload.refused' }, `${trigger}: ${problem}`);
    return { reloaded: false, problems: [problem] };
  }
  log.info(
    { event: 'reload.done', workersReplaced, backendsReplaced: backends },
    `${trigger}: reloaded`,
  );
  return {
    reloaded: true,
    changes: changes.map(describeChange),
    needsRestart: [...plan.needsRestart],
    backendsReplaced: backends,
    workersReplaced,
  };
}

/** A new pool_size (POST /scale, SIGTTIN, SIGTTOU), checked like the config file's. */
export function scale(
  server: Reconfigurable,
  action: Extract<Action, { type: 'scale' }>,
): ScaleOutcome {
  const { trigger } = action;
  if (server.state !== 'running') {
    return { ok: false, problems: [`cannot scale: the server is ${server.state}`] };
  }
  const current = server.config;
  const target = scaleTarget(current, action.service);
  if ('problem' in target) return { ok: false, problems: [target.problem] };
  const { spec, several } = target;
  const from = spec.config.pool_size;
  const poolSize = 'to' in action.size ? action.size.to : from + action.size.by;
  // A service of several may keep none; the only one keeps at least one.
  const format = several ? SERVICE_POOL_SIZE : schema.pool_size.format;
  const key = several ? `services.${spec.name}.pool_size` : 'pool_size';
  if (!format.valid(poolSize)) {
    return {
      ok: false,
      problems: [`${key} must be ${format.expected}, got ${JSON.stringify(poolSize)}`],
    };
  }
  const to = poolSize as number;
  const next = several
    ? {
        ...current,
        services: Object.freeze({
          ...current.services,
          [spec.name]: Object.freeze({ ...current.services[spec.name], pool_size: to }),
        }),
      }
    : { ...current, pool_size: to };
  const problems = several ? budgetProblems(next) : crossKeyProblems(next);
  if (problems.length > 0) return { ok: false, problems };
  server.adopt(Object.freeze(next));
  server.supervisor.reconfigure(next);
  server.log.info(
    { event: 'scale.done', from, to, ...(several ? { service: spec.name } : {}) },
    `${trigger}: ${key} ${from} → ${to} (a reload returns to the config file's value)`,
  );
  return { ok: true, from, to, ...(several ? { service: spec.name } : {}) };
}

/** The service a scale is for: named, or the only one. */
function scaleTarget(
  config: Config,
  service: string | undefined,
): { spec: ServiceSpec; several: boolean } | { problem: string } {
  const specs = serviceSpecs(config);
  const several = Object.keys(config.services).length > 0;
  const names = specs.map((s) => s.name).join(', ');
  if (service === undefined) {
    if (!several) return { spec: specs[0]!, several };
    return {
      problem: `this instance runs several services (${names}): name the one to scale, e.g. multiplexer scale ${specs[0]!.name} 2`,
    };
  }
  const spec = specs.find((s) => s.name === service);
  if (!spec)
    return { problem: `no service named ${JSON.stringify(service)}; the services are ${names}` };
  return { spec, several };
}

/** SIGUSR2, POST /roll: a rolling restart, never fewer than pool_size ready meanwhile. */
export function roll(server: Reconfigurable, trigger: string): void {
  if (server.state !== 'running') return;
  server.log.info({ event: 'roll.requested' }, `${trigger}: rolling restart of the backends`);
  server.supervisor.roll();
}
