import type { Config } from '../config/config.js';
import { NAMESPACE } from '../ipc/protocol.js';
import type { Logger } from '../log.js';
import {
  FrontCore,
  FRONT_SETTINGS,
  listens,
  type FrontAction,
  type FrontEffect,
  type FrontEvent,
  type FrontWorker,
} from './front.js';
import { replacedDrainMs, type FrontWorkers } from './worker-pool.js';

/** How the front core answers a reload. */
export type FrontAnswer = Extract<FrontEffect, { type: 'settled' | 'unsettled' | 'refused' }>;

export interface FrontEdgeHooks {
  /** The config new workers run (the one in force). */
  config(): Config;
  /** Every wanted worker listens and the pool is ready: the ready line. */
  announce(): void;
  /** Every worker is gone after a stop; `complete` if each drained to the end in time. */
  finished(complete: boolean): void;
}

/**
 * The front core's edge: events from cluster and the workers go in, the core's effects come out
 * as forks, messages, signals and log lines, and one timer gives the core its ticks. Nothing here
 * decides anything; front.ts does.
 */
export class FrontEdge {
  private readonly core: FrontCore;
  private wake: NodeJS.Timeout | undefined;
  private readonly replies = new Map<number, (answer: FrontAnswer) => void>();
  private nextTicket = 0;

  constructor(
    config: Config,
    private readonly processes: FrontWorkers,
    private readonly log: Logger,
    private readonly hooks: FrontEdgeHooks,
  ) {
    this.core = new FrontCore(config.workers, replacedDrainMs(config), { now: () => Date.now() });
  }

  get workers(): ReadonlyMap<number, FrontWorker> {
    return this.core.workers;
  }

  /** Some worker accepts connections (serving, or listening while it drains). */
  get someListens(): boolean {
    return [...this.core.workers.values()].some(listens);
  }

  start(): void {
    this.carry(this.core.start());
  }

  feed(event: FrontEvent): void {
    if (event.type === 'drained' && !event.complete) {
      this.log.warn(
        {
          event: 'worker.drain-cut',
          worker: event.worker,
          worker_pid: this.processes.pidOf(event.worker),
        },
        'front worker reached its drain deadline and ended what it still carried',
      );
    }
    this.carry(this.core.apply(event));
  }

  act(action: FrontAction): void {
    this.feed({ type: 'action', action });
  }

  /** Asks for `config.workers` workers (all replaced if `replace`); resolves with the answer. */
  reload(config: Config, replace: boolean): Promise<FrontAnswer> {
    const ticket = ++this.nextTicket;
    return new Promise((resolve) => {
      this.replies.set(ticket, resolve);
      this.act({
        type: 'reload',
        ticket,
        wanted: config.workers,
        replace,
        drainMs: replacedDrainMs(config),
      });
    });
  }

  /** No tick after the end. */
  close(): void {
    clearTimeout(this.wake);
  }

  private carry(effects: readonly FrontEffect[]): void {
    try {
      for (const effect of effects) this.carryOne(effect);
    } finally {
      // Even if carrying one effect threw (a fork the system refused), the core gets its next
      // tick: a backoff or a deadline it waits for is never lost.
      clearTimeout(this.wake);
      const at = this.core.nextWakeAt();
      if (at !== undefined) {
        this.wake = setTimeout(() => this.feed({ type: 'tick' }), Math.max(0, at - Date.now()));
      }
    }
  }

  private carryOne(effect: FrontEffect): void {
    switch (effect.type) {
      case 'fork': {
        const worker = this.processes.fork(this.hooks.config());
        this.log.debug(
          { event: 'worker.forked', worker: worker.id, generation: effect.generation },
          'front worker forked',
        );
        this.feed({ type: 'forked', worker: worker.id, generation: effect.generation });
        return;
      }
      case 'drain':
        this.processes.send(effect.worker, {
          ns: NAMESPACE,
          type: 'drain',
          withinMs: Math.max(0, effect.deadline - Date.now()),
        });
        return;
      case 'kill':
        if (effect.why === 'boot-timeout') {
          this.log.error(
            {
              event: 'worker.boot-timeout',
              worker: effect.worker,
              worker_pid: this.processes.pidOf(effect.worker),
            },
            `front worker forked but not listening after ${FRONT_SETTINGS.bootTimeoutMs / 1000} s; killing it (it counts as a failed start)`,
          );
        } else if (effect.why === 'deadline') {
          this.log.warn(
            {
              event: 'worker.drain-cut',
              worker: effect.worker,
              worker_pid: this.processes.pidOf(effect.worker),
            },
            'front worker still draining at its deadline; ending it with what it carries',
          );
        }
        this.processes.kill(effect.worker, 'SIGKILL');
        return;
      case 'died':
        this.log.error(
          { event: 'worker.died', worker: effect.worker, code: effect.code, signal: effect.signal },
          `front worker died (${effect.signal ? `killed by ${effect.signal}` : `exit code ${effect.code}`}); starting a replacement${effect.retryInMs ? ` in ${effect.retryInMs} ms` : ''}`,
        );
        return;
      case 'announce':
        this.hooks.announce();
        return;
      case 'settled':
      case 'unsettled':
      case 'refused':
        this.replies.get(effect.ticket)?.(effect);
        this.replies.delete(effect.ticket);
        return;
      case 'finish':
        this.close();
        this.hooks.finished(effect.complete);
        return;
      default:
        effect satisfies never;
    }
  }
}
