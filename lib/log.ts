import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/**
 * Logs go to stderr (stdout carries only the machine-readable ready line): JSON lines by default,
 * readable lines when stderr is a terminal. pino-pretty runs in-process with a synchronous stream
 * rather than as a transport, so no worker thread is started in every front worker.
 */
export function createLogger(
  role: string,
  fields: Record<string, unknown> = {},
  level = process.env.MULTIPLEXER_LOG_LEVEL ?? 'info',
): Logger {
  const base = { role, pid: process.pid, ...fields };
  if (process.stderr.isTTY && process.env.MULTIPLEXER_LOG_FORMAT !== 'json') {
    return pino({ level, base }, pretty({ destination: 2, sync: true, ignore: 'hostname' }));
  }
  return pino({ level, base }, pino.destination({ dest: 2, sync: true }));
}
