/**
 * What an operator can ask for, by signal or by the admin API, and the queue that performs it.
 * Signal handlers and API calls only enqueue one of these; the queue performs them one at a time,
 * in arrival order, so a reload during a roll during a scale is well-defined: each starts from the
 * state the previous one left.
 */

/** The outcome of a reload, as the admin API and the CLI report it. */
export type ReloadOutcome =
  | {
      readonly reloaded: true;
      readonly changes: string[];
      /** Keys that changed but take effect only at the next start. */
      readonly needsRestart: string[];
      readonly backendsReplaced: boolean;
      readonly workersReplaced: number;
    }
  | { readonly reloaded: false; readonly problems: string[] };

export type ScaleOutcome =
  { ok: true; from: number; to: number; service?: string } | { ok: false; problems: string[] };

export type Action =
  | { readonly type: 'reload'; readonly trigger: string; reply?(outcome: ReloadOutcome): void }
  | { readonly type: 'roll'; readonly trigger: string }
  | {
      readonly type: 'scale';
      readonly trigger: string;
      /** Which service's pool_size (several services); none: the only one. */
      readonly service?: string;
      /** A new pool_size, or a change of the current one. */
      readonly size: { readonly to: unknown } | { readonly by: number };
      reply?(outcome: ScaleOutcome): void;
    };

/**
 * What can be asked: a queued action, or a stop. A stop never waits behind a reload still waiting
 * for a new worker to listen: it goes to the front core's own queue at once, and what is queued
 * after it finds the server draining and is refused.
 */
export type Ask = Action | { readonly type: 'stop'; readonly trigger: string };

/** What a signal asks for, before it is tagged with its trigger. */
type Untriggered = Ask extends infer A ? (A extends unknown ? Omit<A, 'trigger'> : never) : never;

/** The signal table: what each signal asks for. */
export const SIGNALS = {
  SIGHUP: { type: 'reload' },
  SIGUSR2: { type: 'roll' },
  SIGTTIN: { type: 'scale', size: { by: +1 } },
  SIGTTOU: { type: 'scale', size: { by: -1 } },
  SIGTERM: { type: 'stop' },
  SIGINT: { type: 'stop' },
} as const satisfies Record<string, Untriggered>;

/** Performs queued actions one at a time, in order; only one runs at a time. */
export class ActionQueue {
  private readonly queued: Action[] = [];
  private running = false;

  constructor(private readonly perform: (action: Action) => Promise<void>) {}

  push(action: Action): void {
    this.queued.push(action);
    void this.performAll();
  }

  private async performAll(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (let action = this.queued.shift(); action; action = this.queued.shift()) {
        await this.perform(action);
      }
    } finally {
      this.running = false;
    }
  }
}
