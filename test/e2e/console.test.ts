import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { completeConsole, consoleHelp, COMMANDS } from '../../lib/cli/commands.js';
import { BIN, ROOT } from '../helpers/paths.js';
import { startWithAdmin, type Running } from '../helpers/multiplexer.js';
import { waitFor } from '../helpers/wait.js';

function cli(mpx: Running, args: string[], input?: string) {
  return spawnSync(process.execPath, [BIN, ...args, '--config', mpx.configFile], {
    cwd: ROOT,
    env: { ...process.env, MULTIPLEXER_STATE_DIR: mpx.stateDir },
    input,
    encoding: 'utf8',
    timeout: 20_000,
  });
}

const squash = (text: string): string => text.replace(/\s+/g, ' ');

describe('console and top', () => {
  it('console: the shared command table as help, commands run in turn, errors keep the prompt', async () => {
    const mpx = await startWithAdmin({ pool_size: 2, workers: 1 });
    const run = cli(
      mpx,
      ['console'],
      'help\nbackends\nscale 3\nhelp scale\nbogus\nscale x\nstatus\nquit\n',
    );
    assert.equal(run.status, 0, run.stderr);
    const out = run.stdout;
    // Its help is the table's: each console command with the text the CLI's --help shows.
    assert.ok(out.includes(consoleHelp()));
    const help = squash(spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' }).stdout);
    for (const spec of Object.values(COMMANDS)) {
      assert.ok(help.includes(squash(spec.describe)), `--help describes ${spec.usage}`);
      if (spec.console) assert.ok(out.includes(spec.describe), `console help has ${spec.usage}`);
    }
    assert.match(out, /multiplexer> backends\nID +PID +PORT +STATE +AGE +SERVED +RSS +LEASE\n1 /);
    assert.match(out, /multiplexer> scale 3\npool_size 2 → 3\n/);
    assert.match(out, /help scale\nscale <pool_size>: Set the running instance's pool_size/);
    assert.match(out, /no command "bogus"; "help" lists them/);
    assert.match(out, /multiplexer> scale x\npool_size must be an integer ≥ 1, got "x"/);
    assert.match(out, /multiplexer> status\nmultiplexer 0\.1\.0, pid \d+, running/);
    assert.equal((await mpx.status()).pool.size, 3);
    assert.equal((await mpx.stop()).code, 0);
  });

  it('console: tab completion of command words', () => {
    assert.deepEqual(completeConsole('sc'), [['scale'], 'sc']);
    assert.deepEqual(completeConsole('re'), [['reload'], 're']);
    assert.deepEqual(completeConsole('help ro'), [['roll'], 'ro']);
    const [all] = completeConsole('');
    assert.deepEqual(all, ['status', 'backends', 'reload', 'roll', 'scale', 'top', 'help', 'quit']);
  });

  it('top: screens off a terminal; on a terminal, the alternate screen, left as found on q', async (t) => {
    const mpx = await startWithAdmin({ pool_size: 2, workers: 1 });
    const printed = cli(mpx, ['top', '--frames', '2']);
    assert.equal(printed.status, 0, printed.stderr);
    assert.equal(printed.stdout.match(/^REQ\/S +LATENCY P50/gm)?.length, 2);
    assert.match(printed.stdout, /^ID +PID +PORT +STATE/m);

    if (spawnSync('script', ['--version']).status !== 0) {
      console.log('# skipped the terminal part: no `script` (util-linux) to give top a terminal');
      t.diagnostic('no script(1): terminal part skipped');
    } else {
      // script(1) gives top a pseudo-terminal, as a user's shell would.
      const command = `${process.execPath} ${BIN} top --config ${mpx.configFile}`;
      const tty = spawn('script', ['-qfec', command, '/dev/null'], {
        cwd: ROOT,
        env: { ...process.env, MULTIPLEXER_STATE_DIR: mpx.stateDir, TERM: 'xterm' },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      // If the test fails before q: the pseudo-terminal and top go with it.
      after(() => void tty.kill('SIGKILL'));
      let screen = '';
      tty.stdout.setEncoding('utf8').on('data', (c: string) => (screen += c));
      const exited = new Promise<number | null>((resolve) => tty.once('exit', resolve));
      await waitFor(() => screen.includes('REQ/S'), 'top to draw a screen');
      tty.stdin.write('q');
      assert.equal(await exited, 0);
      assert.ok(screen.includes('\x1b[?1049h'), 'entered the alternate screen');
      assert.ok(screen.trimEnd().endsWith('\x1b[?25h\x1b[?1049l'), 'left it, cursor shown, last');
    }
    assert.equal((await mpx.stop()).code, 0);
  });
});
