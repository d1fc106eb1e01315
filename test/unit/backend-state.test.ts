import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  isInvalid,
  transition,
  type BackendEvent,
  type BackendState,
  type Phase,
} from '../../lib/supervisor/backend-state.js';

const states: Record<Phase, BackendState> = {
  starting: { phase: 'starting' },
  idle: { phase: 'idle' },
  busy: {
    phase: 'busy',
    lease: 7,
    worker: 1,
    checkoutSeq: 3,
    use: 'request',
    retireOnReturn: false,
    pass: { kind: 'open' },
  },
  retiring: { phase: 'retiring', reason: 'shrink' },
  failed: { phase: 'failed', fault: 'stuck' },
  exited: { phase: 'exited', planned: true },
};

const events: Record<BackendEvent['type'], BackendEvent> = {
  ready: { type: 'ready' },
  lease: { type: 'lease', lease: 9, worker: 2, checkoutSeq: 5, pass: { kind: 'open' } },
  pass: { type: 'pass', checkoutSeq: 6 },
  revoke: { type: 'revoke', seq: 1, upTo: 4 },
  'revoke-confirmed': { type: 'revoke-confirmed', seq: 1 },
  'mark-for-retirement': { type: 'mark-for-retirement' },
  checkin: { type: 'checkin' },
  unready: { type: 'unready' },
  upgrade: { type: 'upgrade' },
  retire: { type: 'retire', reason: 'shrink' },
  fail: { type: 'fail', fault: 'stuck' },
  exit: { type: 'exit' },
};

const stopping: Record<BackendEvent['type'], Phase | null> = {
  pass: null,
  revoke: null,
  'revoke-confirmed': null,
  ready: null,
  lease: null,
  'mark-for-retirement': null,
  checkin: null,
  unready: null,
  upgrade: null,
  retire: null,
  fail: null,
  exit: 'exited',
};

/** The whole table: every (state, event) pair and the phase it leads to, or null where it is invalid. */
const table: Record<Phase, Record<BackendEvent['type'], Phase | null>> = {
  starting: {
    pass: null,
    revoke: null,
    'revoke-confirmed': null,
    ready: 'idle',
    lease: null,
    'mark-for-retirement': null,
    checkin: null,
    unready: null,
    upgrade: null,
    retire: 'retiring',
    fail: 'failed',
    exit: 'exited',
  },
  idle: {
    pass: null,
    revoke: null,
    'revoke-confirmed': null,
    ready: null,
    lease: 'busy',
    'mark-for-retirement': null,
    checkin: null,
    unready: null,
    upgrade: null,
    retire: 'retiring',
    fail: 'failed',
    exit: 'exited',
  },
  busy: {
    pass: 'busy',
    revoke: 'busy',
    'revoke-confirmed': null,
    ready: null,
    lease: null,
    'mark-for-retirement': 'busy',
    checkin: 'idle',
    unready: 'starting',
    upgrade: 'busy',
    retire: 'retiring',
    fail: 'failed',
    exit: 'exited',
  },
  // Asked to stop, on purpose or on a fault: it only exits.
  retiring: stopping,
  failed: stopping,
  // Gone: nothing applies any more.
  exited: { ...stopping, exit: null },
};

describe('backend state machine', () => {
  for (const [phase, row] of Object.entries(table) as [
    Phase,
    Record<BackendEvent['type'], Phase | null>,
  ][]) {
    for (const [eventType, expected] of Object.entries(row) as [
      BackendEvent['type'],
      Phase | null,
    ][]) {
      it(`a ${phase} backend ${expected ? `goes to ${expected}` : 'refuses'} on "${eventType}"`, () => {
        const result = transition(states[phase], events[eventType]);
        if (expected === null) {
          assert.ok(isInvalid(result));
          assert.match(result.message, new RegExp(`${phase}.*${eventType}`));
        } else {
          assert.ok(!isInvalid(result));
          assert.equal(result.phase, expected);
        }
      });
    }
  }

  it('an exit while retiring is planned, an exit from any other state is not', () => {
    assert.deepEqual(transition(states.retiring, events.exit), { phase: 'exited', planned: true });
    assert.deepEqual(transition(states.busy, events.exit), { phase: 'exited', planned: false });
    assert.deepEqual(transition(states.starting, events.exit), { phase: 'exited', planned: false });
  });

  it('a lease records who holds the backend, and a mark keeps the lease', () => {
    const busy = transition(states.idle, events.lease);
    assert.deepEqual(busy, {
      phase: 'busy',
      lease: 9,
      worker: 2,
      checkoutSeq: 5,
      use: 'request',
      retireOnReturn: false,
      pass: { kind: 'open' },
    });
    assert.deepEqual(transition(busy as BackendState, events['mark-for-retirement']), {
      phase: 'busy',
      lease: 9,
      worker: 2,
      checkoutSeq: 5,
      use: 'request',
      retireOnReturn: true,
      pass: { kind: 'open' },
    });
  });

  it('a sticky lease is passed on, bounded by a revoke, and the bound holds once confirmed', () => {
    const open = transition(states.idle, events.lease) as BackendState;
    const passed = transition(open, { type: 'pass', checkoutSeq: 8 });
    assert.ok(!isInvalid(passed) && passed.phase === 'busy');
    assert.equal(passed.checkoutSeq, 8, 'the pass moves the lease to the next request');
    assert.equal(passed.lease, 9, 'and keeps the lease');
    const revoking = transition(passed, { type: 'revoke', seq: 3, upTo: 10 });
    assert.ok(!isInvalid(revoking) && revoking.phase === 'busy');
    assert.deepEqual(revoking.pass, { kind: 'revoking', upTo: 10, seq: 3 });
    // A second revoke before the first is confirmed: the first confirmation changes nothing.
    const lower = transition(revoking, { type: 'revoke', seq: 4, upTo: 0 }) as BackendState;
    assert.deepEqual(transition(lower, { type: 'revoke-confirmed', seq: 3 }), lower);
    const bounded = transition(lower, { type: 'revoke-confirmed', seq: 4 });
    assert.ok(!isInvalid(bounded) && bounded.phase === 'busy');
    assert.deepEqual(bounded.pass, { kind: 'bounded', upTo: 0 });
    const upgraded = transition(bounded, events.upgrade) as BackendState;
    assert.ok(
      isInvalid(transition(upgraded, { type: 'pass', checkoutSeq: 9 })),
      'an upgraded lease is not passed',
    );
  });
});
