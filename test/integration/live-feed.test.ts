import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import type { Response } from 'express';
import { LiveFeed, MAX_SUBSCRIBERS, type LiveSample } from '../../lib/admin/live-feed.js';
import { waitFor } from '../helpers/wait.js';

const EMPTY = { le: [0.1, Infinity], counts: [0, 0] };

/** A feed sampling every `ms` with a status of `bytes` bytes, served over real HTTP. */
async function servedFeed(ms: number, bytes: number) {
  const status = { filler: 'x'.repeat(bytes) };
  const feed = new LiveFeed(
    (): Promise<LiveSample> =>
      Promise.resolve({ status, byCode: {}, duration: EMPTY, queueWait: EMPTY }),
    ms,
  );
  const refused: number[] = [];
  const server = http.createServer((_req, res) => {
    if (!feed.subscribe(res as unknown as Response)) {
      refused.push(Date.now());
      res.writeHead(503).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  feed.start();
  const port = (server.address() as net.AddressInfo).port;
  after(() => {
    feed.stop();
    server.closeAllConnections();
    server.close();
  });
  return { feed, port, refused };
}

function connect(port: number): net.Socket {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  socket.write('GET /events HTTP/1.1\r\nHost: x\r\n\r\n');
  return socket;
}

describe('the dashboard feed', () => {
  it(`takes at most ${MAX_SUBSCRIBERS} dashboards; the next gets 503`, async () => {
    const { feed, port, refused } = await servedFeed(1000, 10);
    const sockets = Array.from({ length: MAX_SUBSCRIBERS }, () => connect(port));
    await waitFor(() => feed.subscribers === MAX_SUBSCRIBERS, 'every dashboard subscribed');
    const extra = connect(port);
    await waitFor(() => refused.length === 1, 'the one too many refused');
    sockets.push(extra);
    for (const s of sockets) s.destroy();
    await waitFor(() => feed.subscribers === 0, 'every dashboard gone');
  });

  it('drops frames for a dashboard that does not read, and closes it after a minute of them', async () => {
    const { feed, port } = await servedFeed(2, 64 * 1024);
    const reader = connect(port);
    let read = 0;
    reader.on('data', (d: Buffer) => (read += d.length));
    const stalled = connect(port);
    stalled.pause();
    await waitFor(() => feed.subscribers === 2, 'both subscribed');
    await waitFor(() => feed.droppedFrames > 0, 'frames dropped for the stalled one', 20_000);
    await waitFor(() => feed.subscribers === 1, 'the stalled one closed', 20_000);
    assert.ok(read > 1024 * 1024, 'the reading dashboard got its frames meanwhile');
    reader.destroy();
    stalled.destroy();
  });
});
