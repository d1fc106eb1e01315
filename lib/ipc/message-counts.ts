import type { PrimaryMessage, WorkerMessage } from './protocol.js';

type Direction = 'in' | 'out';
/** 'batch': a write that carried several messages (each is counted too). */
type MessageType = WorkerMessage['type'] | PrimaryMessage['type'] | 'batch';

/**
 * The primary's count of lease-protocol messages by direction and type, for /metrics: what a
 * request costs on the cluster channel (a pass instead of checkin + granted shows here).
 */
export class MessageCounts {
  private readonly counts = new Map<`${Direction} ${MessageType}`, number>();

  count(direction: Direction, type: MessageType): void {
    const key = `${direction} ${type}` as const;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  *entries(): Generator<{ direction: Direction; type: MessageType; count: number }> {
    for (const [key, count] of this.counts) {
      const [direction, type] = key.split(' ') as [Direction, MessageType];
      yield { direction, type, count };
    }
  }
}
