import { createServer } from 'node:net';
import type { PortRange } from '../config/formats.js';

/**
 * Ports handed out from a ring over the configured range: each backend gets the next free port
 * after the last one handed out, so a port just released (maybe still in TIME_WAIT, or held by a
 * backend's slow-dying child) is the last to be reused.
 */
export class PortRing {
  private cursor: number;

  /**
   * `held`: the ports in use, shared by the rings of several services, so that services whose
   * ranges overlap never hand one port to two backends.
   */
  constructor(
    private range: PortRange,
    private readonly held = new Set<number>(),
  ) {
    this.cursor = range.last;
  }

  /** A new range (reload); ports held by running backends stay held until they are released. */
  retarget(range: PortRange): void {
    this.range = range;
    if (this.cursor < range.first || this.cursor > range.last) this.cursor = range.last;
  }

  /**
   * The next port that no backend of ours holds and that `isFree` accepts. A candidate is held
   * while it is probed, so concurrent acquisitions never get the same port.
   */
  async acquire(isFree: (port: number) => Promise<boolean>): Promise<number | undefined> {
    const size = this.range.last - this.range.first + 1;
    for (let tried = 0; tried < size; tried++) {
      // Always step from the shared cursor: a concurrent acquisition may have moved it meanwhile.
      const port = this.cursor >= this.range.last ? this.range.first : this.cursor + 1;
      this.cursor = port;
      if (this.held.has(port)) continue;
      this.held.add(port);
      if (await isFree(port)) return port;
      this.held.delete(port);
    }
    return undefined;
  }

  release(port: number): void {
    this.held.delete(port);
  }
}

/** True when `port` can be bound on `host` right now, i.e. no other program holds it. */
export function canBind(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}
