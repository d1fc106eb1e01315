/**
 * The messages between the primary (supervisor) and the front workers: the one source of truth.
 * Plain JSON objects with a namespace field (Node reserves `cmd: 'NODE_*'` for its own cluster
 * messages); requests carry an `id` that the reply echoes. Both sides validate what they receive.
 */
import type { ErrorCode } from '../errors.js';

export const NAMESPACE = 'mpx';

/** How a lease ended; see the pool's CheckinOutcome. */
export type CheckinOutcome = 'ok' | 'stuck' | 'broken' | 'refused' | 'bad-response' | 'abandoned';
const OUTCOMES = ['ok', 'stuck', 'broken', 'refused', 'bad-response', 'abandoned'] as const;

/** Front worker → primary. */
export type WorkerMessage =
  | { ns: typeof NAMESPACE; type: 'checkout'; id: number }
  /**
   * A checkout for a request whose granted backend refused the connection (so never saw it):
   * it goes to the head of the queue, not the end.
   */
  | { ns: typeof NAMESPACE; type: 'checkout-again'; id: number }
  | { ns: typeof NAMESPACE; type: 'cancel'; id: number }
  | { ns: typeof NAMESPACE; type: 'checkin'; lease: number; outcome: CheckinOutcome }
  /** The request on `lease` became an upgraded connection (101): held until it closes. */
  | { ns: typeof NAMESPACE; type: 'upgraded'; lease: number }
  | { ns: typeof NAMESPACE; type: 'drained'; complete: boolean }
  /** The reply to metrics-request `id`: this worker's prom-client registry as JSON. */
  | { ns: typeof NAMESPACE; type: 'metrics'; id: number; metrics: unknown[] };

/** Primary → front worker. */
export type PrimaryMessage =
  /** `backend` is the backend's id, for the access log; `port` is where to reach it. */
  | {
      ns: typeof NAMESPACE;
      type: 'granted';
      id: number;
      lease: number;
      port: number;
      backend: number;
    }
  | { ns: typeof NAMESPACE; type: 'rejected'; id: number; code: ErrorCode; message: string }
  | { ns: typeof NAMESPACE; type: 'drain' }
  /**
   * The backend on `port` was leased to another worker: close any idle keep-alive connection to it,
   * or a backend that serves one connection at a time would wait on it instead of the new one.
   */
  | { ns: typeof NAMESPACE; type: 'release'; port: number }
  /**
   * The backend held by the upgraded connection on `lease` is to retire (reload, shrink): the
   * worker closes that connection after shutdown_timeout_ms.
   */
  | { ns: typeof NAMESPACE; type: 'close-upgraded'; lease: number }
  /** A scrape of /metrics or /status: the worker answers with a 'metrics' message, same id. */
  | { ns: typeof NAMESPACE; type: 'metrics-request'; id: number };

type Shape = Record<string, 'number' | 'string' | 'boolean' | 'array' | readonly string[]>;

const workerShapes: Record<WorkerMessage['type'], Shape> = {
  checkout: { id: 'number' },
  'checkout-again': { id: 'number' },
  cancel: { id: 'number' },
  checkin: { lease: 'number', outcome: OUTCOMES },
  upgraded: { lease: 'number' },
  drained: { complete: 'boolean' },
  metrics: { id: 'number', metrics: 'array' },
};

const primaryShapes: Record<PrimaryMessage['type'], Shape> = {
  granted: { id: 'number', lease: 'number', port: 'number', backend: 'number' },
  rejected: { id: 'number', code: 'string', message: 'string' },
  drain: {},
  release: { port: 'number' },
  'close-upgraded': { lease: 'number' },
  'metrics-request': { id: 'number' },
};

/**
 * `foreign`: a message of another namespace on the same channel (prom-client's cluster
 * aggregation, node's own), not ours to judge: ignored quietly.
 */
export type Decoded<T> = { ok: true; message: T } | { ok: false; foreign: boolean; reason: string };

function decode<T>(raw: unknown, shapes: Record<string, Shape>): Decoded<T> {
  if (typeof raw !== 'object' || raw === null)
    return { ok: false, foreign: false, reason: 'not an object' };
  const message = raw as Record<string, unknown>;
  if (message.ns !== NAMESPACE)
    return { ok: false, foreign: true, reason: 'not a multiplexer message' };
  const type = message.type;
  const shape = typeof type === 'string' ? shapes[type] : undefined;
  if (!shape)
    return { ok: false, foreign: false, reason: `unknown message type ${JSON.stringify(type)}` };
  for (const [field, expected] of Object.entries(shape)) {
    const value = message[field];
    const fits =
      expected === 'array'
        ? Array.isArray(value)
        : typeof expected === 'string'
          ? typeof value === expected && (expected !== 'number' || Number.isSafeInteger(value))
          : typeof value === 'string' && expected.includes(value);
    if (!fits) {
      return {
        ok: false,
        foreign: false,
        reason: `${String(type)}.${field} must be ${String(expected)}, got ${JSON.stringify(value)}`,
      };
    }
  }
  return { ok: true, message: raw as T };
}

export function decodeWorkerMessage(raw: unknown): Decoded<WorkerMessage> {
  return decode<WorkerMessage>(raw, workerShapes);
}

export function decodePrimaryMessage(raw: unknown): Decoded<PrimaryMessage> {
  return decode<PrimaryMessage>(raw, primaryShapes);
}

/**
 * Compile-time exhaustiveness for message dispatch tables. The table is built once; what differs
 * per message (e.g. which worker sent it) travels as `context`.
 */
export type Handlers<M extends { type: string }, C = void> = {
  [K in M['type']]: (message: Extract<M, { type: K }>, context: C) => void;
};

export function dispatch<M extends { type: string }, C>(
  handlers: Handlers<M, C>,
  message: M,
  context: C,
): void {
  (handlers[message.type as M['type']] as (m: M, c: C) => void)(message, context);
}

/** The primary hands each front worker its validated config, as JSON data, in this variable at fork. */
export const WORKER_CONFIG_ENV = 'MULTIPLEXER_WORKER_CONFIG';

/** And the private directory (under the state directory) for bodies that outgrow memory. */
export const WORKER_BUFFER_DIR_ENV = 'MULTIPLEXER_WORKER_BUFFER_DIR';
