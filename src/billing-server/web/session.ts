/**
 * Sessions of the account pages: stateless, HMAC-signed cookies.
 *
 * Signing in posts the API token once; the answer sets a cookie holding
 * `{ role, subject, token id, expiry, CSRF nonce }` and an HMAC-SHA256 over
 * it. The token itself is never in the cookie, a URL, a page or a log. The
 * HMAC key is derived from the admin token (HMAC with a fixed label), so
 * every instance sharing the admin token accepts the same cookies without
 * storing anything (nothing in process memory another instance would need),
 * and changing the admin token signs everybody out. Each request re-checks
 * that the token the session came from is not revoked and that its account
 * still exists, so revoking a token ends its sessions at once.
 *
 * The cookie is `HttpOnly`, `SameSite=Strict`, `Path=/`, and over HTTPS
 * `Secure` with the `__Host-` name prefix (behind a TLS-terminating proxy,
 * set Express's `trust proxy` so `req.secure` is true). Every form POST
 * carries a CSRF token derived from the session's nonce, and every POST
 * (sign-in included) must come from this origin (`Sec-Fetch-Site`, `Origin`).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Request, Response } from 'express';

/** Who a session is for. */
export interface Session {
  role: 'admin' | 'buyer' | 'merchant';
  /** Account id (`admin` for the operator). */
  subject: string;
  /** Id of the API token signed in with (`admin` for the admin token). */
  tokenId: string;
  /** Expiry, Unix seconds. */
  exp: number;
  /** Random nonce the CSRF token is derived from. */
  nonce: string;
}

/** How long a session lasts, seconds. */
export const SESSION_SECONDS = 8 * 3600;
const COOKIE = 'mp_session';
const SECURE_COOKIE = '__Host-mp_session';

const b64 = (b: Buffer | string) => Buffer.from(b).toString('base64url');

function equal(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The cookie name for this request: `__Host-` prefixed over HTTPS. */
function cookieName(req: Request): string {
  return req.secure ? SECURE_COOKIE : COOKIE;
}

/** One cookie's value from the `Cookie` header. */
function readCookie(req: Request, name: string): string | undefined {
  const h = req.headers.cookie;
  if (!h) return undefined;
  for (const part of h.split(';')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    if (part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

/** Signs and checks session cookies and CSRF tokens with a key derived from the admin token's hash. */
export class SessionKeys {
  private readonly key: Buffer;

  constructor(adminTokenHash: string) {
    this.key = createHmac('sha256', adminTokenHash).update('micropay account pages: session key v1').digest();
  }

  private mac(label: string, data: string): string {
    return createHmac('sha256', this.key).update(`${label}:${data}`).digest('base64url');
  }

  /** A new session (fresh nonce). */
  create(role: Session['role'], subject: string, tokenId: string, now: number): Session {
    return { role, subject, tokenId, exp: now + SESSION_SECONDS, nonce: b64(randomBytes(16)) };
  }

  /** The signed cookie value of a session. */
  seal(s: Session): string {
    const payload = b64(JSON.stringify([s.role, s.subject, s.tokenId, s.exp, s.nonce]));
    return `v1.${payload}.${this.mac('session', payload)}`;
  }

  /** The session in a cookie value, if its signature holds and it has not expired. */
  open(value: string | undefined, now: number): Session | null {
    if (!value || value.length > 1024) return null;
    const m = /^v1\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{43})$/.exec(value);
    if (!m || !equal(m[2]!, this.mac('session', m[1]!))) return null;
    let v: unknown;
    try {
      v = JSON.parse(Buffer.from(m[1]!, 'base64url').toString('utf8'));
    } catch {
      return null;
    }
    if (!Array.isArray(v) || v.length !== 5) return null;
    const [role, subject, tokenId, exp, nonce] = v as unknown[];
    if (role !== 'admin' && role !== 'buyer' && role !== 'merchant') return null;
    if (typeof subject !== 'string' || typeof tokenId !== 'string' || typeof nonce !== 'string') return null;
    if (typeof exp !== 'number' || exp <= now) return null;
    return { role, subject, tokenId, exp, nonce };
  }

  /** The CSRF token of a session (what its forms carry). */
  csrf(s: Session): string {
    return this.mac('csrf', s.nonce);
  }

  /** Whether a form's CSRF token is the session's. */
  checkCsrf(s: Session, token: unknown): boolean {
    return typeof token === 'string' && token.length < 100 && equal(token, this.csrf(s));
  }

  /** The session cookie of a request, checked (signature and expiry only). */
  fromRequest(req: Request, now: number): Session | null {
    return this.open(readCookie(req, cookieName(req)), now);
  }

  /** Sets the session cookie. */
  setCookie(req: Request, res: Response, s: Session, now: number): void {
    res.append('Set-Cookie', cookieText(req, this.seal(s), Math.max(0, s.exp - now)));
  }
}

function cookieText(req: Request, value: string, maxAge: number): string {
  const attrs = [`${cookieName(req)}=${value}`, 'Path=/', `Max-Age=${maxAge}`, 'HttpOnly', 'SameSite=Strict'];
  if (req.secure) attrs.push('Secure');
  return attrs.join('; ');
}

/** Clears the session cookie. */
export function clearCookie(req: Request, res: Response): void {
  res.append('Set-Cookie', cookieText(req, '', 0));
}

/**
 * Whether a POST comes from a page of this origin: `Sec-Fetch-Site` (when the
 * browser sends it) is `same-origin` or `none` (typed by the user), and
 * `Origin` (when sent) is this server's. Clients that send neither (scripts,
 * curl) pass; they carry no victim's cookie anyway.
 */
export function sameOrigin(req: Request): boolean {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return false;
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  return origin === `${req.protocol}://${req.headers.host ?? ''}`;
}
