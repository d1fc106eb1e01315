import fc from 'fast-check';
import { frame, head, type Framing, type Header } from './wire.js';

/**
 * The fuzz suite's inputs: a client's raw request and the scripted backend's raw answer, each
 * generated from a model that is well-formed by default and mutated on purpose: methods, targets,
 * header names and values, duplicates, framing, chunk extensions, pipelining, upgrades, early
 * closes at any byte; status lines, reason phrases with control bytes, 1xx series, conflicting
 * framing, trailers, garbage after the body, very long headers.
 */

/** Methods node's parser knows, and one it does not. */
const METHODS = ['GET', 'GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'BREW'];
const NODE_METHODS = new Set(METHODS.filter((m) => m !== 'BREW'));

/** Names the harness itself uses, or that decide the framing: never generated as extras. */
const RESERVED =
  /^(host|content-length|transfer-encoding|connection|upgrade|expect|x-test-id|x-script.*|x-answer-for|te|trailer|keep-alive|proxy-connection)$/i;

const TCHAR = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~".split(
  '',
);

const headerName = fc
  .array(fc.constantFrom(...TCHAR), { minLength: 1, maxLength: 16 })
  .map((chars) => chars.join(''))
  .filter((name) => !RESERVED.test(name));

/** `arb` in `percent` of the cases, else null. */
function sometimes<T>(arb: fc.Arbitrary<T>, percent: number): fc.Arbitrary<T | null> {
  return fc.oneof(
    { weight: 100 - percent, arbitrary: fc.constant(null) },
    { weight: percent, arbitrary: arb },
  );
}

const VISIBLE = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i));
const headerValue = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .array(fc.constantFrom(...VISIBLE), { maxLength: 40 })
      .map((c) => c.join('').trim()),
  },
  { weight: 1, arbitrary: fc.constant('\xe9t\xe9 obs-text') },
  { weight: 1, arbitrary: fc.integer({ min: 4_000, max: 20_000 }).map((n) => 'v'.repeat(n)) },
);

const header = fc.record({ name: headerName, value: headerValue });

/** Extras, sometimes with a duplicate of one of them. */
const headers = fc
  .tuple(fc.array(header, { maxLength: 5 }), fc.boolean())
  .map(([list, dup]) => (dup && list.length > 0 ? [...list, list[0]!] : list));

const body = fc.oneof(
  { weight: 3, arbitrary: fc.constant(new Uint8Array(0)) },
  { weight: 5, arbitrary: fc.uint8Array({ maxLength: 600 }) },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 10_000, max: 200_000 }).map((n) => new Uint8Array(n).fill(98)),
  },
);

/** Chunked, with or without chunk extensions and trailers: either side's. */
const chunkedFraming = fc.record({
  kind: fc.constant('chunked' as const),
  extensions: fc.boolean(),
  trailers: fc.boolean(),
});

const requestFraming: fc.Arbitrary<Framing> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ kind: 'length' } as const) },
  { weight: 2, arbitrary: fc.constant({ kind: 'none' } as const) },
  { weight: 3, arbitrary: chunkedFraming },
  { weight: 1, arbitrary: fc.constant({ kind: 'both' } as const) },
  { weight: 1, arbitrary: fc.constant({ kind: 'conflicting-lengths' } as const) },
);

const mutation = fc.record({
  at: fc.double({ min: 0, max: 1, noNaN: true }),
  kind: fc.constantFrom('flip', 'cr', 'lf', 'nul', 'delete', 'space', 'colon'),
});

export interface ClientCase {
  readonly method: string;
  /** After /f/ID: origin-form path characters, sometimes odd ones. */
  readonly path: string;
  readonly headers: readonly Header[];
  /** A Connection header naming other headers, or none. */
  readonly connection: string | null;
  readonly upgrade: boolean;
  readonly framing: Framing;
  readonly body: Uint8Array;
  /** Plain GETs pipelined after it on the same connection. */
  readonly pipelined: number;
  /** The client closes after this fraction of its bytes (FIN, or a reset). */
  readonly cut: { readonly at: number; readonly reset: boolean } | null;
  readonly mutation: { readonly at: number; readonly kind: string } | null;
  /** Sent to the instance that streams request bodies (buffer_requests: false). */
  readonly streaming: boolean;
  readonly version: '1.1' | '1.0';
  /** Expect: 100-continue, answered by multiplexer before the body is read. */
  readonly expectContinue: boolean;
  /** The target in absolute form (GET http://host/path), as a client of a forward proxy sends. */
  readonly absolute: boolean;
}

export const clientCase: fc.Arbitrary<ClientCase> = fc.record({
  method: fc.constantFrom(...METHODS),
  path: fc.oneof(
    fc.constant(''),
    fc.stringMatching(/^[a-zA-Z0-9._~!$&'()*+,;=:@/?%-]{0,30}$/),
    fc.constantFrom('/../x', '?a=1&a=2', '/%00', '/%zz', '#frag', '//double'),
  ),
  headers,
  connection: sometimes(
    fc.constantFrom(
      'close',
      'keep-alive',
      'content-length',
      'transfer-encoding, x-a',
      'host',
      'x-request-id',
    ),
    25,
  ),
  upgrade: fc.oneof(
    { weight: 1, arbitrary: fc.constant(true) },
    { weight: 6, arbitrary: fc.constant(false) },
  ),
  framing: requestFraming,
  body,
  pipelined: fc.nat({ max: 2 }),
  cut: sometimes(
    fc.record({ at: fc.double({ min: 0, max: 1, noNaN: true }), reset: fc.boolean() }),
    10,
  ),
  mutation: sometimes(mutation, 10),
  streaming: fc.boolean(),
  version: fc.oneof(
    { weight: 9, arbitrary: fc.constant('1.1' as const) },
    { weight: 1, arbitrary: fc.constant('1.0' as const) },
  ),
  expectContinue: fc.oneof(
    { weight: 9, arbitrary: fc.constant(false) },
    { weight: 1, arbitrary: fc.constant(true) },
  ),
  absolute: fc.oneof(
    { weight: 9, arbitrary: fc.constant(false) },
    { weight: 1, arbitrary: fc.constant(true) },
  ),
});

export interface BackendCase {
  readonly informational: readonly {
    readonly status: 100 | 102 | 103;
    readonly headers: readonly Header[];
  }[];
  readonly status: number;
  readonly reason: string;
  readonly headers: readonly Header[];
  readonly framing: Framing;
  readonly body: Uint8Array;
  readonly trailerHeader: boolean;
  readonly garbage: Uint8Array | null;
  /** The backend closes after this fraction of its answer. */
  readonly cutAt: number | null;
  readonly version: '1.1' | '1.0';
  /** A Connection header of the backend's own. */
  readonly connection: 'close' | 'keep-alive' | null;
  /** Transfer-Encoding "gzip, chunked" on a chunked answer: a coding a proxy cannot pass on. */
  readonly gzipCoding: boolean;
}

const CONTROL = Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).filter(
  (c) => c !== '\r' && c !== '\n',
);

export const backendCase: fc.Arbitrary<BackendCase> = fc.record({
  informational: fc.array(
    fc.record({
      status: fc.constantFrom(100 as const, 102 as const, 103 as const),
      headers: fc.oneof(
        fc.constant([{ name: 'Link', value: '</a.css>; rel=preload, </b.js>; rel=preload' }]),
        fc.constant([{ name: 'Link', value: 'not a link' }]),
        fc.array(header, { maxLength: 2 }),
      ),
    }),
    { maxLength: 2 },
  ),
  status: fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(200, 200, 201, 204, 301, 304, 400, 404, 500, 503) },
    { weight: 1, arbitrary: fc.integer({ min: 100, max: 999 }) },
  ),
  reason: fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('OK', 'Fine', '', 'Very Good Indeed') },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.constantFrom(...CONTROL), fc.string({ maxLength: 5 }))
        .map(([c, s]) => `O${c}K${s.replace(/[\r\n]/g, '')}`),
    },
  ),
  headers,
  framing: fc.oneof(
    { weight: 5, arbitrary: fc.constant({ kind: 'length' } as const) },
    { weight: 3, arbitrary: chunkedFraming },
    { weight: 2, arbitrary: fc.constant({ kind: 'close' } as const) },
    { weight: 1, arbitrary: fc.constant({ kind: 'both' } as const) },
    { weight: 1, arbitrary: fc.constant({ kind: 'conflicting-lengths' } as const) },
  ),
  body,
  trailerHeader: fc.boolean(),
  garbage: sometimes(fc.uint8Array({ minLength: 1, maxLength: 40 }), 5),
  cutAt: sometimes(fc.double({ min: 0, max: 0.999, noNaN: true }), 5),
  version: fc.oneof(
    { weight: 9, arbitrary: fc.constant('1.1' as const) },
    { weight: 1, arbitrary: fc.constant('1.0' as const) },
  ),
  connection: sometimes(fc.constantFrom('close' as const, 'keep-alive' as const), 15),
  gzipCoding: fc.oneof(
    { weight: 19, arbitrary: fc.constant(false) },
    { weight: 1, arbitrary: fc.constant(true) },
  ),
});

/** A request as sent, with what the harness knows of it. */
export interface SentRequest {
  readonly id: string;
  readonly method: string;
  readonly target: string;
  readonly bodyLength: number;
}

/** The client's bytes: the request, pipelined GETs after it; then mutated and cut as the case says. */
export function renderClient(c: ClientCase, id: string): { bytes: Buffer; sent: SentRequest[] } {
  const target = `/f/${id}${c.path.startsWith('/') || c.path.startsWith('?') || c.path === '' ? '' : '/'}${c.path}`;
  const framed = frame(c.framing, c.body);
  const extra: Header[] = [
    { name: 'Host', value: 'fuzz.test' },
    { name: 'x-test-id', value: id },
  ];
  if (c.connection) extra.push({ name: 'Connection', value: c.connection });
  if (c.expectContinue) extra.push({ name: 'Expect', value: '100-continue' });
  if (c.upgrade) {
    extra.push({ name: 'Connection', value: 'Upgrade' }, { name: 'Upgrade', value: 'websocket' });
  }
  const parts = [
    head(`${c.method} ${c.absolute ? `http://fuzz.test${target}` : target} HTTP/${c.version}`, [
      ...extra,
      ...c.headers,
      ...framed.headers,
    ]),
    framed.bytes,
  ];
  const sent: SentRequest[] = [
    { id, method: c.method, target, bodyLength: c.framing.kind === 'none' ? 0 : c.body.length },
  ];
  for (let i = 1; i <= c.pipelined; i++) {
    const pid = `${id}-p${i}`;
    const ptarget = `/f/${pid}`;
    parts.push(
      head(`GET ${ptarget} HTTP/1.1`, [
        { name: 'Host', value: 'fuzz.test' },
        { name: 'x-test-id', value: pid },
      ]),
    );
    sent.push({ id: pid, method: 'GET', target: ptarget, bodyLength: 0 });
  }
  let bytes: Buffer = Buffer.concat(parts);
  if (c.mutation) bytes = mutate(bytes, c.mutation.at, c.mutation.kind);
  if (c.cut) bytes = bytes.subarray(0, Math.floor(bytes.length * c.cut.at));
  return { bytes, sent };
}

function mutate(bytes: Buffer, at: number, kind: string): Buffer {
  const i = Math.min(bytes.length - 1, Math.floor(bytes.length * at));
  const before = bytes.subarray(0, i);
  const after = bytes.subarray(i + 1);
  const byte = bytes[i] ?? 0;
  const insert = (s: string): Buffer =>
    Buffer.concat([before, Buffer.from(s, 'latin1'), bytes.subarray(i)]);
  switch (kind) {
    case 'flip':
      return Buffer.concat([before, Buffer.from([byte ^ 0x20]), after]);
    case 'cr':
      return insert('\r');
    case 'lf':
      return insert('\n');
    case 'nul':
      return insert('\0');
    case 'space':
      return insert(' ');
    case 'colon':
      return insert(':');
    default:
      return Buffer.concat([before, after]);
  }
}

/** Whether node's server and the proxy must pass this request on as it is. */
export function wellFormedRequest(c: ClientCase): boolean {
  return (
    NODE_METHODS.has(c.method) &&
    !c.cut &&
    !c.mutation &&
    !c.upgrade &&
    (c.framing.kind === 'length' ||
      c.framing.kind === 'chunked' ||
      (c.framing.kind === 'none' && c.body.length === 0)) &&
    c.headers.every((h) => h.value.length < 4_000) &&
    c.connection !== 'close' &&
    c.version === '1.1' &&
    // Answered without a 100 (no body to wait for), node closes such a connection, as the client
    // may still send a body: what was pipelined behind it is not read.
    !(c.expectContinue && c.pipelined > 0) &&
    !/[#%]|\.\./.test(c.path)
  );
}

/** The backend's raw answer, with X-Answer-For naming the request it answers. */
export function renderBackend(b: BackendCase, id: string): { bytes: Buffer; closes: boolean } {
  const parts: Buffer[] = [];
  for (const info of b.informational) {
    parts.push(head(`HTTP/1.1 ${info.status} Info`, info.headers));
  }
  const framed = frame(b.framing, b.body);
  const own: Header[] = [{ name: 'X-Answer-For', value: id }];
  if (b.trailerHeader) own.push({ name: 'Trailer', value: 'x-trailer' });
  if (b.connection) own.push({ name: 'Connection', value: b.connection });
  const framing = framed.headers.map((h) =>
    b.gzipCoding && h.name === 'Transfer-Encoding' ? { ...h, value: 'gzip, chunked' } : h,
  );
  const reason = b.reason === '' ? '' : ` ${b.reason}`;
  parts.push(head(`HTTP/${b.version} ${b.status}${reason}`, [...own, ...b.headers, ...framing]));
  parts.push(framed.bytes);
  if (b.garbage) parts.push(Buffer.from(b.garbage));
  let bytes: Buffer = Buffer.concat(parts);
  if (b.cutAt !== null) bytes = bytes.subarray(0, Math.floor(bytes.length * b.cutAt));
  // A backend that says it closes (or speaks HTTP/1.0 without keep-alive) does, as servers do.
  const closes =
    b.framing.kind === 'close' ||
    b.cutAt !== null ||
    b.garbage !== null ||
    b.connection === 'close' ||
    (b.version === '1.0' && b.connection !== 'keep-alive');
  return { bytes, closes };
}

/** Whether the client must get exactly this status and body. */
export function wellFormedAnswer(b: BackendCase, method: string): boolean {
  const bodyless = method === 'HEAD' || b.status === 204 || b.status === 304;
  return (
    b.status >= 200 &&
    b.status <= 599 &&
    [...b.reason].every((c) => c === '\t' || (c >= ' ' && c !== '\x7f')) &&
    (b.framing.kind === 'length' || b.framing.kind === 'chunked' || b.framing.kind === 'close') &&
    b.garbage === null &&
    b.cutAt === null &&
    !b.gzipCoding &&
    !(b.version === '1.0' && b.framing.kind === 'chunked') &&
    b.headers.every((h) => h.value.length < 4_000) &&
    b.informational.every((i) => i.headers.every((h) => h.value.length < 4_000)) &&
    // A bodyless answer has no body bytes at all: not even a chunked one's last chunk.
    (!bodyless || (b.body.length === 0 && b.framing.kind === 'length'))
  );
}
