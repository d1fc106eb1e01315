import { write, writeSync } from 'node:fs';
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

function countEvent(event: string): void {
  counts.set(event, (counts.get(event) ?? 0) + 1);
}

/** The environment variables that choose the log's level and its format (json or readable). */
export const LOG_LEVEL_ENV = 'MULTIPLEXER_LOG_LEVEL';
export const LOG_FORMAT_ENV = 'MULTIPLEXER_LOG_FORMAT';

function logLevel(): string {
  return process.env[LOG_LEVEL_ENV] ?? 'info';
}

function readable(): boolean {
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

function writeLine(text: string): void {
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

/**
 * Lines gathered into blocks of 8 KiB, each written with one write(2). Not pino's sonic-boom:
 * its flushSync at exit loops for ever on a full disk (seen: a front worker on stderr = /dev/full
 * never exited after its drain, and was killed at the deadline). A block that cannot be written
 * is dropped and counted, like any log line.
 */
class BlockWriter {
  private pending = '';
  private writing = false;

  constructor(private readonly fd: number) {}

  write(line: string): void {
    this.pending += line;
    if (this.pending.length >= 8 * 1024) this.flush();
  }

  flush(): void {
    if (this.writing || this.pending === '') return;
    this.writeBlock(Buffer.from(this.pending));
    this.pending = '';
  }

  /** A pipe that is full (EAGAIN) or takes part of the block gets the rest a moment later. */
  private writeBlock(block: Buffer): void {
    this.writing = true;
    write(this.fd, block, (err, written) => {
      if (err?.code === 'EAGAIN' || (!err && written < block.length)) {
        const rest = err ? block : block.subarray(written);
        setTimeout(() => this.writeBlock(rest), 10).unref();
        return;
      }
      this.writing = false;
      if (err) droppedLines++;
      if (this.pending.length >= 8 * 1024) this.flush();
    });
  }

  /** At exit, once, synchronously: what is still gathered (a block in flight may be lost). */
  flushAtExit(): void {
    if (this.pending === '') return;
    try {
      writeSync(this.fd, this.pending);
    } catch {
      droppedLines++;
    }
    this.pending = '';
  }
}

/** The fields of an access log line: flat, numbers, strings or null. */
export type LineFields = { readonly event: string } & Readonly<
  Record<string, string | number | null>
>;

/** What the request path logs through: one info line per request. */
export interface LineLog {
  info(fields: LineFields, msg: string): void;
}

/**
 * The access log: the same JSON line pino would write (level, time, the bindings, the fields,
 * msg), built directly, since pino's general serialisation was 14 µs of a front worker's CPU per
 * request under load (--cpu-prof, the trivial benchmark) and this is about 1. Lines are written in
 * blocks of 8 KiB or every 200 ms, whichever comes first, rather than one write(2) each; what is
 * left is written when the process exits.
 */
export function createAccessLog(role: string, fields: Record<string, number>): LineLog {
  const level = logLevel();
  if (level !== 'info' && level !== 'debug' && level !== 'trace') return { info: () => undefined };
  if (readable()) {
    const color = process.stderr.hasColors();
    return {
      info(line, msg) {
        countEvent(line.event);
        const record = { time: Date.now(), level: 30, role, ...fields, ...line, msg } as LogLine;
        writeLine(formatLine(record, color));
      },
    };
  }
  let bindings = `"role":${JSON.stringify(role)},"pid":${process.pid}`;
  for (const [key, value] of Object.entries(fields)) bindings += `,"${key}":${value}`;
  const out = new BlockWriter(2);
  setInterval(() => out.flush(), 200).unref();
  process.on('exit', () => out.flushAtExit());
  return {
    info(line, msg) {
      countEvent(line.event);
      let json = `{"level":30,"time":${Date.now()},${bindings}`;
      for (const key in line) {
        const value = line[key];
        json += `,"${key}":${typeof value === 'string' ? JSON.stringify(value) : String(value)}`;
      }
      out.write(`${json},"msg":${JSON.stringify(msg)}}\n`);
    },
  };
}
