import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseFixture, request, type Answer } from '../helpers/http.js';
import { Connection, leaseMessages as allMessages } from '../helpers/leases.js';
import { startWithAdmin } from '../helpers/multiplexer.js';
import { waitFor } from '../helpers/wait.js';

const TOKEN = 'sticky';
const auth = { authorization: `Bearer ${TOKEN}` };

/** The lease protocol's messages, by "direction type", from the primary's /metrics. */
const leaseMessages = (adminPort: number) => allMessages(adminPort, auth);

describe('sticky leases, end to end', () => {
  it('uncontended, a worker hands its backend from one request to the next without a round trip through the primary', async () => {
    const mpx = await startWithAdmin({
      pool_size: 1,
      pool_max_overflow: 0,
      workers: 1,
      admin_token: TOKEN,
    });
    const n = 20;
    const answers = await Promise.all(
      Array.from({ length: n }, (_, i) => request(mpx.port, `/?ms=20&i=${i}`)),
    );
    assert.deepEqual(
      answers.map((a) => a.status),
      Array(n).fill(200),
    );
    const overlaps = answers.map(parseFixture).filter((b) => b.atArrival !== 1);
    assert.deepEqual(overlaps, [], 'a backend saw a second request while one was in flight');
    const counts = await leaseMessages(mpx.adminPort);
    const get = (k: string): number => counts.get(k) ?? 0;
    assert.equal(get('in checkout'), n, JSON.stringify([...counts]));
    // Every request got its backend one way or the other: a grant (a round trip) or a pass.
    assert.equal(get('out granted') + get('in pass'), n, JSON.stringify([...counts]));
    assert.ok(
      get('in pass') >= n - 5,
      `most requests were passed on: ${JSON.stringify([...counts])}`,
    );
    let total = 0;
    for (const v of counts.values()) total += v;
    // checkout + pass: 2 messages a request, against 3 (checkout, granted, checkin) without passes.
    assert.ok(
      total / n <= 2.3,
      `${total / n} lease messages a request: ${JSON.stringify([...counts])}`,
    );
    assert.equal((await mpx.stop()).code, 0);
  });

  it('a request waiting in worker B is served before newer requests waiting in worker A', async () => {
    const mpx = await startWithAdmin({
      pool_size: 1,
      pool_max_overflow: 0,
      workers: 2,
      admin_token: TOKEN,
      queue_timeout_ms: 0,
      // This test names its requests by X-Request-Id, taken only from a trusted proxy.
      trusted_proxies: ['127.0.0.1/32'],
    });
    const status = async (): Promise<{ queue: number; busy: boolean }> => {
      const s = await mpx.status();
      return { queue: s.queue, busy: s.backends.some((b) => b.state === 'busy') };
    };
    // Open connections until two front workers hold them: three on one, one on the other. The
    // access log says which worker answered each connection's first request.
    const byWorker = new Map<number, Connection[]>();
    const opened: Connection[] = [];
    try {
      for (let i = 0; i < 60; i++) {
        const connection = new Connection(mpx.port);
        opened.push(connection);
        const id = `warm-${i}`;
        assert.equal((await connection.get('/', id)).status, 200);
        const line = await mpx.waitForLog(
          (r) => r.event === 'request.done' && r.request_id === id,
          `the access log line of ${id}`,
        );
        const worker = Number(line.worker);
        byWorker.set(worker, [...(byWorker.get(worker) ?? []), connection]);
        const sizes = [...byWorker.values()].map((c) => c.length).sort((a, b) => b - a);
        if (sizes.length >= 2 && sizes[0]! >= 3) break;
      }
      const [a, b] = [...byWorker.entries()].sort((x, y) => y[1].length - x[1].length);
      assert.ok(a && b && a[1].length >= 3, 'connections on both front workers');
      const [a1, a2, a3] = a[1] as [Connection, Connection, Connection];
      const b1 = b[1][0]!;

      // A1 holds the only backend; then A2, B1, A3 wait, in that order.
      const first = a1.get('/?ms=400', 'A1');
      await waitFor(async () => (await status()).busy, 'the backend busy with A1');
      const waiting: Promise<Answer>[] = [];
      for (const [connection, id] of [
        [a2, 'A2'],
        [b1, 'B1'],
        [a3, 'A3'],
      ] as const) {
        waiting.push(connection.get('/?ms=30', id));
        const queued = waiting.length;
        await waitFor(async () => (await status()).queue === queued, `${id} waiting`);
      }
      const answers = [await first, ...(await Promise.all(waiting))];
      const order = answers
        .map((answer, i) => ({
          id: ['A1', 'A2', 'B1', 'A3'][i]!,
          served: parseFixture(answer).served,
        }))
        .sort((x, y) => x.served - y.served)
        .map((x) => x.id);
      assert.deepEqual(order, ['A1', 'A2', 'B1', 'A3'], 'served in the order they came');
      const counts = await leaseMessages(mpx.adminPort);
      assert.ok(
        (counts.get('in pass') ?? 0) >= 1,
        `A1 passed its backend to A2: ${JSON.stringify([...counts])}`,
      );
      assert.ok((counts.get('in revoked') ?? 0) >= 1, 'worker A confirmed the revoke');
    } finally {
      for (const c of opened) c.close();
    }
    assert.equal((await mpx.stop()).code, 0);
  });
});
