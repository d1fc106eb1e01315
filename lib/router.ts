/**
 * Which service a request goes to, by Host and path (several services behind one port). Pure:
 * the front worker asks it before checkout.
 *
 * The order, as nginx's server_name and location rules: first the Host, an exact name before the
 * longest matching wildcard (`*.example.com`); within the services of that Host, the longest
 * matching path prefix, else one of them with no prefix; then the services that name no Host, in
 * the same way. A request nothing matches has no service (404 MPX_NO_SERVICE).
 */

/** One service's `match`, as the config gives it. */
export interface RouteSpec {
  readonly service: string;
  /** Exact names ("api.example.com") and wildcards ("*.example.com"); empty: any Host. */
  readonly hosts: readonly string[];
  /** "/api": matches "/api", "/api/…" and "/api?…", never "/apix". Undefined: any path. */
  readonly pathPrefix: string | undefined;
  /** The prefix is taken off the path the backend sees ("/api/users" → "/users"). */
  readonly stripPrefix: boolean;
}

export interface Route {
  readonly service: string;
  /** The request target for the backend (the prefix taken off if the service says so). */
  readonly path: string;
}

/** A Host header as compared: lower case, without a port or a trailing dot. */
export function hostName(header: string | undefined): string {
  if (!header) return '';
  let host = header.trim().toLowerCase();
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(0, end + 1);
  }
  const colon = host.indexOf(':');
  if (colon !== -1) host = host.slice(0, colon);
  return host.endsWith('.') ? host.slice(0, -1) : host;
}

function prefixMatches(prefix: string, path: string): boolean {
  if (!path.startsWith(prefix)) return false;
  if (path.length === prefix.length || prefix.endsWith('/')) return true;
  const next = path[prefix.length];
  return next === '/' || next === '?';
}

export class Router {
  private readonly exact = new Map<string, RouteSpec[]>();
  /** Wildcard suffixes (".example.com") with their services, the longest first. */
  private readonly wildcards: [string, RouteSpec[]][] = [];
  private readonly anyHost: RouteSpec[] = [];

  constructor(specs: readonly RouteSpec[]) {
    const wild = new Map<string, RouteSpec[]>();
    for (const spec of specs) {
      if (spec.hosts.length === 0) this.anyHost.push(spec);
      for (const raw of spec.hosts) {
        const host = raw.toLowerCase();
        const [map, key] = host.startsWith('*.') ? [wild, host.slice(1)] : [this.exact, host];
        const list = map.get(key) ?? [];
        list.push(spec);
        map.set(key, list);
      }
    }
    this.wildcards = [...wild].sort(([a], [b]) => b.length - a.length);
  }

  route(hostHeader: string | undefined, path: string): Route | undefined {
    const host = hostName(hostHeader);
    const groups = [
      this.exact.get(host),
      this.wildcards.find(([suffix]) => host.endsWith(suffix) && host.length > suffix.length)?.[1],
      this.anyHost,
    ];
    for (const group of groups) {
      if (!group) continue;
      const spec = pick(group, path);
      if (spec) return { service: spec.service, path: rewrite(spec, path) };
    }
    return undefined;
  }
}

/** The longest path prefix that matches, else a service with none. */
function pick(group: readonly RouteSpec[], path: string): RouteSpec | undefined {
  let best: RouteSpec | undefined;
  for (const spec of group) {
    if (spec.pathPrefix === undefined) {
      best ??= spec;
    } else if (
      prefixMatches(spec.pathPrefix, path) &&
      (best?.pathPrefix === undefined || spec.pathPrefix.length > best.pathPrefix.length)
    ) {
      best = spec;
    }
  }
  return best;
}

function rewrite(spec: RouteSpec, path: string): string {
  if (!spec.stripPrefix || spec.pathPrefix === undefined) return path;
  const prefix = spec.pathPrefix.endsWith('/') ? spec.pathPrefix.slice(0, -1) : spec.pathPrefix;
  const rest = path.slice(prefix.length);
  return rest === '' || rest.startsWith('?') ? `/${rest}` : rest;
}
