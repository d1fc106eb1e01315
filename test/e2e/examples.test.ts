import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { request } from '../helpers/http.js';
import { startMultiplexer } from '../helpers/multiplexer.js';
import { ROOT } from '../helpers/paths.js';
import { killQuietly, pidsMatching } from '../helpers/procs.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Each folder of examples/ run as its README says: its own multiplexer.json as shipped (only the
 * ports moved to ephemeral ones, by environment variables), its own setup. Concurrent requests must reach every backend of the
 * pool, and no backend may ever have had a second request while it answered one: each example
 * reports that itself (node-express: requests in the process; the Python ones: a connection
 * already waiting in the listen queue).
 */
interface Example {
  name: string;
  /** Why it cannot run on this machine, or undefined when it can (after its setup). */
  unavailable(): string | undefined;
}

function hasPython3(): string | undefined {
  const probe = spawnSync('python3', ['--version'], { encoding: 'utf8' });
  return probe.status === 0 ? undefined : 'python3 is not on PATH';
}

/** Runs an example's documented setup command once, when what it installs is missing. */
function setUp(installed: string, command: string, args: string[]): string | undefined {
  if (existsSync(join(ROOT, installed))) return undefined;
  const run = spawnSync(command, args, { cwd: ROOT, encoding: 'utf8', timeout: 180_000 });
  if (run.status === 0 && existsSync(join(ROOT, installed))) return undefined;
  return `its setup (${command} ${args.join(' ')}) failed: ${(run.stderr || String(run.error)).trim().split('\n').slice(-3).join(' | ')}`;
}

const examples: Example[] = [
  {
    name: 'node-express',
    unavailable: () =>
      setUp('examples/node-express/node_modules/express', 'npm', [
        'ci',
        '--prefix',
        'examples/node-express',
        '--no-audit',
        '--no-fund',
      ]),
  },
  { name: 'python-stdlib', unavailable: hasPython3 },
  {
    name: 'python-flask-gunicorn',
    unavailable: () =>
      hasPython3() ??
      setUp('examples/python-flask-gunicorn/.venv/bin/gunicorn', 'sh', [
        'examples/python-flask-gunicorn/setup.sh',
      ]),
  },
];

interface ExampleAnswer {
  pid: number;
  port: number;
  path: string;
  inFlight?: number;
  queued_behind?: boolean;
}

function exampleFile(name: string): string {
  return join(ROOT, 'examples', name, 'multiplexer.json');
}

function skip(t: TestContext, reason: string): void {
  // Printed, never silent: a machine without python3 says so in the test output.
  t.diagnostic(`skipped: ${reason}`);
  console.log(`# ${t.name}: skipped: ${reason}`);
  t.skip(reason);
}

describe('the examples, each with its own multiplexer.json', () => {
  for (const example of examples) {
    it(`${example.name}: 40 concurrent requests reach every backend, never two at once on one`, async (t) => {
      const reason = example.unavailable();
      if (reason !== undefined) return skip(t, `${example.name}: ${reason}`);
      const file = exampleFile(example.name);
      const config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      const pattern = String(config.service_kill_pattern);
      assert.ok(pattern.includes(`examples/${example.name}/`), 'its kill pattern names its folder');
      after(() => {
        for (const pid of pidsMatching(pattern)) killQuietly(pid);
      });

      // The file as shipped, its ports moved to free ones; run from a directory that is not
      // the repository's: its relative paths hold through service_cwd.
      const mpx = await startMultiplexer({}, { shipped: file, readyTimeoutMs: 30_000 });
      const poolPorts = mpx.ready.backends.map((b) => b.port).sort();
      assert.equal(poolPorts.length, config.pool_size);

      const answers = await Promise.all(
        Array.from({ length: 40 }, (_, i) => request(mpx.port, `/page/${i}?q=${i}`)),
      );
      for (const a of answers) assert.equal(a.status, 200, a.body);
      const pages = answers.map((a) => JSON.parse(a.body) as ExampleAnswer);
      assert.deepEqual(
        pages.map((p) => p.path).sort(),
        Array.from({ length: 40 }, (_, i) => `/page/${i}?q=${i}`).sort(),
        'each answer is the page asked for',
      );
      const servedPorts = new Set(pages.map((p) => p.port));
      for (const port of poolPorts) assert.ok(servedPorts.has(port), `backend :${port} served`);
      for (const p of pages) {
        assert.notEqual(
          p.queued_behind,
          true,
          `a connection waited behind ${p.path} on :${p.port}`,
        );
        if (p.inFlight !== undefined) assert.equal(p.inFlight, 1, `${p.path} on :${p.port}`);
      }

      assert.deepEqual(await mpx.stop(), { code: 0, signal: null });
      await waitFor(() => pidsMatching(pattern).length === 0, 'every backend process to end');
    });
  }
});

describe('examples/several-services: three services behind one port, one budget', () => {
  it('/api goes to the Express API with the prefix taken off, admin.example.test to the Flask app, the rest to the stdlib site; 30 concurrent requests, each to its own service, never two at once on a backend', async (t) => {
    const flask = examples.find((e) => e.name === 'python-flask-gunicorn')!;
    const express = examples.find((e) => e.name === 'node-express')!;
    const reason = flask.unavailable() ?? express.unavailable();
    if (reason !== undefined) return skip(t, `several-services: ${reason}`);
    const file = exampleFile('several-services');
    const config = JSON.parse(readFileSync(file, 'utf8')) as {
      services: Record<string, { service_kill_pattern: string }>;
    };
    const patterns = Object.values(config.services).map((s) => s.service_kill_pattern);
    after(() => {
      for (const pattern of patterns) for (const pid of pidsMatching(pattern)) killQuietly(pid);
    });
    const mpx = await startMultiplexer({}, { shipped: file, readyTimeoutMs: 30_000 });
    assert.equal(mpx.ready.backends.length, 3, 'one backend per service (pool_size 1 each)');

    /**
     * Which example answered, from its answer as its own code writes it (a backend may have
     * exited by the time its answer is read, so not from its process): Express counts requests
     * in flight; Flask's jsonify writes compact JSON, Python's json.dumps puts a space after ':'.
     */
    const serviceOf = (body: string): string =>
      body.includes('"inFlight"') ? 'api' : body.includes('": ') ? 'site' : 'admin';
    const asks = Array.from({ length: 30 }, (_, i) => {
      const kind = ['api', 'admin', 'site'][i % 3]!;
      const path = kind === 'api' ? `/api/users/${i}?q=${i}` : `/page/${i}?q=${i}`;
      const headers = kind === 'admin' ? { host: 'admin.example.test' } : {};
      return { kind, path, request: request(mpx.port, path, { headers }) };
    });
    for (const ask of asks) {
      const answer = await ask.request;
      assert.equal(answer.status, 200, answer.body);
      const page = JSON.parse(answer.body) as ExampleAnswer;
      assert.equal(serviceOf(answer.body), ask.kind, `${ask.path} went to ${ask.kind}`);
      const seen = ask.kind === 'api' ? ask.path.slice('/api'.length) : ask.path;
      assert.equal(page.path, seen, 'the path the backend saw');
      assert.notEqual(page.queued_behind, true, `a connection waited on :${page.port}`);
      if (page.inFlight !== undefined) assert.equal(page.inFlight, 1);
    }
    const none = await request(mpx.port, '/', { headers: { host: 'other.example.test' } });
    assert.equal(none.status, 200, 'the site takes every other host');

    assert.deepEqual(await mpx.stop(), { code: 0, signal: null });
    await waitFor(
      () => patterns.every((p) => pidsMatching(p).length === 0),
      'every backend process to end',
    );
  });
});
