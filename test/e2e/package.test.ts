import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { request } from '../helpers/http.js';
import { ROOT } from '../helpers/paths.js';
import { freePort, freePortRange } from '../helpers/ports.js';
import { killQuietly, pidsMatching } from '../helpers/procs.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

/**
 * multiplexer as a user gets it from the registry: `npm pack` of this checkout (with its prepack
 * and postpack, as a publish runs them), installed with `npm install -g` into a temporary prefix,
 * run from a directory that is not the checkout.
 *
 * Packed from a copy of the checkout (its node_modules linked): packing runs `prepare` and
 * `prepack`, which rebuild dist/ and rewrite package.json in place. In the checkout itself, a
 * process starting meanwhile from dist/ read a module tsc was rewriting (the soak, which runs
 * the suite's files side by side: "does not provide an export named ...").
 */
const manifestText = readFileSync(join(ROOT, 'package.json'), 'utf8');
/** Not copied: installed or built things, and local state (see .gitignore). */
const NOT_COPIED = new Set(['node_modules', '.git', 'dist', '.venv', '.state']);
const { version, name } = JSON.parse(manifestText) as { version: string; name: string };

function npm(args: string[], cwd: string): { stdout: string; stderr: string } {
  const run = spawnSync('npm', [...args, '--no-audit', '--no-fund'], {
    cwd,
    encoding: 'utf8',
    timeout: 180_000,
  });
  assert.equal(run.status, 0, `npm ${args.join(' ')} failed:\n${run.stderr}`);
  return { stdout: run.stdout, stderr: run.stderr };
}

describe('the npm package', () => {
  const dir = tempDir().dir;
  let tarball = '';

  it('packs only what the runtime needs: the CLI, the compiled lib, the default config and example', () => {
    const checkout = join(dir, 'checkout');
    cpSync(ROOT, checkout, {
      recursive: true,
      filter: (from) => !NOT_COPIED.has(basename(from)),
    });
    symlinkSync(join(ROOT, 'node_modules'), join(checkout, 'node_modules'));
    const packed = JSON.parse(
      npm(['pack', '--json', '--loglevel=error', '--pack-destination', dir], checkout).stdout,
    ) as { filename: string; size: number; files: { path: string }[] }[];
    const [info] = packed;
    assert.ok(info);
    tarball = join(dir, info.filename);
    const allowed = [
      /^bin\/(multiplexer\.js|backend-watchdog\.sh)$/,
      /^dist\/lib\/.+\.js$/,
      /^lib\/admin\/public\/[\w-]+\.(html|js|css)$/,
      /^conf\/app\.json$/,
      /^examples\/hello-service\.js$/,
      /^(package\.json|README\.md|LICENSE)$/,
    ];
    const paths = info.files.map((f) => f.path);
    for (const path of paths) {
      assert.ok(
        allowed.some((re) => re.test(path)),
        `${path} is in the tarball, though the runtime does not need it`,
      );
    }
    for (const needed of ['bin/multiplexer.js', 'dist/lib/cli/main.js', 'LICENSE'])
      assert.ok(paths.includes(needed), `${needed} is in the tarball`);
    assert.equal(statSync(tarball).size, info.size);
    // "multiplexer" on the registry is another package (1.4.1, unrelated): ours has its own name.
    assert.equal(name, 'multiplexer-server');
    assert.equal(info.filename, `multiplexer-server-${version}.tgz`);
    // postpack put the checkout's package.json back byte for byte, "prepare" included.
    assert.equal(readFileSync(join(checkout, 'package.json'), 'utf8'), manifestText);
    assert.ok(info.size < 200_000, `the tarball is ${info.size} bytes`);
  });

  it('installs with npm install -g, then --version and start work outside the checkout', async () => {
    assert.ok(tarball, 'packed by the test before');
    const prefix = join(dir, 'prefix');
    const install = npm(['install', '--global', '--prefix', prefix, tarball], dir);
    // Quiet: no install script for npm to warn about (dist/ is built in the tarball).
    assert.doesNotMatch(install.stderr, /warn|prepare/i, install.stderr);
    const installed = JSON.parse(
      readFileSync(join(prefix, 'lib', 'node_modules', name, 'package.json'), 'utf8'),
    ) as { scripts?: Record<string, string> };
    assert.equal(installed.scripts?.prepare, undefined);
    const bin = join(prefix, 'bin', 'multiplexer');

    const v = spawnSync(bin, ['--version'], { cwd: dir, encoding: 'utf8' });
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.stdout.trim(), version);

    // The installed package's own example, by absolute path: nothing comes from the checkout.
    const example = join(prefix, 'lib', 'node_modules', name, 'examples', 'hello-service.js');
    const marker = `mpxpkg-${process.pid}`;
    const port = await freePort();
    const adminPort = await freePort();
    const range = await freePortRange(4);
    const config = join(dir, 'app.json');
    writeFileSync(
      config,
      JSON.stringify({
        pool_size: 2,
        workers: 1,
        http_host: '127.0.0.1',
        http_port: port,
        service_port_range: [range.first, range.last],
        service_start_process_cmd: `exec node ${example} %PORT% ${marker}`,
        admin_port: adminPort,
      }),
    );
    const proc = spawn(bin, ['start', '--config', config], {
      cwd: dir,
      env: {
        ...process.env,
        MULTIPLEXER_LOG_FORMAT: 'json',
        MULTIPLEXER_STATE_DIR: join(dir, 'state'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) =>
      proc.once('exit', (code) => resolve(code)),
    );
    after(() => {
      proc.kill('SIGKILL');
      for (const pid of pidsMatching(marker)) killQuietly(pid);
    });
    let out = '';
    let err = '';
    proc.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    proc.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    await Promise.race([
      waitFor(
        () => out.includes('"event":"ready"'),
        'the installed multiplexer to be ready',
        20_000,
      ),
      exited.then((code) => assert.fail(`exited ${code} before ready:\n${err}`)),
    ]);

    const answer = await request(port, '/from-the-package');
    assert.equal(answer.status, 200);
    assert.match(answer.body, /^hello from pid \d+ on port \d+: GET \/from-the-package/);
    // The dashboard's page ships in the package and is served from there.
    const page = await request(adminPort, '/');
    assert.equal(page.status, 200);
    assert.match(page.body, /<script src="dashboard\.js">/);
    assert.equal((await request(adminPort, '/dashboard.js')).status, 200);

    proc.kill('SIGTERM');
    assert.equal(await exited, 0);
    await waitFor(() => pidsMatching(marker).length === 0, 'its backends to end');
  });
});
