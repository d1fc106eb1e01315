import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { request } from '../helpers/http.js';
import {
  adminAuth,
  startWithAdmin,
  type AdminStatus,
  type LogRecord,
} from '../helpers/multiplexer.js';
import { parsePrometheus, sumOf, type Sample } from '../helpers/prometheus.js';
import { waitFor } from '../helpers/wait.js';

const TOKEN = 'scrape-me';
const auth = { authorization: `Bearer ${TOKEN}` };

async function scrape(adminPort: number): Promise<Sample[]> {
  const answer = await request(adminPort, '/metrics', { headers: auth });
  assert.equal(answer.status, 200, answer.body);
  assert.match(String(answer.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return parsePrometheus(answer.body);
}

describe('/metrics', () => {
  it('with 2 workers: Prometheus text whose counters match what the clients were sent, 502 and 503 included', async () => {
    const mpx = await startWithAdmin({
      pool_size: 1,
      pool_max_overflow: 0,
      queue_timeout_ms: 150,
      workers: 2,
      admin_token: TOKEN,
    });
    assert.equal((await request(mpx.adminPort, '/metrics')).status, 401, 'guarded by the token');

    // 20 on fresh connections: node's cluster spreads them over both workers.
    for (let i = 0; i < 20; i++) assert.equal((await request(mpx.port, `/?i=${i}`)).status, 200);
    // The pool's one backend busy for 800 ms: the next request waits 150 ms, then gets 503.
    const slow = request(mpx.port, '/?ms=800');
    await waitFor(
      async () => (await mpx.status()).backends[0]?.state === 'busy',
      'the backend busy',
    );
    const turnedAway = await request(mpx.port, '/?second');
    assert.equal(turnedAway.status, 503);
    assert.equal((await slow).status, 200);
    // A backend that answers 502 itself, and one that dies mid-request (multiplexer's 502).
    assert.equal((await request(mpx.port, '/status/502')).status, 502);
    // POST: never sent twice, so the crash is the client's 502 (a GET on a reused connection
    // would be sent again, find the port closed, and wait in the queue for another backend).
    const crashed = await request(mpx.port, '/crash', { method: 'POST' });
    assert.equal(crashed.status, 502);
    assert.equal(crashed.headers['x-multiplexer-error'], 'MPX_BACKEND_CRASHED');

    const sent = 24;
    let samples: Sample[] = [];
    await waitFor(async () => {
      samples = await scrape(mpx.adminPort);
      return (
        sumOf(samples, 'multiplexer_requests_total') === sent &&
        sumOf(samples, 'multiplexer_backend_starts_total') === 2
      );
    }, `multiplexer_requests_total to reach ${sent}, and the crashed backend's replacement`);
    assert.equal(sumOf(samples, 'multiplexer_requests_total', { code: '200' }), 21);
    assert.equal(sumOf(samples, 'multiplexer_requests_total', { code: '502' }), 2);
    assert.equal(sumOf(samples, 'multiplexer_requests_total', { code: '503' }), 1);
    assert.equal(sumOf(samples, 'multiplexer_rejections_total', { reason: 'queue_timeout' }), 1);
    assert.equal(sumOf(samples, 'multiplexer_request_duration_seconds_count'), sent);
    // Every request but the one turned away had a backend.
    assert.equal(sumOf(samples, 'multiplexer_queue_wait_seconds_count'), sent - 1);
    assert.equal(sumOf(samples, 'multiplexer_backend_service_seconds_count'), sent - 1);
    assert.equal(sumOf(samples, 'multiplexer_workers'), 2);
    assert.equal(sumOf(samples, 'multiplexer_queue_length'), 0);
    assert.equal(sumOf(samples, 'multiplexer_backend_exits_total', { reason: 'crash' }), 1);
    // The log's event names, counted: the same crash, the same rejection.
    const events = (event: string): number =>
      sumOf(samples, 'multiplexer_log_events_total', { event });
    assert.equal(events('backend.crashed'), 1);
    assert.equal(events('request.rejected'), 1);
    assert.equal(events('request.done'), sent - 1);
    assert.ok(
      samples.some((s) => s.name === 'multiplexer_backends' && s.labels.state === 'idle'),
      'backends by state',
    );
    // Node's own metrics, once per process: the primary and each worker.
    const processes = new Set(
      samples.filter((s) => s.name === 'nodejs_heap_size_used_bytes').map((s) => s.labels.process),
    );
    assert.equal(processes.size, 3, [...processes].join(', '));
    assert.ok(processes.has('primary'));
    // Both workers served (the counters are the sum of both).
    const perWorker = samples.filter(
      (s) => s.name === 'process_cpu_seconds_total' && s.labels.process?.startsWith('worker-'),
    );
    assert.equal(perWorker.length, 2);

    // /status reads the same counters.
    const status: AdminStatus = await mpx.status();
    assert.deepEqual(
      {
        requests: status.totals.requests,
        status502: status.totals.status502,
        status503: status.totals.status503,
        status504: status.totals.status504,
      },
      { requests: sent, status502: 2, status503: 1, status504: 0 },
    );
    // Only ours: no warning about messages on the cluster channel.
    assert.ok(!mpx.logs().some((r) => r.event === 'ipc.malformed'));
    // Every JSON line names each key once (a backend's pid is backend_pid, not a second "pid").
    for (const line of mpx
      .stderr()
      .split('\n')
      .filter((l) => l.startsWith('{'))) {
      const count = (v: unknown): number =>
        typeof v === 'object' && v !== null
          ? Object.entries(v).reduce((n, [, inner]) => n + 1 + count(inner), 0) -
            (Array.isArray(v) ? v.length : 0)
          : 0;
      const written = [...line.matchAll(/"(\w+)":/g)].length;
      assert.equal(written, count(JSON.parse(line)), `a key written twice: ${line.slice(0, 160)}`);
    }
    assert.equal((await mpx.stop()).code, 0);
  });
});

describe('metrics: false', () => {
  it('the front workers count nothing; the pool is still measured', async () => {
    const mpx = await startWithAdmin({ pool_size: 1, workers: 1, metrics: false });
    for (let i = 0; i < 3; i++) assert.equal((await request(mpx.port, '/')).status, 200);
    const scrape = async () =>
      parsePrometheus((await request(mpx.adminPort, '/metrics', { headers: adminAuth(mpx) })).body);
    // The worker holds the backend for its next request and says it is idle in its next report
    // (at once when it has not reported for a second, else within one).
    let samples = await scrape();
    await waitFor(
      async () =>
        sumOf((samples = await scrape()), 'multiplexer_backends', { state: 'idle' }) === 1,
      'the held backend to be reported idle',
    );
    assert.equal(sumOf(samples, 'multiplexer_requests_total'), 0);
    assert.equal(sumOf(samples, 'multiplexer_request_duration_seconds_count'), 0);
    assert.equal(sumOf(samples, 'multiplexer_backends', { state: 'idle' }), 1);
    assert.equal(sumOf(samples, 'multiplexer_workers'), 1);
    assert.equal((await mpx.status()).totals.requests, 0);
    assert.equal((await mpx.stop()).code, 0);
  });
});

describe('access log and X-Request-Id', () => {
  const FIELDS = ['time', 'worker', 'method', 'path', 'status', 'bytes', 'ms', 'queue_ms'];

  it('one line per request with its fields; the id is kept (from a trusted proxy) or made, sent to the backend and back', async () => {
    const mpx = await startWithAdmin({
      pool_size: 2,
      workers: 2,
      trusted_proxies: ['127.0.0.1/32'],
    });
    const given = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        request(mpx.port, `/given/${i}`, { headers: { 'x-request-id': `client-id-${i}` } }),
      ),
    );
    const made = await Promise.all(
      Array.from({ length: 5 }, (_, i) => request(mpx.port, `/made/${i}`)),
    );
    const longQuery = 'q='.padEnd(3000, 'x');
    const long = await request(mpx.port, `/long?${longQuery}`);
    const bad = await request(mpx.port, '/bad-id', { headers: { 'x-request-id': 'no spaces' } });

    for (const [i, answer] of given.entries()) {
      assert.equal(answer.headers['x-request-id'], `client-id-${i}`, 'returned to the client');
      const seen = JSON.parse(answer.body) as { headers: Record<string, string> };
      assert.equal(seen.headers['x-request-id'], `client-id-${i}`, 'forwarded to the backend');
      // Repeated headers of the backend's survive multiplexer's own (X-Request-Id) beside them.
      assert.deepEqual(answer.headers['set-cookie'], ['a=1', 'b=2']);
    }
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    const madeIds = new Set<string>();
    for (const answer of [...made, bad]) {
      const id = String(answer.headers['x-request-id']);
      assert.match(id, uuid);
      madeIds.add(id);
      const seen = JSON.parse(answer.body) as { headers: Record<string, string> };
      assert.equal(seen.headers['x-request-id'], id);
    }
    assert.equal(madeIds.size, 6, 'a new id for each');

    const lines = (): LogRecord[] => mpx.logs().filter((r) => r.event === 'request.done');
    await waitFor(() => lines().length === 12, 'twelve access log lines', 5000);
    for (const line of lines()) {
      for (const field of FIELDS) assert.ok(field in line, `${field} in ${JSON.stringify(line)}`);
      assert.equal(line.status, 200);
      assert.equal(typeof line.backend, 'number');
      assert.equal(typeof line.port, 'number');
      assert.equal(line.code, null);
      assert.ok((line.bytes as number) > 200, 'head and body counted');
      assert.ok((line.ms as number) >= (line.queue_ms as number));
    }
    const byId = new Map(lines().map((l) => [l.request_id as string, l]));
    assert.equal(byId.get('client-id-3')?.path, '/given/3');
    assert.equal(byId.get(String(made[1]!.headers['x-request-id']))?.path, '/made/1');
    const longLine = byId.get(String(long.headers['x-request-id']))!;
    assert.equal(longLine.path, `/long?${longQuery.slice(0, 1024)}…`, 'the query cut at 1 KB');
    assert.equal(new Set(lines().map((l) => l.worker)).size, 2, 'each line names its worker');
    assert.equal((await mpx.stop()).code, 0);
  });

  it("multiplexer's own answers are logged with their code; access_log: false logs no request", async () => {
    const mpx = await startWithAdmin({
      pool_size: 1,
      workers: 1,
      client_max_body_bytes: 10,
      access_log: false,
    });
    const big = await request(mpx.port, '/upload', { method: 'POST', body: 'x'.repeat(100) });
    assert.equal(big.status, 413);
    assert.match(String(big.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    assert.equal((await request(mpx.port, '/fine')).status, 200);
    await mpx.stop();
    assert.equal(mpx.logs().filter((r) => String(r.event).startsWith('request.')).length, 0);

    const logged = await startWithAdmin({ pool_size: 1, workers: 1, client_max_body_bytes: 10 });
    assert.equal(
      (await request(logged.port, '/upload', { method: 'POST', body: 'x'.repeat(100) })).status,
      413,
    );
    const line = await logged.waitForLog(
      (r) => r.event === 'request.rejected',
      'the access log line',
    );
    assert.equal(line.status, 413);
    assert.equal(line.code, 'MPX_BODY_TOO_LARGE');
    assert.equal(line.backend, null, 'no backend was used');
    assert.equal(line.queue_ms, null);
    assert.equal((await logged.stop()).code, 0);
  });
});
