import type http from 'node:http';
import type net from 'node:net';

interface Connection {
  readonly acceptedAt: number;
  served: number;
  inFlight: number;
  /** When its last answer ended. */
  doneAt: number;
}

/**
 * A connection that has sent nothing is closed by a drain only after this many graces: its
 * request may be on the way (a browser's preconnect), or already here but not yet read by a
 * worker that the machine starved.
 */
const SILENT_GRACES = 10;

/**
 * The client connections of a front worker, each with whether it carries a request, for a drain
 * that closes only what is truly idle. Node's closeIdleConnections() also closes a connection
 * accepted a moment ago whose request has not been read yet (on a busy machine, the drain's timer
 * can fire before that socket's data is read): its client then gets "socket hang up" for a
 * request it did send. Here a connection is idle once it has carried nothing for a grace since
 * its last answer (keep-alive), or has sent nothing for SILENT_GRACES graces since it was opened.
 */
export class ClientConnections {
  private readonly open = new Map<net.Socket, Connection>();

  constructor(
    server: http.Server,
    /** A connection closed, or its request ended: what a drain waits for changed. */
    private readonly onChange: () => void,
  ) {
    server.on('connection', (socket: net.Socket) => {
      this.open.set(socket, { acceptedAt: Date.now(), served: 0, inFlight: 0, doneAt: 0 });
      socket.once('close', () => {
        this.open.delete(socket);
        this.onChange();
      });
    });
    // An upgraded connection is no longer HTTP: the tunnel that holds it is counted, and closed
    // after shutdown_timeout_ms, by the drain itself.
    server.on('upgrade', (req: http.IncomingMessage) => {
      this.open.delete(req.socket);
      this.onChange();
    });
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      const connection = this.open.get(req.socket);
      if (!connection) return;
      connection.inFlight++;
      res.once('close', () => {
        connection.inFlight--;
        connection.served++;
        connection.doneAt = Date.now();
        this.onChange();
      });
    });
  }

  get size(): number {
    return this.open.size;
  }

  /**
   * Closes the idle ones (see above); returns when the next connection that stays open, carrying
   * nothing, may be closed (a busy one reports its end through onChange).
   */
  closeIdle(graceMs: number): number | undefined {
    const now = Date.now();
    let next = Infinity;
    for (const [socket, c] of this.open) {
      if (c.inFlight > 0) continue;
      const closableAt = c.served > 0 ? c.doneAt + graceMs : c.acceptedAt + graceMs * SILENT_GRACES;
      if (now >= closableAt) socket.destroy();
      else next = Math.min(next, closableAt);
    }
    return Number.isFinite(next) ? next : undefined;
  }
}
