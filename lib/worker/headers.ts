import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import { BlockList, isIPv4 } from 'node:net';
import { parseAddressOrBlock } from '../config/formats.js';

/**
 * Headers between client and backend: hop-by-hop ones stay on their own hop (RFC 9110 §7.6.1),
 * and the forwarded headers say who the client was. multiplexer is the edge unless the peer is
 * listed in trusted_proxies: an X-Forwarded-Proto or -Host sent by anyone else is replaced, not
 * passed on, or a client could make the app believe it was reached over https or under another
 * name.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'transfer-encoding',
  'upgrade',
]);

/**
 * What a client could say about itself or the connection that an app believes of its proxy: only
 * a trusted proxy's are passed on. Rack reads "X-Forwarded-Ssl: on" as https; X-Real-IP and
 * True-Client-IP are taken as the client's address by nginx's realip module and many frameworks.
 */
const FORWARDED = new Set([
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-ssl',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-forwarded-scheme',
  'x-forwarded-server',
  'x-real-ip',
  'true-client-ip',
  'x-client-ip',
  'x-cluster-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
]);

/**
 * Headers that Connection may not name away: the request's framing and authority, and the ones
 * multiplexer sets. `Connection: content-length` once dropped a GET's Content-Length, and its body
 * reached the backend unframed, as a second request the proxy never saw (request smuggling).
 */
const NEVER_NAMED = new Set([
  'content-length',
  'host',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'forwarded',
  'x-request-id',
]);

const NO_TOKENS: ReadonlySet<string> = new Set();

function connectionTokens(value: string | string[] | undefined): ReadonlySet<string> {
  if (value === undefined) return NO_TOKENS;
  const text = Array.isArray(value) ? value.join(',') : (value ?? '');
  const tokens = new Set<string>();
  for (const t of text.split(',')) {
    const token = t.trim().toLowerCase();
    if (token) tokens.add(token);
  }
  return tokens;
}

export class TrustedProxies {
  private readonly list = new BlockList();
  private readonly empty: boolean;

  constructor(entries: readonly string[]) {
    this.empty = entries.length === 0;
    for (const entry of entries) {
      const parsed = parseAddressOrBlock(entry);
      if (parsed) this.list.addSubnet(parsed.address, parsed.prefix, parsed.family);
    }
  }

  has(address: string | undefined): boolean {
    if (this.empty || !address) return false;
    // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
    const v4 = address.startsWith('::ffff:') ? address.slice(7) : undefined;
    if (v4 && isIPv4(v4)) return this.list.check(v4, 'ipv4');
    return this.list.check(address, isIPv4(address) ? 'ipv4' : 'ipv6');
  }
}

export interface Target {
  /** Origin-form path and query. */
  readonly path: string;
  /** The authority the request is for (Host, or that of an absolute-form target). */
  readonly host: string;
}

/**
 * Where a request goes: an absolute-form target (`GET http://name/path`, what a client speaking
 * to a forward proxy sends) becomes origin form, and its authority wins over Host (RFC 9112 §3.2.2).
 * Undefined when the request names no host at all: 400, as nginx answers.
 */
export function targetOf(req: http.IncomingMessage): Target | undefined {
  const url = req.url ?? '/';
  if (url.startsWith('/') || url === '*') {
    const host = req.headers.host;
    return host ? { path: url, host } : undefined;
  }
  try {
    const parsed = new URL(url);
    if (!parsed.host) return undefined;
    return { path: `${parsed.pathname}${parsed.search}`, host: parsed.host };
  } catch {
    return undefined;
  }
}

/**
 * The headers sent to the backend: the client's, less hop-by-hop ones (and what Connection names),
 * with Host set to the target's authority and the forwarded headers set by us (extended, when the
 * peer is a trusted proxy). `upgrade`: the request asks to switch protocols, so Connection and
 * Upgrade go through.
 */
export function requestHeaders(
  req: http.IncomingMessage,
  target: Target,
  trusted: TrustedProxies,
  requestId: string,
  upgrade = false,
): http.OutgoingHttpHeaders {
  const named = connectionTokens(req.headers.connection);
  const fromProxy = trusted.has(req.socket.remoteAddress);
  // Set below from requestId (the client's only when it came through a trusted proxy).
  const headers: http.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    if (named.has(name) && !NEVER_NAMED.has(name)) continue;
    // multiplexer itself answers "100 Continue"; the backend must not wait for one.
    if (name === 'expect') continue;
    if (FORWARDED.has(name) && !fromProxy) continue;
    if (name === 'x-request-id') continue;
    headers[name] = value;
  }
  headers.host = target.host;
  const client = req.socket.remoteAddress ?? '';
  const previousFor = fromProxy ? req.headers['x-forwarded-for'] : undefined;
  headers['x-forwarded-for'] = previousFor ? `${String(previousFor)}, ${client}` : client;
  if (!fromProxy || !headers['x-forwarded-host']) headers['x-forwarded-host'] = target.host;
  if (!fromProxy || !headers['x-forwarded-proto']) headers['x-forwarded-proto'] = 'http';
  const node = `for=${forwardedNode(client)};host=${quoted(target.host)};proto=http`;
  const previous = fromProxy ? req.headers.forwarded : undefined;
  headers.forwarded = previous ? `${previous}, ${node}` : node;
  headers['x-request-id'] = requestId;
  if (upgrade) {
    headers.connection = 'upgrade';
    headers.upgrade = req.headers.upgrade ?? '';
  }
  return headers;
}

/**
 * The client's address: the peer's, or, when the peer is a trusted proxy, the nearest address in
 * its X-Forwarded-For that is not itself a trusted proxy (the one that proxy saw; those further
 * left are only what the client claimed).
 */
export function clientAddressOf(req: http.IncomingMessage, trusted: TrustedProxies): string {
  const peer = req.socket.remoteAddress ?? '';
  if (!trusted.has(peer)) return peer;
  const chain = req.headers['x-forwarded-for'];
  const hops = (Array.isArray(chain) ? chain.join(',') : (chain ?? '')).split(',');
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!.trim();
    if (hop && !trusted.has(hop)) return hop;
  }
  return peer;
}

/** RFC 7239: an IPv6 address is quoted and bracketed. */
function forwardedNode(address: string): string {
  return address.includes(':') ? `"[${address}]"` : address || 'unknown';
}

function quoted(value: string): string {
  return /^[\w.-]+$/.test(value) ? value : `"${value.replace(/["\\]/g, '\\$&')}"`;
}

/**
 * The backend's answer headers for the client, raw (name case and repeats kept), less hop-by-hop
 * ones and nginx's X-Accel-Buffering, which speaks to the proxy alone; then `own`, multiplexer's
 * headers (X-Request-Id, Connection: close), in place of any the backend sent by those names.
 */
export function responseHeaders(raw: readonly string[], own: readonly string[] = []): string[] {
  const named = new Set<string>();
  for (let i = 0; i < own.length; i += 2) named.add(own[i]!.toLowerCase());
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') {
      for (const token of connectionTokens(raw[i + 1])) named.add(token);
    }
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (!HOP_BY_HOP.has(name) && !named.has(name) && name !== 'x-accel-buffering') {
      out.push(raw[i]!, raw[i + 1]!);
    }
  }
  for (const item of own) out.push(item);
  return out;
}

/**
 * multiplexer's own headers for an answer (X-Request-Id, Connection: close while draining), kept
 * beside the response rather than set on it: once anything is set with setHeader, node 20 merges
 * a raw header list given to writeHead one pair at a time with setHeader, which keeps only the
 * last of a repeated header, and a backend's second Set-Cookie was lost.
 */
const ownHeaders = new WeakMap<http.ServerResponse, string[]>();

export function addOwnHeader(res: http.ServerResponse, name: string, value: string): void {
  const list = ownHeaders.get(res);
  if (list) list.push(name, value);
  else ownHeaders.set(res, [name, value]);
}

export function ownHeadersOf(res: http.ServerResponse): readonly string[] {
  return ownHeaders.get(res) ?? [];
}

const REQUEST_ID = /^[\x21-\x7e]{1,200}$/;

/**
 * The request's X-Request-Id: the one a trusted proxy sent, when it is a printable token of at
 * most 200 characters (it ends up in logs and in the backend's headers), else a new UUID. From
 * anyone else it is not taken: a client could reuse another request's id and mix up what the
 * logs and the app correlate by it.
 */
export function requestIdOf(req: http.IncomingMessage, trusted: TrustedProxies): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' &&
    REQUEST_ID.test(given) &&
    trusted.has(req.socket.remoteAddress)
    ? given
    : randomUUID();
}

/** Raw header pairs as an object of lists (what writeEarlyHints and addTrailers take). */
export function headerObject(raw: readonly string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (let i = 0; i < raw.length; i += 2) (out[raw[i]!.toLowerCase()] ??= []).push(raw[i + 1]!);
  return out;
}

/** What node's writeEarlyHints accepts as one Link value (lib/internal/validators.js). */
const LINK_VALUE = /^(?:<[^>]*>)(?:\s*;\s*[^;"\s]+(?:=(")?[^;"\s]*\1)?)*$/;

/**
 * A backend's 103 as node's writeEarlyHints takes it: its Link values one by one. A backend may
 * send several links in one header, comma-separated (node's own writeEarlyHints does), which node
 * refuses as one value; each is split out and checked, and one node would refuse is left out.
 * Undefined when no link is left (the hint is not sent).
 */
export function earlyHints(raw: readonly string[]): { link: string[] } | undefined {
  const links: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== 'link') continue;
    for (const link of splitList(raw[i + 1]!)) if (LINK_VALUE.test(link)) links.push(link);
  }
  return links.length > 0 ? { link: links } : undefined;
}

/** A comma-separated header value's items; commas inside <…> or "…" do not separate. */
function splitList(value: string): string[] {
  const items: string[] = [];
  let start = 0;
  let quoted = false;
  let bracketed = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === '<') bracketed = true;
    else if (c === '>') bracketed = false;
    else if (c === ',' && !bracketed) {
      items.push(value.slice(start, i).trim());
      start = i + 1;
    }
  }
  items.push(value.slice(start).trim());
  return items.filter(Boolean);
}

/** The raw header list without any header named `name` (lower case). */
export function withoutHeader(raw: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== name) out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

/** RFC 9110 §9.2.2: a request with one of these methods may be sent again safely. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

export function isIdempotent(method: string | undefined): boolean {
  return IDEMPOTENT.has(method ?? '');
}
