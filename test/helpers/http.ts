import { createHash } from 'node:crypto';
import http from 'node:http';

export interface Answer {
  status: number;
  statusMessage: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
  ms: number;
}

export interface RequestOptions {
  method?: string;
  headers?: http.OutgoingHttpHeaders;
  body?: string | Buffer;
  /** Aborting it closes the client's connection (the promise then rejects). */
  signal?: AbortSignal;
  /** A keep-alive agent, to send it on a connection that earlier requests used (default: none). */
  agent?: http.Agent;
}

/** One request, on a fresh connection (as an independent client would make it) unless given an agent. */
export function request(port: number, path: string, options: RequestOptions = {}): Promise<Answer> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        headers: options.headers,
        agent: options.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            statusMessage: res.statusMessage ?? '',
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            body: Buffer.concat(chunks).toString('utf8'),
            ms: Date.now() - started,
          }),
        );
      },
    );
    req.on('error', reject);
    options.signal?.addEventListener('abort', () => req.destroy(new Error('aborted by the test')));
    req.end(options.body);
  });
}

export interface FixtureAnswer {
  pid: number;
  port: number;
  envPort: string;
  atArrival: number;
  served: number;
  method: string;
  url: string;
  httpVersion: string;
  headers: Record<string, string>;
  bytes: number;
  sha256: string;
}

export function parseFixture(answer: Answer): FixtureAnswer {
  return JSON.parse(answer.body) as FixtureAnswer;
}

/** What a fixture says it received: its byte count, SHA-256 and the request headers. */
export interface ReceivedBody {
  bytes: number;
  sha256: string;
  headers: Record<string, string>;
}

/**
 * POSTs `chunks` as a chunked body (no Content-Length) and resolves with what the fixture says it
 * received, and the SHA-256 of what was sent.
 */
export function uploadChunked(
  port: number,
  path: string,
  chunks: readonly Buffer[],
): Promise<{ seen: ReceivedBody; sentSha256: string }> {
  const hash = createHash('sha256');
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, method: 'POST', agent: false },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => (text += c));
        res.on('end', () =>
          resolve({ seen: JSON.parse(text) as ReceivedBody, sentSha256: hash.digest('hex') }),
        );
      },
    );
    req.on('error', reject);
    for (const chunk of chunks) {
      hash.update(chunk);
      req.write(chunk);
    }
    req.end();
  });
}
