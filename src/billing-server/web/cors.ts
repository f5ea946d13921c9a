/**
 * CORS for the browser wallet. A page of a merchant's site (another origin)
 * asks this billing server for the buyer's credential and may read the
 * buyer's own account, so exactly those calls are opened, and only to the
 * configured origins: `POST /v1/certificates`, `GET /v1/me` and
 * `GET /v1/me/entries`, with the `Authorization` and `Content-Type` request
 * headers. The admin API, deposits and the account pages get no CORS
 * headers at all.
 *
 * The API authenticates with bearer tokens, never cookies, so
 * `Access-Control-Allow-Credentials` is never sent (the account pages'
 * session cookie cannot ride along on a cross-origin call), and a wildcard
 * origin is refused when the server starts: every origin is named.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { MicropayError } from '../../protocol/errors.js';

/** Seconds a browser may cache a preflight answer. */
export const CORS_MAX_AGE = 600;

/** The calls a browser wallet makes, by path: the method each admits. */
const WALLET_CALLS: ReadonlyArray<readonly [RegExp, string]> = [
  [/^\/v1\/certificates\/?$/, 'POST'],
  [/^\/v1\/me(?:\/entries)?\/?$/, 'GET'],
];

/** Request headers a wallet sends besides the CORS-safelisted ones. */
const ALLOW_HEADERS = 'Authorization, Content-Type';

/**
 * Checks and normalises the configured origins: each must be an http(s)
 * origin (`scheme://host[:port]`, no path), written as a browser sends it.
 */
export function parseCorsOrigins(origins: readonly string[] | undefined): string[] {
  if (origins === undefined) return [];
  if (!Array.isArray(origins)) {
    throw new MicropayError(
      'invalid_config',
      '`corsOrigins` must be a list of origins, like ["https://news.example"].',
    );
  }
  return origins.map((o) => {
    if (o === '*' || (typeof o === 'string' && o.includes('*'))) {
      throw new MicropayError(
        'invalid_config',
        'A wildcard CORS origin is not allowed: name each site whose pages run the wallet, like "https://news.example".',
      );
    }
    let u: URL | null = null;
    try {
      u = new URL(String(o));
    } catch {
      u = null;
    }
    if (
      !u ||
      (u.protocol !== 'http:' && u.protocol !== 'https:') ||
      u.username ||
      u.password ||
      u.search ||
      u.hash ||
      u.pathname !== '/' ||
      String(o).replace(/\/$/, '') !== u.origin
    ) {
      throw new MicropayError(
        'invalid_config',
        `CORS origin ${JSON.stringify(String(o).slice(0, 100))} is not an origin: write scheme, host and port only, like "https://news.example" or "http://127.0.0.1:3000".`,
      );
    }
    return u.origin;
  });
}

/** The method a wallet call on `path` admits, or `undefined` for every other path. */
function walletMethod(path: string): string | undefined {
  for (const [re, method] of WALLET_CALLS) if (re.test(path)) return method;
  return undefined;
}

/**
 * Express middleware answering preflights for the wallet's calls and
 * marking their answers readable by the allowed origins. Mount it before
 * the routes. With no origins it does nothing.
 * @example
 * app.use(corsForWallet(['https://news.example']));
 */
export function corsForWallet(origins: readonly string[] | undefined): RequestHandler {
  const allowed = new Set(parseCorsOrigins(origins));
  return (req: Request, res: Response, next: NextFunction) => {
    if (allowed.size === 0) return next();
    const method = walletMethod(req.path);
    if (method === undefined) return next();
    // The answer depends on Origin: shared caches must keep one copy per origin.
    res.append('Vary', 'Origin');
    const origin = req.headers.origin;
    if (origin === undefined || !allowed.has(origin)) return next();
    const preflight = req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
    if (preflight) {
      res.append('Vary', 'Access-Control-Request-Method, Access-Control-Request-Headers');
      if (req.headers['access-control-request-method'] !== method) return next();
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Allow-Methods', method);
      res.setHeader('Access-Control-Allow-Headers', ALLOW_HEADERS);
      res.setHeader('Access-Control-Max-Age', String(CORS_MAX_AGE));
      res.setHeader('Content-Length', '0');
      res.status(204).end();
      return;
    }
    if (req.method === method || (method === 'GET' && req.method === 'HEAD')) {
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Expose-Headers', 'Retry-After');
    }
    next();
  };
}
