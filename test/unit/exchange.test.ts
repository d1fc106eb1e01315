import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { CheckinOutcome } from '../../lib/ipc/protocol.js';
import { BufferBudget } from '../../lib/worker/buffer-budget.js';
import { Delivery } from '../../lib/worker/delivery.js';
import {
  dropAllIdleConnections,
  exchange,
  type OutgoingRequest,
} from '../../lib/worker/exchange.js';
import { rawExchange } from '../../lib/worker/raw-exchange.js';
import { fakeResponse, until } from '../helpers/fake-client.js';

const dir = mkdtempSync(join(tmpdir(), 'mpx-exchange-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/**
 * A backend whose every byte is scripted: `onRequest` gets the connection and the request head
 * (one per request on a kept-alive connection) and writes what it likes.
 */
async function scriptedBackend(
  onRequest: (socket: net.Socket, head: string, index: number) => void,
): Promise<{ port: number; connections: number; requests: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const state = { connections: 0, requests: 0 };
  const server = net.createServer((socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let seen = '';
    socket.on('data', (chunk) => {
      seen += chunk.toString('latin1');
      for (let end = seen.indexOf('\r\n\r\n'); end !== -1; end = seen.indexOf('\r\n\r\n')) {
        const head = seen.slice(0, end);
        seen = seen.slice(end + 4);
        onRequest(socket, head, state.requests++);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    get connections() {
      return state.connections;
    },
    get requests() {
      return state.requests;
    },
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Runs one exchange against `port`; resolves with its outcome and what the client received. */
type Exchange = typeof exchange;

/** Runs one exchange (by `impl`: node:http's client, or the raw path) against `port`. */
function runWith(
  impl: Exchange,
  port: number,
  options: { method?: string; timeoutMs?: number; mayRetryRefused?: boolean } = {},
) {
  const { res, socket } = fakeResponse({ method: options.method });
  const faults: unknown[] = [];
  const client = new Delivery(res, {
    bufferDir: dir,
    memoryBytes: 64 * 1024,
    clientTimeoutMs: 10_000,
    onFault: (err) => faults.push(err),
    budget: new BufferBudget(1024 * 1024, 1024 * 1024),
  });
  const request: OutgoingRequest = {
    method: options.method ?? 'GET',
    path: '/x',
    headers: { host: 'example.test' },
    body: { kind: 'none' },
  };
  const outcomes: CheckinOutcome[] = [];
  const outcome = new Promise<CheckinOutcome>((resolve) =>
    impl(
      request,
      {
        host: '127.0.0.1',
        port,
        timeoutMs: options.timeoutMs ?? 5000,
        mayRetryRefused: options.mayRetryRefused ?? false,
        bufferResponses: true,
        onFault: (err) => faults.push(err),
      },
      client,
      (o) => {
        outcomes.push(o);
        resolve(o);
      },
    ),
  );
  return { outcome, outcomes, socket, faults };
}

const answer = (body: string): string =>
  `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;

// The same cases for both clients: the raw path must keep every rule of the node:http one.
for (const [name, impl] of [
  ['node:http client', exchange],
  ['raw path', rawExchange],
] as const) {
  const run = (port: number, options?: Parameters<typeof runWith>[2]) =>
    runWith(impl, port, options);
  describe(`the backend side of an exchange, phase by phase (${name})`, () => {
    it('sending → awaiting-head → receiving → done: ok, the answer relayed', async () => {
      const backend = await scriptedBackend((s) => s.write(answer('hi')));
      try {
        const x = run(backend.port);
        assert.equal(await x.outcome, 'ok');
        await until(() => x.socket.text.endsWith('\r\n\r\nhi'), 'the answer at the client');
        assert.match(x.socket.text, /^HTTP\/1\.1 200 OK\r\n/);
        assert.deepEqual(x.outcomes, ['ok'], 'reported once');
      } finally {
        dropAllIdleConnections();
        await backend.close();
      }
    });

    it('awaiting-head past http_proxy_timeout: stuck, and the client gets 504', async () => {
      const backend = await scriptedBackend(() => undefined);
      try {
        const x = run(backend.port, { timeoutMs: 150 });
        assert.equal(await x.outcome, 'stuck');
        await until(() => /^HTTP\/1\.1 504 /.test(x.socket.text), 'the 504');
      } finally {
        await backend.close();
      }
    });

    it('a refused connection: refused with nothing sent when another backend may take it, else 502', async () => {
      const backend = await scriptedBackend(() => undefined);
      const port = backend.port;
      await backend.close();
      const retried = run(port, { mayRetryRefused: true });
      assert.equal(await retried.outcome, 'refused');
      assert.equal(retried.socket.text, '', 'the client saw nothing');
      const last = run(port, { mayRetryRefused: false });
      assert.equal(await last.outcome, 'broken');
      await until(() => /^HTTP\/1\.1 502 /.test(last.socket.text), 'the 502');
    });

    it('an answer that does not parse: bad-response and 502 (the process itself is fine)', async () => {
      const backend = await scriptedBackend((s) => s.end('this is not http\r\n\r\n'));
      try {
        const x = run(backend.port);
        assert.equal(await x.outcome, 'bad-response');
        await until(() => /^HTTP\/1\.1 502 /.test(x.socket.text), 'the 502');
      } finally {
        await backend.close();
      }
    });

    it('receiving → discarding: a client that leaves mid-answer; the backend is returned only after its answer ended', async () => {
      let rest: (() => void) | undefined;
      const backend = await scriptedBackend((s) => {
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345');
        rest = () => s.write('67890');
      });
      try {
        const x = run(backend.port);
        await until(() => x.socket.text.endsWith('12345'), 'the first half at the client');
        x.socket.destroy();
        // The backend still answers: its side is not over, whatever the client did.
        await new Promise((resolve) => setImmediate(resolve));
        assert.deepEqual(x.outcomes, [], 'not returned while the backend still answers');
        rest!();
        assert.equal(await x.outcome, 'ok');
      } finally {
        dropAllIdleConnections();
        await backend.close();
      }
    });

    it('a backend that cuts its answer: broken, and the client connection is cut (no second head)', async () => {
      const backend = await scriptedBackend((s) =>
        s.end('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345'),
      );
      try {
        const x = run(backend.port);
        assert.equal(await x.outcome, 'broken');
        await until(() => x.socket.destroyed, 'the client cut');
        assert.doesNotMatch(x.socket.text, /502/);
      } finally {
        await backend.close();
      }
    });

    it('a 101 to a request that asked for no upgrade: bad-response, 502, and the connection closed', async () => {
      let closed = false;
      const backend = await scriptedBackend((s) => {
        s.on('close', () => (closed = true));
        s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nnot http any more');
      });
      try {
        const x = run(backend.port);
        assert.equal(await x.outcome, 'bad-response');
        await until(() => /^HTTP\/1\.1 502 /.test(x.socket.text), 'the 502');
        assert.match(x.socket.text, /switched protocols \(101\)/);
        await until(() => closed, 'the backend connection closed');
      } finally {
        await backend.close();
      }
    });

    it('an answer that does not parse on a kept-alive connection: 502, and the request is not sent again (the backend had it)', async () => {
      const backend = await scriptedBackend((s, _head, index) => {
        if (index === 1) s.write('this is not http\r\n\r\n');
        else s.write(answer(`n${index}`));
      });
      try {
        const first = run(backend.port);
        assert.equal(await first.outcome, 'ok');
        const second = run(backend.port);
        assert.equal(await second.outcome, 'bad-response');
        await until(() => /^HTTP\/1\.1 502 /.test(second.socket.text), 'the 502');
        assert.equal(backend.requests, 2, 'the backend got the request once');
      } finally {
        dropAllIdleConnections();
        await backend.close();
      }
    });

    it('a kept-alive connection the backend drops as it is reused: an idempotent request is sent again, once, on a new one', async () => {
      const backend = await scriptedBackend((s, _head, index) => {
        if (index === 1) s.destroy();
        else s.write(answer(`n${index}`));
      });
      try {
        const first = run(backend.port);
        assert.equal(await first.outcome, 'ok');
        const second = run(backend.port);
        assert.equal(await second.outcome, 'ok');
        await until(() => second.socket.text.endsWith('n2'), 'the answer to the resent request');
        assert.equal(backend.connections, 2);
        assert.equal(backend.requests, 3);
      } finally {
        dropAllIdleConnections();
        await backend.close();
      }
    });
  });
}
