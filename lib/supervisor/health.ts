import http from 'node:http';

/** How long one health check may take before it counts as failed. */
const CHECK_TIMEOUT_MS = 2000;

/**
 * One health check: GET `path` on the backend, on a connection of its own that is closed after
 * (a backend that serves one connection at a time must not be left holding it). Healthy means a
 * 2xx or 3xx answer within CHECK_TIMEOUT_MS; resolves with the reason otherwise.
 */
export function checkHealth(
  host: string,
  port: number,
  path: string,
): Promise<{ healthy: true } | { healthy: false; reason: string }> {
  return new Promise((resolve) => {
    const req = http.get(
      {
        host,
        port,
        path,
        agent: false,
        headers: { connection: 'close', 'user-agent': 'multiplexer-health' },
      },
      (res) => {
        res.resume();
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          resolve(
            status >= 200 && status < 400
              ? { healthy: true }
              : { healthy: false, reason: `GET ${path} answered ${status}` },
          );
        });
        res.on('error', () => resolve({ healthy: false, reason: `GET ${path}: the answer broke` }));
      },
    );
    req.setTimeout(CHECK_TIMEOUT_MS, () =>
      req.destroy(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)),
    );
    req.on('error', (err) => resolve({ healthy: false, reason: `GET ${path}: ${err.message}` }));
  });
}
