import { serviceSpecs } from '../config/services.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config/config.js';
import { MultiplexerError } from '../errors.js';
import { endRecordedBackends, type BackendRegistry } from '../instance/backend-registry.js';
import { findRunningInstance } from '../instance/instance-file.js';
import { bufferDirOf, ensureStateDir, resetPrivateDir } from '../instance/state-dir.js';
import type { Logger } from '../log.js';
import { endLeftovers } from '../supervisor/leftovers.js';
import { canBind } from '../supervisor/port-ring.js';
import type { BootFailure } from '../supervisor/supervisor.js';

const WATCHDOG = fileURLToPath(new URL('../../../bin/backend-watchdog.sh', import.meta.url));

/**
 * Before anything starts: no other instance on this state directory, http_port free (otherwise
 * every front worker would fail on its own, later), and whatever an earlier run left behind
 * (buffer files, backends it recorded, processes matching service_kill_pattern) gone.
 */
export async function prepareStart(
  config: Config,
  stateDir: string,
  registry: BackendRegistry,
  log: Logger,
): Promise<void> {
  ensureStateDir(stateDir);
  const other = findRunningInstance(stateDir);
  if (other) {
    throw new MultiplexerError(
      'MPX_ALREADY_RUNNING',
      `another multiplexer (pid ${other.pid}, config ${other.config}) is running with state directory ${stateDir}; stop it first, or give this one another --state-dir`,
    );
  }
  const { http_host: host, http_port: port } = config;
  if (!(await canBind(host, port))) {
    throw new MultiplexerError(
      'MPX_LISTEN_FAILED',
      `http_port ${port} on ${host} cannot be bound: another program holds it (or the address is not local)`,
    );
  }
  // Temp files are unlinked as soon as they are opened; a worker killed in between leaves one.
  resetPrivateDir(bufferDirOf(stateDir));
  await endRecordedBackends(registry.file, config.service_stop_timeout_ms, log);
  // Each service's own pattern (one service: the top-level one), each once.
  const patterns = new Map<string, number>();
  for (const { config: own } of serviceSpecs(config)) {
    if (own.service_kill_pattern !== '' && !patterns.has(own.service_kill_pattern))
      patterns.set(own.service_kill_pattern, own.service_stop_timeout_ms);
  }
  for (const [pattern, graceMs] of patterns) await endLeftovers(pattern, graceMs, log);
  registry.reset();
}

/**
 * The watchdog ends our backends if we die without doing it ourselves (kill -9): it reads the
 * state file once its stdin, a pipe only we hold, reaches end of input. The returned process is
 * to be held for the primary's whole life.
 */
export function startWatchdog(
  registryFile: string,
  stopTimeoutMs: number,
  log: Logger,
): ChildProcess {
  const graceTenths = String(Math.ceil(stopTimeoutMs / 100));
  const watchdog = spawn('/bin/sh', [WATCHDOG, registryFile, graceTenths], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  watchdog.unref();
  (watchdog.stdin as unknown as { unref(): void }).unref();
  // Without listeners, a watchdog that cannot start, or a pipe error, would crash the primary.
  watchdog.on('error', (err) =>
    log.error(
      { event: 'watchdog.failed', err: err.message },
      'the watchdog could not start: kill -9 of multiplexer would leave its backends running',
    ),
  );
  watchdog.stdin?.on('error', () => undefined);
  return watchdog;
}

/**
 * The dashboard's address. The generated token rides in the fragment, as Jupyter prints its
 * address: the page reads it, the browser never sends it. A token of the operator's own is never
 * printed.
 */
export function dashboardAddress(config: Config, port: number, generatedToken: string): string {
  const host = config.admin_host.includes(':') ? `[${config.admin_host}]` : config.admin_host;
  return `http://${host}:${port}/${config.admin_token ? '' : `#token=${generatedToken}`}`;
}

/**
 * Why the service cannot start at all, for the log and for stderr: what was run and what it
 * printed. Retrying forever would hide that behind a process that looks alive; the primary exits
 * 1, as gunicorn does when a worker fails to boot.
 */
export function bootFailureReport(failure: BootFailure): { why: string; stderr: string } {
  const why = failure.conclusive
    ? `the first start showed that another would end the same way: ${failure.how}`
    : `${failure.attempts} starts in a row failed before any backend was ever ready (service_boot_attempts); the last one ${failure.how}`;
  const output = failure.started
    ? [
        '  its last output:',
        ...(failure.tail.length > 0 ? failure.tail : ['(it printed nothing)']).map(
          (l) => `    ${l}`,
        ),
      ]
    : [];
  const lines = [
    'multiplexer: the service cannot start.',
    `  command: ${failure.command}`,
    `  ${failure.how}`,
    ...output,
  ];
  return { why, stderr: `${lines.join('\n')}\n` };
}
