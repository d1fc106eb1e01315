import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PortRing } from '../../lib/supervisor/port-ring.js';

const always = () => Promise.resolve(true);

describe('port ring', () => {
  it('hands out the next port after the last one handed out, wrapping around', async () => {
    const ring = new PortRing({ first: 100, last: 102 });
    assert.equal(await ring.acquire(always), 100);
    assert.equal(await ring.acquire(always), 101);
    ring.release(100);
    assert.equal(await ring.acquire(always), 102);
    assert.equal(await ring.acquire(always), 100, 'wraps to the released port');
    assert.equal(await ring.acquire(always), undefined, 'every port is held');
  });

  it('a released port is the last to be reused', async () => {
    const ring = new PortRing({ first: 100, last: 104 });
    assert.equal(await ring.acquire(always), 100);
    ring.release(100);
    assert.equal(await ring.acquire(always), 101);
  });

  it('skips ports another program holds', async () => {
    const ring = new PortRing({ first: 100, last: 103 });
    const taken = new Set([100, 101]);
    assert.equal(await ring.acquire((p) => Promise.resolve(!taken.has(p))), 102);
  });

  it('concurrent acquisitions skip a held port without skipping free ones', async () => {
    const ring = new PortRing({ first: 100, last: 105 });
    const probe = (p: number) =>
      new Promise<boolean>((resolve) => setTimeout(() => resolve(p !== 100), p === 100 ? 20 : 1));
    const ports = await Promise.all([ring.acquire(probe), ring.acquire(probe)]);
    assert.deepEqual(ports.sort(), [101, 102]);
  });

  it('never gives the same port to concurrent acquisitions', async () => {
    const ring = new PortRing({ first: 100, last: 109 });
    const slow = () => new Promise<boolean>((resolve) => setImmediate(() => resolve(true)));
    const ports = await Promise.all(Array.from({ length: 10 }, () => ring.acquire(slow)));
    assert.equal(new Set(ports).size, 10);
  });
});
