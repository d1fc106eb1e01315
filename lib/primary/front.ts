/**
 * The front core: which front workers should exist, and what to do about the ones that do. Pure,
 * in the pool's manner: one record, moved only by events (a worker forked, listening, exited,
 * drained; time; the operator's actions), and effects returned as data for the edge (primary.ts)
 * to carry out: fork, drain, kill, announce, finish. Time comes in through the clock. Every event
 * runs one step: the queued actions in order, then a reconcile of the workers wanted with the
 * workers there are. So a reload during a worker replacement during a crash is one more
 * difference to reconcile, not a race between timers.
 */

export interface FrontClock {
  now(): number;
}

export interface FrontSettings {
  /** A worker that dies sooner than this after its fork failed at boot (the backoff grows). */
  readonly bootGraceMs: number;
  /** The longest wait before a replacement after workers keep failing at boot. */
  readonly maxBackoffMs: number;
  /** How long workers killed by stop-now get to exit before the stop finishes anyway. */
  readonly killGraceMs: number;
  /**
   * A worker not listening this long after its fork is killed, and counts as one that died at
   * boot (as gunicorn's timeout ends a silent worker): a reload waiting for it is answered.
   */
  readonly bootTimeoutMs: number;
}

export const FRONT_SETTINGS: FrontSettings = {
  bootGraceMs: 1000,
  maxBackoffMs: 10_000,
  killGraceMs: 5000,
  bootTimeoutMs: 15_000,
};

/** Why a worker drains: a reload replaced it, it is beyond `workers`, or the server stops. */
export type DrainWhy = 'replaced' | 'surplus' | 'shutdown';

/**
 * A front worker's life. Booting: forked, not listening yet. Serving: listening, taking
 * connections. Draining: no longer accepting, finishing what it carries, killed at its deadline;
 * `told` once it has been sent the drain (a booting worker is told once it listens: a message
 * that reaches it before its handler is in place is lost).
 */
export type FrontWorker =
  | {
      readonly state: 'booting' | 'serving';
      readonly generation: number;
      readonly startedAt: number;
    }
  | {
      readonly state: 'draining';
      readonly generation: number;
      readonly startedAt: number;
      readonly deadline: number;
      readonly why: DrainWhy;
      readonly listening: boolean;
      readonly told: boolean;
      readonly killed: boolean;
    };

export type FrontPhase =
  | { readonly phase: 'running' }
  /** Stopping gracefully: every worker drains; `deadline` bounds it. */
  | { readonly phase: 'draining'; readonly deadline: number }
  /** Stopping now: every worker was killed; `deadline` bounds the wait for their exits. */
  | { readonly phase: 'stopping'; readonly deadline: number }
  | { readonly phase: 'finished' };

/** What the operator asks of the front. Each is queued and taken in arrival order. */
export type FrontAction =
  /**
   * A new config: `wanted` workers; `replace` when a key the workers read changed, so every
   * worker is replaced, one at a time, the new one listening before an old one drains. Old and
   * surplus workers drain for `drainMs`. `ticket` names the reload in the effects that answer it.
   */
  | {
      readonly type: 'reload';
      readonly ticket: number;
      readonly wanted: number;
      readonly replace: boolean;
      readonly drainMs: number;
    }
  | { readonly type: 'stop'; readonly drainMs: number }
  | { readonly type: 'stop-now' };

export type FrontEvent =
  /** The edge forked the worker a `fork` effect asked for; `worker` is its id from now on. */
  | { readonly type: 'forked'; readonly worker: number; readonly generation: number }
  | { readonly type: 'listening'; readonly worker: number }
  | {
      readonly type: 'exited';
      readonly worker: number;
      readonly code: number | null;
      readonly signal: string | null;
    }
  /** The worker finished draining; `complete` unless it had to cut something short. */
  | { readonly type: 'drained'; readonly worker: number; readonly complete: boolean }
  /** Every backend of the pool is ready (the ready line waits for it too). */
  | { readonly type: 'pool-ready' }
  | { readonly type: 'tick' }
  | { readonly type: 'action'; readonly action: FrontAction };

export type FrontEffect =
  | { readonly type: 'fork'; readonly generation: number }
  /** Tell the worker to drain, and by when (it reports what it could not finish before then). */
  | { readonly type: 'drain'; readonly worker: number; readonly deadline: number }
  | {
      readonly type: 'kill';
      readonly worker: number;
      readonly why: 'deadline' | 'stop-now' | 'boot-timeout';
    }
  /** A worker that was serving or booting died; a replacement comes after `retryInMs`. */
  | {
      readonly type: 'died';
      readonly worker: number;
      readonly code: number | null;
      readonly signal: string | null;
      readonly retryInMs: number;
    }
  /** Every wanted worker listens and the pool is ready: the ready line, once. */
  | { readonly type: 'announce' }
  /** The reload's workers all serve (old ones drain); `started` workers were forked for it. */
  | { readonly type: 'settled'; readonly ticket: number; readonly started: number }
  /** A worker forked for the reload died before it listened; the old ones keep serving. */
  | { readonly type: 'unsettled'; readonly ticket: number; readonly reason: string }
  | { readonly type: 'refused'; readonly ticket: number; readonly reason: string }
  /** Every worker is gone after a stop: `complete` if each drained to the end in time. */
  | { readonly type: 'finish'; readonly complete: boolean };

type Draining = Extract<FrontWorker, { state: 'draining' }>;

/** It accepts connections: serving, or draining a listener it still has open. */
export function listens(w: FrontWorker): boolean {
  return w.state === 'serving' || (w.state === 'draining' && w.listening);
}

interface Reload {
  readonly ticket: number;
  readonly generation: number;
  started: number;
}

export class FrontCore {
  private phaseNow: FrontPhase = { phase: 'running' };
  private readonly workersNow = new Map<number, FrontWorker>();
  private wanted: number;
  /** Workers run the config of a generation; a reload that replaces them starts the next one. */
  private generation = 0;
  /** Forks asked for and not yet reported as forked, by generation. */
  private readonly pendingForks: number[] = [];
  /** Deaths at boot in a row, and when the next fork may happen. */
  private bootStreak = 0;
  private nextForkAt = 0;
  /**
   * When reconcile last ran. A fork held back until nextForkAt is owed a tick until a reconcile
   * runs at or after it: the time can pass nextForkAt between a reconcile and the edge asking
   * for the next wake (the effects take a moment), and that tick must not be lost.
   */
  private reconciledAt = 0;
  private drainMs: number;
  private poolReady = false;
  private announced = false;
  /** Reloads not yet answered, oldest first. */
  private readonly reloads: Reload[] = [];
  /** Set when a stop's drain was cut: a kill, a death, a worker that could not finish. */
  private cut = false;
  /** Workers that reported their drain complete and have not exited yet. */
  private readonly drainedOut = new Set<number>();
  /** Booting workers killed for not listening in time, not exited yet. */
  private readonly bootKilled = new Set<number>();
  private readonly queue: FrontAction[] = [];

  /**
   * `wanted` workers to start with; `drainMs`: how long one replaced or beyond `wanted` may
   * drain, until a reload says otherwise.
   */
  constructor(
    wanted: number,
    drainMs: number,
    private readonly clock: FrontClock,
    private readonly settings: FrontSettings = FRONT_SETTINGS,
  ) {
    this.wanted = wanted;
    this.drainMs = drainMs;
  }

  get phase(): FrontPhase {
    return this.phaseNow;
  }

  get workers(): ReadonlyMap<number, FrontWorker> {
    return this.workersNow;
  }

  get wantedWorkers(): number {
    return this.wanted;
  }

  /** The first step: the workers of the configuration started with. */
  start(): FrontEffect[] {
    return this.step();
  }

  /** One event in, the effects it leads to out. */
  apply(event: FrontEvent): FrontEffect[] {
    const effects: FrontEffect[] = [];
    this.take(event, effects);
    return [...effects, ...this.step()];
  }

  /** When the next tick is owed: the nearest drain deadline, a fork held back, a stop's bound. */
  nextWakeAt(): number | undefined {
    let next = Infinity;
    for (const [id, w] of this.workersNow) {
      if (w.state === 'draining' && !w.killed) next = Math.min(next, w.deadline);
      if (w.state === 'booting' && !this.bootKilled.has(id))
        next = Math.min(next, w.startedAt + this.settings.bootTimeoutMs);
    }
    if (this.phaseNow.phase === 'running' && this.nextForkAt > this.reconciledAt) {
      next = Math.min(next, this.nextForkAt);
    }
    if (this.phaseNow.phase === 'stopping') next = Math.min(next, this.phaseNow.deadline);
    return Number.isFinite(next) ? next : undefined;
  }

  private take(event: FrontEvent, effects: FrontEffect[]): void {
    const now = this.clock.now();
    switch (event.type) {
      case 'action':
        this.queue.push(event.action);
        return;
      case 'forked': {
        const at = this.pendingForks.indexOf(event.generation);
        if (at >= 0) this.pendingForks.splice(at, 1);
        const fresh: FrontWorker = {
          state: 'booting',
          generation: event.generation,
          startedAt: now,
        };
        this.workersNow.set(event.worker, fresh);
        // Forked as a stop began: it drains like the rest, once it listens.
        if (this.phaseNow.phase !== 'running') this.drain(event.worker, 'shutdown', effects);
        return;
      }
      case 'listening': {
        const w = this.workersNow.get(event.worker);
        if (!w) return;
        if (w.state === 'booting') {
          this.workersNow.set(event.worker, { ...w, state: 'serving' });
          this.bootStreak = 0;
        } else if (w.state === 'draining' && !w.listening) {
          this.workersNow.set(event.worker, { ...w, listening: true, told: true });
          effects.push({ type: 'drain', worker: event.worker, deadline: w.deadline });
        }
        return;
      }
      case 'exited':
        this.exited(event, now, effects);
        return;
      case 'drained':
        if (event.complete) this.drainedOut.add(event.worker);
        else if (this.phaseNow.phase !== 'running') this.cut = true;
        return;
      case 'pool-ready':
        this.poolReady = true;
        return;
      case 'tick':
        for (const [id, w] of this.workersNow) {
          if (
            w.state === 'booting' &&
            !this.bootKilled.has(id) &&
            now - w.startedAt >= this.settings.bootTimeoutMs
          ) {
            this.bootKilled.add(id);
            effects.push({ type: 'kill', worker: id, why: 'boot-timeout' });
          }
          if (w.state === 'draining' && !w.killed && w.deadline <= now) {
            this.workersNow.set(id, { ...w, killed: true });
            if (w.why === 'shutdown') this.cut = true;
            effects.push({ type: 'kill', worker: id, why: 'deadline' });
          }
        }
        return;
      default:
        event satisfies never;
    }
  }

  private exited(
    event: Extract<FrontEvent, { type: 'exited' }>,
    now: number,
    effects: FrontEffect[],
  ): void {
    const w = this.workersNow.get(event.worker);
    this.bootKilled.delete(event.worker);
    if (!w) return;
    this.workersNow.delete(event.worker);
    const reported = this.drainedOut.delete(event.worker);
    // A stop is complete only if every worker said it finished what it carried before it went.
    // One that never listened (forked for a reload the stop overtook) carried nothing.
    if (this.phaseNow.phase !== 'running') {
      if (!reported && listens(w)) this.cut = true;
      return;
    }
    if (w.state === 'draining') return;
    const atBoot = w.state === 'booting' || now - w.startedAt < this.settings.bootGraceMs;
    this.bootStreak = atBoot ? this.bootStreak + 1 : 0;
    const retryInMs =
      this.bootStreak === 0 ? 0 : Math.min(this.settings.maxBackoffMs, 100 * 2 ** this.bootStreak);
    this.nextForkAt = now + retryInMs;
    effects.push({
      type: 'died',
      worker: event.worker,
      code: event.code,
      signal: event.signal,
      retryInMs,
    });
    if (w.state === 'booting') {
      // A worker of a reload that died before it listened: the reload is answered; the old
      // workers keep serving, and the replacement is tried again after the backoff.
      for (const reload of this.reloads.filter((r) => r.generation === w.generation)) {
        effects.push({
          type: 'unsettled',
          ticket: reload.ticket,
          reason: `a new front worker exited before it listened (${event.signal ?? `exit code ${event.code}`})`,
        });
      }
      this.dropReloads((r) => r.generation === w.generation);
    }
  }

  private step(): FrontEffect[] {
    const effects: FrontEffect[] = [];
    for (let action = this.queue.shift(); action; action = this.queue.shift()) {
      this.perform(action, effects);
    }
    this.reconcile(effects);
    return effects;
  }

  private perform(action: FrontAction, effects: FrontEffect[]): void {
    const now = this.clock.now();
    switch (action.type) {
      case 'reload':
        if (this.phaseNow.phase !== 'running') {
          effects.push({
            type: 'refused',
            ticket: action.ticket,
            reason: `the server is ${this.phaseNow.phase}`,
          });
          return;
        }
        this.wanted = action.wanted;
        this.drainMs = action.drainMs;
        if (action.replace) this.generation += 1;
        this.reloads.push({ ticket: action.ticket, generation: this.generation, started: 0 });
        return;
      case 'stop':
        // A second stop skips the drain.
        if (this.phaseNow.phase !== 'running') return this.perform({ type: 'stop-now' }, effects);
        this.phaseNow = { phase: 'draining', deadline: now + action.drainMs };
        for (const r of this.reloads) {
          effects.push({ type: 'refused', ticket: r.ticket, reason: 'the server is stopping' });
        }
        this.dropReloads(() => true);
        for (const id of [...this.workersNow.keys()]) this.drain(id, 'shutdown', effects);
        return;
      case 'stop-now':
        if (this.phaseNow.phase === 'finished' || this.phaseNow.phase === 'stopping') return;
        if (this.phaseNow.phase === 'running') {
          this.perform({ type: 'stop', drainMs: 0 }, effects);
        }
        this.phaseNow = { phase: 'stopping', deadline: now + this.settings.killGraceMs };
        this.cut = true;
        for (const [id, w] of this.workersNow) {
          if (w.state === 'draining' && w.killed) continue;
          this.workersNow.set(id, { ...this.draining(w, now, 'shutdown'), killed: true });
          effects.push({ type: 'kill', worker: id, why: 'stop-now' });
        }
        return;
      default:
        action satisfies never;
    }
  }

  /** Moves the live workers toward `wanted` of the current generation. */
  private reconcile(effects: FrontEffect[]): void {
    const now = this.clock.now();
    this.reconciledAt = now;
    const phase = this.phaseNow.phase;
    if (phase !== 'running') {
      const stopBound = this.phaseNow.phase === 'stopping' && now >= this.phaseNow.deadline;
      if (phase !== 'finished' && (this.workersNow.size === 0 || stopBound)) {
        this.phaseNow = { phase: 'finished' };
        effects.push({ type: 'finish', complete: !this.cut && this.workersNow.size === 0 });
      }
      return;
    }
    const live = [...this.workersNow].filter(([, w]) => w.state !== 'draining');
    const current = live.filter(([, w]) => w.generation === this.generation);
    const old = live.filter(([, w]) => w.generation !== this.generation);
    const serving = (list: typeof live) => list.filter(([, w]) => w.state === 'serving');
    const pending = this.pendingForks.filter((g) => g === this.generation).length;
    const mayFork = now >= this.nextForkAt;

    if (old.length > 0) {
      // Replacing: one new worker at a time, each listening before an old one drains.
      for (const [id, w] of old) if (w.state === 'booting') this.drain(id, 'replaced', effects);
      const booting = current.length - serving(current).length + pending;
      // Fewer live workers than wanted (one crashed, or more are wanted): the missing ones at
      // once; otherwise the next replacement once the last one listens.
      const live = current.length + pending + serving(old).length;
      let forks = Math.max(0, this.wanted - live);
      if (forks === 0 && booting === 0 && serving(current).length < this.wanted) forks = 1;
      if (mayFork) for (let i = 0; i < forks; i++) this.fork(effects);
      const oldServing = serving(old).sort(([, a], [, b]) => a.startedAt - b.startedAt);
      let over = serving(current).length + oldServing.length - this.wanted;
      for (const [id] of oldServing) {
        if (over <= 0) break;
        this.drain(id, 'replaced', effects);
        over--;
      }
    } else {
      const missing = this.wanted - current.length - pending;
      if (missing > 0 && mayFork) for (let i = 0; i < missing; i++) this.fork(effects);
      // Beyond `wanted`: the newest go first, those still booting before those serving.
      const surplus = current
        .sort(([, a], [, b]) =>
          a.state === b.state ? b.startedAt - a.startedAt : a.state === 'booting' ? -1 : 1,
        )
        .slice(0, Math.max(0, current.length + pending - this.wanted));
      for (const [id] of surplus) this.drain(id, 'surplus', effects);
    }

    const servingNow = serving(current).length;
    const settled = old.every(([id]) => this.workersNow.get(id)?.state === 'draining');
    if (settled && servingNow >= this.wanted) {
      for (const r of this.reloads.filter((x) => x.generation <= this.generation)) {
        effects.push({ type: 'settled', ticket: r.ticket, started: r.started });
      }
      this.dropReloads((r) => r.generation <= this.generation);
    }
    if (!this.announced && this.poolReady && servingNow >= this.wanted) {
      this.announced = true;
      effects.push({ type: 'announce' });
    }
  }

  private fork(effects: FrontEffect[]): void {
    this.pendingForks.push(this.generation);
    for (const r of this.reloads) if (r.generation === this.generation) r.started += 1;
    effects.push({ type: 'fork', generation: this.generation });
  }

  private drain(id: number, why: DrainWhy, effects: FrontEffect[]): void {
    const w = this.workersNow.get(id);
    if (!w) return;
    const now = this.clock.now();
    const next = this.draining(w, now, why);
    this.workersNow.set(id, next);
    // Told again when the deadline came nearer (a stop during a reload's drain).
    const nearer = w.state === 'draining' && next.deadline < w.deadline;
    if (next.listening && (!next.told || nearer)) {
      this.workersNow.set(id, { ...next, told: true });
      effects.push({ type: 'drain', worker: id, deadline: next.deadline });
    }
  }

  /** The draining record for `w`: a worker already draining keeps the nearer deadline. */
  private draining(w: FrontWorker, now: number, why: DrainWhy): Draining {
    const deadline =
      why === 'shutdown' && this.phaseNow.phase !== 'running'
        ? this.phaseNow.phase === 'finished'
          ? now
          : this.phaseNow.deadline
        : now + this.drainMs;
    if (w.state === 'draining') {
      return { ...w, deadline: Math.min(w.deadline, deadline), why };
    }
    return {
      state: 'draining',
      generation: w.generation,
      startedAt: w.startedAt,
      deadline,
      why,
      listening: w.state === 'serving',
      told: false,
      killed: false,
    };
  }

  private dropReloads(which: (r: Reload) => boolean): void {
    for (let i = this.reloads.length - 1; i >= 0; i--) {
      if (which(this.reloads[i]!)) this.reloads.splice(i, 1);
    }
  }
}
