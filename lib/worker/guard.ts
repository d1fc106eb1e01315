/**
 * The request path's one guard. Node calls the proxy's code from many events (a backend's head,
 * a chunk, a client's close, a timer); an exception in any of them would otherwise be uncaught and
 * end the front worker with every connection it carries (seen: a backend's 103 Early Hints whose
 * Link header node refused to write again). Each such callback runs under `guard`: an exception
 * ends only the exchange it belongs to, through `failed`, and is reported (logged with its stack
 * as `request.internal-error`, which /metrics counts by event).
 */
export type FaultReporter = (err: unknown, where: string) => void;

export function guard<A extends unknown[]>(
  fn: (...args: A) => void,
  failed: (err: unknown) => void,
): (...args: A) => void {
  return (...args) => {
    try {
      fn(...args);
    } catch (err) {
      failed(err);
    }
  };
}
