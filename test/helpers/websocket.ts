import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';

/** A minimal WebSocket client (RFC 6455 text frames), enough to test a tunnel end to end. */
export interface WebSocketClient {
  /** The status line of the handshake's answer. */
  readonly status: string;
  send(text: string): void;
  /** The next text message. */
  receive(): Promise<string>;
  close(): Promise<void>;
  /** Half-closes the connection (FIN) with no close frame, as a client that simply stops. */
  end(): void;
  readonly closed: Promise<void>;
}

export function openWebSocket(port: number, path: string): Promise<WebSocketClient> {
  const key = randomBytes(16).toString('base64');
  const socket = net.connect(port, '127.0.0.1');
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    let buffer = Buffer.alloc(0);
    const messages: string[] = [];
    const waiting: ((text: string) => void)[] = [];
    let status = '';
    socket.once('connect', () =>
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: test.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      ),
    );
    socket.once('close', () => reject(new Error(`closed before the handshake: ${status}`)));
    const deliver = (text: string): void => {
      const next = waiting.shift();
      if (next) next(text);
      else messages.push(text);
    };
    socket.on('data', (data: Buffer) => {
      buffer = Buffer.concat([buffer, data]);
      if (!status) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buffer.subarray(0, end).toString('latin1');
        buffer = buffer.subarray(end + 4);
        status = head.split('\r\n')[0]!;
        const accept = createHash('sha1')
          .update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
          .digest('base64');
        if (!status.includes(' 101 ') || !head.includes(accept)) {
          reject(new Error(`not upgraded: ${head}\r\n\r\n${buffer.toString('utf8')}`));
          socket.destroy();
          return;
        }
        resolve({
          status,
          send: (text) => {
            const payload = Buffer.from(text);
            const mask = randomBytes(4);
            const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
            const header =
              payload.length < 126
                ? Buffer.from([0x81, 0x80 | payload.length])
                : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
            socket.write(Buffer.concat([header, mask, masked]));
          },
          receive: () =>
            new Promise((res) => {
              const text = messages.shift();
              if (text !== undefined) res(text);
              else waiting.push(res);
            }),
          close: () => {
            socket.end(Buffer.from([0x88, 0x80, 0, 0, 0, 0]));
            return closed;
          },
          end: () => socket.end(),
          closed,
        });
      }
      while (buffer.length >= 2) {
        let length = buffer[1]! & 0x7f;
        let offset = 2;
        if (length === 126) {
          if (buffer.length < 4) return;
          length = buffer.readUInt16BE(2);
          offset = 4;
        }
        if (buffer.length < offset + length) return;
        const opcode = buffer[0]! & 0x0f;
        const payload = buffer.subarray(offset, offset + length).toString('utf8');
        buffer = buffer.subarray(offset + length);
        if (opcode === 0x1) deliver(payload);
      }
    });
  });
}
