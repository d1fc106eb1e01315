import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Pool, type PoolEffect, type PoolSettings } from '../../lib/supervisor/pool.js';
import { FakeClock } from '../helpers/fake-clock.js';

const W1 = 1;
const W2 = 2;

function setup(overrides: Partial<PoolSettings> = {}, seed = 1) {
  const clock = new FakeClock(seed);
  const settings: PoolSettings = {
    size: 2,
    maxOverflow: 0,
    strategy: 'fifo',
    queueTimeoutMs: 1000,
    queueMax: 100,
    queueMaxPerClient: 0,
    startTimeoutMs: 5000,
    startConcurrency: 0,
    bootAttempts: 5,
    maxRequests: 0,
    maxRequestsJitter: 0,
    maxRssBytes: 0,
    idleRetireMs: 0,
    healthFailures: 3,
    restart: { baseDelayMs: 100, maxDelayMs: 1000, stableAfterMs: 10_000 },
    ...overrides,
  };
  return { pool: new Pool(settings, clock), clock };
}

function spawned(effects: PoolEffect[]): number[] {
  return effects.flatMap((e) => (e.type === 'spawn' ? [e.backend] : []));
}

function stopped(effects: PoolEffect[]): number[] {
  return effects.flatMap((e) => (e.type === 'end' ? [e.backend] : []));
}

function grant(effects: PoolEffect[]) {
  const g = effects.find((e) => e.type === 'grant');
  return g?.type === 'grant' ? g : undefined;
}

function reject(effects: PoolEffect[]) {
  const r = effects.find((e) => e.type === 'reject');
  return r?.type === 'reject' ? r : undefined;
}

/** Starts the pool and makes every initial backend ready; returns their ids. */
/**
 * The effects, and those of each revoke among them confirmed by its worker (which then holds no
 * lease idle: its backends are busy indeed, so starts that waited for the answer go ahead).
 */
function confirmed(pool: Pool, effects: PoolEffect[]): PoolEffect[] {
  const out = [...effects];
  for (const e of effects) if (e.type === 'revoke') out.push(...pool.revoked(e.worker, e.seq));
  return out;
}

function startReady(pool: Pool): number[] {
  const ids = spawned(pool.start());
  for (const id of ids) pool.backendReady(id);
  return ids;
}

describe('pool decisions', () => {
  it('starts pool_size backends at once and announces readiness when all are ready', () => {
    const { pool } = setup({ size: 3 });
    const ids = spawned(pool.start());
    assert.deepEqual(ids, [1, 2, 3]);
    assert.ok(!pool.backendReady(1).some((e) => e.type === 'pool-ready'));
    assert.ok(!pool.backendReady(2).some((e) => e.type === 'pool-ready'));
    assert.ok(pool.backendReady(3).some((e) => e.type === 'pool-ready'));
  });

  it('a request arriving before any backend is ready waits and gets the first one ready', () => {
    const { pool } = setup({ size: 2 });
    pool.start();
    const waiting = pool.checkout(W1, 10);
    assert.equal(grant(waiting), undefined);
    assert.deepEqual(spawned(waiting), [], 'starting backends already cover the waiter');
    const g = grant(pool.backendReady(2));
    assert.deepEqual(g && [g.worker, g.checkoutSeq, g.backend], [W1, 10, 2]);
  });

  it('never leases a backend twice: a second checkout waits while the only backend is busy', () => {
    const { pool } = setup({ size: 1 });
    startReady(pool);
    assert.ok(grant(pool.checkout(W1, 1)));
    assert.equal(grant(pool.checkout(W2, 1)), undefined);
    assert.equal(pool.queueLength, 1);
  });

  it('picks a free backend at random', () => {
    const { pool } = setup({ size: 4 }, 42);
    startReady(pool);
    const chosen = new Set<number>();
    for (let i = 0; i < 40; i++) {
      const g = grant(pool.checkout(W1, i))!;
      chosen.add(g.backend);
      pool.checkin(W1, g.lease, 'ok');
    }
    assert.ok(
      chosen.size >= 3,
      `expected several backends to be picked, got ${[...chosen].join(', ')}`,
    );
  });

  it('waiters are served in arrival order', () => {
    const { pool } = setup({ size: 1 });
    startReady(pool);
    const first = grant(pool.checkout(W1, 1))!;
    pool.checkout(W2, 2);
    pool.checkout(W1, 3);
    const next = grant(pool.checkin(W1, first.lease, 'ok'))!;
    assert.deepEqual([next.worker, next.checkoutSeq], [W2, 2]);
    const after = grant(pool.checkin(W2, next.lease, 'ok'))!;
    assert.deepEqual([after.worker, after.checkoutSeq], [W1, 3]);
  });

  describe('overflow and shrinking (the original tool example: pool_size 1, overflow 2)', () => {
    for (const strategy of ['fifo', 'lifo'] as const) {
      it(`with ${strategy}, two concurrent requests start a second backend, and afterwards the ${strategy === 'fifo' ? 'newer' : 'older'} one remains`, () => {
        const { pool } = setup({ size: 1, maxOverflow: 2, strategy });
        const [original] = startReady(pool);
        const a = grant(pool.checkout(W1, 1))!;
        const second = pool.checkout(W2, 2);
        assert.deepEqual(spawned(second), [], 'W1 may hold its backend idle: asked first');
        const [overflow] = spawned(confirmed(pool, second));
        assert.equal(overflow, 2, 'a second backend starts for the waiting request');
        const b = grant(pool.backendReady(overflow))!;
        assert.equal(b.backend, overflow);
        const afterA = pool.checkin(W1, a.lease, 'ok');
        const afterB = pool.checkin(W2, b.lease, 'ok');
        const retired = [...stopped(afterA), ...stopped(afterB)];
        const expectedRetired = strategy === 'fifo' ? original : overflow;
        assert.deepEqual(retired, [expectedRetired]);
        const live = pool.view().filter((v) => v.state.phase === 'idle');
        assert.deepEqual(
          live.map((v) => v.id),
          [strategy === 'fifo' ? overflow : original],
        );
      });
    }

    it('a busy victim is retired when it is returned, not before', () => {
      const { pool } = setup({ size: 1, maxOverflow: 1, strategy: 'fifo' });
      startReady(pool);
      const a = grant(pool.checkout(W1, 1))!; // on backend 1, the fifo victim
      const [overflow] = spawned(pool.checkout(W1, 2));
      const b = grant(pool.backendReady(overflow!))!;
      assert.deepEqual(
        stopped(pool.checkin(W1, b.lease, 'ok')),
        [],
        'backend 1 is busy: only marked',
      );
      assert.deepEqual(stopped(pool.checkin(W1, a.lease, 'ok')), [1]);
    });

    it('a marked backend returned while a request waits serves that request instead', () => {
      const { pool } = setup({ size: 1, maxOverflow: 1, strategy: 'fifo' });
      startReady(pool);
      const a = grant(pool.checkout(W1, 1))!;
      const [overflow] = spawned(pool.checkout(W1, 2));
      const b = grant(pool.backendReady(overflow!))!;
      pool.checkin(W1, b.lease, 'ok'); // marks backend 1
      const c = grant(pool.checkout(W2, 3))!; // takes backend 2, idle
      pool.checkout(W2, 4); // waits: cap reached
      const handover = pool.checkin(W1, a.lease, 'ok');
      assert.deepEqual(stopped(handover), []);
      assert.equal(grant(handover)?.backend, 1);
      assert.ok(c);
    });

    it('with pool_overflow_idle_ms, a backend beyond pool_size retires only after that long idle', () => {
      const { pool, clock } = setup({ size: 1, maxOverflow: 1, idleRetireMs: 1000 });
      const [original] = startReady(pool);
      const t0 = clock.now();
      const first = grant(pool.checkout(W1, 1))!;
      const [overflow] = spawned(pool.checkout(W1, 2));
      const second = grant(pool.backendReady(overflow!))!;
      // Both returned with nobody waiting: no retirement yet, and none marked while busy.
      assert.deepEqual(stopped(pool.checkin(W1, first.lease, 'ok')), []);
      assert.deepEqual(stopped(pool.checkin(W1, second.lease, 'ok')), []);
      // A request a moment later finds a backend at once: no start, no wait.
      clock.advance(400);
      const third = grant(pool.checkout(W1, 3))!;
      assert.ok(third);
      clock.advance(400);
      assert.deepEqual(stopped(pool.checkin(W1, third.lease, 'ok')), []);
      // Once one backend has been idle for the whole grace (the one the third request did not
      // take, idle since the first checkins), fifo retires the backend started longest ago.
      const wake = pool.nextWakeAt()!;
      assert.equal(wake, t0 + 1000);
      clock.advance(wake - 1 - clock.now());
      assert.deepEqual(stopped(pool.tick()), [], 'not a moment early');
      clock.advance(1);
      assert.deepEqual(stopped(pool.tick()), [original]);
      assert.equal(pool.nextWakeAt(), undefined, 'back at pool_size: nothing more to wake for');
    });

    it('with pool_overflow_idle_ms, lifo retires the newest backend once one has been idle for the grace, even if an older one went idle first', () => {
      const { pool, clock } = setup({
        size: 1,
        maxOverflow: 1,
        idleRetireMs: 1000,
        strategy: 'lifo',
      });
      const [original] = startReady(pool);
      const first = grant(pool.checkout(W1, 1))!;
      const [overflow] = spawned(pool.checkout(W1, 2));
      const second = grant(pool.backendReady(overflow!))!;
      const [older, newer] = first.backend === original ? [first, second] : [second, first];
      pool.checkin(W1, older.lease, 'ok');
      clock.advance(300);
      pool.checkin(W1, newer.lease, 'ok');
      assert.equal(pool.nextWakeAt(), clock.now() + 700, 'the first idle one shows the surplus');
      clock.advance(700);
      assert.deepEqual(stopped(pool.tick()), [overflow]);
    });

    it('with pool_overflow_idle_ms, fifo retires the oldest backend even while it is busy: it goes when it is returned', () => {
      const { pool, clock } = setup({ size: 1, maxOverflow: 1, idleRetireMs: 1000 });
      const [original] = startReady(pool);
      const first = grant(pool.checkout(W1, 1))!;
      const [overflow] = spawned(pool.checkout(W1, 2));
      const second = grant(pool.backendReady(overflow!))!;
      const [onOriginal, onOverflow] =
        first.backend === original ? [first, second] : [second, first];
      pool.checkin(W1, onOverflow.lease, 'ok');
      clock.advance(1000);
      // The overflow backend was idle for the grace, the oldest is busy: it is marked, not the idle one.
      assert.deepEqual(stopped(pool.tick()), []);
      assert.deepEqual(stopped(pool.checkin(W1, onOriginal.lease, 'ok')), [original]);
      assert.deepEqual(
        pool
          .view()
          .filter((v) => v.state.phase !== 'retiring')
          .map((v) => [v.id, v.state.phase]),
        [[overflow, 'idle']],
      );
    });

    it('never starts more than pool_size + pool_max_overflow backends', () => {
      const { pool } = setup({ size: 3, maxOverflow: 2 });
      startReady(pool);
      let starts = 0;
      for (let i = 0; i < 30; i++) starts += spawned(pool.checkout(W1, i)).length;
      assert.equal(starts, 2);
      assert.equal(pool.view().length, 5);
    });

    it('a waiter takes whichever backend becomes free first: a busy one finishing', () => {
      const { pool } = setup({ size: 1, maxOverflow: 1 });
      startReady(pool);
      const a = grant(pool.checkout(W1, 1))!;
      const [overflow] = spawned(confirmed(pool, pool.checkout(W2, 2)));
      const served = grant(pool.checkin(W1, a.lease, 'ok'))!;
      assert.deepEqual([served.checkoutSeq, served.backend], [2, 1]);
      // The overflow backend becomes ready with nobody waiting: the fifo victim is backend 1, busy,
      // so it is only marked and the new one stays idle.
      assert.deepEqual(stopped(pool.backendReady(overflow!)), []);
      const one = pool.backend(1)!.state;
      assert.ok(one.phase === 'busy' && one.retireOnReturn);
    });
  });

  describe('queue', () => {
    it('rejects at once beyond queue_max', () => {
      const { pool } = setup({ size: 1, queueMax: 1 });
      startReady(pool);
      grant(pool.checkout(W1, 1));
      assert.equal(reject(pool.checkout(W1, 2)), undefined);
      assert.equal(reject(pool.checkout(W1, 3))?.code, 'MPX_QUEUE_FULL');
    });

    it('queue_max_per_client: a client with that many waiting is refused the next, others are not', () => {
      const { pool } = setup({ size: 1, queueMaxPerClient: 2 });
      startReady(pool);
      const rejection = (effects: PoolEffect[]): string | undefined =>
        effects.find((e) => e.type === 'reject')?.code;
      assert.ok(grant(pool.checkout(W1, 1, false, '10.0.0.1')));
      assert.equal(rejection(pool.checkout(W1, 2, false, '10.0.0.1')), undefined);
      assert.equal(rejection(pool.checkout(W2, 3, false, '10.0.0.1')), undefined);
      assert.equal(rejection(pool.checkout(W1, 4, false, '10.0.0.1')), 'MPX_CLIENT_QUEUE_FULL');
      assert.equal(rejection(pool.checkout(W1, 5, false, '10.0.0.2')), undefined, 'another client');
      assert.equal(rejection(pool.checkout(W1, 6, false, '')), undefined, 'not counted');
      pool.cancel(W1, 2);
      assert.equal(rejection(pool.checkout(W1, 7, false, '10.0.0.1')), undefined, 'room again');
    });

    it('queue_max 0 means no request may wait', () => {
      const { pool } = setup({ size: 1, queueMax: 0 });
      startReady(pool);
      grant(pool.checkout(W1, 1));
      assert.equal(reject(pool.checkout(W1, 2))?.code, 'MPX_QUEUE_FULL');
    });

    it('a waiter past queue_timeout_ms is rejected', () => {
      const { pool, clock } = setup({ size: 1, queueTimeoutMs: 500 });
      startReady(pool);
      grant(pool.checkout(W1, 1));
      pool.checkout(W2, 2);
      assert.equal(pool.nextWakeAt(), clock.now() + 500);
      clock.advance(499);
      assert.equal(reject(pool.tick()), undefined);
      clock.advance(1);
      const r = reject(pool.tick())!;
      assert.deepEqual([r.worker, r.checkoutSeq, r.code], [W2, 2, 'MPX_QUEUE_TIMEOUT']);
      assert.equal(pool.queueLength, 0);
    });

    it('queue_timeout_ms 0 lets a request wait forever', () => {
      const { pool, clock } = setup({ size: 1, queueTimeoutMs: 0 });
      startReady(pool);
      grant(pool.checkout(W1, 1));
      pool.checkout(W2, 2);
      clock.advance(10_000_000);
      assert.equal(reject(pool.tick()), undefined);
      assert.equal(pool.queueLength, 1);
    });

    it('a cancelled waiter leaves the queue and consumes no backend', () => {
      const { pool } = setup({ size: 1 });
      startReady(pool);
      const a = grant(pool.checkout(W1, 1))!;
      pool.checkout(W2, 2);
      pool.cancel(W2, 2);
      const back = pool.checkin(W1, a.lease, 'ok');
      assert.equal(grant(back), undefined);
      assert.equal(pool.view()[0]!.state.phase, 'idle');
    });

    it('a cancel that crosses its grant returns the lease', () => {
      const { pool } = setup({ size: 1 });
      startReady(pool);
      assert.ok(grant(pool.checkout(W1, 1)));
      pool.cancel(W1, 1);
      assert.equal(pool.view()[0]!.state.phase, 'idle');
      assert.ok(grant(pool.checkout(W2, 2)));
    });
  });

  describe('failures', () => {
    it('a crashed backend is replaced so the pool returns to pool_size, after a short backoff', () => {
      const { pool, clock } = setup({ size: 2 });
      startReady(pool);
      const crash = pool.backendExited(1);
      assert.deepEqual(spawned(crash), []);
      assert.ok(crash.some((e) => e.type === 'backoff' && e.delayMs === 100));
      clock.advance(100);
      assert.deepEqual(spawned(pool.tick()), [3]);
    });

    it('a wake stays owed when a timer fires a millisecond before the backoff ends and the clock then moves on', () => {
      const { pool, clock } = setup({ size: 2 });
      startReady(pool);
      pool.backendExited(1);
      clock.advance(99);
      assert.deepEqual(spawned(pool.tick()), [], 'a millisecond early: still held back');
      clock.advance(1);
      // Read again a moment later, the clock says the backoff is over: the wake is still owed.
      const wake = pool.nextWakeAt();
      assert.ok(wake !== undefined && wake <= clock.now(), `wake at ${wake}, now ${clock.now()}`);
      assert.deepEqual(spawned(pool.tick()), [3]);
    });

    it('a backend that keeps dying is restarted with exponential backoff, one at a time', () => {
      const { pool, clock } = setup({ size: 3 });
      pool.start();
      const delays: number[] = [];
      let next = [1, 2, 3];
      for (let round = 0; round < 6; round++) {
        for (const id of next) {
          for (const e of pool.backendExited(id)) if (e.type === 'backoff') delays.push(e.delayMs);
        }
        clock.advance(delays.at(-1)!);
        next = spawned(pool.tick());
        assert.ok(next.length <= 1 || round === 0, `round ${round} started ${next.length} at once`);
      }
      assert.deepEqual(delays.slice(0, 5), [100, 200, 400, 800, 1000]);
    });

    it('backends that crash after they were ready are replaced at the base delay: a start that succeeds resets the backoff', () => {
      const { pool, clock } = setup({ size: 2 });
      let ids = startReady(pool);
      const delays: number[] = [];
      for (let round = 0; round < 6; round++) {
        for (const e of pool.backendExited(ids[0]!))
          if (e.type === 'backoff') delays.push(e.delayMs);
        clock.advance(delays.at(-1)!);
        const [replacement] = [...spawned(pool.tick()), ...spawned([])];
        assert.ok(replacement !== undefined, `round ${round}: a replacement starts`);
        pool.backendReady(replacement);
        ids = [ids[1]!, replacement];
      }
      assert.deepEqual(delays, [100, 100, 100, 100, 100, 100]);
    });

    it('a backend not ready within service_start_timeout_ms is stopped and started again', () => {
      const { pool, clock } = setup({ size: 1, startTimeoutMs: 300 });
      pool.start();
      clock.advance(300);
      assert.deepEqual(stopped(pool.tick()), [1]);
      pool.backendExited(1);
      clock.advance(100);
      assert.deepEqual(spawned(pool.tick()), [2]);
    });

    it('a backend found stuck or broken is stopped and replaced', () => {
      const { pool, clock } = setup({ size: 1 });
      startReady(pool);
      const a = grant(pool.checkout(W1, 1))!;
      assert.deepEqual(stopped(pool.checkin(W1, a.lease, 'stuck')), [1]);
      const exit = pool.backendExited(1);
      assert.deepEqual(spawned(exit), [2], 'a stuck backend is not a failure: no backoff');
      const b = grant(pool.checkout(W1, 2));
      assert.equal(b, undefined, 'the replacement is not ready yet');
      pool.backendReady(2);
      assert.equal(clock.now(), 1_000);
    });

    it('a checkin for a lease whose backend died is a logged no-op', () => {
      const { pool } = setup({ size: 1 });
      startReady(pool);
      const a = grant(pool.checkout(W1, 1))!;
      pool.backendExited(1);
      const late = pool.checkin(W1, a.lease, 'broken');
      assert.ok(late.some((e) => e.type === 'anomaly'));
      assert.deepEqual(stopped(late), []);
    });

    it('a dead front worker drops its waiters and its leased backends are retired and replaced', () => {
      const { pool } = setup({ size: 2 });
      startReady(pool);
      const held = grant(pool.checkout(W1, 1))!;
      grant(pool.checkout(W2, 1));
      pool.checkout(W1, 2);
      const effects = pool.workerExited(W1);
      assert.deepEqual(stopped(effects), [held.backend]);
      assert.equal(pool.queueLength, 0);
      assert.deepEqual(spawned(pool.backendExited(held.backend)), [3]);
    });
  });

  it('shutdown rejects waiters and stops every backend', () => {
    const { pool } = setup({ size: 2 });
    startReady(pool);
    grant(pool.checkout(W1, 1));
    grant(pool.checkout(W1, 2));
    pool.checkout(W2, 3);
    const effects = pool.shutdown();
    assert.equal(reject(effects)?.code, 'MPX_SHUTTING_DOWN');
    assert.deepEqual(stopped(effects).sort(), [1, 2]);
    assert.deepEqual(spawned(pool.backendExited(1)), []);
    pool.backendExited(2);
    assert.ok(pool.isEmpty);
  });
});

describe('pool changes at runtime', () => {
  const settings = (size: number, maxOverflow = 0): PoolSettings => ({
    size,
    maxOverflow,
    strategy: 'fifo',
    queueTimeoutMs: 1000,
    queueMax: 100,
    queueMaxPerClient: 0,
    startTimeoutMs: 5000,
    startConcurrency: 0,
    bootAttempts: 5,
    maxRequests: 0,
    maxRequestsJitter: 0,
    maxRssBytes: 0,
    idleRetireMs: 0,
    healthFailures: 3,
    restart: { baseDelayMs: 100, maxDelayMs: 1000, stableAfterMs: 10_000 },
  });

  it('a larger pool_size starts the difference at once', () => {
    const { pool } = setup({ size: 2 });
    startReady(pool);
    assert.deepEqual(spawned(pool.reconfigure(settings(4))), [3, 4]);
  });

  it('a smaller pool_size retires idle backends at once and busy ones only when returned', () => {
    const { pool } = setup({ size: 3 });
    startReady(pool);
    const g = grant(pool.checkout(W1, 1))!;
    const effects = pool.reconfigure(settings(1));
    assert.equal(stopped(effects).length, 1, 'one idle backend goes now');
    assert.equal(pool.view().filter((b) => b.state.phase !== 'retiring').length, 2);
    const busy = pool.backend(g.backend)!;
    assert.equal(busy.state.phase, 'busy', 'the busy one is not interrupted');
    const returned = pool.checkin(W1, g.lease, 'ok');
    const live = pool.view().filter((b) => b.state.phase === 'idle' || b.state.phase === 'busy');
    assert.equal(live.length, 1);
    assert.equal(stopped(effects).length + stopped(returned).length, 2);
  });

  describe('rolling restart (roll)', () => {
    /** Counts idle + busy backends that have not been marked to go. */
    const readyCount = (pool: Pool) =>
      pool
        .view()
        .filter(
          (b) => b.state.phase === 'idle' || (b.state.phase === 'busy' && !b.state.retireOnReturn),
        ).length;

    it('replaces every backend one at a time, never with fewer than pool_size ready', () => {
      const { pool } = setup({ size: 3 });
      const old = startReady(pool);
      let effects = pool.roll();
      const fresh: number[] = [];
      for (let round = 0; round < 10 && pool.rolling; round++) {
        const started = spawned(effects);
        assert.equal(started.length, 1, 'one replacement at a time');
        assert.ok(pool.view().length <= 4, 'at most one process beyond the cap');
        fresh.push(started[0]!);
        effects = pool.backendReady(started[0]!);
        assert.ok(readyCount(pool) >= 3, `ready dropped to ${readyCount(pool)}`);
        // The next replacement starts once the retired backend's process is gone.
        effects = stopped(effects).flatMap((id) => pool.backendExited(id));
      }
      assert.ok(!pool.rolling);
      const ids = pool.view().map((b) => b.id);
      assert.deepEqual(ids.sort(), fresh.sort());
      assert.ok(old.every((id) => !ids.includes(id)));
    });

    it('a busy old backend finishes its request, then retires even while requests wait', () => {
      const { pool } = setup({ size: 1 });
      const [old] = startReady(pool);
      const g = grant(pool.checkout(W1, 1))!;
      const replacement = spawned(pool.roll())[0]!;
      pool.checkout(W2, 2);
      assert.equal(pool.queueLength, 1);
      // The replacement is ready: it serves the waiter; the old backend is marked, not cut.
      const ready = pool.backendReady(replacement);
      assert.equal(grant(ready)?.backend, replacement);
      assert.equal(pool.backend(old!)!.state.phase, 'busy');
      pool.checkout(W2, 3);
      const returned = pool.checkin(W1, g.lease, 'ok');
      assert.deepEqual(stopped(returned), [old], 'retired on return, not handed to the waiter');
      assert.equal(grant(returned), undefined);
    });

    it('a backend held by an upgraded connection is asked to close it when replaced, and retires once returned', () => {
      const { pool } = setup({ size: 1 });
      const [old] = startReady(pool);
      const g = grant(pool.checkout(W1, 1))!;
      pool.upgraded(W1, g.lease);
      const state = pool.backend(old!)!.state;
      assert.ok(state.phase === 'busy' && state.use === 'upgraded');
      const replacement = spawned(pool.roll())[0]!;
      const ready = pool.backendReady(replacement);
      assert.deepEqual(
        ready.filter((e) => e.type === 'close-upgraded'),
        [{ type: 'close-upgraded', worker: W1, lease: g.lease }],
        'the worker is asked to close the WebSocket (after shutdown_timeout_ms)',
      );
      assert.deepEqual(stopped(pool.checkin(W1, g.lease, 'ok')), [old]);
    });

    it('an old backend still starting is dropped at once; a replacement that never gets ready leaves the old ones serving', () => {
      const { pool, clock } = setup({ size: 1, startTimeoutMs: 1000 });
      const [old] = startReady(pool);
      const replacement = spawned(pool.roll())[0]!;
      clock.advance(1000);
      const effects = pool.tick();
      assert.deepEqual(stopped(effects), [replacement]);
      pool.backendExited(replacement);
      assert.equal(pool.backend(old!)!.state.phase, 'idle', 'the old backend keeps serving');
      assert.ok(grant(pool.checkout(W1, 1)));
    });
  });

  it('counts overflow spawns and restarts', () => {
    const { pool } = setup({ size: 1, maxOverflow: 1 });
    const [first] = startReady(pool);
    grant(pool.checkout(W1, 1));
    const overflow = spawned(pool.checkout(W1, 2));
    assert.equal(overflow.length, 1);
    assert.equal(pool.totals.overflowSpawns, 1);
    pool.backendExited(first!); // a crash
    assert.equal(pool.totals.restarts, 1);
  });
});

describe('readiness, boot failure and recycling in the pool', () => {
  it('a backend that refused a connection goes back to starting, and the request is first in line for another', () => {
    const { pool } = setup({ size: 2 });
    const [a, b] = startReady(pool);
    const first = grant(pool.checkout(W1, 1))!;
    const other = first.backend === a ? b! : a!;
    grant(pool.checkout(W1, 2));
    pool.checkout(W2, 3); // waits
    const effects = pool.checkin(W1, first.lease, 'refused');
    assert.deepEqual(
      effects.filter((e) => e.type === 'probe'),
      [{ type: 'probe', backend: first.backend }],
    );
    assert.equal(pool.backend(first.backend)?.state.phase, 'starting');
    assert.deepEqual(stopped(effects), [], 'not retired: a refusal is not a crash');
    // The refused request asks again and goes before request 3, which waited longer.
    pool.checkout(W1, 4, true);
    const next = grant(pool.checkin(W1, leaseOf(pool, other), 'ok'));
    assert.deepEqual([next?.worker, next?.checkoutSeq], [W1, 4]);
  });

  it('no backend ever ready and boot_attempts failed starts in a row: the pool gives up, once', () => {
    const { pool, clock } = setup({ size: 1, bootAttempts: 3 });
    let ids = spawned(pool.start());
    const gaveUp: PoolEffect[] = [];
    for (let i = 0; i < 6 && ids.length > 0; i++) {
      const effects = pool.backendExited(ids[0]!);
      gaveUp.push(...effects.filter((e) => e.type === 'boot-failed'));
      clock.advance(2000);
      ids = spawned([...effects, ...pool.tick()]);
    }
    assert.deepEqual(gaveUp, [{ type: 'boot-failed', attempts: 3 }]);
    assert.deepEqual(ids, [], 'nothing more is started');
  });

  it('after a backend has been ready, failed starts never give up', () => {
    const { pool, clock } = setup({ size: 1, bootAttempts: 2 });
    const [a] = startReady(pool);
    let ids = spawned(pool.backendExited(a!));
    for (let i = 0; i < 5; i++) {
      const effects = pool.backendExited(ids[0]!);
      assert.ok(!effects.some((e) => e.type === 'boot-failed'));
      clock.advance(60_000);
      ids = spawned([...effects, ...pool.tick()]);
      assert.equal(ids.length, 1);
    }
  });

  it('max_requests is a limit: a grant may be passed on only as often as the limit leaves, and at it the backend retires at once while its replacement starts', () => {
    const { pool } = setup({ size: 1, maxRequests: 2 });
    const [a] = startReady(pool);
    const first = grant(pool.checkout(W1, 1))!;
    assert.equal(first.passes, 1, 'the first request may be passed on once');
    pool.checkin(W1, first.lease, 'ok');
    const second = grant(pool.checkout(W1, 2))!;
    assert.equal(second.passes, 0, 'the last request under the limit may not');
    const atLimit = pool.checkin(W1, second.lease, 'ok');
    assert.deepEqual(
      atLimit.filter((e) => e.type === 'end'),
      [{ type: 'end', backend: a, why: 'max-requests' }],
    );
    const [replacement] = spawned(atLimit);
    assert.ok(replacement !== undefined, 'a replacement starts at once');
    assert.equal(grant(pool.checkout(W1, 3)), undefined, 'the next request waits for it');
    assert.equal(grant(pool.backendReady(replacement))?.backend, replacement);
  });

  it('a cancelled lease is not a served request', () => {
    const { pool } = setup({ size: 1, maxRequests: 2 });
    const [a] = startReady(pool);
    for (let i = 1; i <= 5; i++) {
      assert.ok(grant(pool.checkout(W1, i)));
      assert.deepEqual(stopped(pool.cancel(W1, i)), []);
    }
    assert.equal(pool.backend(a!)?.served, 0);
  });

  it('max_requests_jitter spreads the limits over max_requests..max_requests + jitter', () => {
    const { pool } = setup({ size: 1, maxRequests: 5, maxRequestsJitter: 3 }, 7);
    const limits = new Set<number>();
    let [id] = startReady(pool);
    for (let round = 0; round < 20; round++) {
      let served = 0;
      for (;;) {
        const g = grant(pool.checkout(W1, round * 100 + served))!;
        const effects = pool.checkin(W1, g.lease, 'ok');
        served++;
        const [next] = spawned(effects);
        if (next !== undefined) {
          pool.backendReady(next);
          pool.backendExited(id!);
          id = next;
          break;
        }
      }
      limits.add(served);
    }
    for (const n of limits) assert.ok(n >= 5 && n <= 8, `limit ${n}`);
    assert.ok(limits.size > 1, 'not every backend got the same limit');
  });

  it('max_rss: a backend over the limit is replaced first, then retires', () => {
    const { pool } = setup({ size: 1, maxRssBytes: 100 });
    const [a] = startReady(pool);
    assert.deepEqual(spawned(pool.backendRss(a!, 50)), []);
    const [replacement] = spawned(pool.backendRss(a!, 150));
    assert.ok(replacement !== undefined);
    const stops = pool.backendReady(replacement).filter((e) => e.type === 'end');
    assert.deepEqual(stops, [{ type: 'end', backend: a, why: 'max-rss' }]);
  });
});

/** The lease of the busy backend `id`. */
function leaseOf(pool: Pool, id: number): number {
  const state = pool.backend(id)?.state;
  return state?.phase === 'busy' ? state.lease : -1;
}

describe('health checks in the pool', () => {
  it('idle backends are leased to the health checker; a request that comes meanwhile waits for the check', () => {
    const { pool } = setup({ size: 1 });
    const [a] = startReady(pool);
    const checks = pool.checkHealth().filter((e) => e.type === 'health-check');
    assert.deepEqual(
      checks.map((c) => c.type === 'health-check' && c.backend),
      [a],
    );
    assert.equal(grant(pool.checkout(W1, 1)), undefined, 'the request waits');
    const lease = checks[0]!.type === 'health-check' ? checks[0]!.lease : -1;
    const next = grant(pool.healthChecked(lease, true));
    assert.deepEqual([next?.worker, next?.checkoutSeq, next?.backend], [W1, 1, a]);
  });

  it('three failed checks in a row replace the backend; a passing one resets the count', () => {
    const { pool } = setup({ size: 1, healthFailures: 3 });
    const [a] = startReady(pool);
    const check = (healthy: boolean) => {
      const c = pool.checkHealth().find((e) => e.type === 'health-check');
      return c?.type === 'health-check' ? pool.healthChecked(c.lease, healthy) : [];
    };
    check(false);
    check(false);
    check(true);
    check(false);
    assert.deepEqual(stopped(check(false)), [], 'two failures in a row, not three');
    const third = check(false);
    assert.deepEqual(
      third.filter((e) => e.type === 'end'),
      [{ type: 'end', backend: a, why: 'unhealthy' }],
    );
    // Its process still holds a port: the replacement starts once it has exited.
    assert.equal(spawned(pool.backendExited(a!)).length, 1, 'a replacement starts');
  });
});

describe('sticky leases', () => {
  function revokes(effects: PoolEffect[]) {
    return effects.flatMap((e) => (e.type === 'revoke' ? [e] : []));
  }

  it('a lease granted while no other worker waits is open; a pass moves it on without a grant', () => {
    const { pool } = setup({ size: 1 });
    startReady(pool);
    const first = grant(pool.checkout(W1, 1))!;
    assert.equal(first.upTo, Infinity);
    assert.deepEqual(pool.checkout(W1, 2), []);
    const passed = pool.pass(W1, first.lease, 2);
    assert.equal(grant(passed), undefined, 'no grant: the worker decided');
    assert.equal(pool.queueLength, 0);
    const [busy] = pool.view();
    assert.ok(busy?.state.phase === 'busy');
    assert.equal(busy.state.checkoutSeq, 2);
    assert.equal(busy.state.lease, first.lease);
    assert.equal(busy.served, 1, 'the request before the pass counts as served');
  });

  it("another worker's waiting request bounds the lease to the checkouts that came before it", () => {
    const { pool } = setup({ size: 1 });
    startReady(pool);
    const first = grant(pool.checkout(W1, 1))!;
    pool.checkout(W1, 2);
    const effects = pool.checkout(W2, 1);
    assert.deepEqual(revokes(effects), [
      { type: 'revoke', worker: W1, seq: 1, leases: [first.lease], upTo: 2 },
    ]);
    pool.checkout(W1, 3);
    // W1 passes to 2 (before W2's request), then must return it: W2's request is next.
    assert.deepEqual(pool.pass(W1, first.lease, 2), []);
    const next = grant(pool.checkin(W1, first.lease, 'ok'))!;
    assert.equal(next.worker, W2);
    assert.equal(next.upTo, 0, "W1's request 3 waits behind, so W2 may pass to nothing");
  });

  it('a grant bounds the lease by the queue: own checkouts up to the first of another worker', () => {
    const { pool } = setup({ size: 1 });
    startReady(pool);
    const held = grant(pool.checkout(W2, 1))!;
    for (const [worker, id] of [
      [W1, 1],
      [W1, 2],
      [W1, 3],
      [W2, 2],
      [W1, 4],
    ] as const)
      pool.checkout(worker, id);
    const next = grant(pool.checkin(W2, held.lease, 'ok'))!;
    assert.deepEqual([next.worker, next.checkoutSeq, next.upTo], [W1, 1, 3]);
  });

  it('a pass beyond a bound the worker had not confirmed is accepted; beyond a confirmed one it is an anomaly', () => {
    const { pool } = setup({ size: 1 });
    startReady(pool);
    const first = grant(pool.checkout(W1, 1))!;
    pool.checkout(W2, 1);
    pool.checkout(W1, 2);
    const crossed = pool.pass(W1, first.lease, 2);
    assert.ok(!crossed.some((e) => e.type === 'anomaly'), 'the pass crossed the revoke');
    pool.revoked(W1, 1);
    pool.checkout(W1, 3);
    const beyond = pool.pass(W1, first.lease, 3);
    assert.ok(beyond.some((e) => e.type === 'anomaly' && /confirmed bound 0/.test(e.message)));
  });

  it('a grant that crossed a pass to the same request is taken back and serves the next', () => {
    const { pool } = setup({ size: 2 });
    startReady(pool);
    const first = grant(pool.checkout(W1, 1))!;
    const second = grant(pool.checkout(W1, 2))!;
    // The worker passed backend 1 to request 2 before the grant of the other reached it.
    pool.checkout(W1, 3);
    pool.pass(W1, first.lease, 2);
    const other = pool.view().find((b) => b.id === second.backend)!;
    assert.equal(other.state.phase, 'busy', 'it went straight to request 3');
    assert.ok(other.state.phase === 'busy' && other.state.checkoutSeq === 3);
  });

  it('a busy backend chosen to retire is revoked to nothing, so its worker returns it', () => {
    const { pool } = setup({ size: 2, maxOverflow: 1 });
    startReady(pool);
    const leases = [1, 2].map((id) => grant(pool.checkout(W1, id))!);
    const overflow = spawned(pool.checkout(W1, 3))[0]!;
    const ready = pool.backendReady(overflow);
    assert.ok(grant(ready), 'the overflow backend serves the waiting request');
    // Nobody waits now and 3 backends are live: fifo retires backend 1, busy, when returned.
    const oldest = leases.find((l) => l.backend === 1)!;
    assert.deepEqual(revokes(ready), [
      { type: 'revoke', worker: W1, seq: 1, leases: [oldest.lease], upTo: 0 },
    ]);
    const marked = pool.view().find((b) => b.id === 1)!;
    assert.ok(marked.state.phase === 'busy' && marked.state.retireOnReturn);
    assert.deepEqual(stopped(pool.checkin(W1, oldest.lease, 'ok')), [1]);
  });
});

describe('service_start_concurrency', () => {
  it('starts at most that many backends at once; each one ready lets the next start', () => {
    const { pool } = setup({ size: 3, startConcurrency: 1 });
    assert.deepEqual(spawned(pool.start()), [1]);
    assert.deepEqual(spawned(pool.backendReady(1)), [2]);
    assert.deepEqual(
      spawned(pool.checkout(W1, 1)),
      [],
      'a waiting request does not go past the limit',
    );
    assert.deepEqual(spawned(pool.backendReady(2)), [3]);
  });

  it('a start that fails frees its place for the next', () => {
    const { pool, clock } = setup({ size: 2, startConcurrency: 1 });
    assert.deepEqual(spawned(pool.start()), [1]);
    pool.backendExited(1);
    clock.advance(1000);
    assert.deepEqual(spawned(pool.tick()), [2], 'after the backoff');
  });
});
