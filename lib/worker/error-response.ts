import type { ServerResponse } from 'node:http';
import { httpStatusFor, type ErrorCode } from '../errors.js';

const REASON: Record<number, string> = {
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** multiplexer's own answers: a short plain-text body, the code in a header for scripts. */
export function sendError(res: ServerResponse, code: ErrorCode, message: string): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const status = httpStatusFor[code];
  const body = `${status} ${REASON[status] ?? 'Error'}: ${message}\n`;
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-multiplexer-error': code,
    ...(status === 503 ? { 'retry-after': '1' } : {}),
  });
  res.end(body);
}
