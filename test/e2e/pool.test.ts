import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseFixture, request } from '../helpers/http.js';
import { arrived, servicePids, startMultiplexer } from '../helpers/multiplexer.js';
import { waitFor } from '../helpers/wait.js';

describe('the pool, end to end', () => {
  it('30 concurrent requests through a pool of 3 + overflow 2: never two in flight on a backend, never more than 5 backends', async () => {
    const mpx = await startMultiplexer({ pool_size: 3, pool_max_overflow: 2, workers: 2 });
    let maxAlive = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        maxAlive = Math.max(maxAlive, servicePids(mpx).length);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        request(mpx.port, `/work?ms=${50 + (i % 5) * 20}&i=${i}`),
      ),
    );
    sampling = false;
    await sampler;
    assert.deepEqual(
      answers.map((a) => a.status),
      Array(30).fill(200),
    );
    const bodies = answers.map(parseFixture);
    const overlaps = bodies.filter((b) => b.atArrival !== 1);
    assert.deepEqual(overlaps, [], 'a backend saw a second request while one was in flight');
    const pids = new Set(bodies.map((b) => b.pid));
    assert.ok(pids.size > 3, `the pool grew beyond pool_size (backends used: ${pids.size})`);
    assert.ok(pids.size <= 5, `at most 5 backends served (got ${pids.size})`);
    assert.ok(maxAlive <= 5, `at most 5 backend processes alive at once (saw ${maxAlive})`);
    await waitFor(() => servicePids(mpx).length === 3, 'the pool to shrink back to 3');
    assert.equal((await mpx.stop()).code, 0);
  });

  for (const strategy of ['fifo', 'lifo'] as const) {
    it(`pool_size 1 + overflow 2 under ${strategy}: two concurrent requests start a second backend; afterwards the ${strategy === 'fifo' ? 'newer' : 'older'} process remains`, async () => {
      const mpx = await startMultiplexer({
        pool_size: 1,
        pool_max_overflow: 2,
        pool_strategy: strategy,
        workers: 2,
      });
      const original = mpx.ready.backends[0]!;
      const servicePidsAtStart = servicePids(mpx);
      assert.equal(servicePidsAtStart.length, 1);
      const [a, b] = await Promise.all([
        request(mpx.port, '/?ms=400'),
        request(mpx.port, '/?ms=400'),
      ]);
      const served = [parseFixture(a).pid, parseFixture(b).pid];
      assert.equal(new Set(served).size, 2, 'the two requests ran on two backends');
      const overflowPid = served.find((pid) => pid !== servicePidsAtStart[0])!;
      const survivor = await waitFor(() => {
        const alive = servicePids(mpx);
        return alive.length === 1 ? alive[0] : undefined;
      }, 'the pool to shrink back to pool_size');
      assert.equal(survivor, strategy === 'fifo' ? overflowPid : servicePidsAtStart[0]);
      const retired = await mpx.waitForLog((r) => r.reason === 'shrink', 'the shrink log line');
      assert.equal(retired.backend, strategy === 'fifo' ? original.id : 2);
      assert.equal((await mpx.stop()).code, 0);
    });
  }

  it('pool_overflow_idle_ms: clients that come straight back keep the overflow backends; idle, they go', async () => {
    const mpx = await startMultiplexer({
      pool_size: 1,
      pool_max_overflow: 2,
      workers: 1,
      pool_overflow_idle_ms: 1500,
    });
    // Three clients, each sending its next request as soon as it has the last answer, for 1.2 s.
    const until = Date.now() + 1200;
    await Promise.all(
      Array.from({ length: 3 }, async (_, c) => {
        for (let i = 0; Date.now() < until; i++) {
          assert.equal((await request(mpx.port, `/?ms=20&c=${c}&i=${i}`)).status, 200);
        }
      }),
    );
    const starts = (): number => mpx.logs().filter((r) => r.event === 'backend.starting').length;
    assert.equal(starts(), 3, 'one start per backend: none retired and started again meanwhile');
    // Idle for the grace, the two beyond pool_size retire.
    await waitFor(() => servicePids(mpx).length === 1, 'the pool back at pool_size');
    // The processes are seen gone through /proc; the log lines reach this process through a
    // pipe, which under load it may not have read yet.
    await waitFor(
      () => mpx.logs().filter((r) => r.event === 'backend.stopping').length === 2,
      'two backend.stopping lines',
    );
    assert.equal(starts(), 3);
    assert.equal((await mpx.stop()).code, 0);
  });

  it('a request waiting longer than queue_timeout_ms gets 503 with Retry-After', async () => {
    const mpx = await startMultiplexer({
      pool_size: 1,
      pool_max_overflow: 0,
      queue_timeout_ms: 300,
      workers: 1,
    });
    const busy = request(mpx.port, '/busy?ms=1500');
    await arrived(mpx, '/busy');
    const late = await request(mpx.port, '/late');
    assert.equal(late.status, 503);
    assert.equal(late.headers['retry-after'], '1');
    assert.equal(late.headers['x-multiplexer-error'], 'MPX_QUEUE_TIMEOUT');
    assert.match(
      late.body,
      /^503 Service Unavailable: no backend became free within queue_timeout_ms/,
    );
    assert.ok(late.ms >= 250, `rejected after waiting (${late.ms} ms)`);
    assert.equal((await busy).status, 200);
    await mpx.stop();
  });

  it('beyond queue_max, a request gets 503 at once', async () => {
    const mpx = await startMultiplexer({
      pool_size: 1,
      pool_max_overflow: 0,
      queue_max: 1,
      queue_timeout_ms: 0,
      workers: 2,
    });
    const busy = request(mpx.port, '/busy?ms=1500');
    await arrived(mpx, '/busy');
    // One of these two waits (queue_max 1), the other finds the queue full, whichever is first.
    const [second, third] = await Promise.all([
      request(mpx.port, '/second'),
      request(mpx.port, '/third'),
    ]);
    const statuses = [second.status, third.status].sort();
    assert.deepEqual(statuses, [200, 503]);
    const rejected = second.status === 503 ? second : third;
    assert.equal(rejected.headers['x-multiplexer-error'], 'MPX_QUEUE_FULL');
    assert.ok(
      rejected.ms < 1000,
      `rejected at once (${rejected.ms} ms), not after the busy request`,
    );
    assert.equal((await busy).status, 200);
    await mpx.stop();
  });

  it('a client that disconnects while waiting leaves the queue and consumes no backend', async () => {
    const mpx = await startMultiplexer(
      { pool_size: 1, pool_max_overflow: 0, workers: 1 },
      { env: { MULTIPLEXER_LOG_LEVEL: 'debug' } },
    );
    const first = request(mpx.port, '/first?ms=800');
    await arrived(mpx, '/first');
    const abort = new AbortController();
    const gone = request(mpx.port, '/gone', { signal: abort.signal }).catch((err: Error) => err);
    await mpx.waitForLog((r) => r.event === 'request.queued', 'the request to be queued');
    abort.abort();
    assert.ok((await gone) instanceof Error);
    const firstBody = parseFixture(await first);
    const next = parseFixture(await request(mpx.port, '/next'));
    assert.equal(next.pid, firstBody.pid);
    assert.equal(
      next.served,
      firstBody.served + 1,
      'the abandoned request never reached the backend',
    );
    assert.ok(!mpx.logs().some((r) => r.stream === 'stdout' && r.msg.includes('/gone')));
    await mpx.stop();
  });
});
