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
  busy: { phase: 'busy', lease: 7, worker: 1, requestId: 3, use: 'request', retireOnReturn: false },
  retiring: { phase: 'retiring', reason: 'shrink' },
  exited: { phase: 'exited', planned: true },
};

const events: Record<BackendEvent['type'], BackendEvent> = {
  ready: { type: 'ready' },
  lease: { type: 'lease', lease: 9, worker: 2, requestId: 5 },
  'mark-for-retirement': { type: 'mark-for-retirement' },
  release: { type: 'release' },
  unready: { type: 'unready' },
  upgrade: { type: 'upgrade' },
  retire: { type: 'retire', reason: 'stuck' },
  exit: { type: 'exit' },
};

/** The whole table: every (state, event) pair and the phase it leads to, or null where it is invalid. */
const table: Record<Phase, Record<BackendEvent['type'], Phase | null>> = {
  starting: {
    ready: 'idle',
    lease: null,
    'mark-for-retirement': null,
    release: null,
    unready: null,
    upgrade: null,
    retire: 'retiring',
    exit: 'exited',
  },
  idle: {
    ready: null,
    lease: 'busy',
    'mark-for-retirement': null,
    release: null,
    unready: null,
    upgrade: null,
    retire: 'retiring',
    exit: 'exited',
  },
  busy: {
    ready: null,
    lease: null,
    'mark-for-retirement': 'busy',
    release: 'idle',
    unready: 'starting',
    upgrade: 'busy',
    retire: 'retiring',
    exit: 'exited',
  },
  retiring: {
    ready: null,
    lease: null,
    'mark-for-retirement': null,
    release: null,
    unready: null,
    upgrade: null,
    retire: null,
    exit: 'exited',
  },
  exited: {
    ready: null,
    lease: null,
    'mark-for-retirement': null,
    release: null,
    unready: null,
    upgrade: null,
    retire: null,
    exit: null,
  },
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
      requestId: 5,
      use: 'request',
      retireOnReturn: false,
    });
    assert.deepEqual(transition(busy as BackendState, events['mark-for-retirement']), {
      phase: 'busy',
      lease: 9,
      worker: 2,
      requestId: 5,
      use: 'request',
      retireOnReturn: true,
    });
  });
});
