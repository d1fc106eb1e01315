import http from 'node:http';
import { after } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

const running: Load[] = [];

// A test that fails midway still stops its clients, or they would spin against a dead port.
after(async () => {
  await Promise.all(running.map((l) => l.stop()));
});

export interface LoadResult {
  sent: number;
  ok: number;
  /** Every request that did not get a 200, with what happened instead. */
  failures: string[];
  /** The most requests one backend said it had served, this one included (counting fixture). */
  mostServed: number;
  /** Backend pids seen in answers, in order of first appearance. */
  pids: number[];
  /** The fixture's tag (code version) seen in answers. */
  tags: Set<string | null>;
}

export interface Load {
  /** Stops the loops once their current requests are answered; resolves with the tally. */
  stop(): Promise<LoadResult>;
  /** The tally so far. */
  readonly result: LoadResult;
}

/**
 * `clients` concurrent clients, each sending its next request as soon as the previous one is
 * answered, for as long as the load runs. Half use keep-alive connections (the hard case for a
 * draining front worker), half a fresh connection per request.
 */
export interface LoadOptions {
  clients: number;
  path?: string;
  /** Which clients keep their connection alive: every other one (default), all, or none. */
  keepAlive?: 'half' | 'all' | 'none';
  /** A request with no answer within this is counted as a hang (default 20 s). */
  timeoutMs?: number;
}

export function startLoad(port: number, options: LoadOptions): Load {
  const result: LoadResult = {
    sent: 0,
    ok: 0,
    failures: [],
    pids: [],
    tags: new Set(),
    mostServed: 0,
  };
  const seen = new Set<number>();
  let active = true;
  const agents: http.Agent[] = [];
  const loop = async (keepAlive: boolean): Promise<void> => {
    const agent = new http.Agent({ keepAlive, maxSockets: 1 });
    agents.push(agent);
    while (active) {
      result.sent++;
      try {
        const { status, body } = await get(
          port,
          options.path ?? '/?ms=5',
          agent,
          options.timeoutMs ?? 20_000,
        );
        if (status !== 200) {
          result.failures.push(`${status}: ${body.slice(0, 200)}`);
          continue;
        }
        result.ok++;
        const answer = JSON.parse(body) as { pid: number; tag: string | null; served?: number };
        result.mostServed = Math.max(result.mostServed, answer.served ?? 0);
        if (!seen.has(answer.pid)) {
          seen.add(answer.pid);
          result.pids.push(answer.pid);
        }
        result.tags.add(answer.tag);
      } catch (err) {
        result.failures.push(`error: ${(err as Error).message}`);
        // A refused connection fails at once: don't turn a dead port into a busy loop.
        await sleep(10);
      }
    }
  };
  const keepAlive = options.keepAlive ?? 'half';
  const loops = Array.from({ length: options.clients }, (_, i) =>
    loop(keepAlive === 'all' || (keepAlive === 'half' && i % 2 === 0)),
  );
  const load: Load = {
    result,
    stop: async () => {
      active = false;
      await Promise.all(loops);
      for (const agent of agents) agent.destroy();
      return result;
    },
  };
  running.push(load);
  return load;
}

function get(
  port: number,
  path: string,
  agent: http.Agent,
  timeoutMs: number,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(timeoutMs, () =>
      req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)),
    );
  });
}
