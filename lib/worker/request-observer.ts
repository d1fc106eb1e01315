import type { LineLog } from '../access-log.js';
import {
  isRejection,
  type RequestMetrics,
  type RequestOutcome,
} from '../metrics/request-metrics.js';

/** One request as the access log shows it: what the metrics count, and more. */
export interface RequestEntry extends RequestOutcome {
  readonly requestId: string;
  readonly method: string;
  /** The request target as received: path and query. */
  readonly target: string;
  readonly bytes: number;
  readonly backend: number | undefined;
  readonly port: number | undefined;
  /** The service the request went to; undefined when none took it (or only one exists). */
  readonly service: string | undefined;
}

/** What the request path tells the outside: the metrics always, the access log when on. */
export interface RequestObserver {
  leased(waitMs: number): void;
  returned(heldMs: number): void;
  answered(entry: RequestEntry): void;
}

/** The query is cut at this many characters in the access log: a line stays a line. */
const QUERY_LIMIT = 1024;

function loggedTarget(target: string): string {
  const q = target.indexOf('?');
  if (q === -1 || target.length - q - 1 <= QUERY_LIMIT) return target;
  return `${target.slice(0, q + 1 + QUERY_LIMIT)}…`;
}

const ms = (from: number, to: number): number => Math.round((to - from) * 100) / 100;

export function requestObserver(
  metrics: RequestMetrics | undefined,
  log: LineLog,
  accessLog: boolean,
): RequestObserver {
  return {
    leased: (waitMs) => metrics?.leased(waitMs),
    returned: (heldMs) => metrics?.returned(heldMs),
    answered: (entry) => {
      metrics?.answered(entry);
      if (!accessLog) return;
      const path = loggedTarget(entry.target);
      const status = entry.status ?? '-';
      log.info(
        {
          event:
            entry.errorCode && isRejection(entry.errorCode) ? 'request.rejected' : 'request.done',
          request_id: entry.requestId,
          method: entry.method,
          path,
          status: entry.status ?? null,
          bytes: entry.bytes,
          ms: ms(entry.startedAt, entry.endedAt),
          queue_ms: entry.leasedAt === undefined ? null : ms(entry.startedAt, entry.leasedAt),
          ...(entry.service === undefined ? {} : { service: entry.service }),
          backend: entry.backend ?? null,
          port: entry.port ?? null,
          code: entry.errorCode ?? null,
        },
        `${entry.method} ${path} ${status}`,
      );
    },
  };
}
