import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import express, { type NextFunction, type Request, type Response } from 'express';
import { MultiplexerError } from '../errors.js';
import { hostGuard, jsonOnly, tokenGuard } from './guards.js';
import { LiveFeed, MAX_SUBSCRIBERS, type LiveSample } from './live-feed.js';

/** What the admin API can ask of the primary. */
export interface AdminActions {
  readiness(): { ready: boolean; reason: string };
  liveness(): { alive: boolean; reason: string };
  status(): Promise<unknown>;
  /** The Prometheus text exposition of every process's metrics. */
  metrics(): Promise<{ contentType: string; text: string }>;
  /** Status and request counters, for the dashboard's live feed. */
  sample(): Promise<LiveSample>;
  /** Resolves with the HTTP status and body to send. */
  reload(): Promise<{ status: number; body: unknown }>;
  scale(body: unknown): Promise<{ status: number; body: unknown }>;
  roll(): Promise<{ status: number; body: unknown }>;
  /** Read on every request, so a reload can change them. */
  token(): string;
  hostnames(): readonly string[];
}

const MAX_BODY = 64 * 1024;

/** The dashboard's files: served as they are, no build step, nothing from a CDN. */
const PUBLIC = fileURLToPath(new URL('../../../lib/admin/public/', import.meta.url));

/** Each endpoint's method: the 405 answer and the 404's list come from here. */
const ROUTES: Readonly<Record<string, 'GET' | 'POST'>> = {
  '/healthz': 'GET',
  '/readyz': 'GET',
  '/status': 'GET',
  '/metrics': 'GET',
  '/events': 'GET',
  '/dashboard.json': 'GET',
  '/reload': 'POST',
  '/scale': 'POST',
  '/roll': 'POST',
};
const ENDPOINTS = [
  ...Object.entries(ROUTES).map(([path, method]) => `${method} ${path}`),
  'GET / (dashboard)',
];

/**
 * The admin HTTP API and dashboard in the primary, on express 5 (routing, JSON bodies with a size
 * limit, the guards as middleware, static files, the event stream). /healthz and /readyz answer
 * anyone who can reach the port (probes from Docker or Kubernetes carry no token); everything
 * else requires the bearer token when one is set. The front workers' request path stays on
 * node:http: express's router costs about 100 µs of CPU per request there (docs/BENCHMARKS.md).
 */
export class AdminServer {
  private readonly server: http.Server;
  private readonly feed: LiveFeed;

  constructor(private readonly actions: AdminActions) {
    this.feed = new LiveFeed(() => actions.sample());
    this.server = http.createServer(this.app());
    // Keep-alive from a CLI or a probe must not hold the process open at exit.
    this.server.keepAliveTimeout = 1000;
  }

  private app(): express.Express {
    const { actions } = this;
    const app = express();
    app.disable('x-powered-by');
    app.set('etag', false);
    app.use(hostGuard(() => actions.hostnames()));
    app.use((_req, res, next) => {
      res.setHeader('cache-control', 'no-store');
      next();
    });

    app.get('/healthz', (_req, res) => {
      const liveness = actions.liveness();
      res.status(liveness.alive ? 200 : 503).json({
        status: liveness.alive ? 'alive' : 'failing',
        reason: liveness.reason,
      });
    });
    app.get('/readyz', (_req, res) => {
      const readiness = actions.readiness();
      res.status(readiness.ready ? 200 : 503).json(readiness);
    });

    // The page and its files carry nothing secret: the data comes from guarded endpoints.
    app.use(express.static(PUBLIC, { index: 'index.html', etag: false, lastModified: false }));

    const guard = tokenGuard(() => actions.token());
    app.get('/status', guard, async (_req, res) => {
      res.json(await actions.status());
    });
    app.get('/metrics', guard, async (_req, res) => {
      const { contentType, text } = await actions.metrics();
      res.type(contentType).send(text);
    });
    app.get('/events', guard, (_req, res) => {
      if (!this.feed.subscribe(res)) {
        res
          .status(503)
          .set('retry-after', '5')
          .type('text/plain')
          .send(`503: ${MAX_SUBSCRIBERS} dashboards are open already; close one and try again\n`);
      }
    });
    /** Whether the page may offer actions: only when a token guards them. */
    app.get('/dashboard.json', guard, (_req, res) => {
      res.json({ actions: actions.token() !== '' });
    });

    const json = express.json({ limit: MAX_BODY, type: 'application/json', strict: false });
    const action = (run: (req: Request) => Promise<{ status: number; body: unknown }>) => [
      guard,
      jsonOnly,
      json,
      async (req: Request, res: Response) => {
        const outcome = await run(req);
        res.status(outcome.status).json(outcome.body);
      },
    ];
    app.post('/reload', ...action(() => actions.reload()));
    app.post('/roll', ...action(() => actions.roll()));
    app.post('/scale', ...action((req) => actions.scale(req.body ?? {})));

    app.use((req, res) => {
      const allowed = ROUTES[req.path];
      if (allowed) {
        res.setHeader('allow', allowed);
        res.status(405).json({ error: `${req.path} takes ${allowed}, not ${req.method}` });
        return;
      }
      res.status(404).json({ error: `no such endpoint: ${req.path}`, endpoints: ENDPOINTS });
    });
    app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
      const e = err as { type?: string; status?: number; message?: string };
      if (e.type === 'entity.too.large') {
        res.status(413).json({ error: `body over ${MAX_BODY} bytes` });
      } else if (e.type === 'entity.parse.failed') {
        res.status(400).json({ error: `body must be JSON: ${e.message}` });
      } else {
        res.status(e.status ?? 500).json({ error: e.message ?? String(err) });
      }
    });
    return app;
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
        this.feed.start();
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  close(): Promise<void> {
    this.feed.stop();
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
