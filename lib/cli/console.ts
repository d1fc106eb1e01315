import { createInterface } from 'node:readline/promises';
import { MultiplexerError } from '../errors.js';
import {
  backendsCommand,
  instanceFor,
  reloadCommand,
  rollCommand,
  scaleCommand,
  statusCommand,
} from './control.js';
import { COMMANDS, completeConsole, consoleHelp, CONSOLE_EXTRAS } from './commands.js';
import { runTop } from './top.js';

type Out = (text: string) => void;

/** The console commands that are the CLI's own, run as they are. */
const CONTROL: Record<string, (argv: Record<string, unknown>, out: Out) => Promise<number>> = {
  status: statusCommand,
  backends: backendsCommand,
  reload: reloadCommand,
  roll: rollCommand,
};

/**
 * `multiplexer console`: a prompt on the running instance, as HAProxy's runtime API or a
 * service's own console offers. Each line is one command of the shared table; a failing command
 * says why and the prompt stays. On a terminal, `top` takes the screen until q.
 */
export async function consoleCommand(argv: Record<string, unknown>, out: Out): Promise<number> {
  const instance = instanceFor(argv);
  const interactive = process.stdin.isTTY === true && process.stdout.isTTY === true;
  out(`multiplexer console: pid ${instance.pid}. Commands (tab completes):\n${consoleHelp()}\n`);
  const history: string[] = [];
  const run = async (words: string[]): Promise<'quit' | void> => {
    const [name = '', ...args] = words;
    switch (name) {
      case '':
        return;
      case 'quit':
      case 'exit':
        return 'quit';
      case 'help': {
        const topic = args[0];
        if (!topic) return out(`${consoleHelp()}\n`);
        const spec =
          (COMMANDS as Record<string, { usage: string; describe: string }>)[topic] ??
          (topic in CONSOLE_EXTRAS
            ? { usage: topic, describe: CONSOLE_EXTRAS[topic as keyof typeof CONSOLE_EXTRAS] }
            : undefined);
        return out(spec ? `${spec.usage}: ${spec.describe}\n` : `no command "${topic}"\n`);
      }
      case 'scale':
        if (args.length !== 1 && args.length !== 2) return out(`usage: ${COMMANDS.scale.usage}\n`);
        await scaleCommand(
          args.length === 2
            ? { ...argv, service: args[0], pool_size: args[1] }
            : { ...argv, pool_size: args[0] },
          out,
        );
        return;
      case 'top':
        await runTop(
          instance,
          out,
          interactive ? { interactive: true } : { interactive: false, frames: 1 },
        );
        return;
      default: {
        const control = CONTROL[name];
        if (control) await control(argv, out);
        else out(`no command "${name}"; "help" lists them\n`);
      }
    }
  };

  const perform = async (line: string): Promise<'quit' | void> => {
    if (line.trim() !== '') history.unshift(line);
    try {
      return await run(line.trim().split(/\s+/).filter(Boolean));
    } catch (err) {
      const message =
        err instanceof MultiplexerError ? [err.message, ...err.problems] : [String(err)];
      out(`${[...new Set(message)].join('\n')}\n`);
    }
  };

  if (!interactive) {
    // Commands piped in: one reader for the whole input, each line run in turn.
    const rl = createInterface({ input: process.stdin, terminal: false });
    for await (const line of rl) {
      out(`multiplexer> ${line}\n`);
      if ((await perform(line)) === 'quit') break;
    }
    rl.close();
    return 0;
  }

  for (;;) {
    // One interface per line, closed while a command runs: top takes the keyboard for itself.
    const rl = createInterface({
      input: process.stdin,
      output: process.stdout,
      terminal: true,
      history: [...history],
      completer: completeConsole,
    });
    let line: string;
    try {
      line = await new Promise<string>((resolve, reject) => {
        rl.once('close', () => reject(new Error('closed')));
        rl.question('multiplexer> ').then(resolve, reject);
      });
    } catch {
      out('\n');
      return 0; // Ctrl-D, or the end of piped input
    } finally {
      rl.close();
    }
    if ((await perform(line)) === 'quit') return 0;
  }
}
