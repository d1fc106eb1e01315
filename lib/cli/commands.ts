/**
 * Every command, once: the CLI's --help and the console's help are both made from this table, so
 * the two cannot say different things. `console`: also offered at the console's prompt.
 */
export interface CommandSpec {
  readonly usage: string;
  readonly describe: string;
  readonly console: boolean;
}

export const COMMANDS = {
  start: {
    usage: 'start',
    describe: 'Start the server: backends, front workers, proxy',
    console: false,
  },
  check: {
    usage: 'check [keys..]',
    describe: 'Validate the config and print every resolved value with where it came from',
    console: false,
  },
  init: {
    usage: 'init [file]',
    describe:
      'Write a starting config file: your command, pool_size, loopback and an admin port; every other setting at its default',
    console: false,
  },
  status: {
    usage: 'status',
    describe: 'Show the running instance: front workers, backends, queue, totals (admin API)',
    console: true,
  },
  backends: {
    usage: 'backends',
    describe: "List the running instance's backends: state, age, requests served, memory, lease",
    console: true,
  },
  reload: {
    usage: 'reload',
    describe:
      'Make the running instance read its config again; prints what changed, or the problems',
    console: true,
  },
  roll: {
    usage: 'roll',
    describe: 'Replace every backend of the running instance, one by one (rolling restart)',
    console: true,
  },
  scale: {
    usage: 'scale <pool_size>',
    describe:
      "Set the running instance's pool_size (scale SERVICE N: one service's), until the next reload or restart",
    console: true,
  },
  top: {
    usage: 'top',
    describe: 'A live view of the running instance, refreshed each second (q to quit)',
    console: true,
  },
  console: {
    usage: 'console',
    describe: 'An interactive prompt on the running instance, with tab completion',
    console: false,
  },
  stop: {
    usage: 'stop',
    describe: 'Stop the running instance gracefully; returns once it has exited',
    console: false,
  },
} as const satisfies Record<string, CommandSpec>;

export type CommandName = keyof typeof COMMANDS;

/** The console's own words besides the commands. */
export const CONSOLE_EXTRAS = {
  help: 'List the commands, or explain one: help <command>',
  quit: 'Leave the console (also Ctrl-D)',
} as const;

/** The console's help: the console commands of the table, with their usage and description. */
export function consoleHelp(): string {
  const rows: [string, string][] = [
    ...Object.values(COMMANDS)
      .filter((c) => c.console)
      .map((c): [string, string] => [c.usage, c.describe]),
    ...Object.entries(CONSOLE_EXTRAS),
  ];
  const width = Math.max(...rows.map(([usage]) => usage.length));
  return rows.map(([usage, describe]) => `  ${usage.padEnd(width)}  ${describe}`).join('\n');
}

/** Tab completion at the console's prompt: the command words that begin with what was typed. */
export function completeConsole(line: string): [string[], string] {
  const words = [
    ...Object.entries(COMMANDS)
      .filter(([, c]) => c.console)
      .map(([name]) => name),
    ...Object.keys(CONSOLE_EXTRAS),
  ];
  const typed = line.trimStart();
  if (typed.includes(' ')) {
    // "help sc" completes the command named after help.
    const [first, rest = ''] = typed.split(/\s+/, 2);
    if (first === 'help') return [words.filter((w) => w.startsWith(rest)), rest];
    return [[], rest];
  }
  const hits = words.filter((w) => w.startsWith(typed));
  return [hits.length > 0 ? hits : words, typed];
}
