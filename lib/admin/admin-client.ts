import http from 'node:http';
import { MultiplexerError } from '../errors.js';
import type { InstanceRecord } from '../instance/instance-file.js';

/** A wildcard listen address is reached on loopback. */
function connectHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::' || host === '[::]') return '::1';
  return host.replace(/^\[|\]$/g, '');
}

/** One call to the admin API of a running instance; resolves with its status and JSON body. */
export function callAdmin(
  instance: InstanceRecord,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<{ status: number; body: unknown }> {
  const admin = instance.admin;
  if (!admin) {
    return Promise.reject(
      new MultiplexerError(
        'MPX_ADMIN_UNAVAILABLE',
        `the running multiplexer (pid ${instance.pid}) has its admin API off (admin_port 0); set admin_port in its config and restart it`,
      ),
    );
  }
  // Every action carries a JSON body: the admin API refuses POSTs without one (a cross-site
  // form cannot send application/json).
  const payload = body !== undefined ? JSON.stringify(body) : method === 'POST' ? '{}' : undefined;
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: connectHost(admin.host),
        port: admin.port,
        path,
        method,
        agent: false,
        headers: {
          ...(admin.token !== '' && { authorization: `Bearer ${admin.token}` }),
          ...(payload !== undefined && {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(payload),
          }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown });
          } catch {
            resolve({ status: res.statusCode ?? 0, body: text });
          }
        });
      },
    );
    req.on('error', (err) =>
      reject(
        new MultiplexerError(
          'MPX_ADMIN_UNAVAILABLE',
          `cannot reach the admin API of pid ${instance.pid} at ${admin.host}:${admin.port}: ${err.message}`,
        ),
      ),
    );
    req.end(payload);
  });
}

/**
 * Follows the admin API's /events stream (Server-Sent Events) of a running instance: `onEvent`
 * gets each event's name and parsed data. Resolves when the stream ends; `stop()` ends it.
 */
export function followAdminEvents(
  instance: InstanceRecord,
  onEvent: (event: string, data: unknown) => void,
): { done: Promise<void>; stop(): void } {
  const admin = instance.admin;
  if (!admin) {
    const failed = Promise.reject(
      new MultiplexerError(
        'MPX_ADMIN_UNAVAILABLE',
        `the running multiplexer (pid ${instance.pid}) has its admin API off (admin_port 0); set admin_port in its config and restart it`,
      ),
    );
    return { done: failed, stop: () => undefined };
  }
  let req: http.ClientRequest | undefined;
  const done = new Promise<void>((resolve, reject) => {
    req = http.request(
      {
        host: connectHost(admin.host),
        port: admin.port,
        path: '/events',
        agent: false,
        headers: admin.token !== '' ? { authorization: `Bearer ${admin.token}` } : {},
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(
            new MultiplexerError(
              'MPX_ADMIN_UNAVAILABLE',
              `the admin API answered ${res.statusCode} to GET /events`,
            ),
          );
          return;
        }
        let buffer = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffer += chunk;
          for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (data !== undefined) onEvent(event, JSON.parse(data));
          }
        });
        res.on('close', () => resolve());
      },
    );
    req.on('error', (err) =>
      reject(
        new MultiplexerError(
          'MPX_ADMIN_UNAVAILABLE',
          `cannot reach the admin API of pid ${instance.pid} at ${admin.host}:${admin.port}: ${err.message}`,
        ),
      ),
    );
    req.end();
  });
  return { done, stop: () => req?.destroy() };
}
