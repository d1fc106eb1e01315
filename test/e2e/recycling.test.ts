import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { request } from '../helpers/http.js';
import { startLoad } from '../helpers/load.js';
import { startWithAdmin, type LogRecord } from '../helpers/multiplexer.js';
import { waitFor } from '../helpers/wait.js';

/** Starts with the admin API and watches the fewest ready backends seen, every 20 ms. */
async function startWatched(config: Record<string, unknown>) {
  const mpx = await startWithAdmin(config);
  let fewestReady = Infinity;
  let watching = true;
  const status = () => mpx.status();
  const watcher = (async () => {
    while (watching) {
      const s = await status();
      const ready = s.backends.filter((b) => b.state === 'idle' || b.state === 'busy').length;
      fewestReady = Math.min(fewestReady, ready);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  return {
    mpx,
    status,
    stopWatching: async () => {
      watching = false;
      await watcher;
      return fewestReady;
    },
  };
}

const retired = (logs: LogRecord[], reason: string) =>
  logs.filter((r) => r.reason === reason).length;

describe('recycling', () => {
  it('service_max_requests is a limit: one client sending 120 requests in turn gets each backend for at most that many', async () => {
    const mpx = await startWithAdmin({ pool_size: 2, workers: 1, service_max_requests: 10 });
    const served = new Map<number, number>();
    for (let i = 0; i < 120; i++) {
      const answer = await request(mpx.port, `/n${i}`);
      assert.equal(answer.status, 200);
      const { pid } = JSON.parse(answer.body) as { pid: number };
      served.set(pid, (served.get(pid) ?? 0) + 1);
    }
    assert.ok(
      [...served.values()].every((n) => n <= 10),
      `requests per backend: ${[...served.values()].join(', ')}`,
    );
    assert.ok(served.size >= 12, `${served.size} backends served 120 requests`);
    assert.equal((await mpx.stop()).code, 0);
  });

  it('service_max_requests (with jitter) is a limit under load: no backend serves more, no request fails', async () => {
    const { mpx, stopWatching } = await startWatched({
      pool_size: 2,
      workers: 2,
      service_max_requests: 15,
      service_max_requests_jitter: 5,
    });
    const load = startLoad(mpx.port, { clients: 4 });
    await waitFor(() => retired(mpx.logs(), 'max-requests') >= 4, 'four recycles', 20_000);
    // The fourth replacement starts as the fourth backend retires: wait for its answers too.
    await waitFor(() => load.result.pids.length >= 6, 'answers from the replacements', 20_000);
    const result = await load.stop();
    await stopWatching();
    assert.deepEqual(result.failures, []);
    assert.ok(result.mostServed <= 20, `a backend served ${result.mostServed} (limit 15 + 5)`);
    assert.ok(result.pids.length >= 6, 'answers came from the replacements too');
    assert.match(
      mpx.logs().find((r) => r.reason === 'max-requests')!.msg,
      /served service_max_requests requests; recycled/,
    );
    assert.equal((await mpx.stop()).code, 0);
  });

  it('service_max_rss_mb recycles a backend whose memory grew, under load: pool_size stay ready, no request fails', async () => {
    const { mpx, status, stopWatching } = await startWatched({
      pool_size: 2,
      workers: 1,
      service_max_rss_mb: 150,
    });
    const before = await waitFor(async () => {
      const s = await status();
      return s.backends.every((b) => (b.rssBytes ?? 0) > 0) ? s : undefined;
    }, 'a memory reading of every backend');
    for (const b of before.backends) assert.ok(b.rssBytes! < 150 * 1024 * 1024);
    const load = startLoad(mpx.port, { clients: 3 });
    const grown = await request(mpx.port, '/grow?mb=160');
    assert.equal(grown.status, 200);
    await waitFor(() => retired(mpx.logs(), 'max-rss') === 1, 'the leaking backend to retire');
    const sent = load.result.sent;
    await waitFor(() => load.result.sent > sent + 20, 'load after the recycle');
    const result = await load.stop();
    const fewest = await stopWatching();
    assert.deepEqual(result.failures, []);
    assert.ok(fewest >= 2, `ready backends dropped to ${fewest}`);
    assert.equal((await mpx.stop()).code, 0);
  });
});
