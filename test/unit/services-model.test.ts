import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { enforceBudget, type BudgetMember } from '../../lib/supervisor/budget.js';
import { counter, Pool, type PoolEffect, type PoolSettings } from '../../lib/supervisor/pool.js';
import { FakeClock } from '../helpers/fake-clock.js';

/**
 * Several services sharing one backend budget (max_backends), as ServicePools runs them: one
 * pure Pool per service with shared backend and lease numbers, the budget enforced after every
 * event. A seeded random walk of requests, returns, starts, exits, crashes and time, checked
 * after every step: never over budget, never two requests on one backend, and at the end every
 * service keeps its minimum and every waiting request of every service is served within a bound.
 */

interface Service {
  readonly name: string;
  readonly pool: Pool;
  readonly settings: PoolSettings;
}

interface World {
  /** Backend → its service, for every backend started and not exited. */
  alive: Map<number, string>;
  stopping: Set<number>;
  /** Lease → backend, service, worker. */
  leases: Map<number, { backend: number; service: string; worker: number }>;
  /** Requests asked and not answered: key → service. */
  waiting: Map<string, string>;
}

const base: Omit<PoolSettings, 'size' | 'maxOverflow'> = {
  strategy: 'fifo',
  queueTimeoutMs: 0,
  queueMax: 100,
  queueMaxPerClient: 0,
  startTimeoutMs: 10_000,
  startConcurrency: 0,
  bootAttempts: Number.MAX_SAFE_INTEGER,
  maxRequests: 0,
  maxRequestsJitter: 0,
  maxRssBytes: 0,
  idleRetireMs: 300,
  healthFailures: 3,
  restart: { baseDelayMs: 10, maxDelayMs: 200, stableAfterMs: 1000 },
};

export interface Shape {
  readonly budget: number;
  /** pool_overflow_idle_ms; long: only the budget's eviction frees another service's idle backend. */
  readonly idleRetireMs?: number;
  readonly services: readonly { name: string; size: number; maxOverflow: number }[];
}

/** A request key is "worker:seq"; seq grows with every request, whatever its worker. */
const seqOf = (key: string): number => Number(key.split(':')[1]);

export function runServicesWalk(seed: number, shape: Shape, steps: number): void {
  const clock = new FakeClock(seed);
  const rand = new FakeClock(seed * 7919 + 1);
  const pick = <T>(items: readonly T[]): T | undefined =>
    items.length === 0 ? undefined : items[Math.floor(rand.random() * items.length)];
  const numbering = { revokes: counter(), backends: counter(), leases: counter() };
  const services: Service[] = shape.services.map((s) => {
    const settings = {
      ...base,
      size: s.size,
      maxOverflow: s.maxOverflow,
      idleRetireMs: shape.idleRetireMs ?? base.idleRetireMs,
    };
    return { name: s.name, settings, pool: new Pool(settings, clock, numbering) };
  });
  const world: World = {
    alive: new Map(),
    stopping: new Set(),
    leases: new Map(),
    waiting: new Map(),
  };
  let nextSeq = 1;

  const apply = (service: string, effects: PoolEffect[], step: string): void => {
    for (const e of effects) {
      switch (e.type) {
        case 'spawn':
          assert.ok(!world.alive.has(e.backend), `${step}: backend id ${e.backend} reused`);
          world.alive.set(e.backend, service);
          break;
        case 'end':
          assert.equal(world.alive.get(e.backend), service, `${step}: end of a foreign backend`);
          world.stopping.add(e.backend);
          for (const [lease, l] of world.leases)
            if (l.backend === e.backend) world.leases.delete(lease);
          break;
        case 'grant': {
          const k = `${e.worker}:${e.checkoutSeq}`;
          assert.equal(world.waiting.get(k), service, `${step}: ${k} granted by another service`);
          world.waiting.delete(k);
          assert.equal(world.alive.get(e.backend), service, `${step}: granted a foreign backend`);
          for (const l of world.leases.values())
            assert.notEqual(l.backend, e.backend, `${step}: backend ${e.backend} leased twice`);
          world.leases.set(e.lease, { backend: e.backend, service, worker: e.worker });
          break;
        }
        case 'reject':
          world.waiting.delete(`${e.worker}:${e.checkoutSeq}`);
          break;
        case 'revoke':
          // Delivered at once: the workers here never pass.
          apply(service, byName.get(service)!.pool.revoked(e.worker, e.seq), `${step} (revoked)`);
          break;
        default:
          break;
      }
    }
  };

  const byName = new Map(services.map((s) => [s.name, s]));
  const members = new Map<string, BudgetMember>(
    services.map((s) => [
      s.name,
      {
        minimum: s.settings.size,
        ceiling: s.settings.size + s.settings.maxOverflow,
        demand: () => s.pool.demand(),
        setQuota: (q) => apply(s.name, s.pool.setQuota(q), 'quota'),
        lend: (b) => apply(s.name, s.pool.lend(b), 'lend'),
        reclaim: () => apply(s.name, s.pool.reclaim(), 'reclaim'),
      },
    ]),
  );
  const step = (service: string, effects: PoolEffect[], what: string): void => {
    apply(service, effects, what);
    enforceBudget(members, shape.budget);
    assert.ok(
      world.alive.size <= shape.budget,
      `${what}: ${world.alive.size} backends alive, max_backends ${shape.budget}`,
    );
    // A service below its minimum (a backend crashed, or waits out its backoff) has its missing
    // places held free for it: no other service took them.
    let missing = 0;
    for (const s of services) missing += Math.max(0, s.settings.size - s.pool.demand().processes);
    assert.ok(
      missing <= shape.budget - world.alive.size,
      `${what}: ${missing} places missing from minimums, only ${shape.budget - world.alive.size} free`,
    );
  };

  enforceBudget(members, shape.budget);
  for (const s of services) step(s.name, s.pool.start(), `start ${s.name}`);

  const exitOne = (id: number, what: string): void => {
    const service = world.alive.get(id)!;
    world.alive.delete(id);
    world.stopping.delete(id);
    for (const [lease, l] of world.leases) if (l.backend === id) world.leases.delete(lease);
    step(service, byName.get(service)!.pool.backendExited(id), what);
  };

  for (let i = 0; i < steps; i++) {
    const roll = rand.random();
    if (roll < 0.3) {
      // Requests come in bursts to one service, the others now and then.
      const s = pick(services)!;
      const worker = 1 + Math.floor(rand.random() * 3);
      const seq = nextSeq++;
      world.waiting.set(`${worker}:${seq}`, s.name);
      step(s.name, s.pool.checkout(worker, seq), `checkout ${s.name} ${worker}:${seq}`);
    } else if (roll < 0.55) {
      const lease = pick([...world.leases.keys()]);
      if (lease === undefined) continue;
      const l = world.leases.get(lease)!;
      world.leases.delete(lease);
      step(
        l.service,
        byName.get(l.service)!.pool.checkin(l.worker, lease, 'ok'),
        `checkin ${lease}`,
      );
    } else if (roll < 0.7) {
      const starting = services.flatMap((s) =>
        s.pool
          .view()
          .filter((v) => v.state.phase === 'starting')
          .map((v) => ({ s, id: v.id })),
      );
      const one = pick(starting);
      if (!one) continue;
      step(one.s.name, one.s.pool.backendReady(one.id), `ready ${one.id}`);
    } else if (roll < 0.82) {
      const id = pick([...world.stopping].filter((b) => world.alive.has(b)));
      if (id !== undefined) exitOne(id, `stopped ${id} exits`);
    } else if (roll < 0.85) {
      const id = pick([...world.alive.keys()]);
      if (id !== undefined) exitOne(id, `crash ${id}`);
    } else if (roll < 0.87) {
      const waiting = pick([...world.waiting]);
      if (!waiting) continue;
      const [k, service] = waiting;
      world.waiting.delete(k);
      const [worker, seq] = k.split(':').map(Number) as [number, number];
      step(service, byName.get(service)!.pool.cancel(worker, seq), `cancel ${k}`);
    } else {
      clock.advance(Math.floor(rand.random() * 200));
      for (const s of services) step(s.name, s.pool.tick(), `tick ${s.name}`);
    }
  }

  /**
   * One round of a quiet world: every lease returned, every stopped backend exits, every starting
   * one becomes ready, then `ms` pass.
   */
  const settleRound = (ms: number, what: string): void => {
    for (const [lease, l] of [...world.leases]) {
      world.leases.delete(lease);
      step(
        l.service,
        byName.get(l.service)!.pool.checkin(l.worker, lease, 'ok'),
        `${what} checkin`,
      );
    }
    for (const id of [...world.stopping].filter((b) => world.alive.has(b)))
      exitOne(id, `${what} exit`);
    for (const s of services) {
      for (const v of s.pool.view().filter((b) => b.state.phase === 'starting'))
        step(s.name, s.pool.backendReady(v.id), `${what} ready`);
    }
    clock.advance(ms);
    for (const s of services) step(s.name, s.pool.tick(), `${what} tick`);
  };
  const describe = (): string =>
    services
      .map(
        (s) =>
          `${s.name}: ${JSON.stringify(s.pool.demand())} [${s.pool
            .view()
            .map(
              (v) =>
                `${v.id}:${v.state.phase}${v.state.phase === 'retiring' ? `(${v.state.reason})` : ''}`,
            )
            .join(' ')}] queue ${s.pool.queueLength}`,
      )
      .join('; ');
  // No starvation: with requests of several services waiting, the oldest waiting request of all
  // is served within a few rounds (return every lease, let stopped backends exit and starting
  // ones become ready, let the backoff pass): every place that frees goes to the service whose
  // oldest request has waited longest, taken from another service if need be. And every request
  // is served within a bound.
  const bound = world.waiting.size + 12;
  let oldest: { key: string; rounds: number } | undefined;
  for (let round = 1; round <= bound && world.waiting.size > 0; round++) {
    const first = [...world.waiting.keys()].sort((x, y) => seqOf(x) - seqOf(y))[0]!;
    oldest =
      oldest?.key === first ? { key: first, rounds: oldest.rounds + 1 } : { key: first, rounds: 1 };
    assert.ok(
      oldest.rounds <= 4,
      `round ${round}: the oldest request, ${first} of ${world.waiting.get(first)}, waited 4 rounds; ${describe()}`,
    );
    settleRound(base.restart.maxDelayMs, 'final');
  }
  assert.deepEqual(
    [...world.waiting],
    [],
    `requests still waiting after ${bound} rounds: starved (budget ${shape.budget}); ${describe()}`,
  );
  // Quiet: every service keeps its minimum, and the budget holds.
  for (let round = 0; round < 30; round++) {
    settleRound(Math.max(400, shape.idleRetireMs ?? 0), 'quiet');
  }
  for (const s of services) {
    const ready = s.pool.view().filter((v) => v.state.phase === 'idle').length;
    assert.equal(ready, s.settings.size, `${s.name} settles at its pool_size when quiet`);
  }
}

describe('several services sharing max_backends (model walk)', () => {
  const shapes: Shape[] = [
    {
      budget: 6,
      services: [
        { name: 'api', size: 1, maxOverflow: 5 },
        { name: 'admin', size: 1, maxOverflow: 5 },
        { name: 'reports', size: 1, maxOverflow: 5 },
      ],
    },
    {
      budget: 3,
      services: [
        { name: 'a', size: 0, maxOverflow: 3 },
        { name: 'b', size: 1, maxOverflow: 2 },
        { name: 'c', size: 0, maxOverflow: 1 },
      ],
    },
    {
      budget: 5,
      services: [
        { name: 'big', size: 2, maxOverflow: 6 },
        { name: 'small', size: 0, maxOverflow: 2 },
      ],
    },
    {
      budget: 3,
      idleRetireMs: 60_000,
      services: [
        { name: 'web', size: 1, maxOverflow: 3 },
        { name: 'jobs', size: 0, maxOverflow: 2 },
      ],
    },
  ];
  for (const [index, shape] of shapes.entries()) {
    it(`keeps the budget, one request per backend and every minimum, and starves no service (shape ${index + 1}: max_backends ${shape.budget}, ${shape.services.length} services)`, () => {
      for (let seed = 1; seed <= 150; seed++) {
        try {
          runServicesWalk(seed, shape, 400);
        } catch (err) {
          (err as Error).message = `seed ${seed}: ${(err as Error).message}`;
          throw err;
        }
      }
    });
  }
});
