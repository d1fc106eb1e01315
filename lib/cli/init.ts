import { serviceKeys } from '../config/services.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { describeValue } from '../config/formats.js';
import { loadConfig } from '../config/load.js';
import { schema } from '../config/schema.js';
import { portProblem, serviceDir } from '../config/service-command.js';
import { MultiplexerError } from '../errors.js';

/** What `multiplexer init` asks for; everything else is left at its default. */
export interface InitChoices {
  readonly command: string;
  readonly poolSize: number;
  /** Where init runs: relative paths in the command are read from here. */
  readonly startDir: string;
}

/** The settings init writes: the user's choices, and what makes the CLI work with the instance. */
const INIT_SETTINGS = { http_host: '127.0.0.1', admin_port: 3001 } as const;

/**
 * The text of a starting config file: only what the user chose (the command, pool_size), the
 * loopback address and an admin port for status, top, scale and reload. Everything else stays
 * at its default, so `check --explain` still says "default" for it, and a default that improves
 * reaches the file. A command naming files relative to where init runs gets the service_cwd that
 * keeps them found from any directory.
 */
export function initialConfig(file: string, choices: InitChoices): string {
  const configDir = dirname(resolve(file));
  const { note } = serviceDir({
    value: '',
    given: false,
    configFile: resolve(file),
    command: choices.command,
    startDir: choices.startDir,
  });
  const config: Record<string, unknown> = {
    $comment: `Every setting not written here is at its default: multiplexer check --config ${file} --explain [KEY...] shows each one, its meaning and its value.`,
    service_start_process_cmd: choices.command,
    ...(note !== undefined && { service_cwd: relative(configDir, choices.startDir) || '.' }),
    pool_size: choices.poolSize,
    ...INIT_SETTINGS,
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

/**
 * Writes a starting config to `file`; refuses to replace an existing one unless `force`. The file
 * is then read back through the loader, so what init writes is what check and start accept.
 */
export function initCommand(
  file: string,
  choices: Omit<InitChoices, 'command'> & { command: string | undefined },
  force: boolean,
  write: (text: string) => void,
  warn: (text: string) => void,
): number {
  const { command } = choices;
  if (command === undefined || command.trim() === '') {
    throw new MultiplexerError(
      'MPX_USAGE',
      'init needs the command that starts one backend: --cmd "node server.js %PORT%" (%PORT% becomes its port)',
    );
  }
  if (!schema.pool_size.format.valid(choices.poolSize)) {
    throw new MultiplexerError(
      'MPX_USAGE',
      `--pool-size must be ${schema.pool_size.format.expected}, got ${describeValue(choices.poolSize)}`,
    );
  }
  mkdirSync(dirname(file), { recursive: true });
  try {
    writeFileSync(file, initialConfig(file, { ...choices, command }), {
      flag: force ? 'w' : 'wx',
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new MultiplexerError(
        'MPX_USAGE',
        `${file} already exists; not replaced (give --force to overwrite it)`,
      );
    }
    throw err;
  }
  const { config } = loadConfig({ file, startDir: choices.startDir, env: {} });
  const port = portProblem(command, config.service_cwd);
  if (port) warn(port);
  const where =
    config.service_cwd === dirname(resolve(file))
      ? "the config file's directory"
      : `service_cwd ${JSON.stringify(relative(dirname(resolve(file)), config.service_cwd) || '.')}, from the config file's directory`;
  write(
    [
      `wrote ${file}: service_start_process_cmd ${JSON.stringify(command)}, pool_size ${config.pool_size}, http_host ${INIT_SETTINGS.http_host}, admin_port ${INIT_SETTINGS.admin_port}; every other setting at its default`,
      `the command runs in ${config.service_cwd} (${where}), whatever directory start runs from`,
      `next: multiplexer check --config ${file} --explain, then multiplexer start --config ${file}`,
      `      then: multiplexer status (with one instance running, no --config needed)`,
      `several services behind this port: "services": {"NAME": {...}}, each with "match" and its own ${serviceKeys.length} service_*, pool_* and queue_* keys (check --explain services)`,
      '',
    ].join('\n'),
  );
  return 0;
}
