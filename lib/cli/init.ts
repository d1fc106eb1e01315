import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { asWritten } from '../config/formats.js';
import { loadConfig } from '../config/load.js';
import { configKeys, schema } from '../config/schema.js';
import { MultiplexerError } from '../errors.js';

/**
 * The text of a starting config file: every key at its default, in the schema's order, and the
 * command that starts one backend. What `multiplexer init` writes.
 */
export function initialConfig(command: string): string {
  const config: Record<string, unknown> = {};
  for (const key of configKeys) config[key] = asWritten(schema[key].default);
  config.service_start_process_cmd = command;
  return `${JSON.stringify(config, null, 2)}\n`;
}

/**
 * Writes a starting config to `file`; refuses to replace an existing one unless `force`. The file
 * is then read back through the loader, so what init writes is what check and start accept.
 */
export function initCommand(
  file: string,
  command: string | undefined,
  force: boolean,
  write: (text: string) => void,
): number {
  if (command === undefined || command.trim() === '') {
    throw new MultiplexerError(
      'MPX_USAGE',
      'init needs the command that starts one backend: --cmd "node server.js %PORT%" (%PORT% becomes its port)',
    );
  }
  mkdirSync(dirname(file), { recursive: true });
  try {
    writeFileSync(file, initialConfig(command), { flag: force ? 'w' : 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new MultiplexerError(
        'MPX_USAGE',
        `${file} already exists; not replaced (give --force to overwrite it)`,
      );
    }
    throw err;
  }
  loadConfig({ file });
  write(
    `wrote ${file}: every setting at its default, service_start_process_cmd ${JSON.stringify(command)}\n` +
      `next: multiplexer check --config ${file} --explain, then multiplexer start --config ${file}\n`,
  );
  return 0;
}
