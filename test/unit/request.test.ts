import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { Pending, Sequence } from '../../lib/ipc/request.js';

describe('IPC request/reply', () => {
  it('one sequence numbers every kind of request of one sender', () => {
    const sequence = new Sequence();
    const checkouts = new Pending<string>(sequence);
    const metrics = new Pending<string>(sequence);
    assert.equal(checkouts.open('a'), 1);
    assert.equal(metrics.open('m'), 2);
    assert.equal(checkouts.open('b'), 3);
    // A reply is looked up only where its kind waits: the metrics reply 1 finds nothing.
    assert.equal(metrics.take(1), undefined);
    assert.deepEqual(
      [...checkouts.entries()],
      [
        [1, 'a'],
        [3, 'b'],
      ],
    );
  });

  it('a reply takes its entry once; a late or unknown reply finds nothing', () => {
    const pending = new Pending<string>(new Sequence());
    const seq = pending.open('x');
    assert.equal(pending.peek(seq), 'x');
    assert.equal(pending.take(seq), 'x');
    assert.equal(pending.take(seq), undefined);
    assert.equal(pending.peek(seq), undefined);
    assert.equal(pending.take(99), undefined);
  });

  it('a request with no reply in time is given up once, and its late reply finds nothing', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const pending = new Pending<string>(new Sequence());
      const timedOut: [number, string][] = [];
      const onTimeout = (seq: number, value: string): number => timedOut.push([seq, value]);
      const late = pending.open('late', { ms: 100, onTimeout });
      const answered = pending.open('answered', { ms: 100, onTimeout });
      assert.equal(pending.take(answered), 'answered');
      mock.timers.tick(99);
      assert.deepEqual(timedOut, []);
      mock.timers.tick(1);
      assert.deepEqual(timedOut, [[late, 'late']]);
      assert.equal(pending.take(late), undefined);
      mock.timers.tick(1000);
      assert.equal(timedOut.length, 1);
    } finally {
      mock.timers.reset();
    }
  });
});
