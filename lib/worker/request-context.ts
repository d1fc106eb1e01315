import type { IncomingMessage } from 'node:http';
import { backendHost, type Config } from '../config/config.js';
import type { ErrorCode } from '../errors.js';
import type { LeaseClient } from '../ipc/lease-client.js';
import type { BufferBudget } from './buffer-budget.js';
import type { FaultReporter } from './guard.js';
import { clientAddressOf, TrustedProxies } from './headers.js';
import type { RequestObserver } from './request-observer.js';
import type { Tunnel } from './upgrade.js';
import { backendUser, type BackendWish, type LeaseRecord } from './with-backend.js';
import { serviceSpecs } from '../config/services.js';
import { Router, type Route } from '../router.js';

export interface AppDeps {
  readonly config: Config;
  readonly leases: LeaseClient;
  /** Private directory for bodies that outgrow buffer_memory_bytes. */
  readonly bufferDir: string;
  /** Count requests from arrival until their answer and their lease are done, for the drain. */
  readonly onStart: () => void;
  readonly onSettled: () => void;
  readonly isDraining: () => boolean;
  /** Upgraded connections, by lease, so a drain or a retiring backend can close them. */
  readonly tunnels: Map<number, Tunnel>;
  /** Metrics and the access log. */
  readonly observer: RequestObserver;
  /** An exception caught on the request path (see guard.ts). */
  readonly onFault: FaultReporter;
  /** Bodies in memory and in temp files, all exchanges together. */
  readonly budget: BufferBudget;
}

/** What a request and an upgrade share: the worker's dependencies, read once. */
export interface RequestContext {
  readonly deps: AppDeps;
  readonly config: Config;
  readonly trusted: TrustedProxies;
  /** Who a request is from, for queue_max_per_client ('' when that is off: nothing to count). */
  clientKey(req: IncomingMessage): string;
  /**
   * The service a request goes to, by its Host and path, and the path its backend sees;
   * undefined when no service takes it (404 MPX_NO_SERVICE).
   */
  route(host: string, path: string): Route | undefined;
  /** More than one service: the access log names the service of each request. */
  readonly several: boolean;
  /** Checks out a backend for one request, with the refusal retry (with-backend.ts). */
  withBackend(wish: BackendWish): void;
  /** Tells the metrics and the access log how a request ended. */
  report(
    req: IncomingMessage,
    requestId: string,
    startedAt: number,
    lease: Readonly<LeaseRecord>,
    answer: { status: number | undefined; bytes: number; errorCode: ErrorCode | undefined },
  ): void;
}

export function requestContext(deps: AppDeps): RequestContext {
  const { config, observer } = deps;
  const host = backendHost(config.service_http_base_url);
  const trusted = new TrustedProxies(config.trusted_proxies);
  const specs = serviceSpecs(config);
  const several = specs.length > 1;
  const router = new Router(
    specs.map((s) => ({
      service: s.name,
      hosts: s.match.hosts,
      pathPrefix: s.match.pathPrefix,
      stripPrefix: s.match.stripPrefix,
    })),
  );
  const only = specs[0]!.name;
  return {
    deps,
    config,
    trusted,
    several,
    // One service that takes everything: no routing on the request path.
    route:
      several || specs[0]!.match.hosts.length > 0 || specs[0]!.match.pathPrefix !== undefined
        ? (host, path) => router.route(host, path)
        : (_host, path) => ({ service: only, path }),
    clientKey: (req) => (config.queue_max_per_client > 0 ? clientAddressOf(req, trusted) : ''),
    withBackend: backendUser({
      leases: deps.leases,
      observer,
      onFault: deps.onFault,
      targetFor: (port, mayRetryRefused) => ({
        host,
        port,
        timeoutMs: config.http_proxy_timeout,
        mayRetryRefused,
        bufferResponses: config.buffer_responses,
        onFault: deps.onFault,
      }),
    }),
    report: (req, requestId, startedAt, lease, answer) =>
      observer.answered({
        requestId,
        method: req.method ?? 'GET',
        target: req.url ?? '/',
        startedAt,
        endedAt: performance.now(),
        ...lease,
        service: several ? lease.service : undefined,
        ...answer,
      }),
  };
}
