/**
 * HTTP/1.1 on the wire, for the fuzz suite: requests and answers written byte by byte from a
 * model (so they can be malformed on purpose), and a lenient reader of the answers a client got.
 */

export type Framing =
  | { readonly kind: 'none' }
  | { readonly kind: 'length' }
  | { readonly kind: 'chunked'; readonly extensions: boolean; readonly trailers: boolean }
  /** Both Content-Length and chunked: a conflict every proxy must refuse or resolve (RFC 9112 §6.3). */
  | { readonly kind: 'both' }
  /** Two different Content-Length values. */
  | { readonly kind: 'conflicting-lengths' }
  /** Answers only: the body ends when the connection closes. */
  | { readonly kind: 'close' };

export interface Header {
  readonly name: string;
  readonly value: string;
}

/** Chunks of at most 7 bytes, with an extension and trailers when asked. */
export function chunked(
  body: Uint8Array,
  options: { extensions: boolean; trailers: boolean },
): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < body.length; at += 7) {
    const piece = body.subarray(at, at + 7);
    const ext = options.extensions ? ';name="v";flag' : '';
    parts.push(Buffer.from(`${piece.length.toString(16)}${ext}\r\n`), Buffer.from(piece), CRLF);
  }
  parts.push(Buffer.from(`0\r\n${options.trailers ? 'x-trailer: t\r\n' : ''}\r\n`));
  return Buffer.concat(parts);
}

const CRLF = Buffer.from('\r\n');

/** The framing headers and the framed body. */
export function frame(framing: Framing, body: Uint8Array): { headers: Header[]; bytes: Buffer } {
  switch (framing.kind) {
    case 'none':
    case 'close':
      return { headers: [], bytes: Buffer.from(body) };
    case 'length':
      return {
        headers: [{ name: 'Content-Length', value: String(body.length) }],
        bytes: Buffer.from(body),
      };
    case 'chunked':
      return {
        headers: [{ name: 'Transfer-Encoding', value: 'chunked' }],
        bytes: chunked(body, framing),
      };
    case 'both':
      return {
        headers: [
          { name: 'Content-Length', value: String(body.length) },
          { name: 'Transfer-Encoding', value: 'chunked' },
        ],
        bytes: chunked(body, { extensions: false, trailers: false }),
      };
    case 'conflicting-lengths':
      return {
        headers: [
          { name: 'Content-Length', value: String(body.length) },
          { name: 'Content-Length', value: String(body.length + 1) },
        ],
        bytes: Buffer.from(body),
      };
  }
}

export function head(firstLine: string, headers: readonly Header[]): Buffer {
  let text = `${firstLine}\r\n`;
  for (const h of headers) text += `${h.name}: ${h.value}\r\n`;
  return Buffer.from(`${text}\r\n`, 'latin1');
}

/** An answer as a client read it. */
export interface ReadAnswer {
  readonly status: number;
  readonly reason: string;
  readonly headers: ReadonlyMap<string, string[]>;
  readonly body: Buffer;
  /** The 1xx answers before it. */
  readonly informational: number[];
}

/**
 * The answers in `bytes`, for requests with these methods in order (HEAD: no body). Stops at the
 * first answer that is not whole; `rest` says whether bytes were left that do not parse.
 */
export function readAnswers(
  bytes: Buffer,
  methods: readonly string[],
  closed: boolean,
): { answers: ReadAnswer[]; complete: boolean; garbage: boolean } {
  const answers: ReadAnswer[] = [];
  let at = 0;
  let informational: number[] = [];
  while (at < bytes.length) {
    const end = bytes.indexOf('\r\n\r\n', at);
    if (end === -1) return { answers, complete: false, garbage: closed };
    const lines = bytes.subarray(at, end).toString('latin1').split('\r\n');
    const match = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0] ?? '');
    if (!match) return { answers, complete: false, garbage: true };
    const status = Number(match[1]);
    const headers = new Map<string, string[]>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0) return { answers, complete: false, garbage: true };
      const name = line.slice(0, colon).toLowerCase();
      headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()]);
    }
    at = end + 4;
    if (status < 200 && status !== 101) {
      informational.push(status);
      continue;
    }
    const method = methods[answers.length] ?? 'GET';
    let body: Buffer = Buffer.alloc(0);
    const te = headers.get('transfer-encoding')?.join(',').toLowerCase();
    const cl = headers.get('content-length');
    if (method === 'HEAD' || status === 204 || status === 304 || status === 101) {
      // No body.
    } else if (te?.includes('chunked')) {
      const parts: Buffer[] = [];
      for (;;) {
        const lineEnd = bytes.indexOf('\r\n', at);
        if (lineEnd === -1) return { answers, complete: false, garbage: closed };
        const size = parseInt(bytes.subarray(at, lineEnd).toString('latin1').split(';')[0]!, 16);
        if (Number.isNaN(size)) return { answers, complete: false, garbage: true };
        at = lineEnd + 2;
        if (size === 0) {
          const trailerEnd = bytes.indexOf('\r\n\r\n', at - 2);
          if (trailerEnd === -1) return { answers, complete: false, garbage: closed };
          at = trailerEnd + 4;
          break;
        }
        if (bytes.length < at + size + 2) return { answers, complete: false, garbage: closed };
        parts.push(bytes.subarray(at, at + size));
        at += size + 2;
      }
      body = Buffer.concat(parts);
    } else if (cl) {
      const length = Number(cl[0]);
      if (bytes.length < at + length) return { answers, complete: false, garbage: closed };
      body = bytes.subarray(at, at + length);
      at += length;
    } else {
      if (!closed) return { answers, complete: false, garbage: false };
      body = bytes.subarray(at);
      at = bytes.length;
    }
    answers.push({ status, reason: match[2] ?? '', headers, body, informational });
    informational = [];
    if (status === 101) return { answers, complete: true, garbage: false };
  }
  return { answers, complete: true, garbage: false };
}
