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
