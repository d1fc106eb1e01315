import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { BufferBudget } from '../../lib/worker/buffer-budget.js';
import { Delivery, type DeliverySettings } from '../../lib/worker/delivery.js';
import { fakeResponse, until } from '../helpers/fake-client.js';

const dir = mkdtempSync(join(tmpdir(), 'mpx-delivery-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function delivery(init: Parameters<typeof fakeResponse>[0] = {}, memoryBytes = 64 * 1024) {
  const { res, socket } = fakeResponse(init);
  const faults: unknown[] = [];
  const budget = new BufferBudget(1024 * 1024, 64 * 1024 * 1024);
  const settings: DeliverySettings = {
    bufferDir: dir,
    memoryBytes,
    clientTimeoutMs: 10_000,
    onFault: (err) => faults.push(err),
    budget,
  };
  return { d: new Delivery(res, settings), res, socket, faults, budget };
}

const raw = (...pairs: string[]): string[] => pairs;

describe('the client side of an exchange, phase by phase', () => {
  it('before-head: a failure is multiplexer’s own answer, with its code', () => {
    const { d, socket } = delivery();
    d.fail('MPX_BACKEND_TIMEOUT', 'no answer');
    assert.match(socket.text, /^HTTP\/1\.1 504 Gateway Timeout\r\n/);
    assert.match(socket.text, /x-multiplexer-error: MPX_BACKEND_TIMEOUT/i);
  });

  it('before-head: 103 and 102 reach an HTTP/1.1 client, never an HTTP/1.0 one, and nothing after the head', () => {
    const a = delivery();
    a.d.information(103, raw('Link', '</a.css>; rel=preload'));
    a.d.information(102, []);
    assert.match(
      a.socket.text,
      /^HTTP\/1\.1 103 Early Hints\r\nLink: <\/a.css>; rel=preload\r\n\r\n/,
    );
    assert.match(a.socket.text, /HTTP\/1\.1 102 Processing\r\n\r\n$/);
    a.d.head(200, 'OK', raw('Content-Length', '0'), false);
    const before = a.socket.text;
    a.d.information(103, raw('Link', '</b.css>; rel=preload'));
    assert.equal(a.socket.text, before, 'a 1xx after the head is dropped');
    const old = delivery({ version: '1.0' });
    old.d.information(103, raw('Link', '</a.css>; rel=preload'));
    assert.equal(old.socket.text, '');
  });

  it('head: the backend’s status, reason and headers, in its order; a reason node refuses becomes the standard one', () => {
    const a = delivery();
    a.d.head(201, 'Made It', raw('X-B', '2', 'X-A', '1', 'Content-Length', '2'), false);
    a.d.write(Buffer.from('ok'));
    a.d.end([]);
    assert.match(
      a.socket.text,
      /^HTTP\/1\.1 201 Made It\r\nX-B: 2\r\nX-A: 1\r\nContent-Length: 2\r\n/,
    );
    assert.match(a.socket.text, /\r\n\r\nok$/);
    const b = delivery();
    b.d.head(200, 'bad\x01phrase', raw('Content-Length', '0'), false);
    b.d.end([]);
    assert.match(b.socket.text, /^HTTP\/1\.1 200 OK\r\n/);
  });

  it('streaming: the head goes at once (an event stream’s client waits for it), chunks as they come', async () => {
    const { d, socket } = delivery();
    d.head(200, 'OK', raw('Content-Type', 'text/event-stream'), true);
    assert.match(socket.text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.ok(d.write(Buffer.from('data: 1\n\n')));
    await until(() => socket.text.includes('data: 1\n\n'), 'the first event');
    d.end(raw('X-Checksum', 'abc'));
    await until(
      () => /0\r\nX-Checksum: abc\r\n\r\n$/i.test(socket.text),
      'trailers after the last chunk',
    );
  });

  it('streaming: a client that stops reading slows the backend down (write says false, whenWritable resumes)', async () => {
    const { d, socket } = delivery();
    d.head(200, 'OK', raw('Content-Type', 'text/event-stream'), true);
    socket.stopReading();
    let more = true;
    for (let i = 0; i < 100 && more; i++) more = d.write(Buffer.alloc(512, 97));
    assert.equal(more, false);
    let resumed = false;
    d.whenWritable(() => (resumed = true));
    await until(() => socket.writableLength > 0, 'the writes to reach the socket');
    assert.equal(resumed, false);
    socket.readAll();
    await until(() => resumed, 'the backend to be read again');
  });

  it('buffering: a slow client never holds the backend; what it has not taken is kept and sent in order', async () => {
    const { d, socket } = delivery({}, 4096);
    d.head(200, 'OK', raw('Content-Length', String(64 * 1024)), false);
    socket.stopReading();
    const parts = Array.from({ length: 64 }, (_, i) => Buffer.alloc(1024, 65 + (i % 26)));
    for (const part of parts) assert.ok(d.write(part), 'the backend is read on');
    d.end([]);
    await until(() => socket.writableLength > 0, 'the writes to reach the socket');
    assert.ok(socket.text.length < 64 * 1024, 'the client has not taken it all');
    socket.readAll();
    const body = Buffer.concat(parts).toString('latin1');
    await until(() => socket.text.endsWith(body), 'the whole answer, in order');
    assert.equal(socket.text.length - socket.text.indexOf('\r\n\r\n') - 4, 64 * 1024);
  });

  it('gone: a client that leaves is told to the exchange once; after it, writes go nowhere', async () => {
    const { d, socket } = delivery();
    let told = 0;
    d.onGone(() => told++);
    d.head(200, 'OK', raw('Content-Length', '10'), false);
    socket.destroy();
    await until(() => d.gone, 'the delivery to see the client gone');
    assert.equal(told, 1);
    assert.equal(d.write(Buffer.from('late')), true, 'nothing waits for a client that left');
  });

  it('after a partial answer, a failure cuts the connection: the only honest signal left', async () => {
    const { d, socket } = delivery();
    d.head(200, 'OK', raw('Content-Length', '10'), false);
    d.write(Buffer.from('12345'));
    d.fail('MPX_BACKEND_CRASHED', 'cut');
    await until(() => socket.destroyed, 'the client connection to be cut');
    assert.doesNotMatch(socket.text, /502/);
  });
});
