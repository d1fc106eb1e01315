import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { statSync } from 'node:fs';
import convict from 'convict';
import { MultiplexerError } from '../errors.js';
import type { Config, LoadedConfig, Source } from './config.js';
import { describeValue, isLoopback, parsePortRange } from './formats.js';
import { locateJsonError } from './json-error.js';
import { configKeys, envName, schema, type ConfigKey } from './schema.js';
import { missingPathProblem, portProblem, serviceDir } from './service-command.js';
import { STATE_DIR_ENV } from '../instance/state-dir.js';
import { LOG_FORMAT_ENV, LOG_LEVEL_ENV } from '../log.js';
import { nearestName } from './nearest-name.js';
import { resolveServices, serviceSpecs } from './services.js';
import { RAW_PATH_ENV, WORKER_BUFFER_DIR_ENV, WORKER_CONFIG_ENV } from '../ipc/protocol.js';

export interface ConfigInput {
  /** Path of the JSON config file. */
  file: string;
  /** Values given as command-line flags, keyed by config key (strings, as typed). */
  flags?: Partial<Record<ConfigKey, unknown>>;
  env?: NodeJS.ProcessEnv;
  /** Where start runs (default: this process's working directory), for service_cwd. */
  startDir?: string;
}

/** MULTIPLEXER_* variables that are not settings. */
const OTHER_ENV = [
  STATE_DIR_ENV,
  LOG_LEVEL_ENV,
  LOG_FORMAT_ENV,
  WORKER_CONFIG_ENV,
  WORKER_BUFFER_DIR_ENV,
  RAW_PATH_ENV,
];

let formatsRegistered = false;

/** convict keeps formats in a global registry; register ours once, on first use. */
function registerFormats(): void {
  if (formatsRegistered) return;
  for (const key of configKeys) {
    const { format } = schema[key];
    convict.addFormat({
      name: format.name,
      validate: (value: unknown) => {
        if (!format.valid(value)) throw new Error(`must be ${format.expected}`);
      },
      coerce: (value: unknown) => (typeof value === 'string' ? format.coerce(value) : value),
    });
  }
  formatsRegistered = true;
}

/**
 * `services` is read outside convict: convict descends into an object value as nested settings
 * (only its own "object" format is a leaf), and each service's keys are checked by services.ts.
 */
const OUTSIDE_CONVICT: ConfigKey = 'services';

function convictSchema(): convict.Schema<Record<string, unknown>> {
  const def: Record<string, convict.SchemaObj> = {};
  for (const key of configKeys) {
    if (key === OUTSIDE_CONVICT) continue;
    const spec = schema[key];
    def[key] = {
      doc: spec.doc,
      format: spec.format.name,
      default: spec.default,
      env: envName(key),
    };
  }
  return def as convict.Schema<Record<string, unknown>>;
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'is a directory, expected a JSON file'
            : (err as Error).message;
    throw configError([`config file ${file}: cannot be read: ${why}`]);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    const place = locateJsonError(text);
    const where = place
      ? `invalid JSON at line ${place.line}, column ${place.column}: unexpected ${place.found}`
      : `invalid JSON: ${(err as Error).message}`;
    throw configError([`config file ${file}: ${where}`]);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw configError([
      `config file ${file}: must hold a JSON object of settings, got ${describeValue(parsed)}`,
    ]);
  }
  return parsed as Record<string, unknown>;
}

function configError(problems: string[]): MultiplexerError {
  const summary =
    problems.length === 1 ? problems[0]! : `${problems.length} configuration problems`;
  return new MultiplexerError('MPX_CONFIG_INVALID', summary, { problems });
}

/** The suggestion, not the list: the list is one `check --explain` away. */
function unknownKeyProblem(key: string, value: unknown): string {
  const nearest = nearestName(key, configKeys);
  const hint = nearest ? `did you mean ${nearest}?` : 'every setting: multiplexer check --explain';
  return `${key} is not a known setting (${hint}), got ${describeValue(value)}`;
}

/** A MULTIPLEXER_* variable that names no setting is most likely a typo, silently ignored. */
function unknownEnvNotes(env: NodeJS.ProcessEnv): string[] {
  const settings = configKeys.map(envName);
  const known = new Set([...settings, ...OTHER_ENV]);
  return Object.keys(env)
    .filter((name) => name.startsWith('MULTIPLEXER_') && !known.has(name))
    .sort()
    .map((name) => {
      const nearest = nearestName(name, [...settings, ...OTHER_ENV]);
      const hint = nearest
        ? `did you mean ${nearest}?`
        : 'every setting: multiplexer check --explain';
      return `environment variable ${name} names no setting and is ignored (${hint})`;
    });
}

/**
 * Reads the file, applies environment variables and flags on top (flag > env > file > default),
 * and validates everything. Every problem becomes one line naming the key, the value and what is
 * expected; any problem throws MPX_CONFIG_INVALID carrying all of them.
 */
export function loadConfig(input: ConfigInput): LoadedConfig {
  registerFormats();
  const file = resolve(input.file);
  const env = input.env ?? process.env;
  const flags = input.flags ?? {};
  const fromFile = readConfigFile(file);

  // The file is checked as written: convict would coerce "4" to 4, but in strict JSON that is the
  // wrong type and the operator should hear about it.
  const problems: string[] = [];
  for (const [key, value] of Object.entries(fromFile)) {
    // "$comment", "$schema": notes for people and editors, as JSON Schema has them.
    if (key.startsWith('$')) continue;
    if (!(key in schema)) problems.push(unknownKeyProblem(key, value));
    else if (!schema[key as ConfigKey].format.valid(value)) {
      problems.push(invalidProblem(key as ConfigKey, value, 'config file'));
    }
  }

  const conf = convict(convictSchema(), { env, args: [] });
  const known = Object.fromEntries(
    Object.entries(fromFile).filter(([key]) => key in schema && key !== OUTSIDE_CONVICT),
  );
  conf.load(known);
  for (const key of configKeys) {
    if (flags[key] !== undefined && key !== OUTSIDE_CONVICT) conf.set(key, flags[key]);
  }
  const servicesEnv = env[envName(OUTSIDE_CONVICT)];
  const fromText = (text: unknown): unknown =>
    typeof text === 'string' ? schema.services.format.coerce(text) : text;
  const services =
    fromText(flags.services) ??
    fromText(servicesEnv) ??
    fromFile.services ??
    schema.services.default;

  // With several services, each names its own command; the top level need not.
  const several =
    typeof services === 'object' && services !== null && Object.keys(services).length > 0;
  const sources = {} as Record<ConfigKey, Source>;
  for (const key of configKeys) {
    sources[key] =
      flags[key] !== undefined
        ? 'flag'
        : env[envName(key)] !== undefined
          ? 'env'
          : key in fromFile
            ? 'file'
            : 'default';
    const value = key === OUTSIDE_CONVICT ? services : conf.get(key);
    if (sources[key] !== 'file' && !schema[key].format.valid(value)) {
      if (key === 'service_start_process_cmd' && sources[key] === 'default' && several) continue;
      problems.push(invalidProblem(key, value, describeSource(key, sources[key])));
    }
  }
  try {
    conf.validate({ allowed: 'warn', output: () => undefined });
  } catch (err) {
    // Our own checks above cover every format; this only catches what convict finds beyond them.
    const lines = (err as Error).message
      .split('\n')
      .filter((line) => !(several && line.startsWith('service_start_process_cmd:')));
    if (problems.length === 0) problems.push(...lines);
  }
  if (problems.length > 0) throw configError(problems);

  const values = { ...conf.getProperties(), services } as Record<ConfigKey, unknown>;
  const range = parsePortRange(values.service_port_range)!;
  const notes = unknownEnvNotes(env);
  const cwd = serviceDir({
    value: values.service_cwd as string,
    given: sources.service_cwd !== 'default',
    configFile: file,
    command: values.service_start_process_cmd as string,
    startDir: input.startDir ?? process.cwd(),
  });
  if (cwd.note) notes.push(cwd.note);
  const config = Object.freeze({
    ...values,
    service_port_range: Object.freeze(range),
    service_cwd: cwd.dir,
  }) as Config;

  const startDir = input.startDir ?? process.cwd();
  const resolved = resolveServices(values.services, config, { configFile: file, startDir });
  if (resolved.problems.length > 0) throw configError(resolved.problems);
  const withServices = Object.freeze({ ...config, services: resolved.services }) as Config;
  const across = [
    ...crossKeyProblems(withServices),
    ...(several ? [] : directoryProblems(values.service_cwd, cwd.dir)),
    ...serviceProblems(withServices),
  ];
  if (across.length > 0) throw configError(across);
  if (several) return { config: withServices, sources: Object.freeze(sources), file, notes };
  const port = portProblem(config.service_start_process_cmd, config.service_cwd);
  if (port) notes.push(port);
  const missing = missingPathProblem(config.service_start_process_cmd, config.service_cwd);
  if (missing) notes.push(missing);
  return { config: withServices, sources: Object.freeze(sources), file, notes };
}

/** Each service's own problems (the checks of a single config, per service), naming the service. */
function serviceProblems(config: Config): string[] {
  if (Object.keys(config.services).length === 0) return [];
  const top = new Set(crossKeyProblems(config));
  const problems: string[] = [];
  for (const spec of serviceSpecs(config)) {
    const own = spec.config;
    if (!schema.service_start_process_cmd.format.valid(own.service_start_process_cmd)) {
      problems.push(
        `services.${spec.name}.service_start_process_cmd is required: the command line that starts one of its backends (or set it at the top level for every service)`,
      );
    }
    if (own.service_cwd !== config.service_cwd) {
      problems.push(...directoryProblems(own.service_cwd, own.service_cwd));
    }
    for (const p of crossKeyProblems(own)) {
      // The range must hold every service that shares it: said once, by resolveServices.
      if (!top.has(p) && !p.startsWith('service_port_range must hold'))
        problems.push(`services.${spec.name}: ${p}`);
    }
  }
  return problems;
}

function directoryProblems(written: unknown, dir: string): string[] {
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    // missing: said below
  }
  return isDir
    ? []
    : [
        `service_cwd must name a directory (relative to the config file's), got ${describeValue(written)}, which is ${dir}: not a directory`,
      ];
}

/** Rules that tie keys together; also applied to runtime changes (scale) of a running config. */
export function crossKeyProblems(config: Config): string[] {
  const problems: string[] = [];
  const { first, last } = config.service_port_range;
  const needed = config.pool_size + config.pool_max_overflow;
  const rangeSize = last - first + 1;
  if (rangeSize < needed) {
    problems.push(
      `service_port_range must hold at least pool_size + pool_max_overflow = ${needed} ports, got "${first}..${last}" (${rangeSize} ports)`,
    );
  }
  for (const key of ['http_port', 'admin_port'] as const) {
    const port = config[key];
    if (port !== 0 && port >= first && port <= last) {
      problems.push(
        `${key} ${port} must lie outside service_port_range "${first}..${last}": backends are given ports from that range`,
      );
    }
  }
  if (config.admin_port !== 0 && !isLoopback(config.admin_host) && config.admin_token === '') {
    problems.push(
      `admin_token must be set when the admin API listens beyond loopback, got admin_host ${JSON.stringify(config.admin_host)} with admin_port ${config.admin_port} and no token`,
    );
  }
  return problems;
}

/** Where a value came from, in words: "environment variable MULTIPLEXER_WORKERS", "flag --pool_size". */
export function describeSource(key: ConfigKey, source: Source): string {
  if (source === 'env') return `environment variable ${envName(key)}`;
  if (source === 'flag') return `flag --${key}`;
  return source;
}

function invalidProblem(key: ConfigKey, value: unknown, where: string): string {
  const from = where === 'default' ? '' : ` (from ${where})`;
  return `${key} must be ${schema[key].format.expected}, got ${describeValue(value)}${from}`;
}
