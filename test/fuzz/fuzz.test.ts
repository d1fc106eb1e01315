import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { readProcessTable } from '../../lib/supervisor/process-table.js';
import { fixtureCommand, startWithAdmin, type Running } from '../helpers/multiplexer.js';
import type { AdminStatus } from '../helpers/multiplexer.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';
import {
  backendCase,
  clientCase,
  renderBackend,
  renderClient,
  wellFormedAnswer,
  wellFormedRequest,
  type BackendCase,
  type ClientCase,
  type SentRequest,
} from './cases.js';
import { readAnswers } from './wire.js';

/**
 * Both edges of the proxy under generated inputs (fast-check, with shrinking): raw client
 * requests, valid and mutated, against a scripted raw backend whose answers are generated too.
 * After every case: no multiplexer process died; no client got another request's answer; every
 * client got complete answers or a close, never a hang; the backend never had two requests at
 * once, nor a request the client did not send; well-formed exchanges arrive exactly as sent; the
 * pool is back at pool_size idle backends.
 *
 * MPX_FUZZ_SECONDS (default 60) is split between a fixed seed and a random one, both printed:
 * MPX_FUZZ_SEED=<seed> replays one. `npm run test:fuzz` runs it for 10 minutes.
 */
const SECONDS = Number(process.env.MPX_FUZZ_SECONDS ?? 60);
const FIXED_SEED = 20261202;
const PROXY_TIMEOUT_MS = 1500;

interface Edge {
  readonly mpx: Running & { status(): Promise<AdminStatus> };
  readonly worker: () => number;
}

interface Totals {
  cases: number;
  wellFormed: number;
  statuses: Map<string, number>;
}

const scripts = tempDir().dir;
mkdirSync(scripts, { recursive: true });
let edges: { buffered: Edge; streaming: Edge };
/** Every request any case sent, by id: what the backend may see. */
const sentById = new Map<string, SentRequest>();
let counter = 0;

async function startEdge(bufferRequests: boolean): Promise<Edge> {
  const mpx = await startWithAdmin({
    service_start_process_cmd: `${fixtureCommand('scripted-service.mjs', '{marker}')} ${scripts}`,
    pool_size: 2,
    workers: 1,
    buffer_requests: bufferRequests,
    http_proxy_timeout: PROXY_TIMEOUT_MS,
    client_timeout_ms: PROXY_TIMEOUT_MS,
    queue_timeout_ms: 10_000,
    service_start_timeout_ms: 5000,
    shutdown_timeout_ms: 2000,
    access_log: false,
  });
  const worker = (): number => {
    const child = readProcessTable({ commandLines: true }).find(
      (p) => p.ppid === mpx.pid && p.commandLine.includes('worker/main.js'),
    );
    return child?.pid ?? -1;
  };
  return { mpx, worker };
}

/** How long a client may wait for its answers or a close: past it, the proxy hung. */
const HANG_MS = PROXY_TIMEOUT_MS * 3 + 3000;

/**
 * Sends the bytes. A cut case then half-closes or resets, as a client that leaves; otherwise the
 * client waits for an answer to each request it sent (or a 101) or for the server to close, then
 * closes itself. (A client's FIN right after its request is an abort to node, as to nginx.)
 */
function exchange(
  port: number,
  bytes: Buffer,
  sent: readonly SentRequest[],
  cut: ClientCase['cut'],
): Promise<{ received: Buffer; closed: boolean; hung: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let closed = false;
    let hung = false;
    const methods = sent.map((s) => s.method);
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      if (cut) return;
      const read = readAnswers(Buffer.concat(chunks), methods, false);
      const upgraded = read.answers.some((a) => a.status === 101);
      if (read.answers.length >= sent.length || upgraded) socket.end();
    });
    socket.on('error', () => undefined);
    const deadline = setTimeout(() => {
      hung = true;
      socket.destroy();
    }, HANG_MS);
    socket.once('close', () => {
      clearTimeout(deadline);
      resolve({ received: Buffer.concat(chunks), closed, hung });
    });
    socket.once('end', () => (closed = true));
    socket.once('connect', () => {
      socket.write(bytes, () => {
        if (!cut) return;
        if (cut.reset) socket.resetAndDestroy();
        else socket.end();
      });
    });
  });
}

function isSettled(status: AdminStatus): boolean {
  return (
    status.queue === 0 &&
    status.backends.length === 2 &&
    status.backends.every((b) => b.state === 'idle')
  );
}

async function runCase(client: ClientCase, backend: BackendCase, totals: Totals): Promise<void> {
  const edge = client.streaming ? edges.streaming : edges.buffered;
  const id = `c${++counter}`;
  const workerBefore = edge.worker();
  const deathsBefore = edge.mpx.logs().filter((r) => r.event === 'worker.died').length;
  const { bytes: answer, closes } = renderBackend(backend, id);
  writeFileSync(join(scripts, id), answer);
  if (closes) writeFileSync(join(scripts, `${id}.close`), '');
  const { bytes, sent } = renderClient(client, id);
  for (const s of sent) sentById.set(s.id, s);
  const reset = client.cut?.reset ?? false;
  const { received, closed, hung } = await exchange(edge.mpx.port, bytes, sent, client.cut);
  assert.ok(!hung, `neither complete answers nor a close within ${HANG_MS} ms`);

  // No process died.
  assert.equal(edge.worker(), workerBefore, 'the front worker is the same process');
  assert.equal(
    edge.mpx.logs().filter((r) => r.event === 'worker.died').length,
    deathsBefore,
    'no worker.died',
  );
  assert.equal(edge.mpx.proc.exitCode, null, 'the primary lives');

  // Complete answers or a close; no answer of another request.
  const methods = sent.map((s) => s.method);
  const read = readAnswers(received, methods, closed || reset);
  for (const [i, a] of read.answers.entries()) {
    const key = `${a.status}`;
    totals.statuses.set(key, (totals.statuses.get(key) ?? 0) + 1);
    const answerFor = a.headers.get('x-answer-for')?.[0];
    const expected = sent[i]?.id;
    if (answerFor !== undefined) assert.equal(answerFor, expected, `answer ${i} is its request's`);
    if (a.status === 200 && a.headers.get('content-type')?.[0] === 'application/json') {
      const named = (JSON.parse(a.body.toString() || '{}') as { id?: string }).id;
      if (named !== undefined) assert.equal(named, expected, `answer ${i}'s body is its request's`);
    }
    const requestId = a.headers.get('x-request-id')?.[0];
    if (expected !== undefined) {
      assert.notEqual(requestId, expected, 'an id from an untrusted client is not taken');
    }
  }

  // A request node and the proxy must take is never refused as malformed.
  if (wellFormedRequest(client)) {
    const first = read.answers[0];
    if (first && first.headers.get('x-answer-for') === undefined) {
      assert.ok(
        first.status !== 400 && first.status !== 431,
        `a well-formed request refused: ${first.status} ${first.body.toString().slice(0, 200)}`,
      );
    }
  }

  // Well-formed both ways: the status and the body as the backend sent them.
  if (wellFormedRequest(client) && wellFormedAnswer(backend, client.method)) {
    totals.wellFormed++;
    const first = read.answers[0];
    assert.ok(first, `an answer to a well-formed exchange (${received.length} bytes)`);
    assert.equal(first.status, backend.status);
    const bodyless = client.method === 'HEAD' || backend.status === 204 || backend.status === 304;
    assert.deepEqual(first.body, bodyless ? Buffer.alloc(0) : Buffer.from(backend.body));
    assert.equal(read.answers.length, sent.length, 'every pipelined request answered');
  }

  // The pool returns to pool_size idle backends.
  let last: AdminStatus | undefined;
  await waitFor(
    async () => isSettled((last = await edge.mpx.status())),
    'the pool back at pool_size idle backends',
    15_000,
  ).catch((err: Error) => {
    const recent = edge.mpx
      .logs()
      .filter((r) => r.level >= 40 || String(r.event).startsWith('backend.'))
      .slice(-15)
      .map((r) => `${String(r.event)} ${r.msg}`.slice(0, 200));
    throw new Error(
      `${err.message}; backends ${JSON.stringify(last?.backends.map((b) => [b.id, b.state]))}, queue ${last?.queue}; recent log:\n${recent.join('\n')}`,
    );
  });
  totals.cases++;
}

/** What the backends saw, checked against what was sent: run after the cases. */
function checkBackendsSaw(edge: Edge): void {
  const lines = edge.mpx.logs().filter((r) => r.stream === 'stdout');
  const overlaps = lines.filter((r) => r.msg.startsWith('overlap '));
  assert.deepEqual(
    overlaps.map((r) => r.msg),
    [],
    'never two requests on one backend',
  );
  for (const line of lines.filter((r) => r.msg.startsWith('seen '))) {
    const seen = JSON.parse(line.msg.slice(5)) as {
      id: string | null;
      method?: string;
      target?: string;
      error?: string;
      bodyLength?: number;
    };
    assert.equal(seen.error, undefined, `the backend parsed every request: ${line.msg}`);
    assert.ok(seen.id !== null, `a request the client did not send: ${line.msg}`);
    const sent = sentById.get(seen.id);
    assert.ok(sent, `a request the client did not send: ${line.msg}`);
    if (!sent.id.includes('-p') && seen.target === sent.target) {
      assert.equal(seen.method, sent.method, line.msg);
    }
  }
}

describe('fuzz: both edges of the proxy', { timeout: (SECONDS + 120) * 1000 }, () => {
  const seeds = process.env.MPX_FUZZ_SEED
    ? [Number(process.env.MPX_FUZZ_SEED)]
    : [FIXED_SEED, Math.floor(Math.random() * 2 ** 31)];
  for (const seed of seeds) {
    it(`seed ${seed}: every invariant holds for ${Math.round(SECONDS / seeds.length)} s of generated cases`, async (t) => {
      // Started here, not in a before hook: the helpers' temporary directories are removed when
      // the test that made them ends.
      edges = { buffered: await startEdge(true), streaming: await startEdge(false) };
      t.after(async () => {
        await edges.buffered.mpx.stop();
        await edges.streaming.mpx.stop();
      });
      const totals: Totals = { cases: 0, wellFormed: 0, statuses: new Map() };
      const result = await fc.check(
        fc.asyncProperty(clientCase, backendCase, (client, backend) =>
          runCase(client, backend, totals),
        ),
        {
          seed,
          numRuns: Number.MAX_SAFE_INTEGER,
          interruptAfterTimeLimit: (SECONDS / seeds.length) * 1000,
          markInterruptAsFailure: false,
          endOnFailure: false,
        },
      );
      t.diagnostic(
        `seed ${seed} (replay: MPX_FUZZ_SEED=${seed}): ${totals.cases} cases, ${totals.wellFormed} well-formed both ways, answers by status ${JSON.stringify(Object.fromEntries(totals.statuses))}`,
      );
      if (result.failed) {
        const cause = result.errorInstance instanceof Error ? result.errorInstance.message : '';
        assert.fail(
          `seed ${seed}: ${fc.defaultReportMessage(result) ?? 'failed'}\n${cause}\nreplay: MPX_FUZZ_SEED=${seed}`,
        );
      }
      checkBackendsSaw(edges.buffered);
      checkBackendsSaw(edges.streaming);
    });
  }
});
