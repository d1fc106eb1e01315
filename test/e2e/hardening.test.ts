import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  unlinkSync,
} from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { describe, it } from 'node:test';
import { request } from '../helpers/http.js';
import {
  fixtureCommand,
  startMultiplexer,
  startWithAdmin,
  writeConfig,
  type Running,
} from '../helpers/multiplexer.js';
import { BIN, ROOT, uniqueMarker } from '../helpers/paths.js';
import { freePort, freePortRange } from '../helpers/ports.js';
import { isAlive, killQuietly, pidsMatching } from '../helpers/procs.js';
import { tempDir } from '../helpers/temp.js';
import { readProcessTable } from '../../lib/supervisor/process-table.js';
import { waitFor } from '../helpers/wait.js';
import { openWebSocket } from '../helpers/websocket.js';

const SCRIPTED = fixtureCommand('scripted-service.mjs', '{marker}');
const TRAFFIC = fixtureCommand('traffic-service.mjs', '{marker}');

/** What the scripted backend reported seeing (its `seen` lines), in order. */
export function seenByBackend(mpx: Running): Record<string, unknown>[] {
  return mpx
    .logs()
    .filter((r) => r.stream === 'stdout' && r.msg.startsWith('seen '))
    .map((r) => JSON.parse(r.msg.slice(5)) as Record<string, unknown>);
}

/** A raw answer for the scripted backend to send, as its x-script header carries it. */
function script(raw: string): string {
  return Buffer.from(raw, 'latin1').toString('base64');
}

/** Sends raw bytes; resolves with everything received by the time the server closes or `ms` pass. */
export function rawExchange(port: number, bytes: string, ms = 3000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('error', () => undefined);
    const timer = setTimeout(() => socket.destroy(), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
    socket.write(bytes, 'latin1');
  });
}

/** `promise`, or a failure naming `what` after `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** Resident memory of a process, in MB, from /proc. */
function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

/** The front worker's pid (one worker), from the process table: a child of the primary. */
function workerPidOf(mpx: Running): number {
  const child = readProcessTable({ commandLines: true }).find(
    (p) => p.ppid === mpx.pid && p.commandLine.includes('worker/main.js'),
  );
  if (!child) throw new Error('no front worker found');
  return child.pid;
}

function workerDeaths(mpx: Running): number {
  return mpx.logs().filter((r) => r.event === 'worker.died').length;
}

describe('hardening', () => {
  it('answers node refuses to write as they came end only their own exchange: two links in one 103, a control byte in the reason phrase, a Trailer on a sized answer', async () => {
    const mpx = await startMultiplexer({
      service_start_process_cmd: TRAFFIC,
      pool_size: 1,
      workers: 1,
    });
    for (let i = 0; i < 5; i++) {
      const hints: string[] = [];
      const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.get(
          { host: '127.0.0.1', port: mpx.port, path: '/hints2', agent: false },
          (res) => {
            let body = '';
            res.setEncoding('utf8').on('data', (c: string) => (body += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('information', (info) => {
          if (info.statusCode === 103) hints.push(String(info.headers.link));
        });
        req.on('error', reject);
      });
      assert.equal(answer.status, 200);
      assert.equal(answer.body, 'hinted\n');
      assert.deepEqual(hints, ['</a.css>; rel=preload, </b.js>; rel=preload']);
    }
    await mpx.stop();
    assert.equal(workerDeaths(mpx), 0);

    const scripted = await startMultiplexer({
      service_start_process_cmd: SCRIPTED,
      pool_size: 1,
      workers: 1,
    });
    const cases = [
      { raw: 'HTTP/1.1 200 O\x01K\r\ncontent-length: 2\r\n\r\nok', status: 200, message: 'OK' },
      { raw: 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntrailer: x-sum\r\n\r\nok', status: 200 },
      {
        raw: 'HTTP/1.1 103 Early\r\nlink: <a>; rel=preload, bad link\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok',
        status: 200,
      },
    ];
    for (let round = 0; round < 3; round++) {
      for (const c of cases) {
        const answer = await request(scripted.port, '/x', {
          headers: { 'x-script': script(c.raw) },
        });
        assert.equal(answer.status, c.status, JSON.stringify(c.raw));
        assert.equal(answer.body, 'ok');
        if (c.message) assert.equal(answer.statusMessage, c.message);
        assert.equal(answer.headers.trailer, undefined);
      }
    }
    await scripted.stop();
    assert.equal(workerDeaths(scripted), 0, 'no front worker died');
  });

  it("Connection never removes a request's framing: a body the client framed reaches the backend as that body, never as a second request", async () => {
    for (const buffer_requests of [false, true]) {
      const mpx = await startMultiplexer({
        service_start_process_cmd: SCRIPTED,
        pool_size: 1,
        workers: 1,
        buffer_requests,
      });
      const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
      for (const [method, connection] of [
        ['GET', 'content-length'],
        ['DELETE', 'Content-Length, x-request-id'],
        ['POST', 'host, content-length'],
      ] as const) {
        const answer = await rawExchange(
          mpx.port,
          `${method} /outer HTTP/1.1\r\nHost: x\r\nConnection: ${connection}\r\nx-test-id: ${method}\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}` +
            'GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
        );
        const statuses = answer.match(/HTTP\/1\.1 \d{3}/g) ?? [];
        assert.deepEqual(statuses, ['HTTP/1.1 200', 'HTTP/1.1 200'], answer);
      }
      await waitFor(() => seenByBackend(mpx).length >= 6, 'six requests at the backend');
      const seen = seenByBackend(mpx);
      assert.deepEqual(
        seen.map((r) => r.target),
        ['/outer', '/after', '/outer', '/after', '/outer', '/after'],
        JSON.stringify(seen),
      );
      for (const r of seen.filter((r) => r.target === '/outer')) {
        assert.equal(
          r.bodyLength,
          smuggled.length,
          `${String(r.method)}, buffer_requests ${buffer_requests}`,
        );
        assert.equal(Buffer.from(String(r.body), 'base64').toString(), smuggled);
      }
      await mpx.stop();
    }
  });

  it('a tunnel ends when either side ends it: a client that only half-closes, or leaves, or stays silent past tunnel_idle_timeout_ms, returns the backend', async () => {
    const mpx = await startMultiplexer({
      service_start_process_cmd: TRAFFIC,
      pool_size: 1,
      workers: 1,
      queue_timeout_ms: 200,
      // Far above the test's 300 ms gaps, so a loaded machine does not close the busy tunnel.
      tunnel_idle_timeout_ms: 1500,
    });
    // pool_size 1 and queue_timeout_ms 200: a backend still leased to the tunnel would give 503.
    const ws = await openWebSocket(mpx.port, '/ws');
    ws.send('hi');
    assert.match(await ws.receive(), /^echo \d+: hi$/);
    ws.end();
    await within(ws.closed, 5000, 'the half-closed tunnel to close');
    assert.equal((await request(mpx.port, '/after-fin')).status, 200, 'the backend is free again');

    // Silent both ways: closed after tunnel_idle_timeout_ms, and not while traffic flows.
    const idle = await openWebSocket(mpx.port, '/ws');
    let idleClosed = false;
    void idle.closed.then(() => (idleClosed = true));
    for (let i = 0; i < 4; i++) {
      idle.send(`still here ${i}`);
      await idle.receive();
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    assert.equal(idleClosed, false, 'traffic keeps the tunnel open past the idle timeout');
    await within(idle.closed, 5000, 'the idle tunnel to close');
    assert.equal((await request(mpx.port, '/after-idle')).status, 200);
    await mpx.stop();
  });

  it('a connection pipelining 100,000 GETs behind a slow request is read no further than 32 ahead: the worker stays small and other clients are answered', async (t) => {
    const mpx = await startMultiplexer({
      service_start_process_cmd: SCRIPTED,
      pool_size: 2,
      workers: 1,
    });
    const pid = workerPidOf(mpx);
    const rssBefore = rssMb(pid);
    const socket = net.connect(mpx.port, '127.0.0.1');
    socket.on('error', () => undefined);
    let answers = 0;
    socket.on(
      'data',
      (d: Buffer) => (answers += d.toString('latin1').split('HTTP/1.1 ').length - 1),
    );
    const slow = `GET /slow HTTP/1.1\r\nHost: x\r\nx-script-delay: 3000\r\n\r\n`;
    const one = 'GET /p HTTP/1.1\r\nHost: x\r\n\r\n';
    socket.write(slow + one.repeat(100_000));
    // Meanwhile another client is answered at once by the other backend.
    const other = await request(mpx.port, '/other');
    assert.equal(other.status, 200);
    assert.equal(answers, 0, 'the slow request still holds the pipelined ones');
    let peak = 0;
    await waitFor(
      () => {
        peak = Math.max(peak, rssMb(pid));
        return answers >= 1;
      },
      'the slow answer',
      15_000,
    );
    t.diagnostic(
      `the worker grew by ${Math.round(peak - rssBefore)} MB (from ${Math.round(rssBefore)} MB)`,
    );
    assert.ok(peak - rssBefore < 100, `the worker grew by ${peak - rssBefore} MB`);
    socket.destroy();
    await mpx.stop();
  });

  it('a full disk never takes a process down: the backend record is retried until it can be written, log lines that cannot be written are dropped', async () => {
    const mpx = await startMultiplexer({ pool_size: 2, workers: 1 });
    const record = join(mpx.stateDir, 'backends');
    // Every write of the record now fails as on a full disk: the kernel answers ENOSPC.
    symlinkSync('/dev/full', `${record}.tmp`);
    const victim = mpx.ready.backends[0]!;
    process.kill(-victim.pid, 'SIGKILL');
    await mpx.waitForLog((r) => r.event === 'state.write-failed', 'the failed write, logged');
    await mpx.waitForLog(
      (r) =>
        r.event === 'backend.ready' &&
        r.backend !== victim.id &&
        r.backend !== mpx.ready.backends[1]!.id,
      'the replacement backend ready',
    );
    for (let i = 0; i < 4; i++) {
      // The answer's body names the error code if it is not 200 (seen once: a 502, not since).
      const answer = await request(mpx.port, `/r${i}`);
      assert.equal(answer.status, 200, `${answer.body} ${JSON.stringify(answer.headers)}`);
    }
    assert.ok(isAlive(mpx.pid), 'the primary lives');
    unlinkSync(`${record}.tmp`);
    await mpx.waitForLog((r) => r.event === 'state.write-recovered', 'the record written again');
    const pids = readFileSync(record, 'utf8')
      .split('\n')
      .filter((l) => /^\d+ /.test(l))
      .map((l) => Number(l.split(' ')[0]));
    assert.equal(pids.length, 2);
    assert.ok(!pids.includes(victim.pid) && pids.every(isAlive), JSON.stringify(pids));
    assert.deepEqual(await mpx.stop(), { code: 0, signal: null });

    // stderr on a full disk: every log line of the primary and the worker fails to be written.
    const marker = uniqueMarker();
    const port = await freePort();
    const range = await freePortRange(6);
    const file = writeConfig({
      pool_size: 2,
      workers: 1,
      http_host: '127.0.0.1',
      http_port: port,
      service_port_range: [range.first, range.last],
      service_start_process_cmd: fixtureCommand('counting-service.mjs', marker),
    });
    const full = openSync('/dev/full', 'w');
    const proc = spawn(process.execPath, [BIN, 'start', '--config', file], {
      cwd: ROOT,
      env: {
        ...process.env,
        MULTIPLEXER_LOG_FORMAT: 'json',
        MULTIPLEXER_STATE_DIR: join(tempDir().dir, 'state'),
      },
      stdio: ['ignore', 'pipe', full],
    });
    closeSync(full);
    const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve));
    try {
      let out = '';
      proc.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
      const ready = JSON.parse(
        await waitFor(() => out.split('\n').find((l) => l.includes('"event":"ready"')), 'ready'),
      ) as { backends: { pid: number }[] };
      for (let i = 0; i < 20; i++) assert.equal((await request(port, `/q${i}`)).status, 200);
      const victim = ready.backends[0]!.pid;
      const before = new Set(pidsMatching(marker));
      process.kill(-victim, 'SIGKILL');
      // Its replacement starting says the primary saw the exit (no log line to wait for here:
      // stderr is full). Sent sooner, a request could reach the backend in the instant it dies
      // and get 502 MPX_BACKEND_CRASHED (CI, Node 26): a crash race, not what this test is about.
      await waitFor(
        () => !isAlive(victim) && pidsMatching(marker).some((pid) => !before.has(pid)),
        'the killed backend gone and its replacement starting',
      );
      for (let i = 0; i < 20; i++) assert.equal((await request(port, `/s${i}`)).status, 200);
      assert.equal(proc.exitCode, null, 'the primary lives');
      proc.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      await exited;
      for (const pid of pidsMatching(marker)) killQuietly(pid);
    }
  });

  it('a child of the service that ignores SIGTERM is ended with its group: after a stop, after kill -9 of the primary (the watchdog), and by the next start', async () => {
    const stubborn = (marker: string): string =>
      `node -e "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)" ${marker} & ` +
      fixtureCommand('counting-service.mjs', marker);
    const gone = (marker: string, what: string) =>
      waitFor(() => pidsMatching(marker).length === 0, what, 10_000);
    const options = { pool_size: 1, workers: 1, service_stop_timeout_ms: 500 };

    const stopped = await startMultiplexer({
      ...options,
      service_start_process_cmd: stubborn('{marker}'),
    });
    assert.equal((await stopped.stop()).code, 0);
    await gone(stopped.marker, 'every process of the backend after a stop');

    const killed = await startMultiplexer({
      ...options,
      service_start_process_cmd: stubborn('{marker}'),
    });
    killed.proc.kill('SIGKILL');
    await gone(killed.marker, 'every process of the backend after kill -9 of the primary');

    // The primary and its watchdog killed at once, and the backend's shell too: only the child
    // that ignores SIGTERM is left, in the group of a leader that is gone. The next start ends it.
    const first = await startMultiplexer({
      ...options,
      service_start_process_cmd: stubborn('{marker}'),
    });
    const table = readProcessTable({ commandLines: true });
    const watchdog = table.find(
      (p) => p.ppid === first.pid && p.commandLine.includes('backend-watchdog'),
    );
    assert.ok(watchdog, 'the watchdog runs');
    process.kill(watchdog.pid, 'SIGKILL');
    first.proc.kill('SIGKILL');
    await first.exited;
    // The leader may be gone already (a write to the dead primary's pipe ends it).
    killQuietly(first.ready.backends[0]!.pid);
    for (const p of readProcessTable({ commandLines: true })) {
      if (p.commandLine.includes(first.marker) && p.commandLine.includes('counting-service')) {
        killQuietly(p.pid);
      }
    }
    await waitFor(() => pidsMatching(first.marker).length === 1, 'only the stubborn child left');
    // Reaped, not a zombie: a zombie leader would still show its start time.
    const leader = first.ready.backends[0]!.pid;
    await waitFor(() => !existsSync(`/proc/${leader}`), 'the leader reaped');
    const second = await startMultiplexer(
      { ...options, service_start_process_cmd: fixtureCommand('counting-service.mjs', '{marker}') },
      { env: { MULTIPLEXER_STATE_DIR: first.stateDir } },
    );
    await gone(first.marker, 'the stubborn child, ended by the next start');
    assert.ok(second.logs().some((r) => r.event === 'leftover.ending'));
    await second.stop();
  });

  it('the port never closes: kill -9 of the only front worker under looping clients refuses no connection', async () => {
    const mpx = await startMultiplexer({ pool_size: 2, workers: 1 });
    const victim = workerPidOf(mpx);
    const errors: string[] = [];
    let ok = 0;
    let running = true;
    const loop = async (): Promise<void> => {
      while (running) {
        try {
          if ((await request(mpx.port, '/loop')).status === 200) ok++;
        } catch (err) {
          errors.push((err as NodeJS.ErrnoException).code ?? String(err));
        }
      }
    };
    const loops = Array.from({ length: 4 }, loop);
    await waitFor(() => ok >= 20, 'answers before the kill');
    process.kill(victim, 'SIGKILL');
    const replacement = await waitFor(() => {
      try {
        const pid = workerPidOf(mpx);
        return pid !== victim ? pid : undefined;
      } catch {
        return undefined;
      }
    }, 'a replacement worker');
    const before = ok;
    await waitFor(() => ok >= before + 40, 'answers from the replacement');
    running = false;
    await Promise.all(loops);
    assert.ok(replacement);
    assert.deepEqual(
      errors.filter((code) => code === 'ECONNREFUSED'),
      [],
      `errors: ${errors.join(', ')}`,
    );
    await mpx.stop();
  });

  it('bodies are bounded per worker: past buffer_memory_total_bytes they go to disk, past buffer_disk_max_bytes a request gets 503 MPX_BUFFER_FULL and takes no backend', async () => {
    const mpx = await startMultiplexer({
      service_start_process_cmd: SCRIPTED,
      pool_size: 1,
      workers: 1,
      buffer_memory_total_bytes: 0,
      buffer_disk_max_bytes: 100_000,
    });
    const dir = join(mpx.stateDir, 'buffers');
    const worker = workerPidOf(mpx);
    const spilled = (): string[] =>
      readdirSync(`/proc/${worker}/fd`)
        .map((fd) => {
          try {
            return readlinkSync(`/proc/${worker}/fd/${fd}`);
          } catch {
            return '';
          }
        })
        .filter((target) => target.startsWith(dir));
    // The backend is held by a slow request; a 10 KB body then waits in the queue, on disk,
    // although it is far below buffer_memory_bytes: the worker's memory total is 0.
    const slow = request(mpx.port, '/slow', { headers: { 'x-script-delay': '1500' } });
    await waitFor(() => seenByBackend(mpx).length === 1, 'the slow request at the backend');
    const queued = request(mpx.port, '/queued', {
      method: 'POST',
      body: Buffer.alloc(10_000, 'q'),
    });
    await waitFor(() => spilled().length === 1, 'the queued body in a temp file');
    const tooBig = await request(mpx.port, '/big', {
      method: 'POST',
      body: Buffer.alloc(200_000, 'b'),
    });
    assert.equal(tooBig.status, 503);
    assert.equal(tooBig.headers['x-multiplexer-error'], 'MPX_BUFFER_FULL');
    assert.equal(tooBig.headers['retry-after'], '1');
    assert.equal((await slow).status, 200);
    assert.equal((await queued).status, 200);
    // What was refused never reached the backend, and the budget is given back: the same
    // 60 KB body is stored twice in a row.
    for (let i = 0; i < 2; i++) {
      const fits = await request(mpx.port, '/fits', {
        method: 'POST',
        body: Buffer.alloc(60_000, 'f'),
      });
      assert.equal(fits.status, 200);
    }
    await waitFor(() => spilled().length === 0, 'no temp file left open');
    assert.deepEqual(
      seenByBackend(mpx).map((r) => [r.target, r.bodyLength]),
      [
        ['/slow', 0],
        ['/queued', 10_000],
        ['/fits', 60_000],
        ['/fits', 60_000],
      ],
    );
    await mpx.stop();
  });

  it('queue_max_per_client: a client with that many requests waiting gets 429 MPX_CLIENT_QUEUE_FULL, others still wait their turn', async () => {
    const mpx = await startWithAdmin({
      service_start_process_cmd: SCRIPTED,
      pool_size: 1,
      workers: 1,
      queue_max_per_client: 2,
      trusted_proxies: ['127.0.0.1/32'],
    });
    // All from 127.0.0.1, a trusted proxy: each X-Forwarded-For names a client.
    const from = (client: string, path: string) =>
      request(mpx.port, path, { headers: { 'x-forwarded-for': client } });
    // The backend is held for 3 s: long enough to see the queue, whatever the machine's load.
    const holder = request(mpx.port, '/hold', { headers: { 'x-script-delay': '3000' } });
    await waitFor(() => seenByBackend(mpx).length === 1, 'the backend held');
    const waiting = [from('198.51.100.7', '/a1'), from('198.51.100.7', '/a2')];
    const other = from('198.51.100.8', '/b1');
    await waitFor(async () => (await mpx.status()).queue === 3, 'three requests waiting');
    const refused = await from('198.51.100.7', '/a3');
    assert.equal(refused.status, 429);
    assert.equal(refused.headers['x-multiplexer-error'], 'MPX_CLIENT_QUEUE_FULL');
    assert.equal(refused.headers['retry-after'], '1');
    for (const answer of await Promise.all([holder, ...waiting, other])) {
      assert.equal(answer.status, 200);
    }
    await mpx.stop();
  });
});
