import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import type { ErrorCode } from '../errors.js';
import { countLogEvents } from './log-events.js';
import { DEFAULT_SERVICE } from '../config/services.js';

/** Seconds, from a fraction of a millisecond (the proxy's own cost) to the longest waits. */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * multiplexer's own answers that turned a request away before any backend had it, by the reason
 * label they count under (the rest of its answers, 502 and 504, are backend failures).
 */
const REJECTIONS: Partial<Record<ErrorCode, string>> = {
  MPX_QUEUE_FULL: 'queue_full',
  MPX_QUEUE_TIMEOUT: 'queue_timeout',
  MPX_SHUTTING_DOWN: 'shutting_down',
  MPX_BODY_TOO_LARGE: 'body_too_large',
  MPX_BAD_REQUEST: 'bad_request',
  MPX_CLIENT_TIMEOUT: 'client_timeout',
  MPX_UPGRADE_DISABLED: 'upgrade_disabled',
  MPX_INTERNAL: 'internal',
  MPX_BUFFER_FULL: 'buffer_full',
  MPX_CLIENT_QUEUE_FULL: 'client_queue_full',
  MPX_NO_SERVICE: 'no_service',
};

/** Whether multiplexer's answer with this code turned the request away before any backend. */
export function isRejection(code: ErrorCode): boolean {
  return REJECTIONS[code] !== undefined;
}

/** What one request did, as the access log and the metrics see it. Times from performance.now(). */
export interface RequestOutcome {
  /** The status sent to the client, or undefined when it left before any answer. */
  readonly status: number | undefined;
  readonly errorCode: ErrorCode | undefined;
  readonly startedAt: number;
  readonly endedAt: number;
  readonly leasedAt: number | undefined;
  /** The service that took it (undefined: the only one, or none matched when errorCode says so). */
  readonly service?: string | undefined;
}

/**
 * A front worker's request metrics, in a registry of its own: the primary collects every
 * worker's as JSON over IPC and aggregates them with prom-client's AggregatorRegistry.
 * Labels stay bounded: status codes, rejection reasons, nothing from the request itself.
 */
export class RequestMetrics {
  readonly registry = new Registry();
  private readonly histogram = (name: string, help: string): Histogram =>
    new Histogram({ name, help, buckets: BUCKETS, registers: [this.registry] });
  private readonly requests = new Counter({
    name: 'multiplexer_requests_total',
    help: 'Requests answered, by the status code sent to the client ("none": the client left before any answer) and service ("none": no service took it).',
    labelNames: ['code', 'service'] as const,
    registers: [this.registry],
  });
  private readonly duration = this.histogram(
    'multiplexer_request_duration_seconds',
    'From the request head arriving to the last byte of the answer sent (or the client leaving).',
  );
  private readonly queueWait = this.histogram(
    'multiplexer_queue_wait_seconds',
    'From the request head arriving to a backend leased for it (body read included when buffered).',
  );
  private readonly service = this.histogram(
    'multiplexer_backend_service_seconds',
    'From a backend leased to it returned: the time the backend was held for one request.',
  );
  private readonly rejections = new Counter({
    name: 'multiplexer_rejections_total',
    help: 'Requests multiplexer answered itself before any backend had them, by reason.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  /** Child counters by service and status code, so a request costs no label lookup. */
  private readonly byCode = new Map<string, ReturnType<Counter<'code' | 'service'>['labels']>>();

  constructor(worker: number) {
    collectDefaultMetrics({ register: this.registry, labels: { process: `worker-${worker}` } });
    countLogEvents(this.registry);
  }

  leased(waitMs: number): void {
    this.queueWait.observe(waitMs / 1000);
  }

  returned(heldMs: number): void {
    this.service.observe(heldMs / 1000);
  }

  answered(outcome: RequestOutcome): void {
    const code = outcome.status === undefined ? 'none' : String(outcome.status);
    const service =
      outcome.service ?? (outcome.errorCode === 'MPX_NO_SERVICE' ? 'none' : DEFAULT_SERVICE);
    const key = `${service} ${code}`;
    let counter = this.byCode.get(key);
    if (!counter) {
      counter = this.requests.labels({ code, service });
      this.byCode.set(key, counter);
    }
    counter.inc();
    this.duration.observe((outcome.endedAt - outcome.startedAt) / 1000);
    const reason = outcome.errorCode && REJECTIONS[outcome.errorCode];
    if (reason) this.rejections.inc({ reason });
  }
}
