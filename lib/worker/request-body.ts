import type { IncomingMessage } from 'node:http';
import type { BufferStore } from './buffer-store.js';

export type BodyResult = 'complete' | 'too-large' | 'stalled' | 'aborted' | 'failed';

/**
 * Reads a request body whole into `store`, before any backend is taken: a slow uploader then costs
 * a little memory or disk, never a backend. Ends at the first of: the body complete (and written
 * out, if it spilled to a file), more than `limit` bytes (0 = none), no bytes for `timeoutMs`
 * (client_timeout_ms), the client gone, or the temp file failing.
 */
export function readBody(
  req: IncomingMessage,
  store: BufferStore,
  options: { readonly limit: number; readonly timeoutMs: number },
  done: (result: BodyResult) => void,
): void {
  let over = false;
  const end = (result: BodyResult): void => {
    if (over) return;
    over = true;
    req.setTimeout(0);
    req.off('data', onData);
    done(result);
  };
  const onData = (chunk: Buffer): void => {
    if (options.limit > 0 && store.length + chunk.length > options.limit) {
      // The rest is read and dropped until the connection closes after the 413.
      end('too-large');
      return;
    }
    store.append(chunk);
    if (store.error) end('failed');
  };
  // On the request, not the socket: node's server then leaves the socket to us instead of
  // destroying it, so the client can be told why (408).
  req.setTimeout(options.timeoutMs, () => end('stalled'));
  req.on('data', onData);
  req.on('error', () => undefined);
  req.once('end', () => store.whenWritten(() => end(store.error ? 'failed' : 'complete')));
  req.once('close', () => {
    if (!req.complete) end('aborted');
  });
}
