import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BackendState, PassRight } from '../../lib/supervisor/backend-state.js';
import {
  boundsForNewcomer,
  passRightFor,
  type QueuedCheckout,
} from '../../lib/supervisor/pass-order.js';

const q = (worker: number, checkoutSeq: number, again = false): QueuedCheckout => ({
  worker,
  checkoutSeq,
  again,
});

const busy = (worker: number, pass: PassRight, lease = 1): { id: number; state: BackendState } => ({
  id: lease,
  state: {
    phase: 'busy',
    lease,
    worker,
    checkoutSeq: 1,
    pass,
    use: 'request',
    retireOnReturn: false,
  },
});

describe('the pass order', () => {
  it('a new lease may be passed to any later request of its worker while no other worker waits', () => {
    assert.deepEqual(passRightFor([], 1), { kind: 'open' });
    assert.deepEqual(passRightFor([q(1, 4), q(1, 5)], 1), { kind: 'open' });
  });

  it('a new lease is bounded to its worker’s requests queued ahead of another worker’s', () => {
    assert.deepEqual(passRightFor([q(1, 4), q(2, 9), q(1, 5)], 1), { kind: 'bounded', upTo: 4 });
    assert.deepEqual(passRightFor([q(2, 9), q(1, 4)], 1), { kind: 'bounded', upTo: 0 });
    // A checkout asked again (after a refusal) is never the target of a pass.
    assert.deepEqual(passRightFor([q(1, 4, true), q(2, 9)], 1), { kind: 'bounded', upTo: 0 });
  });

  it('a newcomer bounds the other workers’ open leases to what they have queued ahead of it', () => {
    const a = busy(1, { kind: 'open' }, 1);
    const b = busy(1, { kind: 'bounded', upTo: 7 }, 2);
    const c = busy(2, { kind: 'open' }, 3);
    const queue = [q(1, 3), q(2, 10)];
    const bounds = boundsForNewcomer(queue, 1, [a, b, c]);
    // Worker 2's own lease is not bounded by its own newcomer; worker 1's two leases, once.
    assert.deepEqual(
      bounds.map((x) => ({ worker: x.worker, ids: x.backends.map((y) => y.id), upTo: x.upTo })),
      [{ worker: 1, ids: [1, 2], upTo: 3 }],
    );
  });

  it('a lease already bounded at or below what is ahead is left alone', () => {
    const a = busy(1, { kind: 'bounded', upTo: 3 }, 1);
    const b = busy(1, { kind: 'revoking', upTo: 0, seq: 4 }, 2);
    assert.deepEqual(boundsForNewcomer([q(1, 3), q(2, 10)], 1, [a, b]), []);
    assert.deepEqual(boundsForNewcomer([q(2, 10)], 0, [busy(1, { kind: 'bounded', upTo: 0 })]), []);
  });

  it('only busy backends are bounded, and an out-of-range index bounds nothing', () => {
    const idle = { id: 9, state: { phase: 'idle' } as BackendState };
    assert.deepEqual(boundsForNewcomer([q(2, 1)], 0, [idle]), []);
    assert.deepEqual(boundsForNewcomer([q(2, 1)], 5, [busy(1, { kind: 'open' })]), []);
  });
});
