import { timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { NextFunction, Request, Response } from 'express';

/**
 * What keeps a web page out of the admin API. A page on another site can make the browser send
 * requests here; three rules stop it:
 * - Host: a name other than localhost or one listed in admin_hostnames is refused. A page whose
 *   own name was rebound to 127.0.0.1 (DNS rebinding) sends its own name as Host. An address
 *   (127.0.0.1:3001, a pod's IP for Kubernetes probes) cannot be rebound and is accepted.
 * - Actions are POSTs with Content-Type application/json: an HTML form cannot send that, and a
 *   script on another origin cannot without a CORS preflight, which is never granted.
 * - The bearer token, when one is set, for everything but the probes.
 */
export function hostGuard(names: () => readonly string[]) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const host = req.headers.host ?? '';
    const name = host
      .replace(/:\d+$/, '')
      .replace(/^\[(.*)\]$/, '$1')
      .toLowerCase();
    if (name === 'localhost' || isIP(name) !== 0 || names().includes(name)) return next();
    res.status(403).json({
      error: `Host ${JSON.stringify(host)} is not this admin API's address, localhost or a name in admin_hostnames; refused (DNS rebinding)`,
    });
  };
}

export function tokenGuard(token: () => string) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (tokenMatches(req.headers.authorization, token())) return next();
    res.setHeader('www-authenticate', 'Bearer');
    res.status(401).json({ error: 'this endpoint requires "Authorization: Bearer <admin_token>"' });
  };
}

/** True when no token is set, or the Authorization header carries it (compared in constant time). */
export function tokenMatches(authorization: string | undefined, token: string): boolean {
  if (token === '') return true;
  const given = /^Bearer (.+)$/i.exec(authorization ?? '')?.[1] ?? '';
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function jsonOnly(req: Request, res: Response, next: NextFunction): void {
  if (req.is('application/json')) return next();
  res.status(415).json({
    error: `${req.method} ${req.path} takes a JSON body with "Content-Type: application/json" (an empty object will do), got ${JSON.stringify(req.headers['content-type'] ?? 'none')}`,
  });
}
