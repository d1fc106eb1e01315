import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { describe, it } from 'node:test';
import { parseFixture, request, uploadChunked } from '../helpers/http.js';
import { arrived, fixtureCommand, servicePids, startMultiplexer } from '../helpers/multiplexer.js';

describe('the proxy, end to end', () => {
  it('is transparent: method, path, query, headers with Host, body, status line and headers', async () => {
    const mpx = await startMultiplexer({ pool_size: 1, workers: 1 });
    const body = 'x'.repeat(10_000);
    const answer = await request(mpx.port, '/some/path?q=1&r=%20two', {
      method: 'PUT',
      headers: {
        host: 'app.example.test:8443',
        'x-custom': 'kept',
        'x-forwarded-for': '203.0.113.9',
        'content-type': 'text/plain',
      },
      body,
    });
    assert.equal(answer.status, 200);
    assert.equal(answer.statusMessage, 'Fixture Says');
    const cookies = answer.rawHeaders.filter(
      (_, i, all) => i % 2 === 1 && all[i - 1] === 'Set-Cookie',
    );
    assert.deepEqual(cookies, ['a=1', 'b=2'], 'repeated headers pass through, in order, case kept');
    const seen = parseFixture(answer);
    assert.equal(seen.method, 'PUT');
    assert.equal(seen.url, '/some/path?q=1&r=%20two');
    assert.equal(seen.headers.host, 'app.example.test:8443');
    assert.equal(seen.headers['x-custom'], 'kept');
    // multiplexer is the edge: a client's own X-Forwarded-For is replaced, not extended.
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen.headers['x-forwarded-host'], 'app.example.test:8443');
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.bytes, body.length);
    assert.equal(seen.sha256, createHash('sha256').update(body).digest('hex'));
    assert.equal(answer.headers['x-backend-pid'], String(seen.pid));
    await mpx.stop();
  });

  it("passes a backend's own error status through unchanged", async () => {
    const mpx = await startMultiplexer({ pool_size: 1, workers: 1 });
    const answer = await request(mpx.port, '/status/500');
    assert.equal(answer.status, 500);
    assert.equal(answer.statusMessage, 'Fixture Says');
    assert.equal(answer.headers['x-multiplexer-error'], undefined);
    assert.equal(parseFixture(answer).url, '/status/500');
    await mpx.stop();
  });

  it('with buffer_requests: false, streams a large chunked upload through; answers stream back as they are produced', async () => {
    const mpx = await startMultiplexer({ pool_size: 1, workers: 1, buffer_requests: false });
    const chunk = Buffer.alloc(1 << 20, 7);
    const { seen, sentSha256 } = await uploadChunked(mpx.port, '/upload', Array(24).fill(chunk));
    assert.equal(seen.bytes, 24 << 20);
    assert.equal(seen.sha256, sentSha256);
    assert.equal(seen.headers['transfer-encoding'], 'chunked');

    const started = Date.now();
    const firstChunkAt = await new Promise<number>((resolve, reject) => {
      http
        .get(
          { host: '127.0.0.1', port: mpx.port, path: '/stream?pause=1000', agent: false },
          (res) => {
            res.once('data', () => resolve(Date.now() - started));
            res.resume();
          },
        )
        .on('error', reject);
    });
    assert.ok(
      firstChunkAt < 800,
      `the first chunk arrived before the backend finished (${firstChunkAt} ms)`,
    );
    await mpx.stop();
  });

  it('a client that leaves mid-request: the backend finishes (answer discarded) before it serves anyone else', async () => {
    const mpx = await startMultiplexer({ pool_size: 1, pool_max_overflow: 0, workers: 2 });
    const abort = new AbortController();
    const left = request(mpx.port, '/left?ms=800', { signal: abort.signal }).catch((e: Error) => e);
    await arrived(mpx, '/left');
    abort.abort();
    assert.ok((await left) instanceof Error);
    const next = await request(mpx.port, '/next');
    const seen = parseFixture(next);
    assert.equal(
      seen.atArrival,
      1,
      'the next request arrived while the backend still worked on the first',
    );
    // The backend's output reaches the log on its own path: wait for the line, then compare.
    await arrived(mpx, '/next');
    const logs = mpx.logs().map((r) => r.msg);
    const finished = logs.indexOf('finished GET /left?ms=800');
    assert.ok(finished >= 0 && finished < logs.indexOf('arrived GET /next'));
    assert.equal(servicePids(mpx).length, 1, 'the backend was returned, not replaced');
    await mpx.stop();
  });

  it('a simple sequential HTTP/1.0 backend (one connection at a time) is never stalled', async () => {
    const mpx = await startMultiplexer({
      pool_size: 2,
      pool_max_overflow: 0,
      workers: 2,
      http_proxy_timeout: 5000,
      service_start_process_cmd: fixtureCommand('sequential-service.mjs', '{marker}'),
    });
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) => request(mpx.port, `/seq?ms=10&i=${i}`)),
    );
    assert.deepEqual(
      answers.map((a) => a.status),
      Array(40).fill(200),
    );
    // Keep-alive from the client side: several requests on one connection still reach the backend.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = 0; i < 5; i++) {
      const status = await new Promise<number>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: mpx.port, path: `/ka?i=${i}`, agent }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          })
          .on('error', reject);
      });
      assert.equal(status, 200);
    }
    agent.destroy();
    await mpx.stop();
  });

  it('reuses a kept-alive connection to a backend for the next request of the same worker', async () => {
    const mpx = await startMultiplexer({
      pool_size: 1,
      workers: 1,
      service_start_process_cmd: fixtureCommand('sequential-service.mjs', '{marker}', ' keepalive'),
    });
    const connections: number[] = [];
    for (let i = 0; i < 5; i++) {
      const answer = await request(mpx.port, `/reuse?i=${i}`);
      assert.equal(answer.status, 200);
      connections.push((JSON.parse(answer.body) as { connection: number }).connection);
    }
    // (Its first connection was the readiness probe's: connection numbers start after it.)
    assert.equal(new Set(connections).size, 1, 'one backend connection served them all');
    await mpx.stop();
  });

  it('a single-threaded keep-alive backend is never stalled by an idle connection of another worker', async () => {
    // One backend, two workers: each new client connection goes to whichever worker accepts it
    // first, so over 20 of them the backend changes hands many times. If the last worker kept its
    // idle connection open, the backend would wait on it forever and the next request would time
    // out with a 504.
    const mpx = await startMultiplexer({
      pool_size: 1,
      workers: 2,
      http_proxy_timeout: 5000,
      service_start_process_cmd: fixtureCommand('sequential-service.mjs', '{marker}', ' keepalive'),
    });
    const connections = new Set<number>();
    for (let i = 0; i < 20; i++) {
      const answer = await request(mpx.port, `/alternate?i=${i}`);
      assert.equal(answer.status, 200, `request ${i}: ${answer.body}`);
      connections.add((JSON.parse(answer.body) as { connection: number }).connection);
    }
    assert.ok(connections.size > 1, 'both workers connected to the backend');
    await mpx.stop();
  });

  it('a kept-alive connection the backend drops on reuse: a request without a body is sent again, one with a body never goes on a reused connection', async () => {
    const mpx = await startMultiplexer({
      pool_size: 1,
      workers: 1,
      service_start_process_cmd: fixtureCommand(
        'sequential-service.mjs',
        '{marker}',
        ' keepalive dropreuse',
      ),
    });
    const connectionOf = (a: { body: string }): number =>
      (JSON.parse(a.body) as { connection: number }).connection;
    const first = await request(mpx.port, '/first');
    assert.equal(first.status, 200);
    // Goes out on the kept connection, which the backend drops: sent again on a new one.
    const second = await request(mpx.port, '/second');
    assert.equal(second.status, 200, second.body);
    assert.equal(connectionOf(second), connectionOf(first) + 1);
    // A body is never risked on a reused connection (it could not be sent twice).
    const post = await request(mpx.port, '/post', { method: 'POST', body: 'payload' });
    assert.equal(post.status, 200, post.body);
    assert.equal(connectionOf(post), connectionOf(second) + 1);
    await mpx.stop();
  });

  it('answers an HTTP/1.0 client with a well-framed response', async () => {
    const mpx = await startMultiplexer({ pool_size: 1, workers: 1 });
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(mpx.port, '127.0.0.1', () => {
        socket.write('GET /old HTTP/1.0\r\nHost: legacy\r\n\r\n');
      });
      let text = '';
      socket.setEncoding('utf8').on('data', (c: string) => (text += c));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    assert.match(raw, /^HTTP\/1\.1 200 Fixture Says\r\n/);
    const seen = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as {
      url: string;
      headers: Record<string, string>;
    };
    assert.equal(seen.url, '/old');
    assert.equal(seen.headers.host, 'legacy');
    await mpx.stop();
  });

  it('a backend that stops listening after it was ready: its requests go to another backend, never a 502', async () => {
    // The fixture's /close-listener stops accepting connections but stays alive.
    const mpx = await startMultiplexer({
      pool_size: 2,
      workers: 1,
      service_start_timeout_ms: 1000,
      service_start_process_cmd: fixtureCommand('banner-service.mjs', '{marker}', ' 0'),
    });
    const first = await request(mpx.port, '/close-listener');
    assert.equal(first.status, 200);
    const deaf = (JSON.parse(first.body) as { pid: number }).pid;
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) => request(mpx.port, `/after?i=${i}`)),
    );
    for (const a of answers) assert.equal(a.status, 200, a.body);
    assert.ok(answers.every((a) => (JSON.parse(a.body) as { pid: number }).pid !== deaf));
    await mpx.waitForLog((r) => r.reason === 'start-timeout', 'the deaf backend to be replaced');
    const why = mpx.logs().find((r) => r.reason === 'start-timeout')!;
    assert.match(why.msg, /its port never accepted a connection in 1000 ms/);
    assert.equal((await mpx.stop()).code, 0);
  });
});
