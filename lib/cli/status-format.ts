/** What GET /status answers, as the CLI reads it. */
export interface StatusBody {
  pid: number;
  version: string;
  state: string;
  uptimeMs: number;
  config: string;
  pool: { size: number; maxOverflow: number; strategy: string; rolling: boolean };
  /** Every service (one, "default", without `services`). */
  services?: { name: string; size: number; maxOverflow: number; queue: number; rolling: boolean }[];
  workers: { id: number; pid: number; listening: boolean; phase?: string }[];
  endings?: { backend: number; ending: string }[];
  /** Set while backends keep failing. */
  degraded?: string;
  backends: {
    id: number;
    service?: string;
    pid?: number;
    port?: number;
    state: string;
    ageMs: number;
    served: number;
    leasedBy?: number;
    toRoll: boolean;
    rssBytes?: number;
  }[];
  queue: number;
  totals: Record<string, number>;
}

export function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
}

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/**
 * One row per backend: id, pid, port, state, age, requests served, RSS, the worker leasing it;
 * with several services, its service first.
 */
export function backendTable(s: StatusBody): string {
  const several = (s.services?.length ?? 0) > 1;
  const rows = s.backends.map((b) => [
    ...(several ? [b.service ?? '-'] : []),
    String(b.id),
    String(b.pid ?? '-'),
    String(b.port ?? '-'),
    b.toRoll ? `${b.state} (to roll)` : b.state,
    duration(b.ageMs),
    String(b.served),
    b.rssBytes === undefined ? '-' : `${(b.rssBytes / 1048576).toFixed(1)} MB`,
    b.leasedBy === undefined ? '-' : `worker ${b.leasedBy}`,
  ]);
  const head = ['ID', 'PID', 'PORT', 'STATE', 'AGE', 'SERVED', 'RSS', 'LEASE'];
  return table([several ? ['SERVICE', ...head] : head, ...rows]);
}

/** The endings shown by `status`: enough to see a pattern, not a log. */
const ENDINGS_SHOWN = 5;

export function formatStatus(s: StatusBody): string {
  const t = s.totals;
  const endings = (s.endings ?? []).slice(-ENDINGS_SHOWN);
  return [
    `multiplexer ${s.version}, pid ${s.pid}, ${s.state} for ${duration(s.uptimeMs)}`,
    ...(s.degraded ? [`DEGRADED: ${s.degraded}`] : []),
    `config: ${s.config}`,
    ...((s.services?.length ?? 0) > 1
      ? s.services!.map(
          (svc) =>
            `service ${svc.name}: size ${svc.size}, max overflow ${svc.maxOverflow}${svc.rolling ? ', rolling restart in progress' : ''}; ${svc.queue} waiting`,
        )
      : [
          `pool: size ${s.pool.size}, max overflow ${s.pool.maxOverflow}, ${s.pool.strategy}${s.pool.rolling ? ', rolling restart in progress' : ''}; ${s.queue} waiting`,
        ]),
    `front workers: ${s.workers.map((w) => `${w.pid}${w.listening ? '' : ' (not listening)'}`).join(', ')}`,
    '',
    backendTable(s),
    '',
    `requests ${t.requests}, 502: ${t.status502}, 503: ${t.status503}, 504: ${t.status504}, restarts ${t.restarts}, overflow spawns ${t.overflowSpawns}`,
    ...(endings.length > 0
      ? [
          `last backend endings (newest last; every one in \`status --json\`):`,
          ...endings.map((e) => `  backend ${e.backend}: ${e.ending}`),
        ]
      : []),
    '',
  ].join('\n');
}
