import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * Requests of one connection parsed ahead of its answers. Node reads a pipelining connection on
 * while the first answer waits, and parses every request in it: one connection that sent 200,000
 * GETs behind a slow one grew a worker by 410 MB and starved every other client. Past this many,
 * the connection is no longer read (what was already received in one read is still parsed) until
 * answers catch up; the client's own writes then wait in its socket.
 */
export const MAX_PIPELINED = 32;

/**
 * Each client connection's requests: the answer in progress (a pipelined request waits for it),
 * how many are read and not yet answered, and whether its reading is being held.
 */
interface Connection {
  answering: ServerResponse | undefined;
  depth: number;
  held: boolean;
}

/**
 * A client connection carries one exchange at a time: a pipelined request is read by node while
 * the previous one is answered, and must not take a second backend meanwhile; and a connection
 * too far ahead is read no further.
 */
export class Pipelining {
  private readonly connections = new WeakMap<object, Connection>();

  /**
   * A request of `socket` was read, to be answered on `res`. Returns the answer it must wait for
   * (the connection's previous one, still in progress), if any. `closed` is to be called when
   * `res` closes.
   */
  admit(socket: Socket, res: ServerResponse): ServerResponse | undefined {
    let connection = this.connections.get(socket);
    if (!connection) {
      connection = { answering: undefined, depth: 0, held: false };
      this.connections.set(socket, connection);
    }
    if (++connection.depth > MAX_PIPELINED) this.holdReading(socket, connection);
    const previous = connection.answering;
    connection.answering = res;
    return previous;
  }

  /** The answer `res` on `socket` closed: the next request may begin, and reading may resume. */
  closed(socket: Socket, res: ServerResponse): void {
    const connection = this.connections.get(socket);
    if (!connection) return;
    if (connection.answering === res) connection.answering = undefined;
    if (--connection.depth === MAX_PIPELINED && !socket.destroyed) socket.resume();
  }

  /**
   * Stops reading a connection with too many requests ahead. Node resumes a connection whenever a
   * request of it is read (IncomingMessage's readStart), so each resume is undone while the count
   * is still over.
   */
  private holdReading(socket: Socket, connection: Connection): void {
    socket.pause();
    if (connection.held) return;
    connection.held = true;
    socket.on('resume', () => {
      if (connection.depth > MAX_PIPELINED) socket.pause();
    });
  }
}
