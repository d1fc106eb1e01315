/**
 * A backend's life as an explicit state machine:
 *
 *   starting ──ready──▶ idle ◀──checkin── busy
 *      │                 │ └────lease─────▶ │
 *      │ retire          │ retire           │ retire         (on purpose: it did nothing wrong)
 *      ▼                 ▼                  ▼
 *   retiring ◀───────────┴──────────────────┘
 *      │ exit                                 and likewise, with fail, to failed
 *      ▼                                      (it failed: another takes its place)
 *   exited ◀── exit ── starting | idle | busy   (boot failure / crash)
 *
 *   busy ──unready──▶ starting   (it refused a connection: not listening after all)
 *   busy ──upgrade──▶ busy (use 'upgraded': held by a WebSocket or other Upgrade tunnel)
 *   busy ──pass──▶ busy    (its worker handed it to another request of its own: a sticky lease)
 *
 * A busy backend's lease has a state of its own, what its worker may do with it when the request
 * ends (see lib/ipc/protocol.ts, "Sticky leases"):
 *
 *   open ──revoke──▶ revoking ──revoke-confirmed──▶ bounded
 *                      ▲  │                            │
 *                      │  └──revoke (a lower bound)───┘│
 *                      └────────── revoke ─────────────┘
 */
/** Why the pool ends a backend on purpose: it did nothing wrong. */
export type RetireReason = 'shrink' | 'rolled' | 'max-requests' | 'max-rss' | 'shutdown' | 'lent';

/** Why the pool ends a backend that failed: another takes its place. */
export type Fault =
  'unhealthy' | 'start-timeout' | 'stuck' | 'broken' | 'abandoned-stream' | 'owner-died';

/** Why the pool ended a backend, on purpose or on a fault. */
export type EndReason = RetireReason | Fault;

/**
 * Where the worker holding a lease may pass it: 'open', to any later checkout of its own (no other
 * worker has a request waiting); 'bounded', only to its checkouts numbered ≤ upTo (0: to none,
 * it is returned at the end of the request); 'revoking', bounded by upTo from the revoke `seq`
 * on, which the worker has not confirmed yet: a pass beyond upTo may still arrive.
 */
export type PassRight =
  | { readonly kind: 'open' }
  | { readonly kind: 'bounded'; readonly upTo: number }
  | { readonly kind: 'revoking'; readonly upTo: number; readonly seq: number };

/** The highest checkout number the lease may be passed to as the pool sees it. */
export function passLimit(right: PassRight): number {
  return right.kind === 'open' ? Infinity : right.upTo;
}

export type BackendState =
  | { readonly phase: 'starting' }
  | { readonly phase: 'idle' }
  | {
      readonly phase: 'busy';
      readonly lease: number;
      readonly worker: number;
      readonly checkoutSeq: number;
      /**
       * What holds it: one request, or a connection upgraded to another protocol (a WebSocket),
       * for as long as that lasts. An upgraded lease has no answer to wait for, so a rolling
       * restart or shrink must ask for it to be closed.
       */
      readonly use: 'request' | 'upgraded';
      /** Chosen to retire (pool shrinks, or a rolling restart replaced it); it goes when returned. */
      readonly retireOnReturn: boolean;
      readonly pass: PassRight;
    }
  | { readonly phase: 'retiring'; readonly reason: RetireReason }
  | { readonly phase: 'failed'; readonly fault: Fault }
  | { readonly phase: 'exited'; readonly planned: boolean };

/** Retiring or failed: asked to stop, and why. */
export function endReasonOf(state: BackendState): EndReason | undefined {
  if (state.phase === 'retiring') return state.reason;
  if (state.phase === 'failed') return state.fault;
  return undefined;
}

export type Phase = BackendState['phase'];

export type BackendEvent =
  | { readonly type: 'ready' }
  | {
      readonly type: 'lease';
      readonly lease: number;
      readonly worker: number;
      readonly checkoutSeq: number;
      readonly pass: PassRight;
    }
  /** Its worker handed it on to its own request `checkoutSeq`. */
  | { readonly type: 'pass'; readonly checkoutSeq: number }
  | { readonly type: 'revoke'; readonly seq: number; readonly upTo: number }
  | { readonly type: 'revoke-confirmed'; readonly seq: number }
  | { readonly type: 'mark-for-retirement' }
  | { readonly type: 'checkin' }
  | { readonly type: 'upgrade' }
  | { readonly type: 'unready' }
  | { readonly type: 'retire'; readonly reason: RetireReason }
  | { readonly type: 'fail'; readonly fault: Fault }
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
          checkoutSeq: event.checkoutSeq,
          use: 'request',
          retireOnReturn: false,
          pass: event.pass,
        };
      }
      break;
    case 'pass':
      // Taken as a fact even beyond the bound: the request is on the backend already (the pool
      // reports a pass beyond a confirmed bound as an anomaly).
      if (state.phase === 'busy' && state.use === 'request')
        return { ...state, checkoutSeq: event.checkoutSeq };
      break;
    case 'revoke':
      if (state.phase === 'busy')
        return { ...state, pass: { kind: 'revoking', upTo: event.upTo, seq: event.seq } };
      break;
    case 'revoke-confirmed':
      // A confirmation of an earlier revoke, when a later one is pending, changes nothing.
      if (state.phase === 'busy' && state.pass.kind === 'revoking') {
        if (state.pass.seq !== event.seq) return state;
        return { ...state, pass: { kind: 'bounded', upTo: state.pass.upTo } };
      }
      break;
    case 'mark-for-retirement':
      if (state.phase === 'busy') return { ...state, retireOnReturn: true };
      break;
    case 'checkin':
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
    case 'fail':
      if (state.phase === 'starting' || state.phase === 'idle' || state.phase === 'busy') {
        return { phase: 'failed', fault: event.fault };
      }
      break;
    case 'exit':
      if (state.phase !== 'exited')
        return { phase: 'exited', planned: endReasonOf(state) !== undefined };
      break;
  }
  return { invalid: true, message: `a ${state.phase} backend cannot take "${event.type}"` };
}
