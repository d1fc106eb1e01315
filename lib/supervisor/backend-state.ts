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
 *   busy ──upgrade──▶ busy (use 'upgraded': held by a WebSocket or other Upgrade tunnel)
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
  | 'abandoned-stream'
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
      /**
       * What holds it: one request, or a connection upgraded to another protocol (a WebSocket),
       * for as long as that lasts. An upgraded lease has no answer to wait for, so a rolling
       * restart or shrink must ask for it to be closed.
       */
      readonly use: 'request' | 'upgraded';
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
  | { readonly type: 'upgrade' }
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
          use: 'request',
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
    case 'upgrade':
      if (state.phase === 'busy' && state.use === 'request') return { ...state, use: 'upgraded' };
      break;
    case 'unready':
      if (state.phase === 'busy' && state.use === 'request') return { phase: 'starting' };
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
