import { isIP } from 'node:net';

/**
 * Value formats for the config schema. Each format knows how to read a string (from an environment
 * variable or a flag) and what it expects, in words, so that a problem reads
 * "pool_size must be an integer ≥ 1, got -1".
 *
 * A string that does not parse is kept as given, so the problem names what the operator wrote.
 */
export interface Format<T = unknown> {
  name: string;
  expected: string;
  coerce: (text: string) => unknown;
  valid: (value: unknown) => boolean;
  /** The type of the value in force (Config derives its types from it); a type only, never set. */
  readonly resolved?: T;
}

const INTEGER_TEXT = /^[+-]?\d+$/;

function coerceInt(text: string): unknown {
  return INTEGER_TEXT.test(text.trim()) ? Number(text.trim()) : text;
}

function isInt(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value);
}

export function intAtLeast(min: number): Format<number> {
  return {
    name: `int-min-${min}`,
    expected: `an integer ≥ ${min}`,
    coerce: coerceInt,
    valid: (v) => isInt(v) && v >= min,
  };
}

/**
 * Longest delay a Node timer can hold: a longer one fires at once (TimeoutOverflowWarning), so a
 * bigger timeout would silently mean none.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/** Milliseconds: an integer from `min` up to the longest timer Node can set (about 24.8 days). */
export function msAtLeast(min: number): Format<number> {
  return {
    name: `ms-min-${min}`,
    expected: `an integer from ${min} to ${MAX_TIMER_MS} (milliseconds)`,
    coerce: coerceInt,
    valid: (v) => isInt(v) && v >= min && v <= MAX_TIMER_MS,
  };
}

/** An integer in [min, max]. */
export function intBetween(min: number, max: number): Format<number> {
  return {
    name: `int-${min}-${max}`,
    expected: `an integer from ${min} to ${max}`,
    coerce: coerceInt,
    valid: (v) => isInt(v) && v >= min && v <= max,
  };
}

export const portFormat: Format<number> = {
  name: 'tcp-port',
  expected: 'a TCP port, an integer from 1 to 65535',
  coerce: coerceInt,
  valid: (v) => isInt(v) && v >= 1 && v <= 65535,
};

export const portOrOffFormat: Format<number> = {
  name: 'tcp-port-or-off',
  expected: 'a TCP port from 1 to 65535, or 0 for off',
  coerce: coerceInt,
  valid: (v) => isInt(v) && v >= 0 && v <= 65535,
};

/** Loopback addresses and names: what may listen without a token. */
export function isLoopback(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}

export function oneOf<const V extends string>(values: readonly V[]): Format<V> {
  return {
    name: `one-of-${values.join('-')}`,
    expected: `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`,
    coerce: (text) => text,
    valid: (v) => typeof v === 'string' && (values as readonly string[]).includes(v),
  };
}

export const nonEmptyString: Format<string> = {
  name: 'non-empty-string',
  expected: 'a non-empty string',
  coerce: (text) => text,
  valid: (v) => typeof v === 'string' && v.trim() !== '',
};

export const anyString: Format<string> = {
  name: 'any-string',
  expected: 'a string',
  coerce: (text) => text,
  valid: (v) => typeof v === 'string',
};

export const commandFormat: Format<string> = {
  name: 'command-line',
  expected: 'a non-empty command line (it is required), e.g. "node index.js %PORT%"',
  coerce: (text) => text,
  valid: (v) => typeof v === 'string' && v.trim() !== '',
};

export const baseUrlFormat: Format<string> = {
  name: 'service-base-url',
  expected: 'an http:// URL with a host and no port or path, e.g. "http://127.0.0.1"',
  coerce: (text) => text,
  valid: (v) => {
    if (typeof v !== 'string') return false;
    try {
      const url = new URL(v);
      return (
        url.protocol === 'http:' &&
        url.hostname !== '' &&
        url.port === '' &&
        (url.pathname === '/' || url.pathname === '') &&
        url.search === '' &&
        url.username === ''
      );
    } catch {
      return false;
    }
  },
};

export interface PortRange {
  first: number;
  last: number;
}

/** Accepts the seed's Elixir-style "10300..10350" and a JSON pair [10300, 10350]. */
export function parsePortRange(value: unknown): PortRange | undefined {
  let pair: unknown[] | undefined;
  if (Array.isArray(value)) pair = value;
  else if (typeof value === 'string') {
    const match = /^\s*(\d+)\s*\.\.\s*(\d+)\s*$/.exec(value);
    if (match) pair = [Number(match[1]), Number(match[2])];
  }
  if (pair?.length !== 2) return undefined;
  const [first, last] = pair;
  if (!portFormat.valid(first) || !portFormat.valid(last)) return undefined;
  if ((first as number) > (last as number)) return undefined;
  return { first: first as number, last: last as number };
}

export const portRangeFormat: Format<PortRange> = {
  name: 'port-range',
  expected: 'a port range "FIRST..LAST" or [FIRST, LAST] with 1 ≤ FIRST ≤ LAST ≤ 65535',
  coerce: (text) => text,
  valid: (v) => parsePortRange(v) !== undefined,
};

export const healthPathFormat: Format<string> = {
  name: 'health-path',
  expected: 'a path beginning with "/" (e.g. "/health"), or "" for off',
  coerce: (text) => text,
  valid: (v) => v === '' || (typeof v === 'string' && v.startsWith('/') && !/\s/.test(v)),
};

const READINESS_WORDS = ['wait_first_output', 'wait_port'];

export const startDelayFormat: Format<number | 'wait_first_output' | 'wait_port'> = {
  name: 'start-delay',
  expected: 'an integer ≥ 0 (milliseconds), "wait_first_output" or "wait_port"',
  coerce: (text) => (READINESS_WORDS.includes(text) ? text : coerceInt(text)),
  valid: (v) =>
    (typeof v === 'string' && READINESS_WORDS.includes(v)) ||
    (isInt(v) && v >= 0 && v <= MAX_TIMER_MS),
};

export const booleanFormat: Format<boolean> = {
  name: 'boolean',
  expected: 'true or false',
  coerce: (text) => {
    const t = text.trim().toLowerCase();
    return t === 'true' ? true : t === 'false' ? false : text;
  },
  valid: (v) => typeof v === 'boolean',
};

/**
 * Parses one trusted_proxies entry, an address or a CIDR block, into what net.BlockList takes;
 * undefined if it is neither.
 */
export function parseAddressOrBlock(
  entry: string,
): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [address = '', prefixText, ...rest] = entry.trim().split('/');
  const version = isIP(address);
  if (version === 0 || rest.length > 0) return undefined;
  const max = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return undefined;
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) return undefined;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

export const addressListFormat: Format<readonly string[]> = {
  name: 'address-list',
  expected:
    'a list of IP addresses or CIDR blocks, e.g. ["10.0.0.0/8", "127.0.0.1"] (in a variable or flag: comma-separated)',
  coerce: (text) =>
    text.trim() === ''
      ? []
      : text
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean),
  valid: (v) =>
    Array.isArray(v) &&
    v.every((entry) => typeof entry === 'string' && parseAddressOrBlock(entry) !== undefined),
};

const HOSTNAME =
  /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

export const hostnameListFormat: Format<readonly string[]> = {
  name: 'hostname-list',
  expected:
    'a list of host names in lower case, e.g. ["mpx-admin.internal"] (in a variable or flag: comma-separated)',
  coerce: addressListFormat.coerce,
  valid: (v) => Array.isArray(v) && v.every((e) => typeof e === 'string' && HOSTNAME.test(e)),
};

/**
 * The `services` map, checked here only as an object of objects; lib/config/services.ts checks
 * each service's keys and names the service in every problem.
 */
export const servicesFormat: Format<Readonly<Record<string, Readonly<Record<string, unknown>>>>> = {
  name: 'services-map',
  expected:
    'an object of service name → that service\'s settings, e.g. {"api": {"service_start_process_cmd": "node api.js %PORT%", "match": {"path_prefix": "/api"}}}',
  coerce: (text) => {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  },
  valid: (v) =>
    typeof v === 'object' &&
    v !== null &&
    !Array.isArray(v) &&
    Object.values(v).every((e) => typeof e === 'object' && e !== null && !Array.isArray(e)),
};

/** Text for a value in a problem line: JSON, so that "4" and 4 read differently. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  // JSON.stringify gives undefined only for functions and symbols, which JSON cannot hold.
  return JSON.stringify(value) ?? typeof value;
}

/** A resolved value as the config file writes it: a port range as "first..last". */
export function asWritten(value: unknown): unknown {
  const range = value as PortRange;
  return typeof value === 'object' && value !== null && 'first' in range
    ? `${range.first}..${range.last}`
    : value;
}
