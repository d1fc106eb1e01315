import { writeSync } from 'node:fs';
import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/**
 * Every line of ours names its event (`backend.ready`, `request.rejected`, `reload.done`…): tests
 * wait on these names, and /metrics counts them (multiplexer_log_events_total), in each process.
 */
const counts = new Map<string, number>();

export function loggedEvents(): ReadonlyMap<string, number> {
  return counts;
}

const LEVELS: Record<number, string> = { 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const COLORS: Record<number, string> = { 40: '\x1b[33m', 50: '\x1b[31m', 60: '\x1b[31;1m' };

/** The fields of a JSON log line that the readable form shows. */
export interface LogLine {
  time?: number;
  level?: number;
  role?: string;
  worker?: number;
  backend?: number | null;
  port?: number | null;
  event?: string;
  stream?: string;
  msg?: string;
  err?: { message?: string } | string;
  ms?: number;
  code?: string | null;
}

/**
 * One readable line per event, for a terminal: `12:00:01 backend 3 :10302 ready`. The subject
 * (a backend, a front worker) comes first; what the JSON line carries besides is left out.
 */
export function formatLine(r: LogLine, color = false): string {
  const time = new Date(r.time ?? Date.now()).toTimeString().slice(0, 8);
  const level = LEVELS[r.level ?? 30];
  let subject = '';
  let text = r.msg ?? '';
  const backend = r.backend !== undefined && r.backend !== null;
  if (r.event?.startsWith('request.')) {
    subject = `worker ${r.worker ?? '?'}`;
    text += ` ${r.ms ?? '?'} ms`;
    if (backend) text += ` → backend ${r.backend} :${r.port}`;
    if (r.code) text += ` ${r.code}`;
  } else if (backend) {
    subject = `backend ${r.backend}${r.port ? ` :${r.port}` : ''}`;
    if (r.event === 'backend.output') text = `${r.stream === 'stderr' ? '!' : '|'} ${text}`;
    else text = text.replace(/^backend /, '');
  } else if (r.role === 'worker') {
    subject = `worker ${r.worker ?? '?'}`;
  }
  if (r.err) text += `: ${typeof r.err === 'string' ? r.err : r.err.message}`;
  const head = level ? `${color ? COLORS[r.level!] : ''}${level}${color ? '\x1b[0m' : ''} ` : '';
  return `${time} ${head}${subject ? `${subject} ` : ''}${text}\n`;
}

export function countEvent(event: string): void {
  counts.set(event, (counts.get(event) ?? 0) + 1);
}

/** The environment variables that choose the log's level and its format (json or readable). */
export const LOG_LEVEL_ENV = 'MULTIPLEXER_LOG_LEVEL';
export const LOG_FORMAT_ENV = 'MULTIPLEXER_LOG_FORMAT';

export function logLevel(): string {
  return process.env[LOG_LEVEL_ENV] ?? 'info';
}

export function readable(): boolean {
  return process.stderr.isTTY && process.env[LOG_FORMAT_ENV] !== 'json';
}

/**
 * Logs go to stderr (stdout carries only the machine-readable ready line): JSON lines by default,
 * one readable line per event when stderr is a terminal. Written synchronously, so no worker
 * thread is started in every front worker and nothing is lost at exit.
 */
export function createLogger(role: string, fields: Record<string, unknown> = {}): Logger {
  const options: LoggerOptions = {
    level: logLevel(),
    base: { role, pid: process.pid, ...fields },
    hooks: {
      logMethod(args, method) {
        const first: unknown = args[0];
        if (typeof first === 'object' && first !== null && 'event' in first) {
          countEvent(String(first.event));
        }
        method.apply(this, args);
      },
    },
  };
  if (readable()) {
    const color = process.stderr.hasColors();
    return pino(options, {
      write: (line: string) => writeLine(formatLine(JSON.parse(line) as LogLine, color)),
    });
  }
  return pino(options, unfailing(pino.destination({ dest: 2, sync: true })));
}

/**
 * Log lines that could not be written (stderr on a full disk, a closed pipe): dropped and counted,
 * never fatal. An unhandled write error would end the process that logs, primary included.
 */
let droppedLines = 0;

export function droppedLogLines(): number {
  return droppedLines;
}

export function writeLine(text: string): void {
  try {
    writeSync(2, text);
  } catch {
    droppedLines++;
  }
}

function unfailing<T extends { on(event: 'error', listener: (err: Error) => void): unknown }>(
  destination: T,
): T {
  destination.on('error', () => droppedLines++);
  return destination;
}

/** A line or a block of lines that could not be written (a full disk, a closed stderr). */
export function countDropped(): void {
  droppedLines++;
}
