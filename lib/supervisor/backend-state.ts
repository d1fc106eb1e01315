/**
 * A backend's life as an explicit state machine:
 *
 *   starting ──ready──▶ idle ◀──release── busy
 *      │                 │ └────lease─────▶ │
 *      │ retire          │ retire           │ retire
 *      ▼                 ▼                  ▼
 *   retiring ◀───────────┴──────────────────┘
 *      │ exit
 *      ▼
 *   exited ◀── exit ── starting | idle | busy   (boot failure / crash)
 *
 *   busy ──unready──▶ starting   (it refused a connection: not listening after all)
 */
export type RetireReason =
  | 'shrink'
  | 'replaced'
  | 'max-requests'
  | 'max-rss'
  | 'unhealthy'
  | 'start-timeout'
  | 'stuck'
  | 'broken'
  | 'owner-died'
  | 'shutdown';

export type BackendState =
  | { readonly phase: 'starting' }
  | { readonly phase: 'idle' }
  | {
      readonly phase: 'busy';
      readonly lease: number;
      readonly worker: number;
      readonly requestId: number;
      /** Chosen to retire (pool shrinks, or a rolling restart replaced it); it goes when returned. */
      readonly retireOnReturn: boolean;
    }
  | { readonly phase: 'retiring'; readonly reason: RetireReason }
  | { readonly phase: 'exited'; readonly planned: boolean };

export type Phase = BackendState['phase'];

export type BackendEvent =
  | { readonly type: 'ready' }
  | {
      readonly type: 'lease';
      readonly lease: number;
      readonly worker: number;
      readonly requestId: number;
    }
  | { readonly type: 'mark-for-retirement' }
  | { readonly type: 'release' }
  | { readonly type: 'unready' }
  | { readonly type: 'retire'; readonly reason: RetireReason }
  | { readonly type: 'exit' };

export interface InvalidTransition {
  readonly invalid: true;
  readonly message: string;
}

export function isInvalid(result: BackendState | InvalidTransition): result is InvalidTransition {
  return 'invalid' in result;
}

/** The only way a backend changes state. An event that does not apply is returned as a value. */
export function transition(
  state: BackendState,
  event: BackendEvent,
): BackendState | InvalidTransition {
  switch (event.type) {
    case 'ready':
      if (state.phase === 'starting') return { phase: 'idle' };
      break;
    case 'lease':
      if (state.phase === 'idle') {
        return {
          phase: 'busy',
          lease: event.lease,
          worker: event.worker,
          requestId: event.requestId,
          retireOnReturn: false,
        };
      }
      break;
    case 'mark-for-retirement':
      if (state.phase === 'busy') return { ...state, retireOnReturn: true };
      break;
    case 'release':
      if (state.phase === 'busy') return { phase: 'idle' };
      break;
    case 'unready':
      if (state.phase === 'busy') return { phase: 'starting' };
      break;
    case 'retire':
      if (state.phase === 'starting' || state.phase === 'idle' || state.phase === 'busy') {
        return { phase: 'retiring', reason: event.reason };
      }
      break;
    case 'exit':
      if (state.phase !== 'exited') return { phase: 'exited', planned: state.phase === 'retiring' };
      break;
  }
  return { invalid: true, message: `a ${state.phase} backend cannot take "${event.type}"` };
}
