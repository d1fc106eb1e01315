import type { ErrorCode } from '../errors.js';
import type { CheckinOutcome, PrimaryMessage, WorkerMessage } from './protocol.js';
import { NAMESPACE } from './protocol.js';
import { Pending, Sequence } from './request.js';
import { DEFAULT_SERVICE } from '../config/services.js';

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
  readonly seq: number;
  readonly result: Promise<CheckoutResult>;
}

interface Waiting {
  readonly resolve: (result: CheckoutResult) => void;
  readonly service: string;
  /** Asked again after a refusal: the primary serves it first; never the target of a pass. */
  readonly again: boolean;
}

/** A lease this worker holds, and how far it may pass it on (see protocol.ts, "Sticky leases"). */
interface Held {
  readonly service: string;
  readonly port: number;
  readonly backend: number;
  upTo: number;
  /** Passes left under the backend's max_requests (UNBOUNDED: no limit). */
  passes: number;
}

/**
 * The front worker's side of the lease protocol: numbered checkouts, replies matched by `ack`.
 * A checkout cancelled before its reply arrives is forgotten here; the supervisor returns the
 * lease itself if it had already granted it, so a late `granted` is simply ignored. So is a grant
 * that crossed a pass to the same checkout: the supervisor takes it back when the pass arrives.
 */
export class LeaseClient {
  /** In the order asked, which is the order of `seq`: the first is the oldest. */
  private readonly waiting: Pending<Waiting>;
  private readonly held = new Map<number, Held>();

  /** `sequence`: this worker's one numbering of its requests. */
  constructor(
    private readonly send: (message: WorkerMessage) => void,
    sequence = new Sequence(),
  ) {
    this.waiting = new Pending(sequence);
  }

  /**
   * Asks for a backend of `service`. `again`: this request's backend refused its connection (it
   * never saw the request), so it asks to be first in the queue rather than last.
   */
  checkout(again = false, client = '', service = DEFAULT_SERVICE): Checkout {
    let seq = 0;
    const result = new Promise<CheckoutResult>((resolve) => {
      seq = this.waiting.open({ resolve, again, service });
    });
    this.send({ ns: NAMESPACE, type: again ? 'checkout-again' : 'checkout', seq, client, service });
    return { seq, result };
  }

  cancel(seq: number): void {
    const waiting = this.waiting.take(seq);
    if (!waiting) return;
    this.send({ ns: NAMESPACE, type: 'cancel', seq, service: waiting.service });
    waiting.resolve({ status: 'cancelled' });
  }

  /**
   * The request on `lease` is over. After one that ended well, the backend goes on to this
   * worker's oldest waiting checkout of the same service when the lease's bound allows (a pass:
   * no round trip through the primary); otherwise it goes back to the primary.
   */
  checkin(lease: number, outcome: CheckinOutcome): void {
    const held = this.held.get(lease);
    const service = held?.service ?? DEFAULT_SERVICE;
    if (held && outcome === 'ok' && held.passes > 0) {
      for (const [seq, waiting] of this.waiting.entries()) {
        if (seq > held.upTo) break;
        if (waiting.again || waiting.service !== held.service) continue;
        this.waiting.take(seq);
        held.passes--;
        this.send({ ns: NAMESPACE, type: 'pass', lease, to: seq, service });
        waiting.resolve({ status: 'granted', lease, port: held.port, backend: held.backend });
        return;
      }
    }
    this.held.delete(lease);
    this.send({ ns: NAMESPACE, type: 'checkin', lease, outcome, service });
  }

  /**
   * The request on `lease` became an upgraded connection: the backend is held until it closes,
   * and then goes back to the primary (the pool keeps an upgraded lease apart from passes).
   */
  upgraded(lease: number): void {
    const held = this.held.get(lease);
    if (held) held.upTo = 0;
    this.send({
      ns: NAMESPACE,
      type: 'upgraded',
      lease,
      service: held?.service ?? DEFAULT_SERVICE,
    });
  }

  /** Lowers the bound of the leases named (those still held), and confirms. */
  revoke(message: Extract<PrimaryMessage, { type: 'revoke' }>): void {
    for (const lease of message.leases) {
      const held = this.held.get(lease);
      if (held) held.upTo = Math.min(held.upTo, message.upTo);
    }
    this.send({ ns: NAMESPACE, type: 'revoked', ack: message.seq });
  }

  /** Handles a reply from the primary; returns false for a reply to nothing waiting. */
  settle(message: Extract<PrimaryMessage, { type: 'granted' | 'rejected' }>): boolean {
    const waiting = this.waiting.take(message.ack);
    if (!waiting) return false;
    if (message.type === 'granted') {
      const { lease, port, backend, upTo, passes } = message;
      this.held.set(lease, { service: waiting.service, port, backend, upTo, passes });
      waiting.resolve({ status: 'granted', lease, port, backend });
    } else waiting.resolve({ status: 'rejected', code: message.code, message: message.message });
    return true;
  }
}
