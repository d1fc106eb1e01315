import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { BackendProcess, type ExitInfo } from '../../lib/supervisor/backend-process.js';
import { captureLog } from '../helpers/capture-log.js';
import { fixture, uniqueMarker } from '../helpers/paths.js';
import { freePortRange } from '../helpers/ports.js';
import { pidsMatching } from '../helpers/procs.js';
import { waitFor } from '../helpers/wait.js';

const started: BackendProcess[] = [];
after(() => started.forEach((p) => p.killNow()));

async function run(
  command: string,
  readiness: number | 'wait_first_output' | 'wait_port' = 'wait_first_output',
) {
  const { first: port } = await freePortRange(1);
  const captured = captureLog();
  const events: string[] = [];
  let exit: ExitInfo | undefined;
  const proc = new BackendProcess(
    {
      id: 7,
      host: '127.0.0.1',
      port,
      command,
      cwd: process.cwd(),
      readiness,
      healthPath: '',
      stopGraceMs: 300,
    },
    captured.log,
    {
      onReady: () => events.push('ready'),
      onExit: (info) => {
        events.push('exit');
        exit = info;
      },
    },
  );
  started.push(proc);
  return { proc, port, events, captured, exit: () => exit };
}

describe('a backend process', () => {
  it('is ready at its first stdout output, not at stderr output; both are logged with its id and port', async () => {
    const marker = uniqueMarker();
    const b = await run(`node ${fixture('counting-service.mjs')} %PORT% ${marker}`);
    await waitFor(() => b.events.includes('ready'), 'ready');
    const records = b.captured.records();
    const out = records.find((r) => r.stream === 'stdout');
    const err = records.find((r) => r.stream === 'stderr');
    assert.deepEqual([out?.backend, out?.port], [7, b.port]);
    assert.match(String(out?.msg), /counting-service ready/);
    assert.deepEqual([err?.backend, err?.port], [7, b.port]);
    b.proc.stop();
    await waitFor(() => b.exit(), 'exit');
    assert.deepEqual(pidsMatching(marker), []);
  });

  it('with a start delay, a backend that prints nothing is ready after the delay', async () => {
    const b = await run(`node ${fixture('stderr-only-service.mjs')} %PORT%`, 200);
    const t0 = Date.now();
    await waitFor(() => b.events.includes('ready'), 'ready');
    assert.ok(Date.now() - t0 >= 150);
    b.proc.stop();
    await waitFor(() => b.exit(), 'exit');
  });

  it('gets %PORT% in its command and PORT in its environment', async () => {
    const b = await run('echo "arg=%PORT% env=$PORT"; sleep 5');
    await waitFor(() => b.captured.records().some((r) => r.stream === 'stdout'), 'output');
    const line = b.captured.records().find((r) => r.stream === 'stdout')!;
    assert.equal(line.msg, `arg=${b.port} env=${b.port}`);
    b.proc.stop();
    await waitFor(() => b.exit(), 'exit');
  });

  it('stop signals the whole process group, and SIGKILLs it after the grace when SIGTERM is ignored', async () => {
    const marker = uniqueMarker();
    const stubborn = `process.on('SIGTERM', () => {}); console.log('up'); setInterval(() => {}, 1000)`;
    const b = await run(
      `node -e "${stubborn}" ${marker}-child & node -e "${stubborn}" ${marker}-leader`,
    );
    // Each prints "up" once its SIGTERM handler is in place.
    await waitFor(
      () => b.captured.records().filter((r) => r.msg === 'up').length === 2,
      'both processes to be up',
    );
    const t0 = Date.now();
    b.proc.stop();
    await waitFor(() => b.exit(), 'exit');
    assert.ok(Date.now() - t0 >= 250, 'SIGTERM was ignored, so the exit came after the grace');
    assert.deepEqual(pidsMatching(marker), [], 'the whole group is gone when the exit is reported');
  });

  it('a service behind a shell ("cd dir && …") gets its graceful shutdown when the shell dies first', async () => {
    const graceful = `process.on('SIGTERM', () => setTimeout(() => { console.log('graceful-done'); process.exit(0); }, 150)); require('net').createServer().listen(process.env.PORT, '127.0.0.1', () => console.log('up'))`;
    const b = await run(`cd /tmp && node -e "${graceful}"`);
    await waitFor(() => b.events.includes('ready'), 'ready');
    b.proc.stop();
    await waitFor(() => b.exit(), 'exit');
    assert.ok(
      b.captured.records().some((r) => r.msg === 'graceful-done'),
      'the service finished its own shutdown before the exit was reported',
    );
  });

  it('output from a child left in its group after the shell exited does not make it ready', async () => {
    // The child inherits an ignored SIGTERM from the shell before it forks (no race with our
    // SIGTERM), prints after the leader is gone, then ends.
    const b = await run(`trap '' TERM; (sleep 0.1; echo late; sleep 0.1) & exit 0`);
    const exit = await waitFor(() => b.exit(), 'exit');
    assert.ok(
      b.captured.records().some((r) => r.msg === 'late'),
      'the late line was read and logged',
    );
    assert.deepEqual(b.events, ['exit']);
    assert.equal(exit.code, 0);
    assert.equal(exit.stopped, false, 'the shell exited on its own');
  });

  it('reports a boot failure as an exit before ready', async () => {
    const b = await run(`node ${fixture('boot-fail-service.mjs')}`);
    const exit = await waitFor(() => b.exit(), 'exit');
    assert.equal(exit.code, 1);
    assert.deepEqual(b.events, ['exit']);
  });

  it('keeps reading a chatty backend so it never blocks on a full pipe', async () => {
    const b = await run(
      `node -e "for (let i = 0; i < 20000; i++) console.log('line ' + i + ' ' + 'x'.repeat(50)); console.log('done')"`,
    );
    const exit = await waitFor(() => b.exit(), 'exit', 15_000);
    assert.equal(exit.code, 0);
    await waitFor(() => b.captured.records().some((r) => r.msg === 'done'), 'the last line logged');
    assert.ok(b.captured.records().filter((r) => r.stream === 'stdout').length >= 20_001);
  });
});
