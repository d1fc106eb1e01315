import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodePrimaryMessage, decodeWorkerMessage } from '../../lib/ipc/protocol.js';
import { exitCodeFor, httpStatusFor } from '../../lib/errors.js';
import { Batcher, unbatch } from '../../lib/ipc/batch.js';

describe('IPC protocol', () => {
  it('accepts well-formed messages both ways', () => {
    assert.ok(
      decodeWorkerMessage({ ns: 'mpx', type: 'checkout', seq: 1, client: '', service: 'api' }).ok,
    );
    assert.ok(
      decodeWorkerMessage({
        ns: 'mpx',
        type: 'checkin',
        lease: 4,
        outcome: 'stuck',
        service: 'default',
        reused: 3,
        idleMs: 0,
      }).ok,
    );
    assert.ok(
      decodeWorkerMessage({ ns: 'mpx', type: 'held', service: 'api', reports: [[2, 5, -1]] }).ok,
    );
    assert.ok(decodePrimaryMessage({ ns: 'mpx', type: 'lost', lease: 2 }).ok);
    assert.ok(
      decodePrimaryMessage({
        ns: 'mpx',
        type: 'granted',
        ack: 1,
        lease: 2,
        port: 10300,
        backend: 3,
        upTo: 9,
        passes: 4,
        holdMs: 2000,
      }).ok,
    );
    assert.ok(
      decodeWorkerMessage({ ns: 'mpx', type: 'pass', lease: 2, to: 5, service: 'default' }).ok,
    );
    assert.ok(decodePrimaryMessage({ ns: 'mpx', type: 'revoke', seq: 3, leases: [2], upTo: 4 }).ok);
    assert.ok(decodeWorkerMessage({ ns: 'mpx', type: 'revoked', ack: 3 }).ok);
    assert.ok(decodePrimaryMessage({ ns: 'mpx', type: 'drain', withinMs: 1000 }).ok);
    assert.ok(decodeWorkerMessage({ ns: 'mpx', type: 'metrics', ack: 7, metrics: [] }).ok);
  });

  it('marks another namespace as foreign (ignored quietly), and only that', () => {
    const prom = decodeWorkerMessage({
      type: 'prom-client:getMetricsRes',
      requestId: 1,
      metrics: [],
    });
    assert.ok(!prom.ok && prom.foreign);
    const ours = decodeWorkerMessage({ ns: 'mpx', type: 'steal' });
    assert.ok(!ours.ok && !ours.foreign);
    const metrics = decodeWorkerMessage({ ns: 'mpx', type: 'metrics', ack: 7, metrics: 'all' });
    assert.ok(!metrics.ok && /metrics.metrics must be array/.test(metrics.reason));
  });

  const bad: [string, unknown, RegExp][] = [
    ['a non-object', 'hello', /not an object/],
    [
      'another namespace (e.g. Node internals)',
      { cmd: 'NODE_CLUSTER', type: 'checkout', id: 1 },
      /not a multiplexer message/,
    ],
    ['an unknown type', { ns: 'mpx', type: 'steal', id: 1 }, /unknown message type "steal"/],
    [
      'a missing seq',
      { ns: 'mpx', type: 'checkout' },
      /checkout.seq must be number, got undefined/,
    ],
    ['a fractional seq', { ns: 'mpx', type: 'cancel', seq: 1.5 }, /cancel.seq must be number/],
    ['a pass without its target', { ns: 'mpx', type: 'pass', lease: 1 }, /pass.to must be number/],
    [
      'an unknown outcome',
      { ns: 'mpx', type: 'checkin', lease: 1, outcome: 'meh' },
      /checkin.outcome must be ok,stuck,broken,refused,bad-response,abandoned, got "meh"/,
    ],
  ];
  for (const [name, raw, reason] of bad) {
    it(`refuses ${name} with a reason`, () => {
      const decoded = decodeWorkerMessage(raw);
      assert.ok(!decoded.ok);
      assert.match(decoded.reason, reason);
    });
  }

  it('a primary-only message is not accepted from a worker', () => {
    assert.ok(!decodeWorkerMessage({ ns: 'mpx', type: 'revoke', seq: 1, leases: [2], upTo: 0 }).ok);
  });
});

describe('error codes', () => {
  it('map to HTTP statuses and exit codes in one table', () => {
    assert.equal(httpStatusFor.MPX_QUEUE_TIMEOUT, 503);
    assert.equal(httpStatusFor.MPX_QUEUE_FULL, 503);
    assert.equal(httpStatusFor.MPX_BACKEND_CRASHED, 502);
    assert.equal(httpStatusFor.MPX_BACKEND_UNREACHABLE, 502);
    assert.equal(httpStatusFor.MPX_BACKEND_TIMEOUT, 504);
    assert.equal(exitCodeFor.MPX_CONFIG_INVALID, 78);
    assert.equal(exitCodeFor.MPX_USAGE, 64);
  });
});

describe('IPC batching', () => {
  it('messages sent in one turn are written once, in order; one with a callback flushes those before it', async () => {
    const writes: unknown[] = [];
    const batcher = new Batcher<{ n: number }>((m, done) => {
      writes.push(m);
      done?.();
    });
    batcher.send({ n: 1 });
    batcher.send({ n: 2 });
    batcher.send({ n: 3 });
    assert.deepEqual(writes, [], 'nothing written within the turn');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(writes.length, 1);
    assert.deepEqual(unbatch(writes[0]), [{ n: 1 }, { n: 2 }, { n: 3 }]);
    batcher.send({ n: 4 });
    let written = false;
    batcher.send({ n: 5 }, () => (written = true));
    assert.ok(written);
    assert.deepEqual(writes.slice(1), [{ n: 4 }, { n: 5 }], 'alone, a message is not wrapped');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(writes.length, 3, 'nothing left to flush');
    assert.deepEqual(unbatch({ ns: 'other', type: 'batch', messages: [1] }), [
      { ns: 'other', type: 'batch', messages: [1] },
    ]);
  });
});
