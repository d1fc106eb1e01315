import type { Config } from '../config/config.js';
import { asWritten } from '../config/formats.js';
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
      from: hide ? '(hidden)' : asWritten(before[key]),
      to: hide ? '(hidden)' : asWritten(after[key]),
    });
  }
  return changes;
}

export function describeChange(change: ConfigChange): string {
  return `${change.key}: ${JSON.stringify(change.from)} → ${JSON.stringify(change.to)}`;
}
