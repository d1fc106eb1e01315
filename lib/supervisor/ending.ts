import type { Config } from '../config/config.js';
import { endReasonOf, type BackendState, type EndReason } from './backend-state.js';
import type { ExitInfo, StartReport } from './backend-process.js';

/**
 * Why a backend ended, in words, for the log, status and the boot-failure report: pure functions
 * of what the pool's state said before the exit and how the process ended.
 */

/** Failed health checks in a row after which a backend is replaced. */
export const HEALTH_FAILURES = 3;

/** Why the pool ended a backend, as the log says it. */
export const END_WHY: Record<EndReason, string> = {
  shrink: 'pool shrinks back to pool_size',
  rolled: 'replaced by a rolling restart',
  'max-requests': 'served service_max_requests requests; recycled (its replacement is ready)',
  'max-rss': 'memory over service_max_rss_mb; recycled (its replacement is ready)',
  unhealthy: `failed its service_health_path check ${HEALTH_FAILURES} times in a row`,
  'start-timeout': 'not ready within service_start_timeout_ms',
  stuck: 'no answer within http_proxy_timeout; presumed stuck',
  broken: 'connection to the backend failed',
  'abandoned-stream':
    'its client left an answer that did not end within http_proxy_timeout or 64 MB; presumed endless',
  'owner-died': 'the front worker holding it died mid-request',
  shutdown: 'shutdown',
  lent: 'its place goes to another service waiting for a backend (max_backends)',
};

/** The hint for a service that listens while its first stdout line stays in its buffer. */
export function bufferedHint(port: number): string {
  return `port ${port} accepts connections but no line arrived on stdout: the service's stdout is probably buffered (python -u, flush=True, $|=1, or use "service_start_delay_ms": "wait_port")`;
}

/** What a backend given up on at start showed, in words, with the hint that fits. */
export function describeStart(report: StartReport, config: Config, port: number): string {
  const ms = config.service_start_timeout_ms;
  const lines = (n: number): string => `${n} line${n === 1 ? '' : 's'}`;
  if (config.service_start_delay_ms === 'wait_first_output' && report.stdoutLines === 0) {
    if (report.acceptedWithoutLine) return `${bufferedHint(port)}; waited ${ms} ms`;
    if (report.stderrLines > 0) {
      return `no line on stdout in ${ms} ms; it wrote ${lines(report.stderrLines)} to stderr; for servers that log to stderr use "service_start_delay_ms": "wait_port"`;
    }
    return `no line on stdout and no connection accepted on port ${port} in ${ms} ms, nothing on stderr either; does it listen on %PORT% / $PORT?`;
  }
  if (!report.probing) return `its readiness delay did not pass within ${ms} ms`;
  if (report.health)
    return `its port accepted, but its health check never passed in ${ms} ms (${report.health})`;
  return `its port never accepted a connection in ${ms} ms (it wrote ${lines(report.stdoutLines)} to stdout, ${report.stderrLines} to stderr); does it listen on %PORT% / $PORT?`;
}

/** How a backend's exit is told and counted. */
export interface ExitReport {
  /** "exited with code 3", "killed by SIGKILL", "could not start: …". */
  readonly how: string;
  /** What the exit counts under: the pool's reason, "stopped", "boot-failure" or "crash". */
  readonly reason: EndReason | 'stopped' | 'boot-failure' | 'crash';
  /** A failure (a crash, a boot failure, a fault), for the degraded state. */
  readonly failure: boolean;
  readonly event: 'backend.stopped' | 'backend.boot-failed' | 'backend.crashed';
  readonly level: 'info' | 'error';
  readonly message: string;
}

/** `before`: the backend's state in the pool when its process ended (undefined if unknown). */
export function exitReport(before: BackendState | undefined, info: ExitInfo): ExitReport {
  const how = info.error
    ? `could not start: ${info.error}`
    : info.signal
      ? `killed by ${info.signal}`
      : `exited with code ${info.code}`;
  const ended = before && endReasonOf(before);
  if (info.stopped) {
    // Stopped by us: the pool's state still says why.
    return {
      how,
      reason: ended ?? 'stopped',
      failure: before?.phase === 'failed',
      event: 'backend.stopped',
      level: 'info',
      message: `backend stopped (${how})`,
    };
  }
  const boot = before?.phase === 'starting';
  // One the pool was ending that exits before we signal it is one whose connection just broke.
  const when = boot
    ? 'before it was ready (boot failure)'
    : before?.phase === 'busy' || ended !== undefined
      ? 'while serving a request (crash)'
      : 'while idle (crash)';
  return {
    how,
    reason: boot ? 'boot-failure' : 'crash',
    failure: true,
    event: boot ? 'backend.boot-failed' : 'backend.crashed',
    level: 'error',
    message: `backend ${how} ${when}`,
  };
}
