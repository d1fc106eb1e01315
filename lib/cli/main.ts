import { readFileSync } from 'node:fs';
import yargs from 'yargs';
import { loadConfig } from '../config/load.js';
import { nearestName } from '../config/nearest-name.js';
import { configKeys, kebabName, schema } from '../config/schema.js';
import { exitCodeFor, MultiplexerError, type ErrorCode } from '../errors.js';
import { createLogger } from '../log.js';
import { resolveStateDir } from '../instance/state-dir.js';
import { Primary } from '../primary/primary.js';
import { flagsFrom, withConfigOptions, withInstanceOptions } from './config-options.js';
import { COMMANDS } from './commands.js';
import { check } from './check.js';
import { consoleCommand } from './console.js';
import {
  backendsCommand,
  instanceFor,
  reloadCommand,
  rollCommand,
  scaleCommand,
  statusCommand,
  stopCommand,
} from './control.js';
import { runTop } from './top.js';
import { initCommand } from './init.js';

const write = (text: string): void => void process.stdout.write(text);

const { version } = JSON.parse(
  readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'),
) as { version: string };

function load(argv: Record<string, unknown>) {
  return loadConfig({ file: String(argv.config), flags: flagsFrom(argv) });
}

async function start(argv: Record<string, unknown>): Promise<number> {
  const { config, file, notes } = load(argv);
  const log = createLogger('primary');
  for (const note of notes) log.warn({ event: 'config.note' }, note);
  const stateDir = resolveStateDir({
    flag: argv['state-dir'] as string | undefined,
    configFile: file,
  });
  log.info({ event: 'starting', config: file, stateDir, version }, 'multiplexer starting');
  return new Primary(config, log, {
    configFile: file,
    reloadConfig: () => load(argv).config,
    stateDir,
    version,
  }).run();
}

const LABEL: Partial<Record<ErrorCode, string>> = {
  MPX_CONFIG_INVALID: 'config error',
  MPX_USAGE: 'usage',
};

function report(err: unknown): number {
  if (err instanceof MultiplexerError) {
    const lines = err.problems.length > 0 ? err.problems : [err.message];
    const label = LABEL[err.code] ?? 'error';
    for (const line of lines) process.stderr.write(`multiplexer: ${label}: ${line}\n`);
    return exitCodeFor[err.code];
  }
  process.stderr.write(
    `multiplexer: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  return 70;
}

/** Every flag a command may take, as it would be typed. */
const FLAG_NAMES = [
  ...configKeys.flatMap((k) => [k, kebabName(k)]),
  'config',
  'state-dir',
  'explain',
  'json',
  'cmd',
  'force',
  'pool-size',
  'frames',
  'timeout',
  'help',
  'version',
];

/**
 * yargs' words for a usage error, made to say what was typed and what was probably meant:
 * "Did you mean start?" names the command it guessed from; an unknown flag gets the nearest one.
 */
function usageWords(message: string, args: readonly string[]): string {
  const guessed = /^Did you mean (\S+)\?$/.exec(message);
  if (guessed)
    return `"${args.find((a) => !a.startsWith('-'))}" is not a command (did you mean ${guessed[1]}?)`;
  const unknown = /^Unknown arguments?: (.+)$/.exec(message);
  if (!unknown) return message;
  return unknown[1]!
    .split(', ')
    .map((flag) => {
      const near = nearestName(flag, FLAG_NAMES);
      return `--${flag} is not an option${near ? ` (did you mean --${near}?)` : ''}`;
    })
    .join('; ');
}

/** Runs the CLI; resolves with the process exit code. */
export async function run(args: string[]): Promise<number> {
  // `multiplexer status | head -1`, or a start whose reader of the ready line went away: a closed
  // stdout must not crash the process (an 'error' event without a listener throws).
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
  let code = 0;
  const parser = yargs(args)
    .scriptName('multiplexer')
    .usage(
      '$0 <command> [options]\n\nRuns a pool of single-threaded HTTP services behind one port.',
    )
    .command(
      COMMANDS.start.usage,
      COMMANDS.start.describe,
      (y) => withConfigOptions(y),
      async (argv) => {
        code = await start(argv);
      },
    )
    .command(
      COMMANDS.check.usage,
      COMMANDS.check.describe,
      (y) =>
        withConfigOptions(y)
          .positional('keys', {
            type: 'string',
            array: true,
            describe: 'Only these settings (implies --explain)',
          })
          .option('explain', {
            type: 'boolean',
            describe:
              'Print each setting (every one, or the KEYs named): its meaning, type, default, value in force and source',
          }),
      (argv) => {
        code = check(argv);
      },
    )
    .command(
      COMMANDS.init.usage,
      COMMANDS.init.describe,
      (y) =>
        y
          .positional('file', {
            type: 'string',
            default: 'conf/app.json',
            describe: 'The file to write',
          })
          .option('cmd', {
            type: 'string',
            describe: 'The command that starts one backend (%PORT% becomes its port)',
          })
          .option('pool-size', {
            type: 'number',
            default: schema.pool_size.default,
            describe: 'Permanent backends (pool_size)',
          })
          .option('force', { type: 'boolean', describe: 'Overwrite the file if it exists' })
          .strict(),
      (argv) => {
        code = initCommand(
          argv.file,
          { command: argv.cmd, poolSize: argv['pool-size'], startDir: process.cwd() },
          argv.force ?? false,
          write,
          (text) => void process.stderr.write(`multiplexer: warning: ${text}\n`),
        );
      },
    )
    .command(
      COMMANDS.status.usage,
      COMMANDS.status.describe,
      (y) =>
        withInstanceOptions(y)
          .option('json', { type: 'boolean', describe: 'Print the raw JSON' })
          .strict(),
      async (argv) => {
        code = await statusCommand(argv, write);
      },
    )
    .command(
      COMMANDS.backends.usage,
      COMMANDS.backends.describe,
      (y) => withInstanceOptions(y).strict(),
      async (argv) => {
        code = await backendsCommand(argv, write);
      },
    )
    .command(
      COMMANDS.reload.usage,
      COMMANDS.reload.describe,
      (y) => withInstanceOptions(y).strict(),
      async (argv) => {
        code = await reloadCommand(argv, write);
      },
    )
    .command(
      COMMANDS.roll.usage,
      COMMANDS.roll.describe,
      (y) => withInstanceOptions(y).strict(),
      async (argv) => {
        code = await rollCommand(argv, write);
      },
    )
    .command(
      // yargs takes no optional positional before a required one: `scale 3` and `scale api 3`.
      'scale <first> [second]',
      COMMANDS.scale.describe,
      (y) =>
        withInstanceOptions(y)
          .usage('$0 scale [service] <pool_size>')
          .positional('first', {
            type: 'string',
            describe: 'New pool_size; or, before it, the service to scale',
          })
          .positional('second', { type: 'string', describe: "The service's new pool_size" })
          .strict(),
      async (argv) => {
        const { first, second } = argv as { first: string; second?: string };
        code = await scaleCommand(
          second === undefined
            ? { ...argv, pool_size: first }
            : { ...argv, service: first, pool_size: second },
          write,
        );
      },
    )
    .command(
      COMMANDS.top.usage,
      COMMANDS.top.describe,
      (y) =>
        withInstanceOptions(y)
          .option('frames', {
            type: 'number',
            describe: 'Stop after this many screens (off a terminal, each is printed in turn)',
          })
          .strict(),
      async (argv) => {
        const interactive = process.stdout.isTTY === true && argv.frames === undefined;
        code = await runTop(instanceFor(argv), write, {
          interactive,
          ...(argv.frames !== undefined && { frames: argv.frames }),
        });
      },
    )
    .command(
      COMMANDS.console.usage,
      COMMANDS.console.describe,
      (y) => withInstanceOptions(y).strict(),
      async (argv) => {
        code = await consoleCommand(argv, write);
      },
    )
    .command(
      COMMANDS.stop.usage,
      COMMANDS.stop.describe,
      (y) =>
        withInstanceOptions(y)
          .option('timeout', {
            type: 'number',
            default: 120,
            describe: 'Seconds to wait for the exit',
          })
          .strict(),
      async (argv) => {
        code = await stopCommand(argv, write);
      },
    )
    .demandCommand(1, `Name a command: ${Object.keys(COMMANDS).join(', ')}.`)
    // Flags are reported as typed: no camelCase twin of --pool-size for yargs to list.
    .parserConfiguration({ 'camel-case-expansion': false })
    .recommendCommands()
    .strictCommands()
    .strict()
    .version(version)
    .help()
    .alias('h', 'help')
    .wrap(Math.min(120, process.stdout.columns || 100))
    .fail((message, err) => {
      // Throwing stops yargs from running the command's handler after a usage error.
      throw (
        err ??
        new MultiplexerError(
          'MPX_USAGE',
          `${usageWords(message, args)} (run "multiplexer --help" for usage)`,
        )
      );
    });
  try {
    await parser.parseAsync();
  } catch (err) {
    return report(err);
  }
  return code;
}
