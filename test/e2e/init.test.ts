import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { configKeys, schema } from '../../lib/config/schema.js';
import { launch } from '../helpers/multiplexer.js';
import { tempDir } from '../helpers/temp.js';

async function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const l = launch(args, { env });
  const exit = await l.exited;
  return { code: exit.code, stdout: l.stdout(), stderr: l.stderr() };
}

describe('init and check --explain', () => {
  it('init writes only what was chosen (command, pool_size, loopback, admin port); check accepts it; no overwrite without --force', async () => {
    const file = join(tempDir().dir, 'conf', 'app.json');
    const cmd = 'node server.js %PORT%';
    const made = await cli(['init', file, '--cmd', cmd]);
    assert.equal(made.code, 0, made.stderr);
    assert.equal(made.stderr, '', 'no warning: the command takes %PORT%');
    const written = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    assert.deepEqual(written, {
      $comment: `Every setting not written here is at its default: multiplexer check --config ${file} --explain [KEY...] shows each one, its meaning and its value.`,
      service_start_process_cmd: cmd,
      pool_size: schema.pool_size.default,
      http_host: '127.0.0.1',
      admin_port: 3001,
    });
    assert.match(made.stdout, /every other setting at its default\n/);
    assert.match(
      made.stdout,
      new RegExp(`the command runs in ${join(file, '..')} \\(the config file's directory\\)`),
    );

    // Nothing machine-specific is baked in: workers and service_start_concurrency stay defaults.
    const explained = await cli(['check', '--config', file, '--explain']);
    assert.equal(explained.code, 0, explained.stderr);
    const fromFile = [
      ...explained.stdout.matchAll(/^(\w+)\n(?:.*\n){3} {2}value: .* {2}\(file\)$/gm),
    ].map((m) => m[1]);
    assert.deepEqual(fromFile.sort(), [
      'admin_port',
      'http_host',
      'pool_size',
      'service_start_process_cmd',
    ]);
    assert.equal(
      [...explained.stdout.matchAll(/\(default\)$/gm)].length,
      configKeys.length - 4,
      'every other key says "default"',
    );

    writeFileSync(file, JSON.stringify({ ...written, pool_size: 9 }));
    const again = await cli(['init', file, '--cmd', 'other']);
    assert.equal(again.code, 64);
    assert.match(again.stderr, /already exists; not replaced \(give --force to overwrite it\)/);
    assert.equal((JSON.parse(readFileSync(file, 'utf8')) as { pool_size: number }).pool_size, 9);

    const forced = await cli([
      'init',
      file,
      '--cmd',
      'other %PORT%',
      '--force',
      '--pool-size',
      '2',
    ]);
    assert.equal(forced.code, 0, forced.stderr);
    const rewritten = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    assert.equal(rewritten.service_start_process_cmd, 'other %PORT%');
    assert.equal(rewritten.pool_size, 2);

    const badSize = await cli([
      'init',
      join(tempDir().dir, 'x.json'),
      '--cmd',
      'x %PORT%',
      '--pool-size',
      '0',
    ]);
    assert.equal(badSize.code, 64);
    assert.match(badSize.stderr, /--pool-size must be an integer ≥ 1, got 0/);

    const noCmd = await cli(['init', join(tempDir().dir, 'x.json')]);
    assert.equal(noCmd.code, 64);
    assert.match(noCmd.stderr, /--cmd/);
  });

  it('init warns about a command that cannot learn its port, and keeps a script named from where it runs found from anywhere', async () => {
    const project = tempDir();
    project.write('server.pl', 'print "listening on 8080\\n";');
    const initHere = async (args: string[]) => {
      const l = launch(args, { cwd: project.dir });
      const exit = await l.exited;
      return { code: exit.code, stdout: l.stdout(), stderr: l.stderr() };
    };
    const made = await initHere(['init', 'conf/app.json', '--cmd', 'perl server.pl']);
    assert.equal(made.code, 0, made.stderr);
    assert.match(
      made.stderr,
      /^multiplexer: warning: service_start_process_cmd "perl server\.pl" has no %PORT% and does not read \$PORT \(nor does .*\/server\.pl mention PORT\)/,
    );
    const written = JSON.parse(
      readFileSync(join(project.dir, 'conf', 'app.json'), 'utf8'),
    ) as Record<string, unknown>;
    // server.pl is beside where init ran, not beside the config: service_cwd says so.
    assert.equal(written.service_cwd, '..');
    assert.match(
      made.stdout,
      new RegExp(
        `the command runs in ${project.dir} \\(service_cwd "\\.\\.", from the config file's directory\\)`,
      ),
    );
    // From another directory, the command still finds server.pl.
    const checked = await cli([
      'check',
      '--config',
      join(project.dir, 'conf', 'app.json'),
      '--explain',
      'service_cwd',
    ]);
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stdout, new RegExp(`value: "${project.dir}" {2}\\(file\\)`));
  });

  it('check --explain prints each key: doc, type, default, value in force and where it came from', async () => {
    const file = tempDir().write(
      'app.json',
      JSON.stringify({ service_start_process_cmd: 'node s.js %PORT%', pool_size: 3 }),
    );
    const out = await cli(['check', '--config', file, '--explain', '--queue-max', '7'], {
      MULTIPLEXER_WORKERS: '2',
    });
    assert.equal(out.code, 0, out.stderr);
    for (const key of configKeys) {
      const spec = schema[key];
      assert.ok(
        out.stdout.includes(`${key}\n  ${spec.doc}\n  type: ${spec.format.expected}\n  default: `),
        `${key} explained`,
      );
    }
    assert.match(out.stdout, /^pool_size\n(?:.*\n){3} {2}value: 3 {2}\(file\)\n/);
    assert.match(out.stdout, /\nqueue_max\n(?:.*\n){3} {2}value: 7 {2}\(flag --queue_max\)\n/);
    assert.match(
      out.stdout,
      /\nworkers\n(?:.*\n){3} {2}value: 2 {2}\(environment variable MULTIPLEXER_WORKERS\)\n/,
    );
    assert.match(
      out.stdout,
      /\nhttp_port\n(?:.*\n){2} {2}default: 3000\n {2}value: 3000 {2}\(default\)\n/,
    );
  });
});
