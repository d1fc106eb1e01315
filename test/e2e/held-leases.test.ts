import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseFixture, type Answer } from '../helpers/http.js';
import { backendStarts, Connection, leaseMessages, totalMessages } from '../helpers/leases.js';
import { startLoad } from '../helpers/load.js';
import { startWithAdmin } from '../helpers/multiplexer.js';
import { waitFor } from '../helpers/wait.js';

const TOKEN = 'held';
const auth = { authorization: `Bearer ${TOKEN}` };

type Mpx = Awaited<ReturnType<typeof startWithAdmin>>;

/**
 * Opens kept-alive connections until two front workers each answered one; returns one
 * connection on each (the access log names the worker of each connection's first request).
 */
async function connectionsOnTwoWorkers(
  mpx: Mpx,
  opened: Connection[],
): Promise<[Connection, Connection]> {
  const byWorker = new Map<number, Connection>();
  for (let i = 0; i < 60 && byWorker.size < 2; i++) {
    const connection = new Connection(mpx.port);
    opened.push(connection);
    const id = `warm-${i}`;
    assert.equal((await connection.get('/', id)).status, 200);
    const line = await mpx.waitForLog(
      (r) => r.event === 'request.done' && r.request_id === id,
      `the access log line of ${id}`,
    );
    if (!byWorker.has(Number(line.worker))) byWorker.set(Number(line.worker), connection);
  }
  const [a, b] = [...byWorker.values()];
  assert.ok(a && b, 'connections on two front workers');
  return [a, b];
}

describe('held leases: no message per request in the steady state', () => {
  it('one worker, a steady load within pool_size: ~0 cluster messages per request', async (t) => {
    const mpx = await startWithAdmin({
      pool_size: 2,
      pool_max_overflow: 0,
      workers: 1,
      admin_token: TOKEN,
    });
    const load = startLoad(mpx.port, { clients: 2, path: '/' });
    try {
      // Past the first grants: the worker holds both backends.
      await waitFor(() => load.result.ok >= 50, 'the load under way');
      const before = totalMessages(await leaseMessages(mpx.adminPort, auth));
      const served = load.result.ok;
      await waitFor(() => load.result.ok >= served + 1500, '1,500 more answers', 30_000);
      const after = await leaseMessages(mpx.adminPort, auth);
      const requests = load.result.ok - served;
      const perRequest = (totalMessages(after) - before) / requests;
      t.diagnostic(
        `${totalMessages(after) - before} messages for ${requests} requests (${perRequest.toFixed(4)} a request): ${JSON.stringify([...after])}`,
      );
      assert.ok(perRequest <= 0.05, `${perRequest} messages a request`);
    } finally {
      const result = await load.stop();
      assert.deepEqual(result.failures, []);
    }
    // /status still counts what the held backends served (the worker's batched reports).
    await waitFor(
      async () =>
        (await mpx.status()).backends.reduce((n, b) => n + b.served, 0) >= load.result.ok - 2,
      '/status to count the requests served on held backends',
    );
    assert.equal((await mpx.stop()).code, 0);
  });

  it("a revoke reaching a worker that holds the backend idle is answered at once: the other worker's request gets it, and no backend starts for it", async (t) => {
    const mpx = await startWithAdmin({
      pool_size: 1,
      // Room to grow: a start would show the waiting request was not served by the revoke.
      pool_max_overflow: 2,
      workers: 2,
      admin_token: TOKEN,
      queue_timeout_ms: 0,
      trusted_proxies: ['127.0.0.1/32'],
    });
    const opened: Connection[] = [];
    try {
      const [a, b] = await connectionsOnTwoWorkers(mpx, opened);
      // Worker A uses the backend last and holds it idle.
      const held = parseFixture(await a.get('/', 'A-last'));
      const starts = await backendStarts(mpx.adminPort, auth);
      const before = await leaseMessages(mpx.adminPort, auth);
      const started = performance.now();
      const answer: Answer = await b.get('/', 'B');
      const ms = performance.now() - started;
      assert.equal(answer.status, 200);
      assert.equal(parseFixture(answer).pid, held.pid, 'the backend A held');
      const after = await leaseMessages(mpx.adminPort, auth);
      const delta = (k: string): number => (after.get(k) ?? 0) - (before.get(k) ?? 0);
      t.diagnostic(`B answered in ${ms.toFixed(1)} ms; messages: ${JSON.stringify([...after])}`);
      assert.equal(delta('out revoke'), 1, 'one revoke to worker A');
      assert.equal(delta('in revoked'), 1, 'confirmed');
      assert.ok(delta('in checkin') >= 1, 'worker A gave the backend back');
      assert.equal(await backendStarts(mpx.adminPort, auth), starts, 'no backend started');
    } finally {
      for (const c of opened) c.close();
    }
    assert.equal((await mpx.stop()).code, 0);
  });

  it("a request waiting in worker B is served before worker A's newer ones, though A holds the backend", async () => {
    const mpx = await startWithAdmin({
      pool_size: 1,
      pool_max_overflow: 0,
      workers: 2,
      admin_token: TOKEN,
      queue_timeout_ms: 0,
      trusted_proxies: ['127.0.0.1/32'],
    });
    const opened: Connection[] = [];
    try {
      const [a, b] = await connectionsOnTwoWorkers(mpx, opened);
      // A1 on worker A holds the only backend, busy; B1 comes, then A's newer requests.
      const queue = async (): Promise<number> => (await mpx.status()).queue;
      const first = a.get('/?ms=400', 'A1');
      await waitFor(
        async () => (await mpx.status()).backends.some((x) => x.state === 'busy'),
        'the backend busy with A1',
      );
      const b1 = b.get('/?ms=20', 'B1');
      await waitFor(async () => (await queue()) === 1, 'B1 waiting');
      // A's next request, on A's connection once A1 is answered: A holds the backend then, but
      // B1 came first.
      const a2 = first.then(() => a.get('/?ms=20', 'A2'));
      const answers = [await first, await b1, await a2];
      const served = answers.map((x) => parseFixture(x).served);
      assert.ok(served[1]! < served[2]!, `B1 (served #${served[1]}) before A2 (#${served[2]})`);
      assert.equal(served[1], served[0]! + 1, 'B1 right after A1');
    } finally {
      for (const c of opened) c.close();
    }
    assert.equal((await mpx.stop()).code, 0);
  });
});
