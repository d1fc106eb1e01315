import type { ErrorCode } from '../errors.js';
import type { CheckoutResult, LeaseClient } from '../ipc/lease-client.js';
import type { CheckinOutcome } from '../ipc/protocol.js';
import type { ExchangeTarget } from './exchange.js';
import type { FaultReporter } from './guard.js';
import type { RequestObserver } from './request-observer.js';

/**
 * How many backends may refuse one request before it gets 502: each refusal sends the backend
 * back to starting, so this bounds a request's tour of a pool whose backends all stopped listening.
 */
const MAX_REFUSALS = 2;

/** The backend a request was given, for the access log (the last one, after a refusal). */
export interface LeaseRecord {
  /** The service the router chose (undefined before routing, or when none matched). */
  service: string | undefined;
  leasedAt: number | undefined;
  backend: number | undefined;
  port: number | undefined;
}

export const NO_LEASE: Readonly<LeaseRecord> = {
  service: undefined,
  leasedAt: undefined,
  backend: undefined,
  port: undefined,
};

/** Runs one exchange (or tunnel) on a leased backend; `done` returns the lease. */
export type UseBackend = (
  lease: number,
  target: ExchangeTarget,
  done: (outcome: CheckinOutcome) => void,
) => void;

/** One request's wish for a backend. */
export interface BackendWish {
  /** The service whose pool serves it (the router's choice). */
  readonly service: string;
  /** The client's response or socket: its close while waiting gives up the place in the queue. */
  readonly client: {
    once(e: 'close', f: () => void): unknown;
    off(e: 'close', f: () => void): unknown;
  };
  readonly startedAt: number;
  /** Filled in with the backend given, for the access log. */
  readonly record: LeaseRecord;
  readonly isGone: () => boolean;
  /** Who asks (queue_max_per_client), or ''. */
  readonly clientKey: string;
  /** The pool refused (queue full, timeout, shutting down): answer the client. */
  readonly rejected: (code: ErrorCode, message: string) => void;
  readonly use: UseBackend;
  /** The lease question is closed (returned, refused, or never granted). */
  readonly settled: () => void;
}

/**
 * Checkout around one exchange, as undici's RetryHandler wraps a dispatch: checks out a backend
 * and runs `use` on it; a backend that refused the connection (it never saw the request) sends
 * the request to the head of the queue for another, at most MAX_REFUSALS times. A client that
 * leaves while waiting gives up its place and uses no backend.
 */
export function backendUser(deps: {
  readonly leases: LeaseClient;
  readonly observer: RequestObserver;
  readonly onFault: FaultReporter;
  readonly targetFor: (port: number, mayRetryRefused: boolean) => ExchangeTarget;
}): (wish: BackendWish) => void {
  const { leases, observer } = deps;
  return (wish) => {
    const { client, record } = wish;
    let refusals = 0;
    const tryCheckout = (again: boolean): void => {
      const checkout = leases.checkout(again, wish.clientKey, wish.service);
      const leave = (): void => leases.cancel(checkout.seq);
      client.once('close', leave);
      const granted = (result: CheckoutResult): void => {
        client.off('close', leave);
        if (result.status === 'cancelled') return wish.settled();
        if (result.status === 'rejected') {
          wish.rejected(result.code, result.message);
          return wish.settled();
        }
        if (wish.isGone()) {
          leases.checkin(result.lease, 'ok');
          return wish.settled();
        }
        const leasedAt = performance.now();
        record.leasedAt = leasedAt;
        record.backend = result.backend;
        record.port = result.port;
        observer.leased(leasedAt - wish.startedAt);
        let returned = false;
        const done = (outcome: CheckinOutcome): void => {
          if (returned) return;
          returned = true;
          leases.checkin(result.lease, outcome);
          observer.returned(performance.now() - leasedAt);
          if (outcome !== 'refused') return wish.settled();
          refusals++;
          tryCheckout(true);
        };
        try {
          wish.use(result.lease, deps.targetFor(result.port, refusals < MAX_REFUSALS), done);
        } catch (err) {
          // What the backend saw of the request is unknown: it is replaced, not reused.
          deps.onFault(err, 'lease');
          wish.rejected('MPX_INTERNAL', 'multiplexer could not relay this exchange (see its log)');
          done('broken');
        }
      };
      void checkout.result.then((result) => {
        try {
          granted(result);
        } catch (err) {
          deps.onFault(err, 'checkout');
          wish.settled();
        }
      });
    };
    tryCheckout(false);
  };
}
