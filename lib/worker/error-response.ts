import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { httpStatusFor, type ErrorCode } from '../errors.js';
import { ownHeadersOf } from './headers.js';

const REASON: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  413: 'Content Too Large',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  501: 'Not Implemented',
  504: 'Gateway Timeout',
};

/** The code of multiplexer's own answer on a response or an upgrade's socket, for logs and metrics. */
const answeredWith = new WeakMap<object, ErrorCode>();

export function errorCodeOf(answer: object): ErrorCode | undefined {
  return answeredWith.get(answer);
}

/** multiplexer's own answers: a short plain-text body, the code in a header for scripts. */
export function sendError(
  res: ServerResponse,
  code: ErrorCode,
  message: string,
  options: { close?: boolean } = {},
): void {
  answeredWith.set(res, code);
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const { status, body, headers } = errorAnswer(code, message);
  const own = ownHeadersOf(res);
  for (let i = 0; i < own.length; i += 2) headers[own[i]!.toLowerCase()] = own[i + 1]!;
  if (options.close) headers.connection = 'close';
  res.writeHead(status, headers);
  res.end(body);
}

/** The same answer written on a bare socket (an Upgrade request has no response object), closing it. */
export function writeErrorTo(socket: Duplex, code: ErrorCode, message: string): void {
  if (socket.destroyed) return;
  answeredWith.set(socket, code);
  const { status, body, headers } = errorAnswer(code, message);
  const lines = Object.entries({ ...headers, connection: 'close' }).map(([k, v]) => `${k}: ${v}`);
  socket.end(
    `HTTP/1.1 ${status} ${REASON[status] ?? 'Error'}\r\n${lines.join('\r\n')}\r\n\r\n${body}`,
  );
}

function errorAnswer(
  code: ErrorCode,
  message: string,
): { status: number; body: string; headers: Record<string, string> } {
  const status = httpStatusFor[code];
  const body = `${status} ${REASON[status] ?? 'Error'}: ${message}\n`;
  return {
    status,
    body,
    headers: {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': String(Buffer.byteLength(body)),
      'x-multiplexer-error': code,
      ...(status === 503 || status === 429 ? { 'retry-after': '1' } : {}),
    },
  };
}
