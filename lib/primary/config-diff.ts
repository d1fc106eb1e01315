import type { Config } from '../config/config.js';
import { configKeys, type ConfigKey } from '../config/schema.js';

export interface ConfigChange {
  readonly key: ConfigKey;
  readonly from: unknown;
  readonly to: unknown;
}

/** Keys a running instance cannot change: they take effect at the next start. */
export const RESTART_KEYS: readonly ConfigKey[] = [
  'admin_host',
  'admin_port',
  'service_kill_pattern',
];

/** Every key whose value differs, in schema order. The admin token is never shown. */
export function diffConfig(before: Config, after: Config): ConfigChange[] {
  const changes: ConfigChange[] = [];
  for (const key of configKeys) {
    if (JSON.stringify(before[key]) === JSON.stringify(after[key])) continue;
    const hide = key === 'admin_token';
    changes.push({
      key,
      from: hide ? '(hidden)' : shown(before[key]),
      to: hide ? '(hidden)' : shown(after[key]),
    });
  }
  return changes;
}

/** As the config file writes it (a port range as "first..last"). */
function shown(value: Config[ConfigKey]): unknown {
  return typeof value === 'object' ? `${value.first}..${value.last}` : value;
}

export function describeChange(change: ConfigChange): string {
  return `${change.key}: ${JSON.stringify(change.from)} → ${JSON.stringify(change.to)}`;
}
