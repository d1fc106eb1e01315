// An Express app whose requests cost CPU: each page is rendered from a chain of hashes computed
// in this process. Node runs that on its one thread, so while one page renders every other
// request waits: the case multiplexer exists for. Usage: node server.js PORT
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import express from 'express';

const port = Number(process.argv[2] ?? process.env.PORT);
const app = express();

// Requests this process holds right now. Behind multiplexer it is never more than 1, since a
// backend gets nothing until its last answer is complete; each page shows it ("inFlight").
let inFlight = 0;
app.use((req, res, next) => {
  inFlight += 1;
  res.locals.inFlight = inFlight;
  res.on('close', () => (inFlight -= 1));
  next();
});

app.get('/healthz', (req, res) => {
  res.json({ ok: true });
});

app.get('/{*path}', async (req, res) => {
  // What a real handler does first: wait on I/O (a database, another service). During this
  // wait a second request could enter this process, and inFlight would show it.
  await sleep(2);
  const started = performance.now();
  let digest = 'multiplexer';
  for (let i = 0; i < 20_000; i += 1) digest = createHash('sha256').update(digest).digest('hex');
  res.json({
    pid: process.pid,
    port,
    path: req.originalUrl,
    digest: digest.slice(0, 16),
    ms: Math.round((performance.now() - started) * 10) / 10,
    inFlight: Math.max(inFlight, res.locals.inFlight),
  });
});

const server = app.listen(port, '127.0.0.1', () => {
  // multiplexer counts this backend ready at its first line on stdout (wait_first_output).
  console.log(`node-express example listening on ${port}`);
});

// SIGTERM (multiplexer stopping or retiring this backend): stop accepting, let the request in
// hand finish, close idle keep-alive connections, then exit 0. Without a handler Node would end
// at once, mid-answer.
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
