import type { Config } from './config.js';
import { describeValue, intAtLeast, parsePortRange, type PortRange } from './formats.js';
import { nearestName } from './nearest-name.js';
import { configKeys, schema, type ConfigKey } from './schema.js';
import { serviceDir } from './service-command.js';

/**
 * Several services behind one port: the `services` map, each entry a service's own keys (every
 * service_*, pool_* and queue_* key) plus `match`. A service inherits the top-level value of every
 * such key it does not set, so what they share is written once. A config without `services` is
 * one service, `default`, that matches every request: every earlier config means what it meant.
 */

export const DEFAULT_SERVICE = 'default';

/** Which requests a service takes (see lib/router.ts for the order). */
export interface ServiceMatch {
  /** Exact names and `*.example.com` wildcards, lower case; empty: any Host. */
  readonly hosts: readonly string[];
  readonly pathPrefix: string | undefined;
  readonly stripPrefix: boolean;
}

export interface ServiceSpec {
  readonly name: string;
  /** The whole config as this service sees it: the top level with its own keys on top. */
  readonly config: Config;
  readonly match: ServiceMatch;
}

const SERVICE_PREFIXES = ['service_', 'pool_', 'queue_'];

/** The keys a service may set for itself; every other key is global. */
export const serviceKeys: readonly ConfigKey[] = configKeys.filter((key) =>
  SERVICE_PREFIXES.some((prefix) => key.startsWith(prefix)),
);

const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const HOST = /^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const MATCH_KEYS = ['host', 'path_prefix', 'strip_prefix'];

/** A service may run none at all while idle (0: started on the first request). */
export const SERVICE_POOL_SIZE = intAtLeast(0);

/** A service's entry as loadConfig leaves it: its own keys resolved, and its match. */
export interface ServiceEntry {
  readonly [key: string]: unknown;
  readonly match?: ServiceMatch;
}

/** Every service, in the order the config lists them (`default` alone without `services`). */
export function serviceSpecs(config: Config): ServiceSpec[] {
  const entries = Object.entries(config.services);
  if (entries.length === 0) {
    return [
      {
        name: DEFAULT_SERVICE,
        config,
        match: { hosts: [], pathPrefix: undefined, stripPrefix: false },
      },
    ];
  }
  return entries.map(([name, raw]) => {
    const entry = raw as ServiceEntry;
    const own: Record<string, unknown> = {};
    for (const key of serviceKeys) if (key in entry) own[key] = entry[key];
    return {
      name,
      config: Object.freeze({ ...config, ...own }),
      match: entry.match ?? { hosts: [], pathPrefix: undefined, stripPrefix: false },
    };
  });
}

/** The backends all services together may run: max_backends, or every service's ceiling. */
export function backendBudget(
  config: Config,
  specs: readonly ServiceSpec[] = serviceSpecs(config),
): number {
  if (config.max_backends > 0) return config.max_backends;
  return specs.reduce((n, s) => n + s.config.pool_size + s.config.pool_max_overflow, 0);
}

/**
 * Checks the written `services` map and resolves each entry (port ranges parsed, service_cwd
 * made absolute from the config file's directory). Every problem names the service and the key.
 */
export function resolveServices(
  written: unknown,
  top: Config,
  context: { readonly configFile: string; readonly startDir: string },
): { services: Readonly<Record<string, ServiceEntry>>; problems: string[] } {
  const problems: string[] = [];
  const services: Record<string, ServiceEntry> = {};
  if (written === undefined || written === null) return { services, problems };
  if (typeof written !== 'object' || Array.isArray(written)) {
    problems.push(
      `services must be an object of service name → that service's settings, got ${describeValue(written)}`,
    );
    return { services, problems };
  }
  for (const [name, value] of Object.entries(written as Record<string, unknown>)) {
    const where = `services.${name}`;
    if (!NAME.test(name)) {
      problems.push(
        `${where}: a service name must be lower-case letters, digits, "-" and "_" (at most 63, starting with a letter or digit), got ${JSON.stringify(name)}`,
      );
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      problems.push(
        `${where} must be an object of that service's settings, got ${describeValue(value)}`,
      );
      continue;
    }
    const entry: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
      if (key.startsWith('$')) continue;
      if (key === 'match') {
        const match = resolveMatch(v, where, problems);
        if (match) entry.match = match;
        continue;
      }
      if (!(serviceKeys as readonly string[]).includes(key)) {
        if (key in schema) {
          problems.push(
            `${where}.${key} is a global setting, the same for every service: set it at the top level`,
          );
        } else {
          const nearest = nearestName(key, [...serviceKeys, 'match']);
          problems.push(
            `${where}.${key} is not a service setting (${nearest ? `did you mean ${nearest}?` : `a service takes match and the service_*, pool_* and queue_* settings`}), got ${describeValue(v)}`,
          );
        }
        continue;
      }
      const format = key === 'pool_size' ? SERVICE_POOL_SIZE : schema[key as ConfigKey].format;
      if (!format.valid(v)) {
        problems.push(`${where}.${key} must be ${format.expected}, got ${describeValue(v)}`);
        continue;
      }
      entry[key] =
        key === 'service_port_range'
          ? Object.freeze(parsePortRange(v)!)
          : key === 'service_cwd'
            ? serviceDir({
                value: v as string,
                given: true,
                configFile: context.configFile,
                command: '',
                startDir: context.startDir,
              }).dir
            : v;
    }
    services[name] = Object.freeze(entry);
  }
  if (problems.length > 0 || Object.keys(services).length === 0) return { services, problems };
  const frozen = Object.freeze(services);
  problems.push(...acrossServices(serviceSpecs({ ...top, services: frozen }), top));
  return { services: frozen, problems };
}

function resolveMatch(value: unknown, where: string, problems: string[]): ServiceMatch | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    problems.push(
      `${where}.match must be an object with host, path_prefix and/or strip_prefix, got ${describeValue(value)}`,
    );
    return undefined;
  }
  const m = value as Record<string, unknown>;
  const before = problems.length;
  for (const key of Object.keys(m)) {
    if (!MATCH_KEYS.includes(key)) {
      const nearest = nearestName(key, MATCH_KEYS);
      problems.push(
        `${where}.match.${key} is not a match setting (${nearest ? `did you mean ${nearest}?` : 'match takes host, path_prefix and strip_prefix'})`,
      );
    }
  }
  const host = m.host;
  const hosts = host === undefined ? [] : Array.isArray(host) ? host : [host];
  if (hosts.length === 0 && Array.isArray(host)) {
    problems.push(`${where}.match.host must name at least one host when given, got []`);
  }
  for (const h of hosts) {
    if (typeof h !== 'string' || !HOST.test(h)) {
      problems.push(
        `${where}.match.host must be a host name in lower case or "*.example.com", or a list of them, got ${describeValue(h)}`,
      );
    }
  }
  const prefix = m.path_prefix;
  if (prefix !== undefined && (typeof prefix !== 'string' || !/^\/\S*$/.test(prefix))) {
    problems.push(
      `${where}.match.path_prefix must be a path beginning with "/" (e.g. "/api"), got ${describeValue(prefix)}`,
    );
  }
  const strip = m.strip_prefix;
  if (strip !== undefined && typeof strip !== 'boolean') {
    problems.push(`${where}.match.strip_prefix must be true or false, got ${describeValue(strip)}`);
  } else if (strip === true && prefix === undefined) {
    problems.push(`${where}.match.strip_prefix needs a path_prefix to strip`);
  }
  if (problems.length > before) return undefined;
  return Object.freeze({
    hosts: Object.freeze(hosts as string[]),
    pathPrefix: prefix as string | undefined,
    stripPrefix: strip === true,
  });
}

/** The minimums must fit the budget (also checked when a service is scaled). */
export function budgetProblems(
  config: Config,
  specs: readonly ServiceSpec[] = serviceSpecs(config),
): string[] {
  const minimums = specs.reduce((n, s) => n + s.config.pool_size, 0);
  if (config.max_backends > 0 && config.max_backends < minimums) {
    return [
      `max_backends must be at least the sum of every service's pool_size, ${minimums} (${specs.map((s) => `${s.name} ${s.config.pool_size}`).join(', ')}), got ${config.max_backends}`,
    ];
  }
  return [];
}

/** Rules between services: budget, routes, ports. */
function acrossServices(specs: readonly ServiceSpec[], top: Config): string[] {
  const problems: string[] = budgetProblems(top, specs);
  const seen = new Map<string, string>();
  for (const s of specs) {
    if (s.config.pool_size + s.config.pool_max_overflow === 0) {
      problems.push(
        `services.${s.name}: pool_size 0 needs pool_max_overflow ≥ 1, or the service could never run a backend`,
      );
    }
    const key = JSON.stringify([[...s.match.hosts].sort(), s.match.pathPrefix ?? null]);
    const other = seen.get(key);
    if (other !== undefined) {
      problems.push(
        `services.${s.name}.match is the same as services.${other}.match: no request could tell them apart`,
      );
    } else seen.set(key, s.name);
  }
  // Services on the same range share its ports (a port is never handed to two backends).
  const ranges = new Map<string, { range: PortRange; names: string[]; need: number }>();
  for (const s of specs) {
    const r = s.config.service_port_range;
    const id = `${r.first}..${r.last}`;
    const group = ranges.get(id) ?? { range: r, names: [], need: 0 };
    group.names.push(s.name);
    group.need += s.config.pool_size + s.config.pool_max_overflow;
    ranges.set(id, group);
  }
  const groups = [...ranges.entries()];
  for (const [id, g] of groups) {
    const size = g.range.last - g.range.first + 1;
    const need = Math.min(g.need, backendBudget(top, specs));
    if (size < need) {
      problems.push(
        `service_port_range "${id}" of ${g.names.map((n) => `services.${n}`).join(', ')} must hold at least ${need} ports (their pool_size + pool_max_overflow, at most max_backends), got ${size}`,
      );
    }
  }
  return problems;
}
