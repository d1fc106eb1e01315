// The floors of the request path (issue 21, part 4): the least a node process can spend per
// proxied request, one backend per request at a time, without multiplexer's supervisor, queue
// limits, timers, metrics or access log. Two ways to talk to the backends:
//   node-http: node:http's client with a keep-alive Agent, one connection per backend at most;
//   raw: a socket per backend, owned for good; the request head written by hand in one write;
//        the answer parsed by node's own llhttp parser (the HTTPParser binding of _http_common,
//        the one node:http uses), so framing is node's, without ClientRequest, Agent or
//        IncomingMessage. Only bodyless requests and answers framed by Content-Length or chunked.
// The client side is node:http's server in both. A request waits in a local FIFO while every
// backend is busy. Usage: node floor-proxy.mjs MODE PORT BACKEND_PORT...
import http from 'node:http';
import net from 'node:net';
import { createRequire } from 'node:module';

const [mode, portText, ...backendPorts] = process.argv.slice(2);
const require = createRequire(import.meta.url);

/** Free backends, and requests waiting for one. */
const free = [];
const waiting = [];
function acquire(use) {
  const backend = free.pop();
  if (backend) use(backend);
  else waiting.push(use);
}
function release(backend) {
  const next = waiting.shift();
  if (next) next(backend);
  else free.push(backend);
}

function forward(req) {
  const headers = { ...req.headers };
  delete headers.connection;
  headers['x-forwarded-for'] = req.socket.remoteAddress;
  return headers;
}

if (mode === 'node-http') {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 });
  for (const port of backendPorts) free.push(Number(port));
  http
    .createServer((req, res) => {
      acquire((port) => {
        const out = http.request(
          {
            host: '127.0.0.1',
            port,
            method: req.method,
            path: req.url,
            headers: forward(req),
            agent,
          },
          (answer) => {
            res.writeHead(answer.statusCode, answer.statusMessage, answer.rawHeaders);
            answer.on('data', (chunk) => res.write(chunk));
            answer.on('end', () => {
              res.end();
              release(port);
            });
          },
        );
        out.on('error', () => {
          res.destroy();
          release(port);
        });
        out.end();
      });
    })
    .listen(Number(portText), '127.0.0.1');
} else if (mode === 'raw') {
  const { HTTPParser } = require('_http_common');
  const { kOnHeadersComplete, kOnBody, kOnMessageComplete } = HTTPParser;

  /** One held backend: its socket, its parser, and the answer in progress. */
  class Held {
    constructor(port) {
      this.port = port;
      this.res = undefined;
      this.head = undefined;
      this.body = [];
      this.parser = new HTTPParser();
      this.parser.initialize(HTTPParser.RESPONSE, {});
      this.parser[kOnHeadersComplete] = (
        _major,
        _minor,
        rawHeaders,
        _method,
        _url,
        status,
        reason,
      ) => {
        this.head = { status, reason, headers: framed(rawHeaders) };
      };
      this.parser[kOnBody] = (chunk) => this.body.push(Buffer.from(chunk));
      this.parser[kOnMessageComplete] = () => {
        const res = this.res;
        this.res = undefined;
        const body = this.body.length === 1 ? this.body[0] : Buffer.concat(this.body);
        this.body = [];
        // Read whole, as multiplexer's buffer_responses does: one head and body, one write.
        const { status, reason, headers } = this.head;
        headers.push('content-length', String(body.length));
        res.writeHead(status, reason, headers);
        res.end(body);
        release(this);
      };
      this.socket = net.connect(port, '127.0.0.1');
      this.socket.setNoDelay(true);
      this.socket.on('data', (bytes) => {
        const r = this.parser.execute(bytes);
        if (r instanceof Error) this.socket.destroy(r);
      });
    }

    send(req, res) {
      this.res = res;
      let head = `${req.method} ${req.url} HTTP/1.1\r\n`;
      const raw = req.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) {
        if (raw[i].toLowerCase() === 'connection') continue;
        head += `${raw[i]}: ${raw[i + 1]}\r\n`;
      }
      head += `x-forwarded-for: ${req.socket.remoteAddress}\r\n\r\n`;
      this.socket.write(head, 'latin1');
    }
  }

  /** The answer's headers for the client, its framing dropped (the server frames it again). */
  function framed(raw) {
    const out = [];
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i].toLowerCase();
      if (name === 'content-length' || name === 'transfer-encoding' || name === 'connection')
        continue;
      out.push(raw[i], raw[i + 1]);
    }
    return out;
  }

  for (const port of backendPorts) free.push(new Held(Number(port)));
  http
    .createServer((req, res) => acquire((held) => held.send(req, res)))
    .listen(Number(portText), '127.0.0.1');
} else {
  console.error(`floor-proxy: unknown mode ${mode}; expected node-http or raw`);
  process.exit(64);
}
process.on('SIGTERM', () => process.exit(0));
