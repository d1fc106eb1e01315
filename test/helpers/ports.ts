import { createServer } from 'node:net';
import { canBind } from '../../lib/supervisor/port-ring.js';

/** An ephemeral port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * `count` consecutive free ports for backends, below Linux's ephemeral range (32768+) so outgoing
 * connections never take them meanwhile.
 */
export async function freePortRange(count: number): Promise<{ first: number; last: number }> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = 15000 + Math.floor(Math.random() * (32000 - 15000 - count));
    const ports = Array.from({ length: count }, (_, i) => first + i);
    const free = await Promise.all(ports.map((p) => canBind('127.0.0.1', p)));
    if (free.every(Boolean)) return { first, last: first + count - 1 };
  }
  throw new Error(`no ${count} consecutive free ports found`);
}
