import { write, writeSync } from 'node:fs';
import {
  countDropped,
  countEvent,
  formatLine,
  logLevel,
  readable,
  writeLine,
  type LogLine,
} from './log.js';

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
      if (err) countDropped();
      if (this.pending.length >= 8 * 1024) this.flush();
    });
  }

  /** At exit, once, synchronously: what is still gathered (a block in flight may be lost). */
  flushAtExit(): void {
    if (this.pending === '') return;
    try {
      writeSync(this.fd, this.pending);
    } catch {
      countDropped();
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
