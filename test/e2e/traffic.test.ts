import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { request, uploadChunked } from '../helpers/http.js';
import {
  arrived,
  fixtureCommand,
  rewriteConfig,
  startMultiplexer,
  startWithAdmin,
  type Running,
} from '../helpers/multiplexer.js';
import { waitFor } from '../helpers/wait.js';
import { openWebSocket } from '../helpers/websocket.js';

const TRAFFIC = fixtureCommand('traffic-service.mjs', '{marker}');

function traffic(config: Record<string, unknown> = {}): Promise<Running> {
  return startMultiplexer({ service_start_process_cmd: TRAFFIC, ...config });
}

/** The backend's log lines (its stdout), in order. */
function backendLines(mpx: Running): string[] {
  return mpx
    .logs()
    .filter((r) => r.stream === 'stdout')
    .map((r) => r.msg);
}

/** Opens a raw connection; resolves with everything received once the server closes it. */
function rawConnection(port: number): {
  socket: net.Socket;
  received: () => string;
  closed: Promise<string>;
} {
  const socket = net.connect(port, '127.0.0.1');
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.on('error', () => undefined);
  const closed = new Promise<string>((resolve) => socket.once('close', () => resolve(text)));
  return { socket, received: () => text, closed };
}

/** A GET whose answer is not read (its socket paused) until `resume` is called. */
function pausedReader(
  port: number,
  path: string,
): { resume: () => Promise<number>; destroy: () => Promise<unknown>; closed: Promise<string> } {
  const { socket, closed } = rawConnection(port);
  let bytes = 0;
  socket.removeAllListeners('data');
  socket.on('data', (d: Buffer) => (bytes += d.length));
  socket.write(`GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`);
  socket.pause();
  return {
    resume: async () => {
      socket.resume();
      await closed;
      return bytes;
    },
    destroy: () => {
      socket.destroy();
      return closed;
    },
    closed,
  };
}

/** Descriptors of `pid` open on files under `dir` (deleted temp files included). */
function openFilesUnder(pid: number, dir: string): string[] {
  const open: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.startsWith(dir)) open.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return open;
}

describe('real traffic', () => {
  it('a slow uploader and a paused reader on a pool of 1 cost the next client under 100 ms', async () => {
    const mpx = await traffic({ pool_size: 1, pool_max_overflow: 0, workers: 2 });
    // An upload of 4 KB dribbled over 2 s.
    const uploader = rawConnection(mpx.port);
    uploader.socket.write('POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 4096\r\n\r\n');
    const dribble = setInterval(() => uploader.socket.write('u'.repeat(205)), 100);
    // A client that asks for 16 MB and does not read it.
    const reader = pausedReader(mpx.port, '/big?kb=16384');
    await waitFor(
      () => backendLines(mpx).includes('finished GET /big?kb=16384'),
      'the backend to be done with the paused reader',
    );
    const next = await request(mpx.port, '/next');
    assert.equal(next.status, 200);
    assert.ok(next.ms < 100, `the next client waited ${next.ms} ms`);
    assert.ok(
      !backendLines(mpx).includes('arrived POST /upload'),
      'the upload reaches the backend only once it is complete',
    );
    clearInterval(dribble);
    uploader.socket.destroy();
    assert.ok((await reader.resume()) > 16 * 1024 * 1024, 'the paused reader gets it all');
    await mpx.stop();
  });

  it('a chunked upload larger than memory is stored whole, then sent at full speed with Content-Length', async () => {
    const mpx = await traffic({ pool_size: 1, workers: 1, buffer_memory_bytes: 64 * 1024 });
    const chunks = Array.from({ length: 8 }, (_, i) => Buffer.alloc(1 << 20, i));
    const { seen, sentSha256 } = await uploadChunked(mpx.port, '/upload', chunks);
    assert.equal(seen.bytes, 8 << 20);
    assert.equal(seen.sha256, sentSha256, 'the same bytes, in order');
    assert.equal(seen.headers['content-length'], String(8 << 20));
    assert.equal(seen.headers['transfer-encoding'], undefined);
    await mpx.stop();
  });

  it('a body over client_max_body_bytes gets 413 without taking a backend', async () => {
    const mpx = await traffic({ pool_size: 1, workers: 1, client_max_body_bytes: 1000 });
    const declared = await request(mpx.port, '/declared', {
      method: 'POST',
      body: 'x'.repeat(5000),
    });
    assert.equal(declared.status, 413);
    assert.equal(declared.headers['x-multiplexer-error'], 'MPX_BODY_TOO_LARGE');
    // A chunked body has no declared length: it is counted as it arrives.
    const chunked = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        { port: mpx.port, host: '127.0.0.1', path: '/chunked', method: 'POST', agent: false },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.write('y'.repeat(800));
      req.write('y'.repeat(800));
      req.end();
    });
    assert.equal(chunked, 413);
    // Expect: 100-continue is answered 413 before the client sends its body.
    const expect = rawConnection(mpx.port);
    expect.socket.write(
      'POST /expect HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n',
    );
    const text = await expect.closed;
    assert.match(text, /^HTTP\/1\.1 413 /);
    assert.doesNotMatch(text, /100 Continue/);
    const within = await request(mpx.port, '/within', { method: 'POST', body: 'z'.repeat(1000) });
    assert.equal(within.status, 200);
    await arrived(mpx, '/within');
    const arrivals = backendLines(mpx).filter((l) => l.startsWith('arrived '));
    assert.deepEqual(arrivals, ['arrived POST /within'], 'only the body within the limit arrived');
    await mpx.stop();
  });

  it('a WebSocket echoes through the proxy and holds its backend, shown as upgraded, until it closes', async () => {
    const mpx = await startWithAdmin({
      service_start_process_cmd: TRAFFIC,
      pool_size: 1,
      pool_max_overflow: 0,
      workers: 2,
    });
    const ws = await openWebSocket(mpx.port, '/ws');
    ws.send('hello');
    const hello = await ws.receive();
    assert.match(hello, /^echo \d+: hello$/);
    const pid = hello.split(/[ :]/)[1];
    ws.send('x'.repeat(300));
    assert.equal(await ws.receive(), `echo ${pid}: ${'x'.repeat(300)}`);
    const status = await mpx.status();
    assert.equal(status.backends[0]!.state, 'upgraded');
    // The one backend is held: a request waits until the WebSocket closes.
    let answeredAt = 0;
    const waiting = request(mpx.port, '/after').then((a) => {
      answeredAt = Date.now();
      return a;
    });
    await waitFor(async () => (await mpx.status()).queue === 1, 'the request to wait in the queue');
    assert.equal(answeredAt, 0, 'no request reached the backend while the WebSocket held it');
    const closedAt = Date.now();
    await ws.close();
    const after = await waiting;
    assert.equal(after.status, 200);
    assert.ok(answeredAt >= closedAt);
    await mpx.stop();
  });

  it('an idle WebSocket outlives http_proxy_timeout', async () => {
    const mpx = await traffic({ pool_size: 1, workers: 1, http_proxy_timeout: 300 });
    const ws = await openWebSocket(mpx.port, '/ws');
    const quiet = Date.now();
    await waitFor(() => Date.now() - quiet > 1000, 'a second of silence', 2000, 100);
    ws.send('still there');
    assert.match(await ws.receive(), /: still there$/);
    await ws.close();
    await mpx.stop();
  });

  it('a rolling restart closes a WebSocket after shutdown_timeout_ms and replaces its backend; so does a shutdown', async () => {
    const mpx = await traffic({ pool_size: 1, workers: 1, shutdown_timeout_ms: 800 });
    const ws = await openWebSocket(mpx.port, '/ws');
    ws.send('a');
    const oldPid = (await ws.receive()).split(/[ :]/)[1];
    rewriteConfig(mpx, {
      service_start_process_cmd: `${TRAFFIC.replaceAll('{marker}', mpx.marker)} v2`,
    });
    const reloadAt = Date.now();
    mpx.proc.kill('SIGHUP');
    await ws.closed;
    const heldFor = Date.now() - reloadAt;
    assert.ok(
      heldFor >= 800,
      `the WebSocket was given shutdown_timeout_ms (closed after ${heldFor} ms)`,
    );
    const ws2 = await openWebSocket(mpx.port, '/ws');
    ws2.send('b');
    const newPid = (await ws2.receive()).split(/[ :]/)[1];
    assert.notEqual(newPid, oldPid, 'the new WebSocket is on the new backend');
    const stopAt = Date.now();
    const exit = mpx.stop();
    await ws2.closed;
    assert.ok(Date.now() - stopAt >= 800, 'a shutdown gives it shutdown_timeout_ms too');
    assert.equal((await exit).code, 0);
  });

  it('an Upgrade the backend declines is its answer; with websocket: false it is 501', async () => {
    const mpx = await traffic({ pool_size: 1, workers: 1 });
    await assert.rejects(openWebSocket(mpx.port, '/not-ws'), /403 Forbidden/);
    await mpx.stop();
    const off = await traffic({ pool_size: 1, workers: 1, websocket: false });
    await assert.rejects(openWebSocket(off.port, '/ws'), /501 Not Implemented/);
    assert.ok(!backendLines(off).some((l) => l.startsWith('arrived UPGRADE')));
    await off.stop();
  });

  it('an event stream passes live while the backend keeps sending', async () => {
    const mpx = await traffic({ pool_size: 1, workers: 1 });
    const started = Date.now();
    const events = await new Promise<{ headAt: number; first: string[] }>((resolve, reject) => {
      const req = http.get(
        { host: '127.0.0.1', port: mpx.port, path: '/sse?first=1500&every=100', agent: false },
        (res) => {
          const headAt = Date.now() - started;
          const first: string[] = [];
          res.setEncoding('utf8');
          res.on('data', (text: string) => {
            first.push(...text.split('\n\n').filter(Boolean));
            if (first.length >= 3) {
              req.destroy();
              resolve({ headAt, first });
            }
          });
        },
      );
      req.on('error', reject);
    });
    assert.ok(events.headAt < 1000, `the head came before the first event (${events.headAt} ms)`);
    assert.deepEqual(events.first.slice(0, 3), ['data: 1', 'data: 2', 'data: 3']);
    await mpx.stop();
  });

  it('an endless answer its client left is drained for http_proxy_timeout, then its backend is replaced', async () => {
    const mpx = await traffic({ pool_size: 1, workers: 1, http_proxy_timeout: 1000 });
    const abort = new AbortController();
    const left = request(mpx.port, '/sse?every=20', { signal: abort.signal }).catch(() => 'left');
    await arrived(mpx, '/sse');
    abort.abort();
    assert.equal(await left, 'left');
    await mpx.waitForLog(
      (r) => r.reason === 'abandoned-stream',
      'the backend to be retired as abandoned-stream',
    );
    const next = await request(mpx.port, '/next');
    assert.equal(next.status, 200);
    await mpx.stop();
  });

  it('an early answer mid-upload reaches the client, and the backend connection is closed before the backend serves anyone else', async () => {
    const mpx = await traffic({ pool_size: 1, pool_max_overflow: 0, workers: 1 });
    const early = await request(mpx.port, '/early', {
      method: 'POST',
      body: Buffer.alloc(8 * 1024 * 1024, 1),
    });
    assert.equal(early.status, 413);
    assert.equal(early.body, 'too big for me\n');
    const next = await request(mpx.port, '/next');
    assert.equal(next.status, 200);
    // The backend's output reaches the log on its own path: wait for it, then read the order.
    await arrived(mpx, '/next');
    const lines = backendLines(mpx);
    const closed = lines.indexOf('closed POST /early');
    const nextArrived = lines.indexOf('arrived GET /next');
    assert.ok(closed >= 0 && closed < nextArrived, lines.join('\n'));
    await mpx.stop();
  });

  it('pipelined requests on one connection are answered in order, one backend at a time', async () => {
    const mpx = await traffic({ pool_size: 2, workers: 1 });
    const conn = rawConnection(mpx.port);
    conn.socket.write(
      'GET /first?ms=300 HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n',
    );
    const text = await conn.closed;
    const first = text.indexOf('"/first?ms=300"');
    const second = text.indexOf('"/second"');
    assert.ok(first > 0 && second > first, text);
    await arrived(mpx, '/second');
    const lines = backendLines(mpx);
    assert.ok(
      lines.indexOf('finished GET /first?ms=300') < lines.indexOf('arrived GET /second'),
      lines.join('\n'),
    );
    await mpx.stop();
  });

  it('a POST whose backend connection drops is never sent twice; an idempotent GET is sent again', async () => {
    const mpx = await traffic({ pool_size: 1, workers: 1 });
    assert.equal((await request(mpx.port, '/warm')).status, 200);
    const post = await request(mpx.port, '/drop-first?key=post', { method: 'POST' });
    assert.equal(post.status, 502);
    assert.equal(post.headers['x-multiplexer-error'], 'MPX_BACKEND_CRASHED');
    assert.equal((await request(mpx.port, '/warm')).status, 200);
    const get = await request(mpx.port, '/drop-first?key=get');
    assert.equal(get.status, 200, get.body);
    const arrivals = (what: string): number =>
      backendLines(mpx).filter((l) => l === `arrived ${what}`).length;
    // One backend, one output pipe: once the GET's second arrival is logged, so is every POST's.
    await waitFor(() => arrivals('GET /drop-first?key=get') === 2, 'the GET sent twice');
    assert.equal(arrivals('POST /drop-first?key=post'), 1);
    await mpx.stop();
  });

  it('forwarded headers from a client are replaced, a trusted proxy’s are extended; no Host is 400; an absolute-form target is rewritten', async () => {
    const spoof = {
      host: 'app.example',
      'x-forwarded-for': '203.0.113.9',
      'x-forwarded-host': 'evil.example',
      'x-forwarded-proto': 'https',
      forwarded: 'for=203.0.113.9;proto=https',
      'x-forwarded-ssl': 'on',
      'x-forwarded-port': '443',
      'x-forwarded-prefix': '/admin',
      'x-real-ip': '203.0.113.9',
      'true-client-ip': '203.0.113.9',
      'x-request-id': 'chosen-by-the-client',
    };
    const CLIENT_SAID = [
      'x-forwarded-ssl',
      'x-forwarded-port',
      'x-forwarded-prefix',
      'x-real-ip',
      'true-client-ip',
    ] as const;
    const seenBy = async (mpx: Running, path = '/h'): Promise<Record<string, string>> => {
      const answer = await request(mpx.port, path, { headers: spoof });
      return (JSON.parse(answer.body) as { headers: Record<string, string> }).headers;
    };
    const edge = await traffic({ pool_size: 1, workers: 1 });
    const seen = await seenBy(edge);
    assert.equal(seen['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen['x-forwarded-host'], 'app.example');
    assert.equal(seen['x-forwarded-proto'], 'http');
    assert.equal(seen.forwarded, 'for=127.0.0.1;host=app.example;proto=http');
    for (const name of CLIENT_SAID) assert.equal(seen[name], undefined, name);
    assert.notEqual(seen['x-request-id'], 'chosen-by-the-client');

    const raw = rawConnection(edge.port);
    raw.socket.write('GET /no-host HTTP/1.0\r\n\r\n');
    assert.match(await raw.closed, /^HTTP\/1\.1 400 /);
    const absolute = rawConnection(edge.port);
    absolute.socket.write(
      'GET http://named.example:8080/abs?q=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n',
    );
    const text = await absolute.closed;
    assert.match(text, /"url":"\/abs\?q=1"/);
    assert.match(text, /"host":"named.example:8080"/);
    await edge.stop();

    const behind = await traffic({ pool_size: 1, workers: 1, trusted_proxies: ['127.0.0.0/8'] });
    const kept = await seenBy(behind);
    assert.equal(kept['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
    assert.equal(kept['x-forwarded-host'], 'evil.example');
    assert.equal(kept['x-forwarded-proto'], 'https');
    assert.equal(
      kept.forwarded,
      'for=203.0.113.9;proto=https, for=127.0.0.1;host=app.example;proto=http',
    );
    for (const name of CLIENT_SAID) assert.equal(kept[name], spoof[name], name);
    assert.equal(kept['x-request-id'], 'chosen-by-the-client');
    await behind.stop();
  });

  it('a malformed or oversized answer is 502 MPX_BAD_BACKEND_RESPONSE, and the backend is kept', async () => {
    const mpx = await traffic({ pool_size: 1, workers: 1 });
    const pidOf = (answer: { body: string }): number =>
      (JSON.parse(answer.body) as { pid: number }).pid;
    const pid = pidOf(await request(mpx.port, '/before'));
    for (const kind of ['malformed', 'huge']) {
      const answer = await request(mpx.port, `/bad-headers?kind=${kind}`);
      assert.equal(answer.status, 502, kind);
      assert.equal(answer.headers['x-multiplexer-error'], 'MPX_BAD_BACKEND_RESPONSE');
    }
    const next = await request(mpx.port, '/next');
    assert.equal(pidOf(next), pid, 'the same backend serves on');
    assert.ok(!mpx.logs().some((r) => r.reason === 'broken'));
    await mpx.stop();
  });

  it('103 Early Hints and trailers pass through', async () => {
    const mpx = await traffic({ pool_size: 1, workers: 1 });
    const seen = await new Promise<{ hints: string[]; trailers: Record<string, string> }>(
      (resolve, reject) => {
        const hints: string[] = [];
        const req = http.get(
          { host: '127.0.0.1', port: mpx.port, path: '/info', agent: false },
          (res) => {
            res.resume();
            res.on('end', () =>
              resolve({ hints, trailers: res.trailers as Record<string, string> }),
            );
          },
        );
        req.on('information', (info) => {
          if (info.statusCode === 103) hints.push(String(info.headers.link));
        });
        req.on('error', reject);
      },
    );
    assert.deepEqual(seen.hints, ['</style.css>; rel=preload; as=style']);
    assert.equal(seen.trailers['x-checksum'], 'abc123');
    await mpx.stop();
  });

  it('clients that stall are dropped after client_timeout_ms and never take a backend: dribbled headers, a stalled upload', async () => {
    const mpx = await traffic({ pool_size: 1, workers: 1, client_timeout_ms: 600 });
    const slowloris = rawConnection(mpx.port);
    slowloris.socket.write('GET /loris HTTP/1.1\r\nHost: t\r\n');
    const drip = setInterval(() => slowloris.socket.write('X-A: b\r\n'), 100);
    const cut = await slowloris.closed;
    clearInterval(drip);
    assert.match(cut, /^$|^HTTP\/1\.1 408 /);
    const stalled = rawConnection(mpx.port);
    stalled.socket.write('POST /stalled HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nhalf');
    assert.match(await stalled.closed, /^HTTP\/1\.1 408 [\s\S]*MPX_CLIENT_TIMEOUT/);
    assert.ok(!backendLines(mpx).some((l) => l.startsWith('arrived ')));
    // A reader that stops reading (for 3 s: the scenario, not a synchronisation) is dropped; the
    // backend had long finished, untouched. What the kernel already holds still reaches the
    // client, not the whole answer.
    const reader = pausedReader(mpx.port, '/big?kb=16384');
    await arrived(mpx, '/big?kb=16384');
    const pausedAt = Date.now();
    await waitFor(() => Date.now() - pausedAt > 3000, 'the client to stall for 3 s', 4000, 100);
    await waitFor(
      () => backendLines(mpx).includes('finished GET /big?kb=16384'),
      'the backend to have finished',
    );
    const got = await reader.resume();
    assert.ok(got < 16 * 1024 * 1024, `the stalled reader was cut (it got ${got} bytes)`);
    assert.equal((await request(mpx.port, '/next')).status, 200);
    assert.ok(!mpx.logs().some((r) => typeof r.reason === 'string' && r.reason !== 'shutdown'));
    await mpx.stop();
  });

  it('no temp file is left open or on disk after aborts at every stage', async () => {
    const mpx = await traffic({ pool_size: 1, workers: 1, buffer_memory_bytes: 1024 });
    const worker = mpx.ready.workers[0]!;
    const dir = join(mpx.stateDir, 'buffers');
    const none = async (stage: string): Promise<void> => {
      await waitFor(
        () => openFilesUnder(worker, dir).length === 0,
        `no open temp file after ${stage}: ${openFilesUnder(worker, dir).join(', ')}`,
      );
      assert.deepEqual(readdirSync(dir), [], `no temp file on disk after ${stage}`);
    };
    // Aborted mid-upload, with part of the body in a temp file.
    const upload = rawConnection(mpx.port);
    upload.socket.write('POST /u HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n');
    upload.socket.write('a'.repeat(50_000));
    await waitFor(() => openFilesUnder(worker, dir).length > 0, 'the upload to spill to a file');
    upload.socket.destroy();
    await none('an aborted upload');
    // Aborted while waiting in the queue with its body stored (the backend is busy).
    const busy = request(mpx.port, '/busy?ms=800');
    await arrived(mpx, '/busy');
    const queued = new AbortController();
    const waiting = request(mpx.port, '/queued', {
      method: 'POST',
      body: 'q'.repeat(50_000),
      signal: queued.signal,
    }).catch(() => 'left');
    await waitFor(() => openFilesUnder(worker, dir).length > 0, 'the queued body in a file');
    queued.abort();
    assert.equal(await waiting, 'left');
    await busy;
    await none('a client that left the queue');
    // Aborted while its answer is kept for it (it does not read).
    const reader = pausedReader(mpx.port, '/big?kb=4096');
    await waitFor(() => openFilesUnder(worker, dir).length > 0, 'the answer kept in a file');
    const conns = rawConnection(mpx.port); // and a complete one, for contrast
    conns.socket.write('GET /big?kb=64 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    await conns.closed;
    await waitFor(
      () => backendLines(mpx).includes('finished GET /big?kb=4096'),
      'the backend to be done',
    );
    // The paused reader goes away without reading.
    await reader.destroy();
    await none('a reader that left its kept answer');
    // A worker killed while it holds a temp file: the file had no name left to leave behind.
    const last = pausedReader(mpx.port, '/big?kb=4096');
    await waitFor(() => openFilesUnder(worker, dir).length > 0, 'another answer kept in a file');
    process.kill(worker, 'SIGKILL');
    await last.destroy();
    assert.deepEqual(readdirSync(dir), [], 'nothing on disk after a worker was killed');
    await mpx.stop();
  });
});
