import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LeaseClient } from '../../lib/ipc/lease-client.js';
import { NAMESPACE, UNBOUNDED, type WorkerMessage } from '../../lib/ipc/protocol.js';

function setup() {
  const sent: WorkerMessage[] = [];
  const leases = new LeaseClient((m) => sent.push(m));
  const grant = (ack: number, lease: number, upTo: number, passes = UNBOUNDED): void => {
    leases.settle({
      ns: NAMESPACE,
      type: 'granted',
      ack,
      lease,
      port: 10300,
      backend: 1,
      upTo,
      passes,
      // Not held idle: these cases are about passes (held leases have their own below).
      holdMs: 0,
    });
  };
  return { sent, leases, grant };
}

describe('the pass budget', () => {
  it('a lease is passed on no more often than its grant allows (max_requests), then checked in', () => {
    const { sent, leases, grant } = setup();
    const first = leases.checkout();
    const waiting = [leases.checkout(), leases.checkout(), leases.checkout()];
    grant(first.seq, 7, UNBOUNDED, 2);
    leases.checkin(7, 'ok');
    leases.checkin(7, 'ok');
    leases.checkin(7, 'ok');
    const kinds = sent.filter((m) => m.type === 'pass' || m.type === 'checkin').map((m) => m.type);
    assert.deepEqual(kinds, ['pass', 'pass', 'checkin'], 'two passes, then back to the primary');
    void waiting;
  });
});

describe("the lease client (a front worker's side)", () => {
  it('passes a backend it is done with to its oldest waiting checkout, and says so', async () => {
    const { sent, leases, grant } = setup();
    const first = leases.checkout();
    const second = leases.checkout();
    const third = leases.checkout();
    grant(first.seq, 7, UNBOUNDED);
    assert.equal((await first.result).status, 'granted');
    leases.checkin(7, 'ok');
    assert.deepEqual(await second.result, { status: 'granted', lease: 7, port: 10300, backend: 1 });
    assert.deepEqual(sent.at(-1), {
      ns: NAMESPACE,
      type: 'pass',
      lease: 7,
      to: second.seq,
      service: 'default',
    });
    // A late grant of another backend to the request served by the pass is ignored.
    grant(second.seq, 8, UNBOUNDED);
    leases.checkin(7, 'ok');
    assert.deepEqual(sent.at(-1), {
      ns: NAMESPACE,
      type: 'pass',
      lease: 7,
      to: third.seq,
      service: 'default',
    });
    leases.checkin(7, 'ok');
    assert.deepEqual(sent.at(-1), {
      ns: NAMESPACE,
      type: 'checkin',
      lease: 7,
      outcome: 'ok',
      service: 'default',
      reused: 0,
      idleMs: 0,
    });
  });

  it('never passes beyond the bound, after a failure, to a checkout asked again, or after an upgrade', () => {
    const { sent, leases, grant } = setup();
    const a = leases.checkout();
    const b = leases.checkout();
    grant(a.seq, 1, a.seq); // bound: nothing after a itself
    leases.checkin(1, 'ok');
    assert.deepEqual(sent.at(-1), {
      ns: NAMESPACE,
      type: 'checkin',
      lease: 1,
      outcome: 'ok',
      service: 'default',
      reused: 0,
      idleMs: 0,
    });
    grant(b.seq, 2, UNBOUNDED);
    const again = leases.checkout(true);
    leases.checkin(2, 'ok');
    assert.equal(sent.at(-1)?.type, 'checkin', 'a checkout asked again waits for the primary');
    const c = leases.checkout();
    grant(again.seq, 3, UNBOUNDED);
    leases.checkin(3, 'broken');
    assert.deepEqual(sent.at(-1), {
      ns: NAMESPACE,
      type: 'checkin',
      lease: 3,
      outcome: 'broken',
      service: 'default',
      reused: 0,
      idleMs: 0,
    });
    grant(c.seq, 4, UNBOUNDED);
    leases.checkout();
    leases.upgraded(4);
    leases.checkin(4, 'ok');
    assert.equal(sent.at(-1)?.type, 'checkin', 'an upgraded lease goes back to the primary');
  });

  it('a revoke lowers the bound of the leases it names and is confirmed with its seq', () => {
    const { sent, leases, grant } = setup();
    const a = leases.checkout();
    grant(a.seq, 5, UNBOUNDED);
    const b = leases.checkout();
    leases.checkout();
    leases.revoke({ ns: NAMESPACE, type: 'revoke', seq: 9, leases: [5, 99], upTo: b.seq });
    assert.deepEqual(sent.at(-1), { ns: NAMESPACE, type: 'revoked', ack: 9 });
    leases.checkin(5, 'ok');
    assert.deepEqual(sent.at(-1), {
      ns: NAMESPACE,
      type: 'pass',
      lease: 5,
      to: b.seq,
      service: 'default',
    });
    leases.checkin(5, 'ok');
    assert.deepEqual(sent.at(-1), {
      ns: NAMESPACE,
      type: 'checkin',
      lease: 5,
      outcome: 'ok',
      service: 'default',
      reused: 0,
      idleMs: 0,
    });
  });

  it('passes a backend only to a checkout of its own service', async () => {
    const { sent, leases } = setup();
    const api = leases.checkout(false, '', 'api');
    const admin = leases.checkout(false, '', 'admin');
    const api2 = leases.checkout(false, '', 'api');
    leases.settle({
      ns: NAMESPACE,
      type: 'granted',
      ack: api.seq,
      lease: 3,
      port: 10300,
      backend: 1,
      upTo: UNBOUNDED,
      passes: UNBOUNDED,
      holdMs: 0,
    });
    leases.checkin(3, 'ok');
    assert.deepEqual(sent.at(-1), {
      ns: NAMESPACE,
      type: 'pass',
      lease: 3,
      to: api2.seq,
      service: 'api',
    });
    assert.equal((await api2.result).status, 'granted');
    leases.checkin(3, 'ok');
    assert.deepEqual(
      sent.at(-1),
      {
        ns: NAMESPACE,
        type: 'checkin',
        lease: 3,
        outcome: 'ok',
        service: 'api',
        reused: 0,
        idleMs: 0,
      },
      'the admin checkout waits for a backend of its own',
    );
    leases.cancel(admin.seq);
    assert.deepEqual(sent.at(-1), {
      ns: NAMESPACE,
      type: 'cancel',
      seq: admin.seq,
      service: 'admin',
    });
  });
});

describe('held leases (no message per request in the steady state)', () => {
  function held(holdMs = UNBOUNDED, passes = UNBOUNDED) {
    const sent: WorkerMessage[] = [];
    let now = 1000;
    const leases = new LeaseClient(
      (m) => sent.push(m),
      undefined,
      () => now,
    );
    const first = leases.checkout(false, '', 'api');
    leases.settle({
      ns: NAMESPACE,
      type: 'granted',
      ack: first.seq,
      lease: 9,
      port: 10300,
      backend: 4,
      upTo: UNBOUNDED,
      passes,
      holdMs,
    });
    sent.length = 0;
    return { sent, leases, advance: (ms: number) => (now += ms) };
  }

  it('serves the next requests on the backend it holds, sending nothing, until the pass budget is spent', async () => {
    const { sent, leases } = held(UNBOUNDED, 50);
    leases.checkin(9, 'ok');
    for (let i = 0; i < 50; i++) {
      const next = leases.checkout(false, '', 'api');
      const result = await next.result;
      assert.deepEqual(result, { status: 'granted', lease: 9, port: 10300, backend: 4 });
      leases.checkin(9, 'ok');
    }
    assert.deepEqual(sent, [
      {
        ns: NAMESPACE,
        type: 'checkin',
        lease: 9,
        outcome: 'ok',
        service: 'api',
        reused: 50,
        idleMs: 0,
      },
    ]);
    leases.checkout(false, '', 'api');
    assert.equal(sent.at(-1)?.type, 'checkout', 'spent: the next request asks the pool');
  });

  it('holds a backend for its own service only', () => {
    const { sent, leases } = held();
    leases.checkin(9, 'ok');
    leases.checkout(false, '', 'admin');
    assert.equal(sent.at(-1)?.type, 'checkout');
    assert.equal(leases.idleCount, 1);
  });

  it('gives an idle held lease back at a revoke, before confirming it: within one round trip', () => {
    const { sent, leases, advance } = held();
    leases.checkin(9, 'ok');
    void leases.checkout(false, '', 'api');
    leases.checkin(9, 'ok');
    advance(40);
    leases.revoke({ ns: NAMESPACE, type: 'revoke', seq: 77, leases: [9], upTo: 0 });
    assert.deepEqual(sent, [
      {
        ns: NAMESPACE,
        type: 'checkin',
        lease: 9,
        outcome: 'ok',
        service: 'api',
        reused: 1,
        idleMs: 40,
      },
      { ns: NAMESPACE, type: 'revoked', ack: 77 },
    ]);
    leases.checkout(false, '', 'api');
    assert.equal(sent.at(-1)?.type, 'checkout', 'given back: the next request asks the pool');
  });

  it('a busy lease revoked is not held when its request ends: it goes back', () => {
    const { sent, leases } = held();
    leases.revoke({ ns: NAMESPACE, type: 'revoke', seq: 5, leases: [9], upTo: 0 });
    assert.deepEqual(
      sent.map((m) => m.type),
      ['revoked'],
      'busy: nothing to give back yet',
    );
    leases.checkin(9, 'ok');
    assert.equal(sent.at(-1)?.type, 'checkin');
    assert.equal(leases.idleCount, 0);
  });

  it('gives back a lease idle past its holdMs, saying how long it was idle; reports reuse once a second', async () => {
    const { sent, leases, advance } = held(2000);
    leases.checkin(9, 'ok');
    for (let i = 0; i < 3; i++) {
      await leases.checkout(false, '', 'api').result;
      leases.checkin(9, 'ok');
    }
    advance(1100);
    leases.sweep();
    assert.deepEqual(sent, [
      { ns: NAMESPACE, type: 'held', service: 'api', reports: [[9, 3, 1100]] },
    ]);
    leases.sweep();
    assert.equal(sent.length, 1, 'nothing new to report');
    advance(1000);
    leases.sweep();
    assert.deepEqual(sent.at(-1), {
      ns: NAMESPACE,
      type: 'checkin',
      lease: 9,
      outcome: 'ok',
      service: 'api',
      reused: 0,
      idleMs: 2100,
    });
  });

  it('a grant with holdMs 0 is never held', () => {
    const { sent, leases } = held(0);
    leases.checkin(9, 'ok');
    assert.equal(sent.at(-1)?.type, 'checkin');
  });

  it('forgets a lost lease: at once when idle, when its request ends when busy, telling nobody', () => {
    const idle = held();
    idle.leases.checkin(9, 'ok');
    idle.leases.lost(9);
    idle.leases.checkout(false, '', 'api');
    assert.deepEqual(
      idle.sent.map((m) => m.type),
      ['checkout'],
    );
    const busy = held();
    busy.leases.lost(9);
    busy.leases.checkin(9, 'broken');
    assert.equal(busy.sent.length, 0, 'the pool has nothing to take back');
    busy.leases.checkout(false, '', 'api');
    assert.equal(busy.sent.at(-1)?.type, 'checkout');
  });

  it('a backend the pool takes back has its connection closed: at the revoke when idle, at the checkin when busy', () => {
    const closed: number[] = [];
    const sent: WorkerMessage[] = [];
    const leases = new LeaseClient(
      (m) => sent.push(m),
      undefined,
      () => 0,
      (port) => closed.push(port),
    );
    const grant = (ack: number, lease: number, port: number): void => {
      leases.settle({
        ns: NAMESPACE,
        type: 'granted',
        ack,
        lease,
        port,
        backend: lease,
        upTo: UNBOUNDED,
        passes: UNBOUNDED,
        holdMs: UNBOUNDED,
      });
    };
    grant(leases.checkout(false, '', 'api').seq, 1, 10301);
    grant(leases.checkout(false, '', 'api').seq, 2, 10302);
    leases.checkin(1, 'ok');
    assert.deepEqual(closed, [], 'held, not taken back: the connection stays');
    leases.revoke({ ns: NAMESPACE, type: 'revoke', seq: 9, leases: [1, 2], upTo: 0 });
    assert.deepEqual(closed, [10301], 'the idle one at once');
    leases.checkin(2, 'ok');
    assert.deepEqual(closed, [10301, 10302], 'the busy one when its request ends');
  });

  it('a drain gives back every idle lease and holds none after', () => {
    const { sent, leases } = held();
    leases.checkin(9, 'ok');
    leases.releaseAll();
    assert.equal(sent.at(-1)?.type, 'checkin');
    assert.equal(leases.idleCount, 0);
  });
});
