import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { backendHost, type Config } from '../config/config.js';
import type { LeaseClient } from '../ipc/lease-client.js';
import { sendError } from './error-response.js';
import { forward } from './proxy.js';

export interface AppDeps {
  readonly config: Config;
  readonly leases: LeaseClient;
  /** Count requests from arrival until their answer and their lease are done, for the drain. */
  readonly onStart: () => void;
  readonly onSettled: () => void;
  readonly isDraining: () => boolean;
}

/**
 * The front worker's request handler, on node:http directly: it has one route, and express's
 * router cost about 100 µs of CPU per request here, half of the worker's whole cost (see
 * docs/BENCHMARKS.md). Every request: checkout over IPC (waiting in the supervisor's queue if no
 * backend is free), proxy to the leased backend, checkin once the backend's side is over.
 */
export function createRequestHandler(deps: AppDeps): RequestListener {
  const { config, leases } = deps;
  const host = backendHost(config.service_http_base_url);
  return (req: IncomingMessage, res: ServerResponse) => {
    deps.onStart();
    // Settled when both the client's response has closed and the lease question is closed.
    let open = 2;
    const settle = (): void => {
      if (--open === 0) deps.onSettled();
    };
    res.once('close', settle);
    if (deps.isDraining()) res.setHeader('connection', 'close');
    let refusals = 0;
    const lease = (again: boolean): void => {
      const checkout = leases.checkout(again);
      // A client that leaves while waiting gives up its place in the queue and uses no backend.
      const leave = (): void => leases.cancel(checkout.id);
      res.once('close', leave);
      void checkout.result.then((result) => {
        res.off('close', leave);
        if (result.status === 'cancelled') return settle();
        if (result.status === 'rejected') {
          sendError(res, result.code, result.message);
          return settle();
        }
        if (req.socket.destroyed) {
          leases.checkin(result.lease, 'ok');
          return settle();
        }
        const target = {
          host,
          port: result.port,
          timeoutMs: config.http_proxy_timeout,
          mayRetryRefused: refusals < MAX_REFUSALS,
        };
        forward(req, res, target, (outcome) => {
          leases.checkin(result.lease, outcome);
          if (outcome !== 'refused') return settle();
          // The backend never saw it (not listening yet, or any more): first in line for another.
          refusals++;
          lease(true);
        });
      });
    };
    lease(false);
  };
}

/**
 * How many backends may refuse one request before it gets 502: each refusal sends the backend
 * back to starting, so this bounds a request's tour of a pool whose backends all stopped listening.
 */
const MAX_REFUSALS = 2;
