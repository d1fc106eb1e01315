import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  FRONT_SETTINGS,
  FrontCore,
  type FrontAction,
  type FrontEffect,
} from '../../lib/primary/front.js';
import { FakeClock } from '../helpers/fake-clock.js';

/**
 * The front core against a small world of worker processes that does what the edge does: a fork
 * effect becomes a process at once (reported as forked), a drained worker says so and exits, a
 * killed one exits. The seeded walk mixes in what the outside world does at random (a worker
 * listens, crashes, time passes, reloads, stops) and checks the core's promises after each step.
 */
interface Proc {
  generation: number;
  listening: boolean;
  told: boolean;
  killed: boolean;
}

class World {
  readonly clock: FakeClock;
  readonly core: FrontCore;
  readonly procs = new Map<number, Proc>();
  readonly effects: FrontEffect[] = [];
  private nextId = 1;
  private ticket = 0;
  stopAsked = false;
  forksAfterStop = 0;
  finishes: boolean[] = [];

  constructor(seed: number, wanted: number, drainMs = 5000) {
    this.clock = new FakeClock(seed);
    this.core = new FrontCore(wanted, drainMs, this.clock);
    this.carry(this.core.start());
  }

  /** Carries effects out as the edge does; forks are reported back at once. */
  carry(effects: FrontEffect[]): void {
    for (const effect of effects) {
      this.effects.push(effect);
      switch (effect.type) {
        case 'fork': {
          if (this.stopAsked) {
            this.forksAfterStop++;
            assert.fail('a worker was forked after stop');
          }
          const id = this.nextId++;
          this.procs.set(id, {
            generation: effect.generation,
            listening: false,
            told: false,
            killed: false,
          });
          this.carry(
            this.core.apply({ type: 'forked', worker: id, generation: effect.generation }),
          );
          break;
        }
        // A process that already exited may still be named: the core hears of exits after.
        case 'drain':
          if (this.procs.has(effect.worker)) this.procs.get(effect.worker)!.told = true;
          break;
        case 'kill':
          if (this.procs.has(effect.worker)) this.procs.get(effect.worker)!.killed = true;
          break;
        case 'finish':
          this.finishes.push(effect.complete);
          break;
        default:
          break;
      }
    }
  }

  listen(id: number): void {
    this.procs.get(id)!.listening = true;
    this.carry(this.core.apply({ type: 'listening', worker: id }));
  }

  exit(id: number, code: number | null = 0, signal: string | null = null): void {
    this.procs.delete(id);
    this.carry(this.core.apply({ type: 'exited', worker: id, code, signal }));
  }

  /** A told worker finishes what it carries, says so, and exits. */
  drainOut(id: number, complete = true): void {
    this.carry(this.core.apply({ type: 'drained', worker: id, complete }));
    this.exit(id);
  }

  advance(ms: number): void {
    this.clock.advance(ms);
    this.carry(this.core.apply({ type: 'tick' }));
  }

  act(action: FrontAction): void {
    if (action.type !== 'reload') this.stopAsked = true;
    this.carry(this.core.apply({ type: 'action', action }));
  }

  reload(wanted: number, replace: boolean, drainMs = 5000): number {
    const ticket = ++this.ticket;
    this.act({ type: 'reload', ticket, wanted, replace, drainMs });
    return ticket;
  }

  ids(which: (p: Proc) => boolean): number[] {
    return [...this.procs].filter(([, p]) => which(p)).map(([id]) => id);
  }

  serving(): number {
    return [...this.core.workers.values()].filter((w) => w.state === 'serving').length;
  }

  /**
   * The world does everything it owes: workers listen, told ones drain out, killed ones exit,
   * and time moves to the core's next wake, until nothing changes.
   */
  settle(): void {
    for (let round = 0; round < 500; round++) {
      const booting = this.ids((p) => !p.listening && !p.killed);
      const told = this.ids((p) => p.told && !p.killed);
      const killed = this.ids((p) => p.killed);
      for (const id of booting) if (this.procs.has(id)) this.listen(id);
      for (const id of told) if (this.procs.has(id)) this.drainOut(id);
      for (const id of killed) if (this.procs.has(id)) this.exit(id, null, 'SIGKILL');
      const wake = this.core.nextWakeAt();
      if (booting.length + told.length + killed.length === 0) {
        if (wake === undefined) return;
        this.advance(Math.max(1, wake - this.clock.now()));
      }
    }
    assert.fail('the world never settled');
  }
}

function checkInvariants(world: World, step: string): void {
  const { core, clock } = world;
  const now = clock.now();
  for (const [id, w] of core.workers) {
    if (w.state === 'draining') {
      assert.ok(Number.isFinite(w.deadline), `${step}: worker ${id} drains with no deadline`);
    }
  }
  assert.equal(world.forksAfterStop, 0, `${step}: a worker was forked after stop`);
  assert.ok(world.finishes.length <= 1, `${step}: finished twice`);
  if (core.phase.phase === 'running') {
    const live = [...core.workers.values()].filter((w) => w.state !== 'draining').length;
    const wake = core.nextWakeAt();
    assert.ok(
      live >= core.wantedWorkers ||
        (wake !== undefined && wake <= now + FRONT_SETTINGS.maxBackoffMs),
      `${step}: ${live} live workers of ${core.wantedWorkers} wanted, and no fork planned`,
    );
  }
}

function runWalk(seed: number, steps: number): void {
  const world = new World(seed, 2);
  const rand = new FakeClock(seed * 7919 + 1);
  const pick = <T>(items: readonly T[]): T | undefined =>
    items.length === 0 ? undefined : items[Math.floor(rand.random() * items.length)];
  for (let i = 0; i < steps; i++) {
    const r = rand.random();
    let step: string;
    if (r < 0.25) {
      const id = pick(world.ids((p) => !p.listening && !p.killed));
      step = `listen ${id}`;
      if (id !== undefined) world.listen(id);
    } else if (r < 0.35) {
      const id = pick(world.ids(() => true));
      step = `crash ${id}`;
      if (id !== undefined) world.exit(id, 1);
    } else if (r < 0.5) {
      const id = pick(world.ids((p) => p.told && !p.killed));
      step = `drain out ${id}`;
      if (id !== undefined) world.drainOut(id, rand.random() < 0.9);
    } else if (r < 0.6) {
      const id = pick(world.ids((p) => p.killed));
      step = `killed ${id} exits`;
      if (id !== undefined) world.exit(id, null, 'SIGKILL');
    } else if (r < 0.8) {
      const ms = Math.floor(rand.random() * 3000);
      step = `advance ${ms}`;
      world.advance(ms);
    } else if (r < 0.93) {
      const wanted = 1 + Math.floor(rand.random() * 4);
      const replace = rand.random() < 0.6;
      step = `reload wanted ${wanted} replace ${replace}`;
      world.reload(wanted, replace, 1000 + Math.floor(rand.random() * 9000));
    } else if (r < 0.96) {
      step = 'pool ready';
      world.carry(world.core.apply({ type: 'pool-ready' }));
    } else if (r < 0.99) {
      step = 'stop';
      world.act({ type: 'stop', drainMs: 1000 + Math.floor(rand.random() * 9000) });
    } else {
      step = 'stop-now';
      world.act({ type: 'stop-now' });
    }
    checkInvariants(world, `seed ${seed} step ${i} (${step})`);
  }
  // Whatever happened, once the world does its part: the wanted workers serve, all of the last
  // generation, and a stop finishes.
  world.settle();
  checkInvariants(world, `seed ${seed} settled`);
  if (world.core.phase.phase === 'running') {
    assert.equal(world.serving(), world.core.wantedWorkers, `seed ${seed}: serving once settled`);
    assert.equal(world.core.workers.size, world.core.wantedWorkers, `seed ${seed}: nothing else`);
    world.act({ type: 'stop', drainMs: 5000 });
    world.settle();
  }
  assert.equal(world.core.phase.phase, 'finished', `seed ${seed}: the stop finished`);
  assert.equal(world.finishes.length, 1, `seed ${seed}: finish once`);
  assert.equal(world.procs.size, 0, `seed ${seed}: no worker left`);
  checkInvariants(world, `seed ${seed} stopped`);
}

describe('the front core', () => {
  it('a seeded walk: deadlines on every drain, no fork after stop, the wanted workers serve once settled, every stop finishes', () => {
    for (let seed = 1; seed <= 300; seed++) runWalk(seed, 200);
  });

  it('starts the wanted workers at once and announces when they listen and the pool is ready', () => {
    const w = new World(1, 3);
    assert.equal(w.effects.filter((e) => e.type === 'fork').length, 3);
    for (const id of w.ids(() => true)) w.listen(id);
    assert.ok(!w.effects.some((e) => e.type === 'announce'), 'not before the pool is ready');
    w.carry(w.core.apply({ type: 'pool-ready' }));
    assert.equal(w.effects.filter((e) => e.type === 'announce').length, 1);
  });

  it('a worker that dies is replaced at once; one that keeps dying at boot, with a growing backoff', () => {
    const w = new World(1, 1);
    const [first] = w.ids(() => true);
    w.listen(first!);
    w.advance(5000);
    w.exit(first!, 1);
    const died = w.effects.find((e) => e.type === 'died');
    assert.deepEqual(died, { type: 'died', worker: first, code: 1, signal: null, retryInMs: 0 });
    const [second] = w.ids(() => true);
    assert.ok(second !== undefined && second !== first, 'replaced at once');
    w.exit(second, 70);
    const [again] = w.effects.filter((e) => e.type === 'died').slice(-1);
    assert.equal(again?.type === 'died' && again.retryInMs, 200);
    assert.equal(w.procs.size, 0, 'no fork before the backoff');
    w.advance(200);
    assert.equal(w.procs.size, 1, 'forked after it');
  });

  it('a reload that replaces workers: each new one listens before an old one drains; settled once all serve', () => {
    const w = new World(1, 2);
    const old = w.ids(() => true);
    for (const id of old) w.listen(id);
    const ticket = w.reload(2, true);
    const fresh = w.ids((p) => p.generation === 1);
    assert.equal(fresh.length, 1, 'one new worker at a time');
    assert.ok(!w.ids((p) => p.told).length, 'no old worker drains before a new one listens');
    w.listen(fresh[0]!);
    assert.equal(w.ids((p) => p.told).length, 1, 'one old worker drains');
    assert.equal(w.serving(), 2);
    const second = w.ids((p) => p.generation === 1 && !p.listening);
    assert.equal(second.length, 1);
    w.listen(second[0]!);
    assert.deepEqual(
      w.effects.filter((e) => e.type === 'settled'),
      [{ type: 'settled', ticket, started: 2 }],
    );
    assert.deepEqual(w.ids((p) => p.told).sort(), [...old].sort());
  });

  it('a reload during a roll during a worker crash: the newest config wins, and every old worker goes', () => {
    const w = new World(1, 2);
    for (const id of w.ids(() => true)) w.listen(id);
    const first = w.reload(2, true);
    const [gen1] = w.ids((p) => p.generation === 1);
    // A serving old worker crashes mid-roll...
    const [oldOne] = w.ids((p) => p.generation === 0);
    w.exit(oldOne!, 1);
    // ...and another reload, with three workers, arrives before the first new worker listens.
    const second = w.reload(3, true);
    w.listen(gen1!);
    assert.equal(w.core.workers.get(gen1!)?.state, 'draining', 'generation 1 is replaced too');
    w.settle();
    assert.equal(w.serving(), 3);
    assert.ok([...w.procs.values()].every((p) => p.generation === 2));
    const settled = w.effects
      .filter((e) => e.type === 'settled')
      .map((e) => e.type === 'settled' && e.ticket);
    assert.deepEqual(settled.sort(), [first, second]);
  });

  it('a new worker that dies before it listens: the reload is answered unsettled; the old ones keep serving', () => {
    const w = new World(1, 1);
    const [old] = w.ids(() => true);
    w.listen(old!);
    const ticket = w.reload(1, true);
    const [fresh] = w.ids((p) => p.generation === 1);
    w.exit(fresh!, 70);
    assert.deepEqual(
      w.effects.find((e) => e.type === 'unsettled'),
      {
        type: 'unsettled',
        ticket,
        reason: 'a new front worker exited before it listened (exit code 70)',
      },
    );
    assert.equal(w.core.workers.get(old!)?.state, 'serving');
  });

  it('a fork held back by the backoff keeps its tick when time passes its moment between a step and the next wake (the lost-tick stall)', () => {
    const w = new World(1, 2);
    for (const id of w.ids(() => true)) w.listen(id);
    // A worker killed soon after its start: its replacement waits out a backoff.
    const [first] = w.ids(() => true);
    w.advance(100);
    w.exit(first!, null, 'SIGKILL');
    const died = w.effects.find((e) => e.type === 'died' && e.worker === first);
    assert.ok(died?.type === 'died' && died.retryInMs > 0, 'a backoff');
    const forkAt = w.clock.now() + died.retryInMs;
    // An event just before that moment: the step runs, nothing is forked yet...
    w.clock.advance(died.retryInMs - 1);
    w.carry(w.core.apply({ type: 'pool-ready' }));
    // ...and carrying its effects took the time past it before the edge asks for the next wake.
    w.clock.advance(2);
    const wake = w.core.nextWakeAt();
    assert.ok(wake !== undefined && wake <= w.clock.now(), `a tick is still owed (at ${forkAt})`);
    w.carry(w.core.apply({ type: 'tick' }));
    assert.equal(w.ids(() => true).length, 2, 'the replacement is forked');
    // Then only the new worker's boot deadline is owed, later: no loop of immediate ticks.
    assert.equal(w.core.nextWakeAt(), w.clock.now() + FRONT_SETTINGS.bootTimeoutMs);
  });

  it('a stop that overtakes a reload: its new worker, which never listened, fails to listen and exits; the stop is still complete (it carried nothing)', () => {
    const w = new World(1, 1);
    const [old] = w.ids(() => true);
    w.listen(old!);
    w.reload(1, true);
    const [fresh] = w.ids((p) => p.generation === 1);
    w.act({ type: 'stop', drainMs: 3000 });
    w.exit(fresh!, 70);
    w.drainOut(old!);
    assert.deepEqual(w.finishes, [true], 'finished, complete');
  });

  it('a new worker that never listens is killed at the boot deadline; its exit answers the reload unsettled, and the next is tried after the backoff', () => {
    const w = new World(1, 1);
    const [old] = w.ids(() => true);
    w.listen(old!);
    const ticket = w.reload(1, true);
    const [silent] = w.ids((p) => p.generation === 1);
    assert.equal(w.core.nextWakeAt(), w.clock.now() + FRONT_SETTINGS.bootTimeoutMs);
    w.advance(FRONT_SETTINGS.bootTimeoutMs - 1);
    assert.equal(w.procs.get(silent!)!.killed, false, 'not before its deadline');
    w.advance(1);
    assert.deepEqual(w.effects.at(-1), { type: 'kill', worker: silent, why: 'boot-timeout' });
    w.exit(silent!, null, 'SIGKILL');
    assert.equal(
      w.effects.find((e) => e.type === 'unsettled' && e.ticket === ticket)?.type,
      'unsettled',
    );
    assert.equal(w.core.workers.get(old!)?.state, 'serving', 'the old one keeps serving');
    const died = w.effects.find((e) => e.type === 'died' && e.worker === silent);
    assert.ok(died?.type === 'died' && died.retryInMs > 0, 'a failed start: the backoff applies');
    w.advance((died as { retryInMs: number }).retryInMs);
    const [next] = w.ids((p) => p.generation === 1);
    assert.ok(next !== undefined && next !== silent, 'the next one is forked');
  });

  for (const during of ['a roll', 'a crash', 'a reload during a roll'] as const) {
    it(`a stop during ${during}: every worker drains, the stop finishes, nothing is forked after it`, () => {
      const w = new World(1, 2);
      for (const id of w.ids(() => true)) w.listen(id);
      if (during !== 'a crash') w.reload(2, true);
      if (during === 'a reload during a roll') w.reload(3, true);
      if (during === 'a crash') w.exit(w.ids(() => true)[0]!, 1);
      w.act({ type: 'stop', drainMs: 3000 });
      assert.equal(w.core.phase.phase, 'draining');
      for (const [, worker] of w.core.workers) assert.equal(worker.state, 'draining');
      w.settle();
      assert.deepEqual(w.finishes, [true], 'finished, complete');
      assert.equal(w.forksAfterStop, 0);
    });
  }

  it('a stop whose workers outlast it: killed at the deadline, the drain counts as cut', () => {
    const w = new World(1, 1);
    const [id] = w.ids(() => true);
    w.listen(id!);
    w.act({ type: 'stop', drainMs: 3000 });
    w.advance(2999);
    assert.ok(!w.effects.some((e) => e.type === 'kill'));
    w.advance(1);
    assert.deepEqual(w.effects.at(-1), { type: 'kill', worker: id, why: 'deadline' });
    w.exit(id!, null, 'SIGKILL');
    assert.deepEqual(w.finishes, [false]);
  });

  it('a second stop kills every worker at once', () => {
    const w = new World(1, 2);
    for (const id of w.ids(() => true)) w.listen(id);
    w.act({ type: 'stop', drainMs: 60_000 });
    w.act({ type: 'stop', drainMs: 60_000 });
    assert.equal(w.core.phase.phase, 'stopping');
    assert.equal(w.effects.filter((e) => e.type === 'kill' && e.why === 'stop-now').length, 2);
    w.settle();
    assert.deepEqual(w.finishes, [false]);
  });

  it('a stop during a reload’s long drain tells the draining worker its nearer deadline', () => {
    const w = new World(1, 1);
    const [old] = w.ids(() => true);
    w.listen(old!);
    const first = w.procs.get(old!)!.generation;
    w.reload(1, true, 60_000);
    const [fresh] = w.ids((p) => p.generation !== first);
    w.listen(fresh!);
    const drains = (): FrontEffect[] =>
      w.effects.filter((e) => e.type === 'drain' && e.worker === old);
    assert.equal(drains().length, 1);
    const deadline = w.clock.now() + 3000;
    w.act({ type: 'stop', drainMs: 3000 });
    assert.deepEqual(drains().at(-1), { type: 'drain', worker: old, deadline });
  });

  it('a reload after a reload whose new workers cannot listen: its worker is forked after the backoff, and it settles', () => {
    const w = new World(1, 1);
    const [first] = w.ids(() => true);
    w.listen(first!);
    const failing = w.reload(1, true);
    const oldGeneration = w.procs.get(first!)!.generation;
    for (let round = 0; round < 2; round++) {
      const [doomed] = w.ids((p) => p.generation !== oldGeneration && !p.listening);
      assert.ok(doomed !== undefined, `round ${round}: a new worker was forked`);
      w.exit(doomed, 70);
      // Not yet at the backoff's end: the next one is still held back.
      w.advance(1);
      if (round === 0) w.advance(Math.max(1, w.core.nextWakeAt()! - w.clock.now()));
    }
    assert.ok(w.effects.some((e) => e.type === 'unsettled' && e.ticket === failing));
    const fixed = w.reload(1, true);
    w.settle();
    assert.ok(
      w.effects.some((e) => e.type === 'settled' && e.ticket === fixed),
      'the second reload is answered',
    );
  });

  it('a booting worker asked to drain is told once it listens, not before', () => {
    const w = new World(1, 1);
    const [id] = w.ids(() => true);
    const deadline = w.clock.now() + 3000;
    w.act({ type: 'stop', drainMs: 3000 });
    assert.ok(!w.effects.some((e) => e.type === 'drain'));
    w.listen(id!);
    // With the stop's deadline, which the worker keeps to report before it.
    assert.deepEqual(w.effects.at(-1), { type: 'drain', worker: id, deadline });
  });
});
