import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RestartGate, restartDelay } from '../../lib/supervisor/restart-gate.js';

const policy = { baseDelayMs: 100, maxDelayMs: 1000, stableAfterMs: 10_000 };

describe('the restart gate', () => {
  it('doubles the delay with each failure in a row, up to the maximum', () => {
    const gate = new RestartGate();
    const delays = [0, 1, 2, 3, 4, 5].map((i) => gate.failed(i, policy).delayMs);
    assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000]);
    assert.equal(restartDelay(policy, 0), 0);
  });

  it('holds starts back until the delay has passed, and owes a wake at its end', () => {
    const gate = new RestartGate();
    gate.failed(1000, policy);
    assert.equal(gate.holdsBack(1050), true);
    assert.equal(gate.wakeAt(), 1100);
    assert.equal(gate.holdsBack(1100), false);
    assert.equal(gate.wakeAt(), undefined);
  });

  it('probes one start at a time from the second failure until the streak is stable', () => {
    const gate = new RestartGate();
    gate.failed(0, policy);
    assert.equal(gate.probing(1, policy), false);
    gate.failed(1, policy);
    assert.equal(gate.probing(2, policy), true);
    assert.equal(gate.probing(10_001, policy), false);
    // A quiet stableAfterMs starts the streak over.
    assert.equal(gate.failed(20_000, policy).streak, 1);
  });

  it('a ready backend resets the streak and the boot count', () => {
    const gate = new RestartGate();
    gate.failed(0, policy);
    gate.failed(1, policy);
    assert.equal(gate.bootFailed(3), undefined);
    gate.ready();
    assert.equal(gate.failed(2, policy).streak, 1);
    // After a ready backend, failures are crashes: they never end the trying.
    for (let i = 0; i < 5; i++) assert.equal(gate.bootFailed(3), undefined);
    assert.equal(gate.giveUp(), undefined);
    assert.equal(gate.gaveUp, false);
  });

  it('gives up once, at the attempts-th boot failure in a row, or at once when told', () => {
    const gate = new RestartGate();
    assert.equal(gate.bootFailed(2), undefined);
    assert.equal(gate.bootFailed(2), 2);
    assert.equal(gate.gaveUp, true);
    assert.equal(gate.bootFailed(2), undefined);
    gate.failed(0, policy);
    gate.holdsBack(0);
    assert.equal(gate.wakeAt(), undefined, 'no wake once given up');
    const other = new RestartGate();
    assert.equal(other.giveUp(), 1);
    assert.equal(other.giveUp(), undefined);
  });
});
