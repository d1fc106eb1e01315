import type { PoolClock } from '../../lib/supervisor/pool.js';

/** A clock the test moves by hand, and a seeded random source (mulberry32) for repeatable picks. */
export class FakeClock implements PoolClock {
  private t = 1_000;
  private seed: number;

  constructor(seed = 1) {
    this.seed = seed >>> 0;
  }

  now(): number {
    return this.t;
  }

  advance(ms: number): void {
    this.t += ms;
  }

  random(): number {
    this.seed = (this.seed + 0x6d2b79f5) >>> 0;
    let x = this.seed;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  }
}
