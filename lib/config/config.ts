import type { Format } from './formats.js';
import type { ConfigKey, schema } from './schema.js';

type Resolved<F> = F extends Format<infer T> ? T : never;

/**
 * The validated, frozen configuration the primary hands to every part (and to front workers):
 * derived from the schema, each key typed by its format, so a key added there is typed here.
 */
export type Config = {
  readonly [K in ConfigKey]: Resolved<(typeof schema)[K]['format']>;
};

export type Source = 'flag' | 'env' | 'file' | 'default';

export interface LoadedConfig {
  config: Config;
  /** Where each key's value came from, for `multiplexer check`. */
  sources: Readonly<Record<keyof Config, Source>>;
  file: string;
  /** What is allowed but probably not meant (a mistyped MULTIPLEXER_* variable): warned at start. */
  notes: readonly string[];
}

/** The host part of service_http_base_url, as a socket address (an IPv6 literal without brackets). */
export function backendHost(baseUrl: string): string {
  return new URL(baseUrl).hostname.replace(/^\[|\]$/g, '');
}
