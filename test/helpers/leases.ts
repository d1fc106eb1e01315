import http from 'node:http';
import { request, type Answer } from './http.js';
import { parsePrometheus, sumOf } from './prometheus.js';

/** One kept-alive client connection: every request on it reaches the same front worker. */
export class Connection {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

  constructor(private readonly port: number) {}

  get(path: string, requestId: string): Promise<Answer> {
    return request(this.port, path, { agent: this.agent, headers: { 'x-request-id': requestId } });
  }

  close(): void {
    this.agent.destroy();
  }
}

/**
 * The primary's count of cluster messages by "direction type", from its /metrics. The scrape's
 * own metrics-request and metrics messages are left out: they are not the lease protocol's.
 */
export async function leaseMessages(
  adminPort: number,
  headers: Record<string, string>,
): Promise<Map<string, number>> {
  const samples = parsePrometheus((await request(adminPort, '/metrics', { headers })).body);
  const counts = new Map<string, number>();
  for (const s of samples) {
    if (s.name !== 'multiplexer_ipc_messages_total') continue;
    const type = s.labels.type ?? '';
    if (type === 'metrics' || type === 'metrics-request' || s.value === 0) continue;
    const k = `${s.labels.direction} ${type}`;
    counts.set(k, (counts.get(k) ?? 0) + s.value);
  }
  return counts;
}

/** Every message counted, batches aside (a batch is an envelope: its messages count each). */
export function totalMessages(counts: ReadonlyMap<string, number>): number {
  let total = 0;
  for (const [k, v] of counts) if (!k.endsWith(' batch')) total += v;
  return total;
}

export async function backendStarts(
  adminPort: number,
  headers: Record<string, string>,
): Promise<number> {
  const samples = parsePrometheus((await request(adminPort, '/metrics', { headers })).body);
  return sumOf(samples, 'multiplexer_backend_starts_total');
}
