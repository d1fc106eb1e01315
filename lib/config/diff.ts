import type { Config } from './config.js';
import { asWritten } from './formats.js';
import { configKeys, keysFor, type ConfigKey, type Scope } from './schema.js';

/**
 * The one config diff, and what a reload does about it: read from each key's appliesOn in the
 * schema and nowhere else, so the README's table, the SIGHUP row and the code cannot disagree.
 */

export interface ConfigChange {
  readonly key: ConfigKey;
  /** Where within the key, for a change inside `services`: "services.api.pool_size". */
  readonly label?: string;
  readonly from: unknown;
  readonly to: unknown;
}

/** True when a change of one of `scope`'s keys is among `changes`. */
export function touches(changes: readonly ConfigChange[], scope: Scope): boolean {
  const keys = keysFor(scope);
  return changes.some((c) => keys.includes(c.key));
}

/** Every key whose value differs, in schema order. The admin token is never shown. */
export function diffConfig(before: Config, after: Config): ConfigChange[] {
  const changes: ConfigChange[] = [];
  for (const key of configKeys) {
    if (JSON.stringify(before[key]) === JSON.stringify(after[key])) continue;
    if (key === 'services') {
      changes.push(...serviceChanges(before.services, after.services));
      continue;
    }
    const hide = key === 'admin_token';
    changes.push({
      key,
      from: hide ? '(hidden)' : asWritten(before[key]),
      to: hide ? '(hidden)' : asWritten(after[key]),
    });
  }
  return changes;
}

/** One change per service added or removed, and per key of a service that changed. */
function serviceChanges(before: Config['services'], after: Config['services']): ConfigChange[] {
  const changes: ConfigChange[] = [];
  const names = [...new Set([...Object.keys(before), ...Object.keys(after)])];
  for (const name of names) {
    const was = before[name];
    const now = after[name];
    const label = `services.${name}`;
    if (!was || !now) {
      changes.push({
        key: 'services',
        label,
        from: was ? '(a service)' : '(none)',
        to: now ? '(a service)' : '(none)',
      });
      continue;
    }
    for (const k of [...new Set([...Object.keys(was), ...Object.keys(now)])]) {
      if (JSON.stringify(was[k]) === JSON.stringify(now[k])) continue;
      changes.push({
        key: 'services',
        label: `${label}.${k}`,
        from: asWritten(was[k]),
        to: asWritten(now[k]),
      });
    }
  }
  return changes;
}

export function describeChange(change: ConfigChange): string {
  return `${change.label ?? change.key}: ${JSON.stringify(change.from)} → ${JSON.stringify(change.to)}`;
}

/** What a reload must do for `changes`, each part from the scopes of the keys that changed. */
export interface ReloadPlan {
  /** The pool's decisions (size, queue, recycling...) take the new values. */
  readonly pool: boolean;
  /** How backends start changed: every backend is replaced by a rolling restart. */
  readonly backends: boolean;
  /** A key the front workers read changed: every worker is replaced, one at a time. */
  readonly replaceWorkers: boolean;
  /** Only the number of workers changed: workers are added, or the surplus drains. */
  readonly resizeWorkers: boolean;
  /** Keys that changed but take effect only at the next start. */
  readonly needsRestart: readonly ConfigKey[];
}

export function reloadPlan(changes: readonly ConfigChange[]): ReloadPlan {
  const restart = keysFor('restart');
  return {
    pool: touches(changes, 'pool'),
    backends: touches(changes, 'backends'),
    replaceWorkers: touches(changes, 'workers'),
    resizeWorkers: touches(changes, 'worker-count'),
    needsRestart: changes.filter((c) => restart.includes(c.key)).map((c) => c.key),
  };
}
