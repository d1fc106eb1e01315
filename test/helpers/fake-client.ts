import { IncomingMessage, ServerResponse } from 'node:http';
import { Duplex } from 'node:stream';

/**
 * A client connection as the front worker's response writes to it, with no network under it: every
 * byte written is kept, and the test decides when the "kernel" takes them (`stopReading`, `readAll`), so a
 * slow client is a flag rather than a timing. It is a socket as ServerResponse uses one
 * (write, cork, destroy, setTimeout); the HTTP bytes it receives are node's own.
 */
export class FakeClientSocket extends Duplex {
  private readonly chunks: Buffer[] = [];
  private held: (() => void)[] = [];
  private holding = false;
  readonly remoteAddress = '127.0.0.1';
  readonly remotePort = 40000;

  constructor() {
    super({ writableHighWaterMark: 1024 });
  }

  /** Everything written to the client so far, as text. */
  get text(): string {
    return Buffer.concat(this.chunks).toString('latin1');
  }

  /** The client stops reading: writes stay unacknowledged (node's buffer fills, write() says false). */
  stopReading(): void {
    this.holding = true;
  }

  /** The client reads everything waiting, and goes on reading. */
  readAll(): void {
    this.holding = false;
    const held = this.held;
    this.held = [];
    for (const done of held) done();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.chunks.push(chunk);
    if (this.holding) this.held.push(done);
    else done();
  }

  override _read(): void {}

  setTimeout(_ms: number): this {
    return this;
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }
}

/** A response to a request (`GET /` over HTTP/1.1 unless told), written to a fake client socket. */
export function fakeResponse(init: { method?: string; version?: '1.0' | '1.1' } = {}): {
  res: ServerResponse;
  socket: FakeClientSocket;
} {
  const socket = new FakeClientSocket();
  const req = new IncomingMessage(socket as never);
  req.method = init.method ?? 'GET';
  req.url = '/';
  req.httpVersionMajor = 1;
  req.httpVersionMinor = init.version === '1.0' ? 0 : 1;
  req.httpVersion = init.version ?? '1.1';
  const res = new ServerResponse(req);
  res.assignSocket(socket as never);
  // What node's server does for each connection (ondrain in _http_server.js): a response that
  // was told to wait hears 'drain' when its socket does.
  const needDrain = Object.getOwnPropertySymbols(res).find((s) => s.description === 'kNeedDrain');
  if (!needDrain) throw new Error('this Node has no kNeedDrain on ServerResponse');
  const flags = res as unknown as Record<symbol, boolean>;
  socket.on('drain', () => {
    if (!res.finished && flags[needDrain]) {
      flags[needDrain] = false;
      res.emit('drain');
    }
  });
  return { res, socket };
}

/** Resolves once `check` holds, checking after each turn of the event loop; fails after `ms`. */
export async function until(check: () => boolean, what: string, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}
