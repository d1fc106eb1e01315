/**
 * Starts bench/slow-clients.py (see there why the slow clients are Python: a small SO_RCVBUF) and
 * stops it, collecting how many answers the slow clients read in full.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './contestants.js';

export interface SlowClients {
  /** Stops them; resolves with the answers they read in full, and the failures. */
  stop(): Promise<{ answers: number; errors: number }>;
}

export function startSlowClients(
  port: number,
  count: number,
  bytesPerSecond: number,
  path: string,
): SlowClients {
  const child = spawn(
    'python3',
    [
      join(ROOT, 'bench/slow-clients.py'),
      String(port),
      String(count),
      String(bytesPerSecond),
      path,
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    stop: async () => {
      child.stdin.end();
      await exited;
      return JSON.parse(out) as { answers: number; errors: number };
    },
  };
}
