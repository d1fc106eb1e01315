import http from 'node:http';

export interface LoadResult {
  sent: number;
  ok: number;
  /** Every request that did not get a 200, with what happened instead. */
  failures: string[];
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
export function startLoad(port: number, options: { clients: number; path?: string }): Load {
  const result: LoadResult = { sent: 0, ok: 0, failures: [], pids: [], tags: new Set() };
  const seen = new Set<number>();
  let running = true;
  const agents: http.Agent[] = [];
  const loop = async (keepAlive: boolean): Promise<void> => {
    const agent = new http.Agent({ keepAlive, maxSockets: 1 });
    agents.push(agent);
    while (running) {
      result.sent++;
      try {
        const { status, body } = await get(port, options.path ?? '/?ms=5', agent);
        if (status !== 200) {
          result.failures.push(`${status}: ${body.slice(0, 200)}`);
          continue;
        }
        result.ok++;
        const answer = JSON.parse(body) as { pid: number; tag: string | null };
        if (!seen.has(answer.pid)) {
          seen.add(answer.pid);
          result.pids.push(answer.pid);
        }
        result.tags.add(answer.tag);
      } catch (err) {
        result.failures.push(`error: ${(err as Error).message}`);
      }
    }
  };
  const loops = Array.from({ length: options.clients }, (_, i) => loop(i % 2 === 0));
  return {
    result,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      for (const agent of agents) agent.destroy();
      return result;
    },
  };
}

function get(
  port: number,
  path: string,
  agent: http.Agent,
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
    req.setTimeout(20_000, () => req.destroy(new Error('no answer within 20 s')));
  });
}
