import type { ErrorCode } from '../errors.js';
import type { CheckinOutcome, PrimaryMessage, WorkerMessage } from './protocol.js';
import { NAMESPACE } from './protocol.js';

export type CheckoutResult =
  | {
      readonly status: 'granted';
      readonly lease: number;
      readonly port: number;
      readonly backend: number;
    }
  | { readonly status: 'rejected'; readonly code: ErrorCode; readonly message: string }
  | { readonly status: 'cancelled' };

export interface Checkout {
  readonly id: number;
  readonly result: Promise<CheckoutResult>;
}

/**
 * The front worker's side of the lease protocol: numbered checkout requests, replies matched by id.
 * A checkout cancelled before its reply arrives is forgotten here; the supervisor returns the
 * lease itself if it had already granted it, so a late `granted` is simply ignored.
 */
export class LeaseClient {
  private nextId = 1;
  private readonly pending = new Map<number, (result: CheckoutResult) => void>();

  constructor(private readonly send: (message: WorkerMessage) => void) {}

  /**
   * Asks for a backend. `again`: this request's backend refused its connection (it never saw the
   * request), so it asks to be first in the queue rather than last.
   */
  checkout(again = false): Checkout {
    const id = this.nextId++;
    const result = new Promise<CheckoutResult>((resolve) => this.pending.set(id, resolve));
    this.send({ ns: NAMESPACE, type: again ? 'checkout-again' : 'checkout', id });
    return { id, result };
  }

  cancel(id: number): void {
    const resolve = this.pending.get(id);
    if (!resolve) return;
    this.pending.delete(id);
    this.send({ ns: NAMESPACE, type: 'cancel', id });
    resolve({ status: 'cancelled' });
  }

  checkin(lease: number, outcome: CheckinOutcome): void {
    this.send({ ns: NAMESPACE, type: 'checkin', lease, outcome });
  }

  /** The request on `lease` became an upgraded connection: the backend is held until it closes. */
  upgraded(lease: number): void {
    this.send({ ns: NAMESPACE, type: 'upgraded', lease });
  }

  /** Handles a reply from the primary; returns false for a reply to nothing pending. */
  settle(message: Extract<PrimaryMessage, { type: 'granted' | 'rejected' }>): boolean {
    const resolve = this.pending.get(message.id);
    if (!resolve) return false;
    this.pending.delete(message.id);
    resolve(
      message.type === 'granted'
        ? { status: 'granted', lease: message.lease, port: message.port, backend: message.backend }
        : { status: 'rejected', code: message.code, message: message.message },
    );
    return true;
  }
}
