import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Logger } from '../../lib/log.js';

export interface CapturedLog {
  log: Logger;
  records: () => Record<string, unknown>[];
}

/** A real pino logger whose JSON lines are kept in memory for assertions. */
export function captureLog(): CapturedLog {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return {
    log: pino({ level: 'debug' }, sink),
    records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}
