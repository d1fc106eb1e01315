import { availableParallelism } from 'node:os';
import {
  addressListFormat,
  hostnameListFormat,
  anyString,
  booleanFormat,
  baseUrlFormat,
  commandFormat,
  intAtLeast,
  intBetween,
  msAtLeast,
  healthPathFormat,
  nonEmptyString,
  oneOf,
  portFormat,
  portOrOffFormat,
  portRangeFormat,
  servicesFormat,
  startDelayFormat,
  type Format,
} from './formats.js';

/**
 * The configuration contract. Key names are those of the original Elixir tool so its users can
 * carry their config over. Every key also reads MULTIPLEXER_<KEY> and --<key> / --<kebab-key>.
 */
export interface KeySpec {
  doc: string;
  format: Format;
  default: unknown;
  /** The default in words, where it depends on the machine (the README's table, --help). */
  defaultText?: string;
  /**
   * What puts a new value in force on reload: the pool's decisions, how backends start (a rolling
   * restart of every backend), the front workers (replaced one by one), or only the next start.
   * No entry: read where it is used, so a reload changes it at once (the admin token).
   */
  appliesOn: readonly Scope[];
}

/**
 * pool: the pool's decisions, at once; backends: a rolling restart of every backend; workers:
 * every front worker replaced; worker-count: front workers added or drained; restart: the next
 * start only.
 */
export type Scope = 'pool' | 'backends' | 'workers' | 'worker-count' | 'restart';

export const schema = {
  pool_size: {
    doc: 'Permanent backends.',
    format: intAtLeast(1),
    default: 4,
    appliesOn: ['pool'],
  },
  pool_max_overflow: {
    doc: 'Temporary backends allowed on top of pool_size while every backend is busy.',
    format: intAtLeast(0),
    default: 0,
    appliesOn: ['pool'],
  },
  pool_overflow_idle_ms: {
    doc: 'The pool shrinks back toward pool_size only once some backend has been idle this many milliseconds; pool_strategy picks which one goes (0 = as soon as no request waits, as the original tool does). Clients that send their next request a moment after each answer otherwise keep the pool starting and stopping processes: 8 such clients on pool_size 2 + overflow 6 started 80 backends in 5 s at 0, 8 at 2000 (and got 1,160 answers against 1,650).',
    format: msAtLeast(0),
    default: 2000,
    appliesOn: ['pool'],
  },
  pool_strategy: {
    doc: 'Which backend retires when the pool shrinks: fifo = the one started longest ago (keeps the freshest processes, good for leaky services), lifo = the one started last.',
    format: oneOf(['fifo', 'lifo']),
    default: 'fifo',
    appliesOn: ['pool'],
  },
  http_port: {
    doc: 'Public port that every front worker shares.',
    format: portFormat,
    default: 3000,
    appliesOn: ['workers'],
  },
  http_host: {
    doc: 'Interface to listen on.',
    format: nonEmptyString,
    default: '0.0.0.0',
    appliesOn: ['workers'],
  },
  http_proxy_timeout: {
    doc: 'Milliseconds a backend has to start its answer (status line), else 504 and the backend is replaced; also the longest stall allowed while a body streams.',
    format: msAtLeast(1),
    default: 300_000,
    appliesOn: ['workers'],
  },
  buffer_requests: {
    doc: 'Read each request body whole (memory, then a temp file) before a backend is taken, so a slow upload never holds one; false streams bodies through as they arrive.',
    format: booleanFormat,
    default: true,
    appliesOn: ['workers'],
  },
  buffer_responses: {
    doc: 'Read each answer as fast as the backend sends it (memory, then a temp file) and return the backend at once, so a slow reader never holds one. Event streams and "X-Accel-Buffering: no" answers always stream.',
    format: booleanFormat,
    default: true,
    appliesOn: ['workers'],
  },
  buffer_memory_bytes: {
    doc: 'Bytes of a request or answer body kept in memory per exchange; the rest goes to a temp file under the state directory.',
    format: intBetween(0, 2 ** 31 - 1),
    default: 1024 * 1024,
    appliesOn: ['workers'],
  },
  buffer_memory_total_bytes: {
    doc: 'Bytes of all bodies one front worker keeps in memory at once (requests and answers); past it, a body goes to its temp file from its first byte. Bounds a worker at about this much: 1,000 queued 1 MiB bodies would otherwise hold 1 GB.',
    format: intBetween(0, 2 ** 40),
    default: 64 * 1024 * 1024,
    appliesOn: ['workers'],
  },
  buffer_disk_max_bytes: {
    doc: "Bytes of all temp files of one front worker. A request body that would pass it gets 503 MPX_BUFFER_FULL (with Retry-After) and takes no backend; an answer that would pass it is read from its backend at the client's pace instead.",
    format: intBetween(0, 2 ** 50),
    default: 1024 * 1024 * 1024,
    appliesOn: ['workers'],
  },
  client_max_body_bytes: {
    doc: 'Largest request body accepted, else 413 without taking a backend (0 = no limit).',
    format: intAtLeast(0),
    default: 100 * 1024 * 1024,
    appliesOn: ['workers'],
  },
  client_timeout_ms: {
    doc: 'A client that sends its request headers or body, or reads its answer, slower than this (no progress for this long; headers in full within it) is disconnected; the backend is not affected.',
    format: msAtLeast(1),
    default: 60_000,
    appliesOn: ['workers'],
  },
  tunnel_idle_timeout_ms: {
    doc: "An upgraded connection (WebSocket) with no byte either way for this long is closed and its backend returned, as nginx's proxy_read_timeout does (0 = never).",
    format: msAtLeast(0),
    default: 60_000,
    appliesOn: ['workers'],
  },
  websocket: {
    doc: 'Pass WebSocket (and every other Upgrade) connections through, holding one backend for the life of each; false answers them 501.',
    format: booleanFormat,
    default: true,
    appliesOn: ['workers'],
  },
  access_log: {
    doc: 'One log line per request (event "request.done", or "request.rejected" when multiplexer turned it away): method, path (query cut at 1 KB), status, bytes sent, duration and queue wait in ms, backend id and port, multiplexer\'s error code, X-Request-Id.',
    format: booleanFormat,
    default: true,
    appliesOn: ['workers'],
  },
  metrics: {
    doc: "Count requests in the front workers (requests by status, latency, queue wait and service histograms) for /metrics, /status's totals and the dashboard; false saves that cost per request, and those figures then stay at 0.",
    format: booleanFormat,
    default: true,
    appliesOn: ['workers'],
  },
  trusted_proxies: {
    doc: 'Peers (addresses or CIDR blocks) whose X-Forwarded-* and Forwarded headers are kept and extended; from anyone else they are replaced.',
    format: addressListFormat,
    default: [],
    appliesOn: ['workers'],
  },
  service_http_base_url: {
    doc: 'Backends are reached at this URL plus ":PORT" (no port or path in it).',
    format: baseUrlFormat,
    default: 'http://127.0.0.1',
    appliesOn: ['backends', 'workers'],
  },
  service_port_range: {
    doc: 'Ports handed to backends, from a ring over this range; it must hold at least pool_size + pool_max_overflow ports.',
    format: portRangeFormat,
    default: '10300..10350',
    appliesOn: ['backends'],
  },
  service_start_process_cmd: {
    doc: 'Command line that starts one backend, run by /bin/sh -c; every %PORT% is replaced by its port (also in $PORT). Required.',
    format: commandFormat,
    default: '',
    defaultText: 'required',
    appliesOn: ['backends'],
  },
  service_cwd: {
    doc: 'Directory the command runs in; a relative one is taken from the config file\'s directory ("" = the config file\'s directory, so relative paths in the command work whatever directory start runs from). A config that does not set it and names a path that exists only from the directory where start runs keeps that directory, with a warning: configs written before this key keep working.',
    format: anyString,
    default: '',
    defaultText: "the config file's directory",
    appliesOn: ['backends'],
  },
  service_start_delay_ms: {
    doc: 'When a started backend counts as ready: "wait_first_output" = at its first line on stdout (stderr does not count), a number = after that many milliseconds, then in both cases once its port accepts a connection; "wait_port" = as soon as its port accepts a connection, whatever it prints (for servers that log only to stderr: gunicorn, uvicorn).',
    format: startDelayFormat,
    default: 'wait_first_output',
    appliesOn: ['backends'],
  },
  service_start_timeout_ms: {
    doc: 'A backend not ready within this many milliseconds is killed and started again (with the crash backoff); also the time a backend that refused a connection gets to listen again.',
    format: msAtLeast(1),
    default: 30_000,
    appliesOn: ['pool'],
  },
  service_start_concurrency: {
    doc: 'Most backends starting at once (0 = no limit); more start as these become ready. Starts compete for the CPU: 6 at once on 2 cores each took 190-200 ms where one alone took 72, so the first overflow backend served later than if they had started two at a time.',
    format: intBetween(0, 1024),
    default: Math.min(availableParallelism(), 1024),
    defaultText: 'the number of CPUs',
    appliesOn: ['pool'],
  },
  service_health_path: {
    doc: 'When set (e.g. "/health"), a backend is ready only once GET of this path answers 2xx or 3xx (after its port accepts), and idle backends are checked so every service_health_interval_ms; one failing 3 times in a row is replaced ("" = off).',
    format: healthPathFormat,
    default: '',
    appliesOn: ['pool'],
  },
  service_health_interval_ms: {
    doc: 'How often idle backends get the service_health_path check, in milliseconds.',
    format: msAtLeast(100),
    default: 10_000,
    appliesOn: ['pool'],
  },
  service_boot_attempts: {
    doc: 'If no backend has ever been ready and this many starts in a row failed (exited or not ready in time), start gives up and exits 1, showing the command and its last output.',
    format: intAtLeast(1),
    default: 5,
    appliesOn: ['pool'],
  },
  service_max_requests: {
    doc: "A limit, as gunicorn's max_requests: a backend that has served this many requests takes no further one and retires (its last request is never passed on); its replacement starts at once while the other backends and the queue carry the load (0 = never). Against slow leaks.",
    format: intAtLeast(0),
    default: 0,
    appliesOn: ['pool'],
  },
  service_max_requests_jitter: {
    doc: 'Each backend recycles after service_max_requests plus a random 0..this many requests, so backends started together do not recycle together.',
    format: intAtLeast(0),
    default: 0,
    appliesOn: ['pool'],
  },
  service_max_rss_mb: {
    doc: 'A backend whose process group uses more resident memory than this many MiB is recycled (checked every 2 s from /proc; 0 = never).',
    format: intAtLeast(0),
    default: 0,
    appliesOn: ['pool'],
  },
  service_stop_timeout_ms: {
    doc: 'Grace in milliseconds between SIGTERM and SIGKILL when a backend is stopped.',
    format: msAtLeast(0),
    default: 5_000,
    appliesOn: ['backends'],
  },
  service_kill_pattern: {
    doc: 'At start, end leftover processes of multiplexer\'s own user whose command line contains this text (SIGTERM, SIGKILL after service_stop_timeout_ms); never multiplexer itself, its ancestors or its children, never another user\'s processes ("" = off).',
    format: anyString,
    default: '',
    appliesOn: ['restart'],
  },
  workers: {
    doc: 'Number of front worker processes. One front worker serves thousands of requests a second; the CPUs are better left to the backends, and workers that share a busy pool hand backends to each other through the primary. Measured on 2 CPUs (4 backends answering at once, 32 clients): 5,300 requests/s with 1 worker, 2,000 with 2.',
    format: intBetween(1, 256),
    default: Math.max(1, Math.min(Math.floor(availableParallelism() / 2), 256)),
    defaultText: 'half the number of CPUs, at least 1 (at most 256)',
    appliesOn: ['worker-count'],
  },
  services: {
    doc: 'Several services behind http_port: service name → its own settings (any service_*, pool_* and queue_* key; one it does not set takes the top-level value) and "match": {"host": "admin.example.com" or "*.example.com" or a list, "path_prefix": "/api", "strip_prefix": true}. A request goes to the service of its Host (exact, then the longest wildcard), then of its longest path prefix, then to the service with no match; none: 404 MPX_NO_SERVICE. A service may have pool_size 0 (started on its first request). {} = one service, "default", from the top-level keys.',
    format: servicesFormat,
    default: {},
    defaultText: '{} (one service)',
    appliesOn: ['pool', 'workers'],
  },
  max_backends: {
    doc: "Most backend processes of all services together (0 = the sum of every service's pool_size + pool_max_overflow). Each service keeps its pool_size; a service with a request waiting takes the place of another's backend idle longest above its pool_size, and among busy services the next free place goes to the one whose oldest request has waited longest.",
    format: intAtLeast(0),
    default: 0,
    appliesOn: ['pool'],
  },
  queue_timeout_ms: {
    doc: 'Longest a request waits for a free backend, then 503 (0 = no limit).',
    format: msAtLeast(0),
    default: 30_000,
    appliesOn: ['pool'],
  },
  queue_max: {
    doc: 'Requests waiting beyond this many get 503 at once (0 = no waiting at all).',
    format: intAtLeast(0),
    default: 1000,
    appliesOn: ['pool'],
  },
  queue_max_per_client: {
    doc: 'A client with this many requests waiting for a backend gets 429 MPX_CLIENT_QUEUE_FULL (with Retry-After) for the next (0 = no limit). A client is its address, or the one a trusted proxy names in X-Forwarded-For. Off by default: clients behind one NAT or one untrusted load balancer share an address and would share the limit.',
    format: intAtLeast(0),
    default: 0,
    appliesOn: ['pool', 'workers'],
  },
  shutdown_timeout_ms: {
    doc: 'Bound in milliseconds on draining in-flight requests at shutdown (a front worker replaced by a reload drains for as long as its requests may take: queue_timeout_ms + http_proxy_timeout).',
    format: msAtLeast(0),
    default: 10_000,
    appliesOn: ['workers'],
  },
  exit_with_parent: {
    doc: 'Shut down gracefully, as for SIGTERM, when the process that started multiplexer exits (npm start stopped with SIGTERM ends npm and its shell, not multiplexer); not when that process is PID 1. false: for a start deliberately left running in the background (nohup, setsid), though a service manager is the better home.',
    format: booleanFormat,
    default: true,
    appliesOn: ['restart'],
  },
  admin_host: {
    doc: 'Interface of the admin API and dashboard. Anything but loopback requires admin_token.',
    format: nonEmptyString,
    default: '127.0.0.1',
    appliesOn: ['restart'],
  },
  admin_port: {
    doc: 'Port of the admin API and dashboard (0 = off; conf/app.json and the Docker image use 3001).',
    format: portOrOffFormat,
    default: 0,
    appliesOn: ['restart'],
  },
  admin_hostnames: {
    doc: 'Names the admin API and dashboard answer to besides localhost and IP addresses (a request whose Host is another name is refused, against DNS rebinding).',
    format: hostnameListFormat,
    default: [],
    appliesOn: [],
  },
  admin_token: {
    doc: 'Bearer token the admin API and dashboard require for everything but /healthz and /readyz, which stay open for probes ("" = none, then the dashboard is read-only; required off loopback). Best given as MULTIPLEXER_ADMIN_TOKEN.',
    format: anyString,
    default: '',
    appliesOn: [],
  },
} satisfies Record<string, KeySpec>;

export type ConfigKey = keyof typeof schema;
export const configKeys = Object.keys(schema) as ConfigKey[];

/** The keys a change of which must be put in force by `scope`. */
export function keysFor(scope: Scope): readonly ConfigKey[] {
  return configKeys.filter((key) => (schema[key].appliesOn as readonly Scope[]).includes(scope));
}

export function envName(key: ConfigKey): string {
  return `MULTIPLEXER_${key.toUpperCase()}`;
}

export function kebabName(key: ConfigKey): string {
  return key.replaceAll('_', '-');
}
