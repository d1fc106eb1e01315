import { setTimeout as sleep } from 'node:timers/promises';
import { callAdmin } from '../admin/admin-client.js';
import { MultiplexerError } from '../errors.js';
import {
  isRunning,
  requireRunningInstance,
  runningInstancesUnder,
  type InstanceRecord,
} from '../instance/instance-file.js';
import { resolveStateDir, STATE_DIR_ENV, stateRoot } from '../instance/state-dir.js';
import { backendTable, formatStatus, type StatusBody } from './status-format.js';

/**
 * The control commands: status, reload, scale, stop, against the instance started with the same
 * config file (or state directory). Each returns the exit code and writes its report to stdout.
 */

type Out = (text: string) => void;

/**
 * The instance a control command acts on: the one started with --config (or living in
 * --state-dir / MULTIPLEXER_STATE_DIR); with neither, the only one this user runs.
 */
export function instanceFor(argv: Record<string, unknown>): InstanceRecord {
  const flag = argv['state-dir'] as string | undefined;
  const config = argv.config as string | undefined;
  if (config !== undefined || flag !== undefined || process.env[STATE_DIR_ENV]) {
    return requireRunningInstance(resolveStateDir({ flag, configFile: config ?? 'conf/app.json' }));
  }
  const root = stateRoot();
  const running = runningInstancesUnder(root);
  if (running.length === 1) return running[0]!.record;
  if (running.length === 0) {
    throw new MultiplexerError(
      'MPX_NOT_RUNNING',
      `no running multiplexer of this user found in ${root} (one started with --state-dir or ${STATE_DIR_ENV} is found only by the same here)`,
    );
  }
  const list = running.map(({ record }) => {
    const http = record.http ? `http ${record.http.host}:${record.http.port}` : 'http ?';
    const admin = record.admin ? `admin ${record.admin.host}:${record.admin.port}` : 'admin off';
    return `  --config ${record.config}   (pid ${record.pid}, ${http}, ${admin})`;
  });
  throw new MultiplexerError(
    'MPX_USAGE',
    `${running.length} multiplexers of this user are running; name one with --config:\n${list.join('\n')}`,
  );
}

/** The admin API's refusal of a bad token or request, as an error. */
function unexpected(status: number, body: unknown): MultiplexerError {
  const detail = (body as { error?: string } | null)?.error ?? JSON.stringify(body);
  return new MultiplexerError(
    'MPX_ADMIN_UNAVAILABLE',
    `the admin API answered ${status}: ${detail}`,
  );
}

export async function statusCommand(argv: Record<string, unknown>, out: Out): Promise<number> {
  const answer = await callAdmin(instanceFor(argv), 'GET', '/status');
  if (answer.status !== 200) throw unexpected(answer.status, answer.body);
  if (argv.json) out(`${JSON.stringify(answer.body, null, 2)}\n`);
  else out(formatStatus(answer.body as StatusBody));
  return 0;
}

export async function backendsCommand(argv: Record<string, unknown>, out: Out): Promise<number> {
  const answer = await callAdmin(instanceFor(argv), 'GET', '/status');
  if (answer.status !== 200) throw unexpected(answer.status, answer.body);
  out(`${backendTable(answer.body as StatusBody)}\n`);
  return 0;
}

export async function rollCommand(argv: Record<string, unknown>, out: Out): Promise<number> {
  const answer = await callAdmin(instanceFor(argv), 'POST', '/roll');
  if (answer.status !== 202) throw unexpected(answer.status, answer.body);
  const body = answer.body as { backends: number };
  out(`rolling restart of ${body.backends} backends started (see \`multiplexer status\`)\n`);
  return 0;
}

export async function reloadCommand(argv: Record<string, unknown>, out: Out): Promise<number> {
  const answer = await callAdmin(instanceFor(argv), 'POST', '/reload');
  const body = answer.body as
    | {
        reloaded: true;
        changes: string[];
        needsRestart: string[];
        backendsReplaced: boolean;
        workersReplaced: number;
      }
    | { reloaded: false; problems: string[] };
  if (answer.status !== 200 && answer.status !== 422) throw unexpected(answer.status, body);
  if (!body.reloaded) {
    throw new MultiplexerError(
      'MPX_CONFIG_INVALID',
      'reload refused; the running configuration stays in force',
      { problems: [...body.problems, 'reload refused; the running configuration stays in force'] },
    );
  }
  const lines = [
    body.changes.length === 0 ? 'reloaded: no setting changed' : 'reloaded:',
    ...body.changes.map((c) => `  ${c}`),
    body.workersReplaced > 0
      ? `front workers replaced: ${body.workersReplaced}`
      : 'front workers: kept (no setting they read changed)',
    body.backendsReplaced
      ? 'backends: being replaced by a rolling restart (see `multiplexer status`)'
      : 'backends: kept',
  ];
  if (body.needsRestart.length > 0) {
    lines.push(`takes effect at the next start: ${body.needsRestart.join(', ')}`);
  }
  out(`${lines.join('\n')}\n`);
  return 0;
}

export async function scaleCommand(argv: Record<string, unknown>, out: Out): Promise<number> {
  const size = Number(argv.pool_size);
  const service = typeof argv.service === 'string' ? argv.service : undefined;
  const answer = await callAdmin(instanceFor(argv), 'POST', '/scale', {
    pool_size: Number.isFinite(size) ? size : argv.pool_size,
    ...(service === undefined ? {} : { service }),
  });
  const body = answer.body as
    { ok: true; from: number; to: number; service?: string } | { ok: false; problems: string[] };
  if (answer.status !== 200 && answer.status !== 422) throw unexpected(answer.status, body);
  if (!body.ok) {
    throw new MultiplexerError('MPX_CONFIG_INVALID', body.problems.join('; '), {
      problems: body.problems,
    });
  }
  out(`${body.service ? `${body.service}: ` : ''}pool_size ${body.from} → ${body.to}\n`);
  return 0;
}

/** SIGTERM to the instance (proven to be it by its start time), then waits until it has exited. */
export async function stopCommand(argv: Record<string, unknown>, out: Out): Promise<number> {
  const instance = instanceFor(argv);
  const timeoutMs = Number(argv.timeout) * 1000;
  process.kill(instance.pid, 'SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while (isRunning(instance)) {
    if (Date.now() > deadline) {
      throw new MultiplexerError(
        'MPX_INTERNAL',
        `pid ${instance.pid} is still running ${timeoutMs / 1000} s after SIGTERM (still draining?); send SIGTERM again to skip the drain`,
      );
    }
    await sleep(50);
  }
  out(`stopped (pid ${instance.pid})\n`);
  return 0;
}
