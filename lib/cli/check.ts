import { asWritten } from '../config/formats.js';
import { describeSource, loadConfig } from '../config/load.js';
import { nearestName } from '../config/nearest-name.js';
import type { Config, Source } from '../config/config.js';
import { configKeys, schema, type ConfigKey } from '../config/schema.js';
import { MultiplexerError } from '../errors.js';
import { resolveStateDir } from '../instance/state-dir.js';
import { flagsFrom } from './config-options.js';
import { serviceKeys, serviceSpecs, type ServiceMatch } from '../config/services.js';

/** `check [KEY...]`, `check --explain`: the configuration in force, each key with its source. */
export function check(argv: Record<string, unknown>): number {
  const keys = (argv.keys as string[] | undefined) ?? [];
  const unknown = keys.filter((k) => !(k in schema));
  if (unknown.length > 0) {
    throw new MultiplexerError('MPX_USAGE', `check --explain names no setting ${unknown[0]}`, {
      problems: unknown.map((k) => {
        const near = nearestName(k, configKeys);
        return `${k} is not a setting (${near ? `did you mean ${near}?` : 'every setting: multiplexer check --explain'})`;
      }),
    });
  }
  const { config, sources, file, notes } = loadConfig({
    file: String(argv.config),
    flags: flagsFrom(argv),
  });
  for (const note of notes) process.stderr.write(`multiplexer: warning: ${note}\n`);
  if (argv.explain || keys.length > 0) {
    return explain(config, sources, keys.length > 0 ? (keys as ConfigKey[]) : configKeys);
  }
  const width = Math.max(...configKeys.map((k) => k.length));
  const stateDir = resolveStateDir({
    flag: argv['state-dir'] as string | undefined,
    configFile: file,
  });
  process.stdout.write(
    `config file: ${file}\nstate directory: ${stateDir}\nconfiguration is valid:\n`,
  );
  const specs = serviceSpecs(config);
  const several = Object.keys(config.services).length > 0;
  for (const key of configKeys) {
    const value =
      key === 'services' && several ? `${specs.length} services, below` : shown(key, config[key]);
    const inherited =
      several && serviceKeys.includes(key) ? ', for services that do not set it' : '';
    process.stdout.write(`  ${key.padEnd(width)}  ${value}  (${sources[key]}${inherited})\n`);
  }
  if (!several) return 0;
  for (const spec of specs) {
    const entry = config.services[spec.name]!;
    process.stdout.write(`service ${spec.name}: ${describeMatch(spec.match)}\n`);
    for (const key of serviceKeys) {
      const from = key in entry ? `services.${spec.name}` : `top level, ${sources[key]}`;
      process.stdout.write(`  ${key.padEnd(width)}  ${shown(key, spec.config[key])}  (${from})\n`);
    }
  }
  return 0;
}

/** Which requests a service takes, in words. */
function describeMatch(match: ServiceMatch): string {
  const parts = [
    match.hosts.length > 0 ? `host ${match.hosts.join(', ')}` : '',
    match.pathPrefix !== undefined
      ? `path ${match.pathPrefix}${match.stripPrefix ? ' (taken off)' : ''}`
      : '',
  ].filter(Boolean);
  return parts.length > 0 ? parts.join(', ') : 'every request no other service takes';
}

/** Shown as the config file accepts it, so a line can be copied back into the file. */
function shown(key: ConfigKey, value: unknown): string {
  if (key === 'admin_token' && value !== '') return '(set, not shown)';
  return JSON.stringify(asWritten(value));
}

/** check --explain [KEY...]: each key with its doc, type, default, the value in force and its source. */
function explain(
  config: Config,
  sources: Readonly<Record<ConfigKey, Source>>,
  keys: readonly ConfigKey[],
): number {
  for (const key of keys) {
    const spec = schema[key];
    process.stdout.write(
      [
        key,
        `  ${spec.doc}`,
        `  type: ${spec.format.expected}`,
        `  default: ${JSON.stringify(asWritten(spec.default))}`,
        `  value: ${shown(key, config[key])}  (${describeSource(key, sources[key])})`,
        ...(serviceKeys.includes(key)
          ? [`  per service: "services": {"NAME": {"${key}": …}} sets it for one service`]
          : []),
        '',
        '',
      ].join('\n'),
    );
  }
  return 0;
}
