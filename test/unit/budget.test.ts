import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { planBudget, type ServiceDemand } from '../../lib/supervisor/budget.js';

const demand = (service: string, d: Partial<Omit<ServiceDemand, 'service'>>): ServiceDemand => ({
  service,
  minimum: 1,
  ceiling: 4,
  processes: 1,
  wanted: 0,
  oldestWaitSince: undefined,
  idle: [],
  ...d,
});

describe('the shared backend budget', () => {
  it('room goes to the service whose oldest request has waited longest', () => {
    const plan = planBudget(
      [
        demand('api', { wanted: 2, oldestWaitSince: 200 }),
        demand('admin', { wanted: 2, oldestWaitSince: 100 }),
        demand('reports', {}),
      ],
      5,
    );
    assert.deepEqual([...plan.starts], [['admin', 2]]);
    assert.deepEqual(plan.evict, []);
  });

  it('a service below its minimum is served before any waiting request', () => {
    const plan = planBudget(
      [
        demand('api', { wanted: 1, oldestWaitSince: 1 }),
        demand('quiet', { processes: 0, wanted: 1 }),
      ],
      2,
    );
    assert.deepEqual([...plan.starts], [['quiet', 1]]);
  });

  it('budget spent: the idle backend idle longest of a service above its minimum makes room', () => {
    const plan = planBudget(
      [
        demand('api', { processes: 3, idle: [{ backend: 7, since: 50 }] }),
        demand('admin', { processes: 2, idle: [{ backend: 9, since: 10 }] }),
        demand('reports', { processes: 1, wanted: 1, oldestWaitSince: 300 }),
      ],
      6,
    );
    assert.deepEqual([...plan.starts], []);
    assert.deepEqual(plan.evict, [{ service: 'admin', backend: 9 }]);
  });

  it('a service at its minimum gives nothing up; with none idle, the next free backend is reclaimed', () => {
    const plan = planBudget(
      [
        demand('api', { minimum: 1, processes: 4, idle: [] }),
        demand('admin', { minimum: 1, processes: 1, idle: [{ backend: 3, since: 0 }] }),
        demand('reports', { processes: 1, wanted: 1, oldestWaitSince: 5 }),
      ],
      6,
    );
    assert.deepEqual(plan.evict, []);
    assert.deepEqual(plan.reclaim, ['api']);
  });

  it('nothing waits and every minimum is kept: nothing is evicted', () => {
    const plan = planBudget(
      [demand('api', { processes: 4, idle: [{ backend: 1, since: 0 }] }), demand('b', {})],
      5,
    );
    assert.deepEqual([...plan.starts], []);
    assert.deepEqual(plan.evict, []);
    assert.deepEqual(plan.reclaim, []);
  });

  it('for any pools: never over budget or past a ceiling, nobody below its minimum made to give, the oldest waiter first', () => {
    const service = fc.record({
      minimum: fc.integer({ min: 0, max: 3 }),
      extra: fc.integer({ min: 0, max: 4 }),
      processes: fc.integer({ min: 0, max: 7 }),
      wanted: fc.integer({ min: 0, max: 4 }),
      waitSince: fc.option(fc.integer({ min: 0, max: 1000 }), { nil: undefined }),
      idle: fc.integer({ min: 0, max: 3 }),
    });
    fc.assert(
      fc.property(
        fc.array(service, { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 0, max: 6 }),
        (raw, spare) => {
          let id = 0;
          const demands = raw.map((r, i) => {
            const ceiling = r.minimum + r.extra;
            const processes = Math.min(r.processes, ceiling);
            return demand(`s${i}`, {
              minimum: r.minimum,
              ceiling,
              processes,
              wanted: r.wanted,
              oldestWaitSince: r.waitSince,
              idle: Array.from({ length: Math.min(r.idle, processes) }, () => ({
                backend: ++id,
                since: (id * 37) % 101,
              })),
            });
          });
          const minimums = demands.reduce((n, d) => n + d.minimum, 0);
          const total = demands.reduce((n, d) => n + d.processes, 0);
          const max = Math.max(minimums, total) + spare;
          const plan = planBudget(demands, max);
          const started = [...plan.starts.values()].reduce((a, b) => a + b, 0);
          assert.ok(total + started <= max, 'never over budget');
          for (const d of demands) {
            const n = plan.starts.get(d.service) ?? 0;
            assert.ok(d.processes + n <= d.ceiling, `${d.service}: never past its ceiling`);
            const gives =
              plan.evict.filter((e) => e.service === d.service).length +
              plan.reclaim.filter((s) => s === d.service).length;
            assert.ok(
              d.processes - gives >= d.minimum || gives === 0,
              `${d.service}: keeps its minimum`,
            );
            for (const e of plan.evict.filter((x) => x.service === d.service))
              assert.ok(
                d.idle.some((b) => b.backend === e.backend),
                'only an idle backend is evicted',
              );
          }
          // A service left wanting never sees a newer waiter served while it waits, unless that one is below its minimum.
          for (const d of demands) {
            const room = Math.min(d.wanted, d.ceiling - d.processes);
            if (d.oldestWaitSince === undefined || (plan.starts.get(d.service) ?? 0) >= room)
              continue;
            for (const o of demands) {
              if (o === d || o.processes < o.minimum || (plan.starts.get(o.service) ?? 0) === 0)
                continue;
              assert.ok(
                o.oldestWaitSince !== undefined && o.oldestWaitSince <= d.oldestWaitSince,
                `${o.service} started while ${d.service}, waiting longer, was left short`,
              );
            }
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
