import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { MultiplexerError } from '../errors.js';

/** What the admin API can ask of the primary. */
export interface AdminActions {
  readiness(): { ready: boolean; reason: string };
  liveness(): { alive: boolean; reason: string };
  status(): Promise<unknown>;
  /** The Prometheus text exposition of every process's metrics. */
  metrics(): Promise<{ contentType: string; text: string }>;
  /** Resolves with the HTTP status and body to send. */
  reload(): Promise<{ status: number; body: unknown }>;
  scale(body: unknown): Promise<{ status: number; body: unknown }>;
  /** Read on every request, so a reload can change it. */
  token(): string;
}

const MAX_BODY = 64 * 1024;

/**
 * The admin HTTP API in the primary. /healthz and /readyz answer anyone who can reach the port
 * (probes from Docker or Kubernetes carry no token); /status, /reload and /scale require the
 * bearer token when one is set.
 */
export class AdminServer {
  private readonly server: http.Server;

  constructor(private readonly actions: AdminActions) {
    this.server = http.createServer((req, res) => {
      this.route(req, res).catch((err: unknown) => {
        send(res, 500, { error: err instanceof Error ? err.message : String(err) });
      });
    });
    // Keep-alive from a CLI or a probe must not hold the process open at exit.
    this.server.keepAliveTimeout = 1000;
  }

  /** Listens, or fails with an error naming admin_port. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', (err: NodeJS.ErrnoException) => {
        reject(
          new MultiplexerError(
            'MPX_LISTEN_FAILED',
            `admin_port ${port} on admin_host ${host} cannot be bound: ${err.code === 'EADDRINUSE' ? 'another program holds it' : err.message}`,
          ),
        );
      });
      this.server.listen({ host, port }, () => {
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://admin').pathname;
    const route = ROUTES[path];
    if (!route) return send(res, 404, { error: `no such endpoint: ${path}`, endpoints: ENDPOINTS });
    if (req.method !== route.method) {
      res.setHeader('allow', route.method);
      return send(res, 405, { error: `${path} takes ${route.method}, not ${req.method}` });
    }
    if (route.guarded && !this.authorized(req)) {
      res.setHeader('www-authenticate', 'Bearer');
      return send(res, 401, {
        error: 'this endpoint requires "Authorization: Bearer <admin_token>"',
      });
    }
    switch (path) {
      case '/healthz': {
        const liveness = this.actions.liveness();
        return send(res, liveness.alive ? 200 : 503, {
          status: liveness.alive ? 'alive' : 'failing',
          reason: liveness.reason,
          pid: process.pid,
        });
      }
      case '/readyz': {
        const readiness = this.actions.readiness();
        return send(res, readiness.ready ? 200 : 503, readiness);
      }
      case '/status':
        return send(res, 200, await this.actions.status());
      case '/metrics': {
        const { contentType, text } = await this.actions.metrics();
        res.writeHead(200, {
          'content-type': contentType,
          'content-length': Buffer.byteLength(text),
          'cache-control': 'no-store',
        });
        res.end(text);
        return;
      }
      case '/reload': {
        const outcome = await this.actions.reload();
        return send(res, outcome.status, outcome.body);
      }
      case '/scale': {
        const body = await readJson(req);
        if (!body.ok) return send(res, 400, { error: body.error });
        const outcome = await this.actions.scale(body.value);
        return send(res, outcome.status, outcome.body);
      }
    }
  }

  private authorized(req: http.IncomingMessage): boolean {
    const token = this.actions.token();
    if (token === '') return true;
    const given = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const a = Buffer.from(given);
    const b = Buffer.from(token);
    return a.length === b.length && timingSafeEqual(a, b);
  }
}

const ROUTES: Record<string, { method: string; guarded: boolean }> = {
  '/healthz': { method: 'GET', guarded: false },
  '/readyz': { method: 'GET', guarded: false },
  '/status': { method: 'GET', guarded: true },
  '/metrics': { method: 'GET', guarded: true },
  '/reload': { method: 'POST', guarded: true },
  '/scale': { method: 'POST', guarded: true },
};
const ENDPOINTS = Object.entries(ROUTES).map(([path, r]) => `${r.method} ${path}`);

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

function readJson(
  req: http.IncomingMessage,
): Promise<{ ok: true; value: unknown } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY) chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > MAX_BODY) return resolve({ ok: false, error: `body over ${MAX_BODY} bytes` });
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve({ ok: true, value: JSON.parse(text === '' ? '{}' : text) });
      } catch {
        resolve({
          ok: false,
          error: `body must be JSON, got ${JSON.stringify(text.slice(0, 80))}`,
        });
      }
    });
  });
}
