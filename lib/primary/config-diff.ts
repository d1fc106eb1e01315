import type { Config } from '../config/config.js';
import { asWritten } from '../config/formats.js';
import { configKeys, keysFor, type ConfigKey, type Scope } from '../config/schema.js';

export interface ConfigChange {
  readonly key: ConfigKey;
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
