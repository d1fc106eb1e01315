/**
 * Slow clients for the slow-clients scenario: each asks for a path over and over on one kept-alive
 * connection and reads every answer at a capped rate, as a phone on a slow network does. wrk cannot
 * throttle its reads, so these are raw sockets: a socket is paused whenever it is ahead of its
 * rate, which leaves the answer in the sender's buffers (the kernel's, then the proxy's).
 */
import net from 'node:net';

const BURST = 16 * 1024;

export interface SlowClients {
  /** Stops them; resolves with the answers they read in full, and the failures. */
  stop(): Promise<{ answers: number; errors: number }>;
}

export function startSlowClients(
  port: number,
  count: number,
  bytesPerSecond: number,
  path: string,
): SlowClients {
  let answers = 0;
  let errors = 0;
  let stopping = false;
  const sockets: net.Socket[] = [];
  const closed: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const socket = net.connect(port, '127.0.0.1');
    sockets.push(socket);
    closed.push(new Promise((resolve) => socket.once('close', () => resolve())));
    // A token bucket: the rate, with at most BURST bytes read ahead (a client that waited long
    // for its answer does not then read it at full speed).
    let tokens = BURST;
    let last = performance.now();
    let head = '';
    let bodyLeft = -1;
    const ask = (): void => {
      if (!stopping) socket.write(`GET ${path} HTTP/1.1\r\nHost: bench\r\n\r\n`);
    };
    socket.once('connect', ask);
    socket.on('error', () => {
      if (!stopping) errors++;
    });
    socket.on('data', (data: Buffer) => {
      const now = performance.now();
      tokens = Math.min(BURST, tokens + ((now - last) / 1000) * bytesPerSecond) - data.length;
      last = now;
      let rest = data;
      while (rest.length > 0) {
        if (bodyLeft < 0) {
          const text = head + rest.toString('latin1');
          const end = text.indexOf('\r\n\r\n');
          if (end < 0) {
            head = text;
            return;
          }
          const status = Number(text.slice(9, 12));
          if (status !== 200) errors++;
          const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end));
          bodyLeft = length ? Number(length[1]) : 0;
          rest = Buffer.from(text.slice(end + 4), 'latin1');
          head = '';
        }
        const take = Math.min(bodyLeft, rest.length);
        bodyLeft -= take;
        rest = rest.subarray(take);
        if (bodyLeft === 0) {
          answers++;
          bodyLeft = -1;
          ask();
        }
      }
      // Ahead of the rate: stop reading until the rate catches up.
      if (tokens < 0) {
        socket.pause();
        setTimeout(() => socket.resume(), (-tokens / bytesPerSecond) * 1000);
      }
    });
  }
  return {
    stop: async () => {
      stopping = true;
      for (const socket of sockets) socket.destroy();
      await Promise.all(closed);
      return { answers, errors };
    },
  };
}
