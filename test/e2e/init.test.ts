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
  it('init writes every setting at its default with the command; check accepts it; no overwrite without --force', async () => {
    const file = join(tempDir().dir, 'conf', 'app.json');
    const cmd = 'node examples/hello-service.js %PORT%';
    const made = await cli(['init', file, '--cmd', cmd]);
    assert.equal(made.code, 0, made.stderr);
    const written = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    assert.deepEqual(Object.keys(written), [...configKeys], 'every key, in the schema order');
    assert.equal(written.service_start_process_cmd, cmd);
    assert.equal(written.pool_size, schema.pool_size.default);

    const checked = await cli(['check', '--config', file]);
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stdout, /configuration is valid/);

    writeFileSync(file, JSON.stringify({ ...written, pool_size: 9 }));
    const again = await cli(['init', file, '--cmd', 'other']);
    assert.equal(again.code, 64);
    assert.match(again.stderr, /already exists; not replaced \(give --force to overwrite it\)/);
    assert.equal((JSON.parse(readFileSync(file, 'utf8')) as { pool_size: number }).pool_size, 9);

    const forced = await cli(['init', file, '--cmd', 'other %PORT%', '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(
      (JSON.parse(readFileSync(file, 'utf8')) as { service_start_process_cmd: string })
        .service_start_process_cmd,
      'other %PORT%',
    );

    const noCmd = await cli(['init', join(tempDir().dir, 'x.json')]);
    assert.equal(noCmd.code, 64);
    assert.match(noCmd.stderr, /--cmd/);
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
