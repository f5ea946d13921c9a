/**
 * The price manifest: the JSON file `micropay compile` writes and the
 * middleware and the proxy load with their `manifest` option, so that prices
 * are defined in one place. This file holds its types, a strict validator
 * (`parseManifest`, `loadManifest`) and the route lookup (`matchManifest`)
 * that every reader of a manifest shares.
 *
 * ```json
 * { "micropay": "manifest", "version": 1,
 *   "routes": [
 *     { "match": "GET /articles/42", "price": "0.02 USD", "amt": 20000, "cur": "USD",
 *       "duration": 86400, "title": "Article 42", "sources": ["site/index.html:12:5"] },
 *     { "match": "GET /live/*", "dynamic": "livePrice", "sources": ["prices.yaml:4:3"] } ] }
 * ```
 *
 * Routes are tried in order and the first that matches prices the request;
 * the compiler lists the exact URLs priced in pages before the patterns of
 * the rules file. See `match.ts` for the pattern syntax.
 */
import { readFileSync } from 'node:fs';
import { MicropayError } from '../protocol/errors.js';
import { isCurrency, isPrice } from '../protocol/ids.js';
import { formatMoney, parsePrice } from '../protocol/money.js';
import { type CompiledMatch, compileMatch, PatternError } from './match.js';

export { type CompiledMatch, compileMatch } from './match.js';

/** Fields every route has. */
export interface ManifestRouteBase {
  /** `"METHOD /path-pattern"`, e.g. `"GET /articles/42"`, `"GET /live/*"`, `"GET /search?q=cats"`. */
  match: string;
  /** Seconds a receipt lets the buyer fetch the resource again without paying (the offer's `dur`). */
  duration?: number;
  /** What the buyer is paying for, shown by the wallet (the offer's `title`). */
  title?: string;
  /** Where the price was defined, `"site/index.html:12:5"` or `"prices.yaml:3:3"`; for people only. */
  sources?: string[];
}

/** A route with a price fixed at compile time. */
export interface FixedManifestRoute extends ManifestRouteBase {
  /** The price as people read it, `"0.02 USD"`. */
  price: string;
  /** The price in micro-units, `20000`. */
  amt: number;
  /** The price's currency, `"USD"`. */
  cur: string;
  dynamic?: undefined;
}

/** A route whose price a function registered by the merchant under `dynamic` computes per request. */
export interface DynamicManifestRoute extends ManifestRouteBase {
  /** Name the merchant registers the price function under, `"livePrice"`. */
  dynamic: string;
  price?: undefined;
  amt?: undefined;
  cur?: undefined;
}

/** One priced route of the manifest. */
export type ManifestRoute = FixedManifestRoute | DynamicManifestRoute;

/** The whole manifest file. */
export interface PriceManifest {
  micropay: 'manifest';
  version: 1;
  routes: ManifestRoute[];
}

/** A manifest route with its pattern compiled, as `compileManifest` returns it. */
export interface CompiledManifestRoute {
  route: ManifestRoute;
  matcher: CompiledMatch;
}

/** A name for a dynamic price function: a letter or `_`, then up to 127 of `[A-Za-z0-9_.:-]`. */
export const DYNAMIC_NAME = /^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$/;
/** Largest `duration` accepted: ten years in seconds. */
export const MAX_DURATION = 10 * 366 * 86400;
const MAX_TITLE = 512;

const TOP_KEYS = new Set(['micropay', 'version', 'routes']);
const ROUTE_KEYS = new Set(['match', 'price', 'amt', 'cur', 'dynamic', 'duration', 'title', 'sources']);

function fail(source: string, path: string, why: string, cause?: unknown): MicropayError {
  return new MicropayError('invalid_manifest', `Price manifest ${source}: ${path} ${why}.`, { cause });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function shown(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** True for a whole number of seconds in `[0, MAX_DURATION]`. */
export function isDuration(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= MAX_DURATION;
}

function parseRoute(raw: unknown, at: string, source: string): ManifestRoute {
  if (!isObject(raw)) throw fail(source, at, `must be an object, got ${shown(raw)}`);
  for (const key of Object.keys(raw)) {
    if (!ROUTE_KEYS.has(key)) {
      throw fail(source, `${at}.${key}`, `is not a route field (known: ${[...ROUTE_KEYS].join(', ')})`);
    }
  }
  const { match, price, amt, cur, dynamic, duration, title, sources } = raw;
  if (typeof match !== 'string')
    throw fail(source, `${at}.match`, `must be a string like "GET /articles/42"`);
  let matcher: CompiledMatch;
  try {
    matcher = compileMatch(match);
  } catch (e) {
    if (e instanceof PatternError)
      throw fail(source, `${at}.match`, `${shown(match)} is not valid: ${e.message}`);
    throw e;
  }
  const base: ManifestRouteBase = { match: matcher.match };
  if (duration !== undefined) {
    if (!isDuration(duration)) {
      throw fail(
        source,
        `${at}.duration`,
        `must be a whole number of seconds from 0 to ${MAX_DURATION}, got ${shown(duration)}`,
      );
    }
    base.duration = duration;
  }
  if (title !== undefined) {
    if (typeof title !== 'string' || title.length > MAX_TITLE) {
      throw fail(source, `${at}.title`, `must be a string of at most ${MAX_TITLE} characters`);
    }
    base.title = title;
  }
  if (sources !== undefined) {
    if (!Array.isArray(sources) || !sources.every((s) => typeof s === 'string')) {
      throw fail(source, `${at}.sources`, 'must be an array of strings');
    }
    base.sources = [...sources];
  }

  if (dynamic !== undefined) {
    for (const k of ['price', 'amt', 'cur'] as const) {
      if (raw[k] !== undefined)
        throw fail(source, `${at}.${k}`, 'must not be given with "dynamic" (a route is fixed or dynamic)');
    }
    if (typeof dynamic !== 'string' || !DYNAMIC_NAME.test(dynamic)) {
      throw fail(source, `${at}.dynamic`, `must be a function name like "livePrice", got ${shown(dynamic)}`);
    }
    return { match: base.match, dynamic, ...rest(base) };
  }

  if (price === undefined && amt === undefined && cur === undefined) {
    throw fail(source, at, 'needs a price ("price", or "amt" and "cur") or "dynamic"');
  }
  let money: { amt: number; cur: string } | undefined;
  if (price !== undefined) {
    if (typeof price !== 'string')
      throw fail(source, `${at}.price`, `must be a string like "0.02 USD", got ${shown(price)}`);
    try {
      money = parsePrice(price);
    } catch (e) {
      throw fail(source, `${at}.price`, `${shown(price)} is not a price like "0.02 USD"`, e);
    }
  }
  if (amt !== undefined || cur !== undefined || money === undefined) {
    if (!isPrice(amt))
      throw fail(source, `${at}.amt`, `must be an integer of micro-units >= 1, got ${shown(amt)}`);
    if (!isCurrency(cur))
      throw fail(source, `${at}.cur`, `must be a currency code like "USD", got ${shown(cur)}`);
    if (money !== undefined && (money.amt !== amt || money.cur !== cur)) {
      throw fail(
        source,
        `${at}.price`,
        `${shown(price)} disagrees with "amt": ${amt} and "cur": ${shown(cur)} (${formatMoney(amt, cur)})`,
      );
    }
    money = { amt, cur };
  }
  return {
    match: base.match,
    price: formatMoney(money.amt, money.cur),
    amt: money.amt,
    cur: money.cur,
    ...rest(base),
  };
}

function rest(base: ManifestRouteBase): Omit<ManifestRouteBase, 'match'> {
  const { match: _match, ...others } = base;
  return others;
}

/**
 * Validates a parsed manifest and returns it normalised (every fixed route
 * carries `price`, `amt` and `cur`). Unknown fields, a bad route and a
 * `match` listed twice are errors: `MicropayError` code `invalid_manifest`
 * whose message names `source` and the JSON path of the field
 * (`$.routes[2].amt`).
 * @example parseManifest(JSON.parse(text), 'prices.json').routes[0].amt
 */
export function parseManifest(json: unknown, source: string): PriceManifest {
  if (!isObject(json)) throw fail(source, '$', 'must be a JSON object');
  for (const key of Object.keys(json)) {
    if (!TOP_KEYS.has(key))
      throw fail(source, `$.${key}`, 'is not a manifest field (known: micropay, version, routes)');
  }
  if (json.micropay !== 'manifest')
    throw fail(source, '$.micropay', `must be "manifest", got ${shown(json.micropay)}`);
  if (json.version !== 1) throw fail(source, '$.version', `must be 1, got ${shown(json.version)}`);
  if (!Array.isArray(json.routes)) throw fail(source, '$.routes', 'must be an array of routes');
  const seen = new Map<string, number>();
  const routes = json.routes.map((raw, i) => {
    const route = parseRoute(raw, `$.routes[${i}]`, source);
    const first = seen.get(route.match);
    if (first !== undefined) {
      throw fail(source, `$.routes[${i}].match`, `repeats ${shown(route.match)} of $.routes[${first}]`);
    }
    seen.set(route.match, i);
    return route;
  });
  return { micropay: 'manifest', version: 1, routes };
}

/**
 * Reads and validates a manifest file (synchronously: it runs once, when a
 * middleware or proxy is built). Throws `MicropayError` code
 * `invalid_manifest` naming the file, also when it cannot be read or is not JSON.
 * @example const manifest = loadManifest('dist/micropay-manifest.json');
 */
export function loadManifest(path: string): PriceManifest {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new MicropayError(
      'invalid_manifest',
      `Price manifest ${path} cannot be read: ${(e as Error).message}.`,
      {
        cause: e,
      },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new MicropayError(
      'invalid_manifest',
      `Price manifest ${path} is not valid JSON: ${(e as Error).message}.`,
      {
        cause: e,
      },
    );
  }
  return parseManifest(json, path);
}

/** Compiles every route's pattern once, for `matchManifest`. */
export function compileManifest(manifest: PriceManifest): CompiledManifestRoute[] {
  return manifest.routes.map((route) => ({ route, matcher: compileMatch(route.match) }));
}

/**
 * Finds the route that prices a request: the first whose method equals
 * `method` and whose pattern matches `target` (path and query as received).
 * Returns it with its `:param` values, or `null` for a free resource.
 * @example matchManifest(compileManifest(m), 'GET', '/live/scores?x=1') // { route, params: { '*': 'scores' } }
 */
export function matchManifest(
  routes: readonly CompiledManifestRoute[],
  method: string,
  target: string,
): { route: ManifestRoute; params: Record<string, string> } | null {
  for (const { route, matcher } of routes) {
    const params = matcher.test(method, target);
    if (params) return { route, params };
  }
  return null;
}
