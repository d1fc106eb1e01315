import { followAdminEvents } from '../admin/admin-client.js';
import type { Frame } from '../admin/live-feed.js';
import type { InstanceRecord } from '../instance/instance-file.js';
import { backendTable, duration, table, type StatusBody } from './status-format.js';

/** Terminal control: the alternate screen keeps the shell's scrollback as it was. */
const ENTER = '\x1b[?1049h\x1b[?25l';
const LEAVE = '\x1b[?25h\x1b[?1049l';
const HOME_CLEAR = '\x1b[H\x1b[2J';

function ms(value: number | null): string {
  if (value === null) return '-';
  return value < 10 ? `${value.toFixed(1)} ms` : `${Math.round(value)} ms`;
}

/** One screen of `multiplexer top`: the dashboard's figures as text. */
export function renderTop(frame: Frame): string {
  const s = frame.status as StatusBody;
  const figures = table([
    [
      'REQ/S',
      'LATENCY P50',
      'P99',
      'QUEUE WAIT P50',
      'P99',
      'WAITING',
      'REQUESTS',
      '502',
      '503',
      '504',
    ],
    [
      frame.rps.toFixed(frame.rps < 10 ? 1 : 0),
      ms(frame.latency.p50),
      ms(frame.latency.p99),
      ms(frame.queueWait.p50),
      ms(frame.queueWait.p99),
      String(s.queue),
      String(frame.requests),
      String(frame.codes['502']),
      String(frame.codes['503']),
      String(frame.codes['504']),
    ],
  ]);
  const workers = s.workers
    .map(
      (w) => `worker ${w.id} pid ${w.pid} ${w.phase ?? ''}${w.listening ? '' : ' (not listening)'}`,
    )
    .join(', ');
  const endings = (s.endings ?? [])
    .slice(-3)
    .reverse()
    .map((e) => `backend ${e.backend}: ${e.ending}`);
  return [
    `multiplexer ${s.version}, pid ${s.pid}, ${s.state} for ${duration(s.uptimeMs)}    ${new Date(frame.at).toTimeString().slice(0, 8)}`,
    `pool: size ${s.pool.size}, max overflow ${s.pool.maxOverflow}, ${s.pool.strategy}${s.pool.rolling ? ', rolling restart in progress' : ''}`,
    '',
    figures,
    '',
    backendTable(s),
    '',
    `front workers: ${workers}`,
    ...(endings.length > 0 ? [`recent exits: ${endings.join('; ')}`] : []),
    '',
    'q or Ctrl-C to quit',
  ].join('\n');
}

/**
 * `multiplexer top`: a live view refreshed each second from the admin API's event stream. On a
 * terminal it draws on the alternate screen and restores the terminal on q, Ctrl-C or the end of
 * the stream; elsewhere it prints each screen in turn. `frames` stops it after that many.
 */
export async function runTop(
  instance: InstanceRecord,
  out: (text: string) => void,
  options: { interactive: boolean; frames?: number } = { interactive: false },
): Promise<number> {
  let shown = 0;
  let stream: ReturnType<typeof followAdminEvents> | undefined;
  const stop = (): void => stream?.stop();
  const input = process.stdin;
  const onKey = (key: Buffer): void => {
    const k = key.toString();
    if (k === 'q' || k === '\x03') stop();
  };
  if (options.interactive) {
    out(ENTER);
    process.on('SIGINT', stop);
    if (input.isTTY) {
      input.setRawMode(true);
      input.resume();
      input.on('data', onKey);
    }
  }
  try {
    stream = followAdminEvents(instance, (event, data) => {
      const frames = event === 'history' ? (data as Frame[]).slice(-1) : [data as Frame];
      for (const frame of frames) {
        out(
          `${options.interactive ? HOME_CLEAR : ''}${renderTop(frame)}\n${options.interactive ? '' : '\n'}`,
        );
        shown++;
        if (options.frames !== undefined && shown >= options.frames) stop();
      }
    });
    await stream.done;
  } finally {
    if (options.interactive) {
      process.off('SIGINT', stop);
      if (input.isTTY) {
        input.off('data', onKey);
        input.setRawMode(false);
        input.pause();
      }
      out(LEAVE);
    }
  }
  return 0;
}
