/**
 * Micro-benchmark of the lease protocol over cluster IPC: checkout → granted → checkin, with the
 * real message codec and LeaseClient on both ends. The primary answers at once (no pool work),
 * so the figure is the cost of the channel and the codec alone. Run as the primary by the bench;
 * the same file is the forked worker.
 */
import cluster from 'node:cluster';
import { fileURLToPath } from 'node:url';
import { LeaseClient } from '../lib/ipc/lease-client.js';
import {
  decodePrimaryMessage,
  decodeWorkerMessage,
  NAMESPACE,
  type PrimaryMessage,
} from '../lib/ipc/protocol.js';

const SECONDS_ENV = 'MPX_BENCH_IPC_SECONDS';
const INFLIGHT_ENV = 'MPX_BENCH_IPC_INFLIGHT';

export interface IpcResult {
  readonly serialization: 'json' | 'advanced';
  readonly inflight: number;
  readonly roundTripsPerSecond: number;
}

async function workerMain(): Promise<void> {
  const seconds = Number(process.env[SECONDS_ENV]);
  const inflight = Number(process.env[INFLIGHT_ENV]);
  const leases = new LeaseClient((m) => process.send!(m));
  process.on('message', (raw) => {
    const decoded = decodePrimaryMessage(raw);
    const m = decoded.ok ? decoded.message : undefined;
    if (m?.type === 'granted' || m?.type === 'rejected') leases.settle(m);
  });
  let done = 0;
  const until = performance.now() + seconds * 1000;
  const loop = async (): Promise<void> => {
    while (performance.now() < until) {
      const result = await leases.checkout().result;
      if (result.status === 'granted') leases.checkin(result.lease, 'ok');
      done++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: inflight }, loop));
  const elapsed = (performance.now() - started) / 1000;
  process.send!({ done, elapsed }, () => process.exit(0));
}

export async function measureIpc(
  serialization: 'json' | 'advanced',
  inflight: number,
  seconds: number,
): Promise<IpcResult> {
  cluster.setupPrimary({ exec: fileURLToPath(import.meta.url), serialization, args: [] });
  const worker = cluster.fork({ [SECONDS_ENV]: String(seconds), [INFLIGHT_ENV]: String(inflight) });
  let lease = 0;
  return new Promise((resolve, reject) => {
    worker.on('message', (raw: unknown) => {
      const decoded = decodeWorkerMessage(raw);
      if (decoded.ok) {
        const m = decoded.message;
        if (m.type === 'checkout') {
          const reply: PrimaryMessage = {
            ns: NAMESPACE,
            type: 'granted',
            ack: m.seq,
            lease: ++lease,
            port: 10300,
            backend: 1,
            // Not held: each request is a round trip, which is what this measures.
            holdMs: 0,
            upTo: 0,
            passes: 0,
          };
          worker.send(reply);
        }
        return;
      }
      const { done, elapsed } = raw as { done: number; elapsed: number };
      resolve({ serialization, inflight, roundTripsPerSecond: done / elapsed });
    });
    worker.on('exit', (code) => code !== 0 && reject(new Error(`IPC worker exited with ${code}`)));
  });
}

if (cluster.isWorker) await workerMain();
