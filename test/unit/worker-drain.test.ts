import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  REPORT_MARGIN_MS,
  WorkerDrain,
  type DrainClock,
  type DrainTarget,
} from '../../lib/worker/drain.js';

/** A worker with `busy` requests and idle connections closable at given times; a manual clock. */
function worker(init: { busy?: number; idle?: number[] } = {}) {
  let now = 0;
  const timers: { at: number; fn: () => void; live: boolean }[] = [];
  const clock: DrainClock = {
    now: () => now,
    after: (ms, fn) => {
      const t = { at: now + ms, fn, live: true };
      timers.push(t);
      return () => (t.live = false);
    },
  };
  const state = { busy: init.busy ?? 0, idle: [...(init.idle ?? [])] };
  const log: string[] = [];
  const target: DrainTarget = {
    busy: () => state.busy,
    connections: () => state.idle.length,
    closeIdle: () => {
      state.idle = state.idle.filter((at) => at > now);
      const next = Math.min(...state.idle);
      return Number.isFinite(next) ? next : undefined;
    },
    stopListening: () => log.push('stop-listening'),
    closeTunnels: () => log.push('close-tunnels'),
    finish: (complete) => log.push(`finish ${complete}`),
  };
  const drain = new WorkerDrain(target, 100, 1000, clock);
  /** Runs the timers due until `to`, in order, as the event loop would. */
  const advance = (to: number): void => {
    for (;;) {
      const due = timers.filter((t) => t.live && t.at <= to).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      due.live = false;
      now = due.at;
      due.fn();
    }
    now = to;
  };
  const pending = (): number => timers.filter((t) => t.live).length;
  return { drain, state, log, advance, pending };
}

describe('a front worker’s drain', () => {
  it('with nothing in flight and no connection, finishes complete at once', () => {
    const w = worker();
    w.drain.begin(5000);
    assert.deepEqual(w.log, ['stop-listening', 'close-tunnels', 'finish true']);
    assert.equal(w.pending(), 0);
  });

  it('waits for the requests in flight, then finishes complete', () => {
    const w = worker({ busy: 2 });
    w.drain.begin(5000);
    w.state.busy = 1;
    w.drain.settled();
    assert.deepEqual(w.log, ['stop-listening']);
    w.state.busy = 0;
    w.drain.settled();
    assert.deepEqual(w.log, ['stop-listening', 'close-tunnels', 'finish true']);
    assert.equal(w.pending(), 0, 'no timer left behind');
  });

  it('keeps idle keep-alive connections for the grace, then closes them when they are idle', () => {
    const w = worker({ idle: [150, 400] });
    w.drain.begin(5000);
    w.advance(99);
    assert.equal(w.state.idle.length, 2, 'nothing closed within the grace');
    w.advance(150);
    assert.deepEqual(w.state.idle, [400]);
    w.advance(399);
    assert.deepEqual(w.log, ['stop-listening']);
    w.advance(400);
    assert.deepEqual(w.log, ['stop-listening', 'close-tunnels', 'finish true']);
  });

  it('closes upgraded connections after their time, and cuts at the deadline less the margin', () => {
    const w = worker({ busy: 1 });
    w.drain.begin(3000);
    w.advance(999);
    assert.deepEqual(w.log, ['stop-listening']);
    w.advance(1000);
    assert.deepEqual(w.log, ['stop-listening', 'close-tunnels']);
    w.advance(3000 - REPORT_MARGIN_MS - 1);
    assert.equal(w.log.length, 2);
    w.advance(3000 - REPORT_MARGIN_MS);
    assert.deepEqual(w.log, ['stop-listening', 'close-tunnels', 'finish false']);
    w.state.busy = 0;
    w.drain.settled();
    assert.equal(w.log.length, 3, 'finished once');
  });

  it('a second ask brings the deadline nearer, never further', () => {
    const w = worker({ busy: 1 });
    w.drain.begin(10_000);
    w.drain.begin(600);
    w.drain.begin(20_000);
    w.advance(600 - REPORT_MARGIN_MS);
    assert.deepEqual(w.log, ['stop-listening', 'close-tunnels', 'finish false']);
    assert.equal(w.drain.draining, true);
  });
});
