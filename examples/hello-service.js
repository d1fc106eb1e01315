// A single-threaded example backend: it serves one request at a time and takes its time doing so,
// which is exactly the kind of service multiplexer is for. Usage: node hello-service.js PORT
import http from 'node:http';

const port = Number(process.argv[2] ?? process.env.PORT);
const workMs = Number(process.env.HELLO_WORK_MS ?? 20);

const server = http.createServer((req, res) => {
  // Block the event loop as real CPU-bound single-threaded code would.
  const until = Date.now() + workMs;
  while (Date.now() < until);
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(`hello from pid ${process.pid} on port ${port}: ${req.method} ${req.url}\n`);
});
server.listen(port, '127.0.0.1', () => {
  // multiplexer counts this backend ready at its first line on stdout (wait_first_output).
  console.log(`hello-service listening on ${port}`);
});
