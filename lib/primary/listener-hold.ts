import net from 'node:net';

/**
 * Keeps http_port's listening socket open in the primary for the instance's whole life, as
 * nginx's master holds its listening sockets: a connection that arrives while no front worker
 * accepts (the only worker was killed and is being replaced, a reload between two workers) waits
 * in the kernel's backlog instead of being refused. Measured before: kill -9 of the only worker
 * under looping clients gave 4 of 20 requests ECONNREFUSED over about 300 ms.
 *
 * With cluster.SCHED_NONE, the primary creates the socket (bound, not accepting) and hands it to
 * each worker, which listens and accepts on it; node closes the primary's copy when the last
 * worker goes (lib/internal/cluster/shared_handle.js: SharedHandle.prototype.remove), and with it
 * the socket. Node offers no public way to keep it, so this wraps the one function the cluster
 * primary creates it with, net._createServerHandle (the same in Node 20 and 26): the handle is
 * kept, its close deferred until released, and given again to the next worker that listens on
 * that address. Nothing else calls it in the primary. If a future Node drops the function, the
 * hold is off (the log says so) and behaviour is node's own.
 */
type ServerHandle = { close(callback?: () => void): void };
type CreateServerHandle = (...args: unknown[]) => ServerHandle | number;

interface Held {
  readonly handle: ServerHandle;
  readonly close: (callback?: () => void) => void;
  /** Still kept past its last worker. */
  kept: boolean;
  /** Its last worker went: only this hold keeps the socket open. */
  orphaned: boolean;
}

export class ListenerHold {
  private readonly held = new Map<string, Held>();

  /** Installs the hold; false when this Node has no net._createServerHandle to wrap. */
  install(): boolean {
    const netInternals = net as unknown as { _createServerHandle?: CreateServerHandle };
    const original = netInternals._createServerHandle;
    if (typeof original !== 'function') return false;
    netInternals._createServerHandle = (...args: unknown[]) => {
      const key = JSON.stringify(args);
      const kept = this.held.get(key);
      if (kept?.kept) {
        kept.orphaned = false;
        return kept.handle;
      }
      const handle = original(...args);
      if (typeof handle === 'number') return handle;
      const close = handle.close.bind(handle);
      const entry: Held = { handle, close, kept: true, orphaned: false };
      handle.close = (callback?: () => void): void => {
        if (entry.kept) {
          entry.orphaned = true;
          return;
        }
        if (this.held.get(key) === entry) this.held.delete(key);
        close(callback);
      };
      this.held.set(key, entry);
      return handle;
    };
    return true;
  }

  /**
   * Lets every socket held so far close with its last worker (now, if it has none): a shutdown,
   * or a reload that moves the workers to another address. Sockets created later are held again.
   */
  close(): void {
    for (const [key, entry] of this.held) {
      entry.kept = false;
      this.held.delete(key);
      if (entry.orphaned) entry.close();
    }
  }
}
