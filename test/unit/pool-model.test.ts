import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Pool, type PoolEffect, type PoolSettings } from '../../lib/supervisor/pool.js';
import { FakeClock } from '../helpers/fake-clock.js';

/**
 * A seeded random walk through every event the pool can see (checkout, checkin, cancel, a worker
 * passing its lease on, a revoke reaching its worker, backend ready / dies / finishes stopping,
 * worker dies, time passes, rolling restart, pool_size change), checked after every step against
 * a tiny reference model of what the outside world was told. The model's workers pass leases as
 * the real ones do, by what they know: a revoke reaches them only when the walk delivers it.
 */
interface Model {
  /** lease → backend, for every grant not yet returned or voided. */
  leases: Map<number, { backend: number; worker: number; checkoutSeq: number }>;
  /** requests asked and not yet answered, in arrival order. */
  asked: { worker: number; checkoutSeq: number }[];
  /** requests that got an answer (grant or reject): each at most once. */
  answered: Set<string>;
  /** backends started and not yet exited; those asked to stop. */
  alive: Set<number>;
  /** Retiring at their max_requests: replaced at once, so beyond the cap until they exit. */
  atLimit: Set<number>;
  stopping: Set<number>;
  ready: Set<number>;
  queuedOrder: string[];
  /** leases whose connection was upgraded (a WebSocket): held until checked in. */
  upgraded: Set<number>;
  /** What each worker knows of its leases' bounds (Infinity: open), as granted and revoked. */
  bounds: Map<number, number>;
  /** Passes each lease has left under max_requests, as its grant said. */
  passes: Map<number, number>;
  /** Revokes sent and not yet delivered, in the order sent (each worker's channel is ordered). */
  undelivered: { worker: number; seq: number; leases: readonly number[]; upTo: number }[];
  /**
   * Each request's place in the one global queue order: increasing as asked; a request asked
   * again after a refusal goes to the head (negative, the later the further ahead).
   */
  order: Map<string, number>;
  again: Set<string>;
  /** Grants the worker has not acted on yet: one may cross a pass to the same request. */
  fresh: Set<number>;
  /** How long each lease may be held idle, as its grant said. */
  holdMs: Map<number, number>;
  /** Leases their worker holds idle for its next request (no request on them), and since when. */
  idle: Map<number, number>;
  /** Requests served on each held lease with no message, not reported yet. */
  reused: Map<number, number>;
}

const key = (worker: number, checkoutSeq: number) => `${worker}:${checkoutSeq}`;

function runWalk(seed: number, settings: PoolSettings, steps: number): void {
  const clock = new FakeClock(seed);
  const pool = new Pool(settings, clock);
  const rand = new FakeClock(seed * 7919 + 1);
  const pick = <T>(items: readonly T[]): T | undefined =>
    items.length === 0 ? undefined : items[Math.floor(rand.random() * items.length)];
  const model: Model = {
    leases: new Map(),
    asked: [],
    answered: new Set(),
    alive: new Set(),
    atLimit: new Set(),
    stopping: new Set(),
    ready: new Set(),
    queuedOrder: [],
    upgraded: new Set(),
    bounds: new Map(),
    passes: new Map(),
    undelivered: [],
    order: new Map(),
    again: new Set(),
    fresh: new Set(),
    holdMs: new Map(),
    idle: new Map(),
    reused: new Map(),
  };
  /** Forgets a lease the worker no longer has (returned, voided, or its backend gone). */
  const drop = (lease: number): void => {
    model.leases.delete(lease);
    model.fresh.delete(lease);
    model.idle.delete(lease);
    model.reused.delete(lease);
  };
  /** The worker gives a lease it holds idle back, with what it served there. */
  const giveBack = (lease: number, step: string): void => {
    const l = model.leases.get(lease)!;
    const idleMs = clock.now() - model.idle.get(lease)!;
    const reused = model.reused.get(lease) ?? 0;
    drop(lease);
    apply(pool.checkin(l.worker, lease, 'ok', { reused, idleMs }), step);
  };
  let arrivals = 0;
  const ask = (worker: number, checkoutSeq: number, again: boolean): void => {
    model.asked.push({ worker, checkoutSeq });
    const k = key(worker, checkoutSeq);
    arrivals++;
    model.order.set(k, again ? -arrivals : arrivals);
    if (again) model.again.add(k);
  };
  /** No request of another worker that waits came before `k` in the global order. */
  const assertNoneOvertaken = (k: string, worker: number, step: string): void => {
    const mine = model.order.get(k)!;
    for (const a of model.asked) {
      if (a.worker === worker) continue;
      const theirs = model.order.get(key(a.worker, a.checkoutSeq))!;
      assert.ok(
        theirs > mine,
        `${step}: request ${k} was served before ${key(a.worker, a.checkoutSeq)}, which waited longer`,
      );
    }
  };
  let nextRequest = 1;
  const workers = [1, 2, 3];
  let current = settings;
  // A rolling restart or recycling may start one backend beyond the cap.
  let rolled = settings.maxRequests > 0 || settings.maxRssBytes > 0;

  const apply = (effects: PoolEffect[], step: string): void => {
    for (const e of effects) {
      switch (e.type) {
        case 'spawn':
          model.alive.add(e.backend);
          break;
        case 'end':
          assert.ok(model.alive.has(e.backend), `${step}: end of a backend not alive`);
          model.stopping.add(e.backend);
          if (e.why === 'max-requests') model.atLimit.add(e.backend);
          // A worker's lease stays until the worker gives it back or hears it is lost: the pool
          // ends a backend a live worker holds only once it has it back.
          for (const [lease, l] of model.leases)
            if (l.backend === e.backend && l.worker === 0) drop(lease);
          break;
        case 'lost': {
          const l = model.leases.get(e.lease);
          assert.ok(
            !l || l.worker === e.worker,
            `${step}: lost lease ${e.lease} of another worker`,
          );
          drop(e.lease);
          break;
        }
        case 'revoke':
          for (const lease of e.leases) {
            assert.equal(
              model.leases.get(lease)?.worker,
              e.worker,
              `${step}: revoke of lease ${lease}, not one of worker ${e.worker}`,
            );
          }
          model.undelivered.push(e);
          break;
        case 'anomaly':
          assert.doesNotMatch(e.message, /beyond its confirmed bound/, step);
          break;
        case 'grant': {
          const k = key(e.worker, e.checkoutSeq);
          assert.ok(!model.answered.has(k), `${step}: request ${k} answered twice`);
          model.answered.add(k);
          assert.ok(
            model.ready.has(e.backend),
            `${step}: granted backend ${e.backend} is not ready`,
          );
          assert.ok(!model.stopping.has(e.backend), `${step}: granted a backend that is stopping`);
          for (const l of model.leases.values()) {
            assert.notEqual(l.backend, e.backend, `${step}: backend ${e.backend} leased twice`);
          }
          model.leases.set(e.lease, {
            backend: e.backend,
            worker: e.worker,
            checkoutSeq: e.checkoutSeq,
          });
          if (model.order.has(k)) assertNoneOvertaken(k, e.worker, step);
          model.asked = model.asked.filter((a) => key(a.worker, a.checkoutSeq) !== k);
          model.bounds.set(e.lease, e.upTo);
          model.passes.set(e.lease, e.passes);
          model.holdMs.set(e.lease, e.holdMs);
          model.fresh.add(e.lease);
          break;
        }
        case 'health-check':
          assert.ok(model.ready.has(e.backend), `${step}: health check of a backend not ready`);
          for (const l of model.leases.values()) {
            assert.notEqual(l.backend, e.backend, `${step}: health check of a leased backend`);
          }
          model.leases.set(e.lease, { backend: e.backend, worker: 0, checkoutSeq: 0 });
          break;
        case 'close-upgraded': {
          const held = model.leases.get(e.lease);
          assert.ok(
            held && held.worker === e.worker && model.upgraded.has(e.lease),
            `${step}: close-upgraded for lease ${e.lease}, which is not an upgraded lease of worker ${e.worker}`,
          );
          const view = pool.view().find((v) => v.id === held.backend);
          assert.ok(
            view?.state.phase === 'busy' && view.state.retireOnReturn,
            `${step}: close-upgraded for a backend that is not retiring`,
          );
          break;
        }
        case 'reject': {
          const k = key(e.worker, e.checkoutSeq);
          assert.ok(!model.answered.has(k), `${step}: request ${k} answered twice`);
          model.answered.add(k);
          model.asked = model.asked.filter((a) => key(a.worker, a.checkoutSeq) !== k);
          break;
        }
        default:
          break;
      }
    }
    // Processes are only ever added up to the cap (one more during a rolling restart); after a
    // smaller pool_size, retiring ones may stay above it until they exit.
    const exitingAtLimit = [...model.atLimit].filter((id) => model.alive.has(id)).length;
    const cap = current.size + current.maxOverflow + (rolled ? 1 : 0) + exitingAtLimit;
    const spawns = effects.filter((e) => e.type === 'spawn').length;
    if (current.startConcurrency > 0) {
      assert.ok(
        spawns <= current.startConcurrency,
        `${step}: ${spawns} starts at once, service_start_concurrency ${current.startConcurrency}`,
      );
    }
    if (spawns > 0) {
      assert.ok(model.alive.size <= cap, `${step}: ${model.alive.size} backends alive, cap ${cap}`);
    }
    const views = pool.view();
    // max_requests is a limit, passes included.
    if (current.maxRequests > 0) {
      const most = current.maxRequests + current.maxRequestsJitter;
      for (const v of views) {
        assert.ok(v.served <= most, `${step}: backend ${v.id} served ${v.served}, limit ≤ ${most}`);
      }
    }
    assert.deepEqual(
      views.map((v) => v.id).sort((a, b) => a - b),
      [...model.alive].sort((a, b) => a - b),
      `${step}: pool and world disagree on which backends exist`,
    );
    if (pool.queueLength > 0) {
      assert.ok(
        !views.some((v) => v.state.phase === 'idle'),
        `${step}: a request waits while a backend is idle`,
      );
    }
    for (const v of views) {
      if (v.state.phase === 'busy')
        assert.ok(model.leases.has(v.state.lease), `${step}: busy without a lease`);
    }
    // No backend sits idle in one worker while another worker's request waits, beyond the one
    // round trip of a revoke on its way to that worker.
    for (const lease of model.idle.keys()) {
      const l = model.leases.get(lease)!;
      const waits = model.asked.some((a) => a.worker !== l.worker);
      if (!waits) continue;
      assert.ok(
        model.undelivered.some((r) => r.worker === l.worker && r.leases.includes(lease)),
        `${step}: lease ${lease} is held idle by worker ${l.worker} while another worker's request waits, and no revoke is on its way`,
      );
    }
  };
  /** Whether the worker may serve its next request on this lease with no message (lease-client.ts). */
  const mayHold = (lease: number): boolean =>
    model.bounds.get(lease) === Infinity &&
    (model.passes.get(lease) ?? 0) > 0 &&
    (model.holdMs.get(lease) ?? 0) > 0 &&
    !model.upgraded.has(lease);

  apply(pool.start(), 'start');
  for (let i = 0; i < steps; i++) {
    const roll = rand.random();
    if (roll < 0.3) {
      const worker = pick(workers)!;
      const checkoutSeq = nextRequest++;
      const reuse = [...model.idle.keys()].find(
        (lease) => model.leases.get(lease)!.worker === worker && mayHold(lease),
      );
      if (reuse !== undefined) {
        // A request served on a backend the worker holds: no message at all.
        const l = model.leases.get(reuse)!;
        const step = `reuse ${reuse} for ${worker}:${checkoutSeq}`;
        assert.ok(
          model.alive.has(l.backend) && !model.stopping.has(l.backend),
          `${step}: held backend ${l.backend} is gone or stopping`,
        );
        if (!model.undelivered.some((r) => r.worker === worker)) {
          const overtaken = model.asked.find((a) => a.worker !== worker);
          assert.equal(
            overtaken,
            undefined,
            `${step}: served ahead of ${overtaken && key(overtaken.worker, overtaken.checkoutSeq)}, which waits`,
          );
        }
        model.idle.delete(reuse);
        model.passes.set(reuse, model.passes.get(reuse)! - 1);
        model.reused.set(reuse, (model.reused.get(reuse) ?? 0) + 1);
        l.checkoutSeq = checkoutSeq;
        continue;
      }
      ask(worker, checkoutSeq, false);
      apply(pool.checkout(worker, checkoutSeq), `checkout ${worker}:${checkoutSeq}`);
    } else if (roll < 0.55) {
      const lease = pick([...model.leases.keys()]);
      if (lease === undefined) continue;
      const l = model.leases.get(lease)!;
      if (model.idle.has(lease)) {
        // Held idle past its holdMs (or the worker drains): given back.
        giveBack(lease, `give back ${lease}`);
        continue;
      }
      if (
        l.worker !== 0 &&
        !model.upgraded.has(lease) &&
        mayHold(lease) &&
        !model.asked.some((a) => a.worker === l.worker) &&
        rand.random() < 0.6
      ) {
        // Its request ended well with nothing of its worker waiting: held idle, no message.
        model.fresh.delete(lease);
        model.idle.set(lease, clock.now());
        continue;
      }
      const reusedHere = model.reused.get(lease) ?? 0;
      drop(lease);
      if (l.worker === 0) {
        const healthy = rand.random() < 0.6;
        apply(pool.healthChecked(lease, healthy), `health ${lease} ${healthy}`);
        continue;
      }
      // An upgraded connection has had its answer (101): it can end well or break, nothing else.
      const outcome = model.upgraded.delete(lease)
        ? pick(['ok', 'ok', 'broken'] as const)!
        : pick([
            'ok',
            'ok',
            'ok',
            'ok',
            'stuck',
            'broken',
            'refused',
            'bad-response',
            'abandoned',
          ] as const)!;
      // A refusal sends the backend back to starting; the worker asks again, first in line.
      if (outcome === 'refused') model.ready.delete(l.backend);
      apply(
        pool.checkin(l.worker, lease, outcome, { reused: reusedHere }),
        `checkin ${lease} ${outcome}`,
      );
      if (outcome === 'refused') {
        const checkoutSeq = nextRequest++;
        ask(l.worker, checkoutSeq, true);
        apply(
          pool.checkout(l.worker, checkoutSeq, true),
          `checkout again ${l.worker}:${checkoutSeq}`,
        );
      }
    } else if (roll < 0.58) {
      const lease = pick(
        [...model.leases].filter(
          ([id, l]) => l.worker !== 0 && !model.upgraded.has(id) && !model.idle.has(id),
        ),
      )?.[0];
      if (lease === undefined) continue;
      model.upgraded.add(lease);
      model.fresh.delete(lease);
      apply(pool.upgraded(model.leases.get(lease)!.worker, lease), `upgraded ${lease}`);
    } else if (roll < 0.63) {
      // A worker whose request ended well passes the backend to its oldest waiting checkout that
      // its bound allows, as the lease client does; or, now and then, to a checkout whose grant
      // of another backend is still on its way (the two cross).
      const lease = pick(
        [...model.leases].filter(
          ([id, l]) => l.worker !== 0 && !model.upgraded.has(id) && !model.idle.has(id),
        ),
      )?.[0];
      if (lease === undefined) continue;
      const l = model.leases.get(lease)!;
      const bound = model.bounds.get(lease) ?? 0;
      // As the lease client does: no pass once the grant's budget is spent.
      if ((model.passes.get(lease) ?? 0) <= 0) continue;
      const crossing = rand.random() < 0.2;
      let to: number | undefined;
      let crossed: number | undefined;
      if (crossing) {
        crossed = pick(
          [...model.fresh].filter((id) => {
            const other = model.leases.get(id);
            return id !== lease && other?.worker === l.worker && other.checkoutSeq <= bound;
          }),
        );
        if (crossed === undefined) continue;
        to = model.leases.get(crossed)!.checkoutSeq;
      } else {
        to = model.asked
          .filter((a) => a.worker === l.worker && !model.again.has(key(a.worker, a.checkoutSeq)))
          .map((a) => a.checkoutSeq)
          .sort((a, b) => a - b)[0];
        if (to === undefined || to > bound) continue;
        const current = !model.undelivered.some((r) => r.worker === l.worker);
        if (current) assertNoneOvertaken(key(l.worker, to), l.worker, `pass ${lease} → ${to}`);
      }
      const k = key(l.worker, to);
      model.asked = model.asked.filter((a) => key(a.worker, a.checkoutSeq) !== k);
      model.answered.add(k);
      model.fresh.delete(lease);
      if (crossed !== undefined) {
        // The pool takes the crossing grant back; the worker will ignore it.
        model.leases.delete(crossed);
        model.fresh.delete(crossed);
      }
      l.checkoutSeq = to;
      model.passes.set(lease, model.passes.get(lease)! - 1);
      apply(pool.pass(l.worker, lease, to), `pass ${lease} → ${k}`);
      if (crossed !== undefined) {
        const backend = pool
          .view()
          .find((v) => v.state.phase === 'busy' && v.state.lease === crossed);
        assert.equal(
          backend,
          undefined,
          `pass ${lease} → ${k}: the crossing lease ${crossed} is still out`,
        );
      }
    } else if (roll < 0.66) {
      // A revoke reaches its worker (each worker's messages in order), which confirms it.
      const first = pick(model.undelivered);
      if (!first) continue;
      const index = model.undelivered.findIndex((r) => r.worker === first.worker);
      const [revoke] = model.undelivered.splice(index, 1);
      for (const lease of revoke!.leases) {
        const known = model.bounds.get(lease);
        if (known !== undefined) model.bounds.set(lease, Math.min(known, revoke!.upTo));
        // As the lease client does: an idle lease that may no longer be held goes back first.
        if (model.idle.has(lease) && !mayHold(lease)) giveBack(lease, `revoke gives back ${lease}`);
      }
      apply(pool.revoked(revoke!.worker, revoke!.seq), `revoked ${revoke!.worker}#${revoke!.seq}`);
    } else if (roll < 0.69) {
      const waiting = pick(model.asked);
      if (!waiting) continue;
      model.asked = model.asked.filter((a) => a !== waiting);
      model.answered.add(key(waiting.worker, waiting.checkoutSeq));
      apply(
        pool.cancel(waiting.worker, waiting.checkoutSeq),
        `cancel ${key(waiting.worker, waiting.checkoutSeq)}`,
      );
    } else if (roll < 0.8) {
      const starting = pool
        .view()
        .filter((v) => v.state.phase === 'starting')
        .map((v) => v.id);
      const id = pick(starting);
      if (id === undefined) continue;
      model.ready.add(id);
      apply(pool.backendReady(id), `ready ${id}`);
    } else if (roll < 0.88) {
      const id = pick([...model.stopping].filter((s) => model.alive.has(s)));
      if (id === undefined) continue;
      model.alive.delete(id);
      apply(pool.backendExited(id), `stopped ${id} exits`);
    } else if (roll < 0.91) {
      const id = pick([...model.alive]);
      if (id === undefined) continue;
      model.alive.delete(id);
      apply(pool.backendExited(id), `crash ${id}`);
      // A worker hears of it by 'lost'; a health check's lease ends with the backend.
      for (const [lease, l] of model.leases) if (l.backend === id && l.worker === 0) drop(lease);
    } else if (roll < 0.93) {
      const worker = pick(workers)!;
      for (const [lease, l] of model.leases) if (l.worker === worker) drop(lease);
      model.asked = model.asked.filter((a) => a.worker !== worker);
      model.undelivered = model.undelivered.filter((r) => r.worker !== worker);
      apply(pool.workerExited(worker), `worker ${worker} dies`);
    } else if (roll < 0.94) {
      rolled = true;
      apply(pool.roll(), 'roll');
    } else if (roll < 0.942) {
      apply(pool.checkHealth(), 'health checks');
    } else if (roll < 0.945) {
      const id = pick([...model.alive]);
      if (id === undefined) continue;
      const bytes = Math.floor(rand.random() * 2000);
      apply(pool.backendRss(id, bytes), `rss ${id} ${bytes}`);
    } else if (roll < 0.95) {
      const size = Math.max(1, Math.min(4, current.size + (rand.random() < 0.5 ? -1 : 1)));
      current = { ...current, size };
      apply(pool.reconfigure(current), `pool_size ${size}`);
    } else {
      clock.advance(Math.floor(rand.random() * 400));
      apply(pool.tick(), 'tick');
    }
  }

  // Quiesce: return every lease, let every stop finish and every start succeed, let time pass.
  for (let round = 0; round < 50; round++) {
    for (const lease of [...model.idle.keys()]) giveBack(lease, 'final give back');
    for (const revoke of model.undelivered.splice(0))
      apply(pool.revoked(revoke.worker, revoke.seq), 'final revoked');
    for (const [lease, l] of [...model.leases]) {
      drop(lease);
      if (l.worker === 0) apply(pool.healthChecked(lease, true), 'final health');
      else apply(pool.checkin(l.worker, lease, 'ok'), 'final checkin');
    }
    for (const id of [...model.stopping].filter((s) => model.alive.has(s))) {
      model.alive.delete(id);
      apply(pool.backendExited(id), 'final exit');
    }
    for (const v of pool.view().filter((b) => b.state.phase === 'starting')) {
      model.ready.add(v.id);
      apply(pool.backendReady(v.id), 'final ready');
    }
    for (const waiting of [...model.asked]) {
      model.asked = model.asked.filter((a) => a !== waiting);
      model.answered.add(key(waiting.worker, waiting.checkoutSeq));
      apply(pool.cancel(waiting.worker, waiting.checkoutSeq), 'final cancel');
    }
    clock.advance(settings.restart.maxDelayMs);
    apply(pool.tick(), 'final tick');
  }
  const live = pool.view().filter((v) => v.state.phase === 'idle' || v.state.phase === 'busy');
  assert.equal(pool.queueLength, 0);
  assert.equal(live.length, current.size, 'a quiet pool settles at pool_size backends');
  assert.ok(!pool.rolling, 'a rolling restart completes');
}

describe('pool model test', () => {
  const shapes: PoolSettings[] = [
    {
      size: 1,
      maxOverflow: 2,
      strategy: 'fifo',
      queueTimeoutMs: 500,
      queueMax: 5,
      queueMaxPerClient: 0,
      startTimeoutMs: 800,
      startConcurrency: 0,
      // Giving up at boot is tested on its own; here failures must keep the pool trying.
      bootAttempts: Number.MAX_SAFE_INTEGER,
      maxRequests: 0,
      maxRequestsJitter: 0,
      maxRssBytes: 0,
      idleRetireMs: 0,
      healthFailures: 3,
      restart: { baseDelayMs: 10, maxDelayMs: 200, stableAfterMs: 1000 },
    },
    {
      size: 3,
      maxOverflow: 2,
      strategy: 'lifo',
      queueTimeoutMs: 0,
      queueMax: 50,
      queueMaxPerClient: 0,
      startTimeoutMs: 2000,
      startConcurrency: 1,
      bootAttempts: Number.MAX_SAFE_INTEGER,
      maxRequests: 0,
      maxRequestsJitter: 0,
      maxRssBytes: 0,
      idleRetireMs: 300,
      healthFailures: 3,
      restart: { baseDelayMs: 10, maxDelayMs: 200, stableAfterMs: 1000 },
    },
    {
      size: 2,
      maxOverflow: 0,
      strategy: 'fifo',
      queueTimeoutMs: 300,
      queueMax: 0,
      queueMaxPerClient: 0,
      startTimeoutMs: 500,
      startConcurrency: 2,
      bootAttempts: Number.MAX_SAFE_INTEGER,
      maxRequests: 0,
      maxRequestsJitter: 0,
      maxRssBytes: 0,
      idleRetireMs: 0,
      healthFailures: 3,
      restart: { baseDelayMs: 10, maxDelayMs: 200, stableAfterMs: 1000 },
    },
    {
      size: 2,
      maxOverflow: 1,
      strategy: 'fifo',
      queueTimeoutMs: 500,
      queueMax: 10,
      queueMaxPerClient: 0,
      startTimeoutMs: 800,
      startConcurrency: 0,
      bootAttempts: Number.MAX_SAFE_INTEGER,
      // Recycling: after 3 to 5 requests, or over 1000 bytes.
      maxRequests: 3,
      maxRequestsJitter: 2,
      maxRssBytes: 1000,
      idleRetireMs: 0,
      healthFailures: 3,
      restart: { baseDelayMs: 10, maxDelayMs: 200, stableAfterMs: 1000 },
    },
  ];
  for (const [index, settings] of shapes.entries()) {
    it(`keeps every invariant over 200 seeded random walks (shape ${index + 1}: size ${settings.size}, overflow ${settings.maxOverflow}, ${settings.strategy})`, () => {
      for (let seed = 1; seed <= 200; seed++) {
        try {
          runWalk(seed, settings, 400);
        } catch (err) {
          (err as Error).message = `seed ${seed}: ${(err as Error).message}`;
          throw err;
        }
      }
    });
  }
});
