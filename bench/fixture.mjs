// The benchmark backend: single-threaded like the services multiplexer is for. `?ms=N` blocks its
// event loop N ms without burning CPU (Atomics.wait), as a service waiting on a database would;
// `?cpu=N` busy-loops N ms; `?kb=N` answers N KiB instead of "ok"; otherwise it answers at once. Every answer names its port, so a client
// can tell which backend served it. Usage: node fixture.mjs PORT
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { URLSearchParams } from 'node:url';

const port = Number(process.argv[2] ?? process.env.PORT);
const blocker = new Int32Array(new SharedArrayBuffer(4));

const bodies = new Map();
const bodyOf = (kb) => {
  if (!bodies.has(kb)) bodies.set(kb, Buffer.alloc(kb * 1024, 'b'));
  return bodies.get(kb);
};

const server = http.createServer((req, res) => {
  const query = req.url.indexOf('?');
  let body = 'ok\n';
  if (query >= 0) {
    const params = new URLSearchParams(req.url.slice(query + 1));
    const ms = Number(params.get('ms') ?? 0);
    if (ms > 0) Atomics.wait(blocker, 0, 0, ms);
    const cpu = Number(params.get('cpu') ?? 0);
    if (cpu > 0) {
      const until = performance.now() + cpu;
      while (performance.now() < until);
    }
    const kb = Number(params.get('kb') ?? 0);
    if (kb > 0) body = bodyOf(kb);
  }
  res.writeHead(200, {
    'content-type': 'text/plain',
    'content-length': Buffer.byteLength(body),
    'x-backend-port': String(port),
  });
  res.end(body);
});
// Long enough that a proxy's idle pooled connection is not closed under it between two runs.
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => console.log(`fixture listening on ${port}`));
process.on('SIGTERM', () => process.exit(0));
