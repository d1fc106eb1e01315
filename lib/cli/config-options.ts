import type { Argv } from 'yargs';
import { STATE_DIR_ENV } from '../instance/state-dir.js';
import { configKeys, envName, kebabName, schema, type ConfigKey } from '../config/schema.js';

/**
 * How a control command finds its instance: the config file it was started with, or its state
 * directory; with neither, the only instance this user runs.
 */
export function withInstanceOptions<T>(yargs: Argv<T>): Argv<T> {
  return yargs
    .option('config', {
      alias: 'c',
      type: 'string',
      describe:
        'The config file the instance was started with (default: the only running instance)',
    })
    .option('state-dir', {
      type: 'string',
      describe: `Where the pid file and the backend record live (default: derived from the config file's path) [env ${STATE_DIR_ENV}]`,
    });
}

/** Every config key as a flag: --pool_size 4 and --pool-size 4 alike; values stay strings for the config loader. */
export function withConfigOptions<T>(yargs: Argv<T>): Argv<T> {
  let y = withInstanceOptions(yargs).option('config', {
    alias: 'c',
    type: 'string',
    default: 'conf/app.json',
    describe: 'JSON config file',
  });
  for (const key of configKeys) {
    y = y.option(key, {
      alias: kebabName(key),
      type: 'string',
      describe: `${schema[key].doc} [env ${envName(key)}]`,
      group: 'Settings (override the config file):',
    });
  }
  // strict() on the top-level parser does not reach a command's own options: repeat it here.
  return y.strict();
}

export function flagsFrom(argv: Record<string, unknown>): Partial<Record<ConfigKey, unknown>> {
  const flags: Partial<Record<ConfigKey, unknown>> = {};
  for (const key of configKeys) {
    const value = argv[key];
    if (value === undefined) continue;
    // A flag given twice arrives as an array: keep the last, as most CLIs do.
    flags[key] = Array.isArray(value) ? value.at(-1) : value;
  }
  return flags;
}
