import type { Response } from 'express';

/** A histogram as cumulative counts per upper bound (seconds), as Prometheus keeps it. */
export interface Buckets {
  readonly le: readonly number[];
  readonly counts: readonly number[];
}

/** What the primary reports once a second: its status and the request counters of every worker. */
export interface LiveSample {
  readonly status: unknown;
  readonly byCode: Readonly<Record<string, number>>;
  readonly duration: Buckets;
  readonly queueWait: Buckets;
}

/** One second as the dashboard shows it. Latencies in milliseconds; null when nothing happened. */
export interface Frame {
  readonly at: number;
  readonly status: unknown;
  readonly rps: number;
  readonly latency: { readonly p50: number | null; readonly p99: number | null };
  readonly queueWait: { readonly p50: number | null; readonly p99: number | null };
  /** Totals since start. */
  readonly codes: Readonly<Record<'502' | '503' | '504', number>>;
  readonly requests: number;
}

/** The chart's points: the last five minutes. */
const HISTORY = 300;

/**
 * Dashboards open at once. Each costs a frame a second and whatever it has not read: a page left
 * open in many tabs, or a script that subscribes and never reads, must not grow the primary.
 */
export const MAX_SUBSCRIBERS = 16;

/**
 * Bytes a dashboard may leave unread: past it, frames are dropped for that one (the next it reads
 * is current anyway); one that reads nothing for a minute of frames is closed.
 */
const MAX_UNREAD_BYTES = 256 * 1024;
const MAX_DROPPED_FRAMES = 60;

/**
 * Quantile q of what happened between two readings of a histogram: from the bucket deltas,
 * interpolated linearly inside the bucket, as Prometheus's histogram_quantile does.
 */
export function quantileBetween(
  before: Buckets | undefined,
  now: Buckets,
  q: number,
): number | null {
  const delta = now.counts.map((c, i) => c - (before?.counts[i] ?? 0));
  const total = delta[delta.length - 1] ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  for (let i = 0; i < delta.length; i++) {
    if (delta[i]! >= rank) {
      const upper = now.le[i]!;
      const lower = i === 0 ? 0 : now.le[i - 1]!;
      if (!Number.isFinite(upper)) return lower * 1000;
      const below = i === 0 ? 0 : delta[i - 1]!;
      const inBucket = delta[i]! - below;
      const fraction = inBucket > 0 ? (rank - below) / inBucket : 1;
      return (lower + (upper - lower) * fraction) * 1000;
    }
  }
  return null;
}

const sum = (byCode: Readonly<Record<string, number>>): number =>
  Object.values(byCode).reduce((a, b) => a + b, 0);

/**
 * Samples the primary once a second while the admin API runs, keeps the last five minutes for the
 * chart, and streams each second to every dashboard as Server-Sent Events.
 */
export class LiveFeed {
  private readonly history: Frame[] = [];
  /** Each dashboard, with the frames dropped for it in a row. */
  private readonly clients = new Map<Response, { dropped: number }>();
  /** Frames not sent to a dashboard that did not read, since start (tests and /metrics). */
  droppedFrames = 0;
  private previous: { at: number; sample: LiveSample } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private sampling = false;

  constructor(
    private readonly sample: () => Promise<LiveSample>,
    private readonly intervalMs = 1000,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.tick(), this.intervalMs).unref();
    void this.tick();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const res of this.clients.keys()) res.end();
    this.clients.clear();
  }

  /**
   * A new dashboard: the history first (one 'history' event), then a 'frame' event each second.
   * False, and nothing written, when MAX_SUBSCRIBERS are open already.
   */
  subscribe(res: Response): boolean {
    if (this.clients.size >= MAX_SUBSCRIBERS) return false;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
    });
    res.write(`event: history\ndata: ${JSON.stringify(this.history)}\n\n`);
    this.clients.set(res, { dropped: 0 });
    res.once('close', () => this.clients.delete(res));
    return true;
  }

  get subscribers(): number {
    return this.clients.size;
  }

  private async tick(): Promise<void> {
    // A slow sample (a worker that does not answer in time) must not pile up behind itself.
    if (this.sampling) return;
    this.sampling = true;
    try {
      const at = Date.now();
      const sample = await this.sample();
      const frame = this.frame(at, sample);
      this.previous = { at, sample };
      this.history.push(frame);
      if (this.history.length > HISTORY) this.history.shift();
      const text = `event: frame\ndata: ${JSON.stringify(frame)}\n\n`;
      for (const [res, client] of this.clients) {
        if (res.writableLength > MAX_UNREAD_BYTES) {
          this.droppedFrames++;
          if (++client.dropped >= MAX_DROPPED_FRAMES) res.destroy();
          continue;
        }
        client.dropped = 0;
        res.write(text);
      }
    } catch {
      // A sample fails only while the primary stops; the next second tries again.
    } finally {
      this.sampling = false;
    }
  }

  private frame(at: number, sample: LiveSample): Frame {
    const before = this.previous;
    const seconds = before ? (at - before.at) / 1000 : 0;
    const requests = sum(sample.byCode);
    return {
      at,
      status: sample.status,
      rps:
        before && seconds > 0 ? Math.max(0, (requests - sum(before.sample.byCode)) / seconds) : 0,
      latency: {
        p50: quantileBetween(before?.sample.duration, sample.duration, 0.5),
        p99: quantileBetween(before?.sample.duration, sample.duration, 0.99),
      },
      queueWait: {
        p50: quantileBetween(before?.sample.queueWait, sample.queueWait, 0.5),
        p99: quantileBetween(before?.sample.queueWait, sample.queueWait, 0.99),
      },
      codes: {
        '502': sample.byCode['502'] ?? 0,
        '503': sample.byCode['503'] ?? 0,
        '504': sample.byCode['504'] ?? 0,
      },
      requests,
    };
  }
}
