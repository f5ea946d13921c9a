/**
 * The configuration of micropay-proxy: loading (YAML or JSON), `${ENV}`
 * interpolation, and validation into a complete `ProxyConfig` with every
 * default filled in. Every problem is a `MicropayError` with code
 * `invalid_config` whose message names the file and the field, e.g.
 * `micropay.yaml: routes[2].price: "two cents" is not a price ...`, so a
 * person can fix it without reading this code.
 *
 * Interpolation happens on values after parsing, so a token holding YAML
 * syntax can never change the file's structure: `${NAME}` is the variable
 * (an unset one is an error), `${NAME:-text}` has a default, `$${` is a
 * literal `${`. Relative paths (`manifest`, `receipts.keyFile`, `tls.*`)
 * are resolved against the configuration file's directory.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, resolve } from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { loadManifest } from '../compile/manifest.js';
import { compileMatch } from '../compile/match.js';
import { isMicropayError, MicropayError } from '../protocol/errors.js';
import { isId } from '../protocol/ids.js';
import { parsePrice } from '../protocol/money.js';

/** Environment variables used for `${NAME}` interpolation. */
export type ProxyEnv = Record<string, string | undefined>;

/** A priced (or explicitly free) route, in the order given: the first match wins. */
export interface ProxyRoute {
  /** `"METHOD /path-pattern"`: `:param` segments and a trailing `*` (see `micropay compile`). */
  match: string;
  /** The price (`"0.002 USD"`), or `null` for a route that stays free even if a later route would price it. */
  price: string | null;
  /** Seconds a receipt lets the buyer fetch the resource again. Default: `receipts.duration` (3600). */
  duration?: number;
  /** What the buyer is paying for, shown by the wallet. */
  title?: string;
  /** Shown on the paywall page. */
  description?: string;
}

/** Where requests go. The first upstream whose `host` and `pathPrefix` both match serves the request. */
export interface ProxyUpstream {
  /** Base URL of the site, `http://127.0.0.1:3000`; the request's path is appended to its path. */
  url: string;
  /** Host header this upstream serves (`news.example`, `news.example:8080`, `*.example`). Default: any. */
  host?: string;
  /** Path prefix this upstream serves (`/api/`). Default: any. The prefix is not stripped. */
  pathPrefix?: string;
  /** Send the upstream's own host in the `Host` header instead of the client's. Default `false`. */
  changeOrigin: boolean;
}

/** Replay marks and spend tallies (and the deposit queue). */
export type ProxyStoreConfig =
  | { kind: 'memory'; maxEntries?: number; maxTallies?: number }
  | { kind: 'redis'; url: string; prefix: string };

/** A complete, validated configuration: what `parseProxyConfig` and `loadProxyConfig` return. */
export interface ProxyConfig {
  /** Where it came from (the file path), for messages. */
  source: string;
  /** Where to listen. `port` 0 picks a free port. */
  listen: { host: string; port: number };
  /** This merchant's account id at its billing server. */
  merchant: string;
  /** Display name in offers and on the paywall page. */
  name?: string;
  /** The billing server and this merchant's API token. */
  billing: { url: string; token: string };
  /** The sites behind the proxy, tried in order (one entry when `upstream` was given). */
  upstreams: ProxyUpstream[];
  /** Priced routes, first match wins; unmatched requests are free. */
  routes: ProxyRoute[];
  /** Absolute path of a price manifest from `micropay compile`, tried after `routes`. */
  manifest?: string;
  /** The payment store; `redis` also holds the durable deposit queue. */
  store: ProxyStoreConfig;
  /** The receipt key (`keyFile` absolute, or `key` a seed) and default receipt lifetime. */
  receipts: { keyFile?: string; key?: string; duration?: number };
  /** Orders of this amount (micro-units) or more are approved online. */
  onlineThreshold?: number;
  /** Issuers whose credentials are taken. Default: the billing server's issuer and peers. */
  accepts?: string[];
  /** Freshness window of orders, seconds. */
  freshness?: number;
  /** Clock skew allowed, seconds. */
  skew?: number;
  /** Accept orders up to `max` micro-units when the billing server must approve and is down. */
  failOpen?: { max: number };
  /** Deposit batching. */
  deposits: {
    maxBatch?: number;
    maxDelayMs?: number;
    retryBaseMs?: number;
    retryMaxMs?: number;
    drainTimeoutMs?: number;
  };
  /** Keep the `X-Forwarded-*` headers clients send (behind a trusted load balancer) and append to them. */
  trustProxy: boolean;
  /** Pass what was paid upstream as `Micropay-Paid-*` headers. */
  paidHeaders: boolean;
  /** Serve HTTPS with these PEM files (absolute paths). */
  tls?: { cert: string; key: string };
  /** Longest wait for requests in flight at shutdown, ms. */
  shutdownTimeoutMs: number;
  /**
   * Longest the upstream may stay silent, ms: before its response headers (the client then gets
   * `504 upstream_timeout`, and nothing is charged) and while its body is being passed on (the
   * client's connection is then cut, as when the upstream dies mid-body). A client that stops
   * reading is not the upstream's silence, and an open websocket tunnel is never timed out. Checked
   * a few times per period: a silent upstream is given up after this plus up to a quarter of it (at
   * most a second more). 0 waits for ever. Default 60,000 (nginx's `proxy_read_timeout`).
   */
  upstreamTimeoutMs: number;
  /**
   * Who may read `/_micropay/metrics`: with `token`, any client sending it as a bearer token (and
   * only those); without, only clients on this machine that did not come through a proxy.
   */
  metrics: { token?: string };
  /**
   * Log one line per HTTP request at `info` (websocket upgrades are not logged): method, path (no
   * query string), status, outcome, ms, and for a paid one whether an order or a receipt paid it,
   * the amount, currency and order id. Never a header, token or query. Default `false`.
   */
  accessLog: boolean;
  /** pino log level. */
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /**
   * The browser wallet script: served by the proxy at `/_micropay/wallet.js` (default) or this path,
   * loaded by the paywall page from this URL; `false` serves none.
   */
  walletScript?: string | false;
}

/** The fields a configuration file may have at its top (each is described in docs/proxy.md). */
export const PROXY_CONFIG_FIELDS = [
  'listen',
  'merchant',
  'name',
  'billing',
  'upstream',
  'upstreams',
  'routes',
  'manifest',
  'store',
  'receipts',
  'onlineThreshold',
  'accepts',
  'freshness',
  'skew',
  'failOpen',
  'deposits',
  'trustProxy',
  'paidHeaders',
  'tls',
  'shutdownTimeoutMs',
  'upstreamTimeoutMs',
  'metrics',
  'accessLog',
  'logLevel',
  'walletScript',
] as const;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const DEPOSIT_KEYS = ['maxBatch', 'maxDelayMs', 'retryBaseMs', 'retryMaxMs', 'drainTimeoutMs'] as const;
const MAX_SECONDS = 10 * 366 * 86400;

/** The default configuration file name, looked up in the current directory. */
export const DEFAULT_CONFIG_FILE = 'micropay.yaml';

class ConfigProblem extends Error {
  constructor(
    readonly path: string,
    readonly why: string,
  ) {
    super(why);
  }
}

function shown(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const join = (path: string, key: string | number) =>
  typeof key === 'number' ? `${path}[${key}]` : path ? `${path}.${key}` : key;

// ---------------------------------------------------------------------------------------------
// Interpolation

const VAR = /\$\{([^}]*)\}/g;
const NAME = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([\s\S]*))?$/;

function interpolateString(s: string, path: string, env: ProxyEnv): string {
  if (!s.includes('${')) return s;
  if (s.replace(VAR, '').includes('${')) {
    throw new ConfigProblem(path, `${shown(s)} has a "\${" without its closing "}"`);
  }
  let out = '';
  let last = 0;
  for (const m of s.matchAll(VAR)) {
    const at = m.index;
    if (at > 0 && s[at - 1] === '$') {
      // `$${X}` is the literal text `${X}`.
      out += s.slice(last, at - 1) + m[0];
      last = at + m[0].length;
      continue;
    }
    const parts = NAME.exec(m[1]!);
    if (!parts) {
      throw new ConfigProblem(
        path,
        `${shown(m[0])} is not a variable reference: write \${NAME} or \${NAME:-default} (or $\${ for a literal "\${")`,
      );
    }
    const value = env[parts[1]!] ?? parts[2];
    if (value === undefined) {
      throw new ConfigProblem(
        path,
        `the environment variable ${parts[1]} is not set. Set it, or give a default with \${${parts[1]}:-value}`,
      );
    }
    out += s.slice(last, at) + value;
    last = at + m[0].length;
  }
  return out + s.slice(last);
}

function interpolate(v: unknown, path: string, env: ProxyEnv): unknown {
  if (typeof v === 'string') return interpolateString(v, path, env);
  if (Array.isArray(v)) return v.map((x, i) => interpolate(x, join(path, i), env));
  if (isObject(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = interpolate(x, join(path, k), env);
    return out;
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Field readers

function object(v: unknown, path: string, known: readonly string[]): Record<string, unknown> {
  if (!isObject(v)) throw new ConfigProblem(path, `must be a mapping (key: value), got ${shown(v)}`);
  for (const k of Object.keys(v)) {
    if (!known.includes(k))
      throw new ConfigProblem(join(path, k), `is not a known field here (known: ${known.join(', ')})`);
  }
  return v;
}

function string(v: unknown, path: string, what = 'a string'): string {
  if (typeof v !== 'string' || v.length === 0)
    throw new ConfigProblem(path, `must be ${what}, got ${shown(v)}`);
  return v;
}

function optString(v: unknown, path: string): string | undefined {
  return v === undefined ? undefined : string(v, path);
}

function bool(v: unknown, path: string, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === 'false') return v === 'true';
  throw new ConfigProblem(path, `must be true or false, got ${shown(v)}`);
}

function int(v: unknown, path: string, min: number, max: number, unit: string): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigProblem(path, `must be a whole number of ${unit} from ${min} to ${max}, got ${shown(v)}`);
  }
  return n;
}

function optInt(v: unknown, path: string, min: number, max: number, unit: string): number | undefined {
  return v === undefined ? undefined : int(v, path, min, max, unit);
}

function amount(v: unknown, path: string): number {
  if (typeof v === 'number' || (typeof v === 'string' && /^\d+$/.test(v))) {
    return int(v, path, 1, Number.MAX_SAFE_INTEGER, 'micro-units');
  }
  try {
    return parsePrice(v).amt;
  } catch (e) {
    throw new ConfigProblem(
      path,
      `must be a price like "1 USD" or a whole number of micro-units: ${(e as Error).message}`,
    );
  }
}

function httpUrl(v: unknown, path: string, what: string): string {
  const s = string(v, path, what);
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new ConfigProblem(path, `is not a URL: ${shown(s)} (expected ${what})`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new ConfigProblem(path, `must be an http:// or https:// URL, got ${shown(s)}`);
  return s;
}

function readableFile(v: unknown, path: string, baseDir: string, what: string): string {
  const file = resolve(baseDir, string(v, path, what));
  try {
    accessSync(file, constants.R_OK);
    if (!statSync(file).isFile()) throw new Error('not a file');
  } catch (e) {
    throw new ConfigProblem(path, `cannot read ${shown(file)}: ${(e as Error).message}`);
  }
  return file;
}

// ---------------------------------------------------------------------------------------------
// Sections

function parseListen(v: unknown, path: string): { host: string; port: number } {
  if (v === undefined) return { host: '127.0.0.1', port: 8080 };
  const text = typeof v === 'number' ? String(v) : typeof v === 'string' ? v.trim() : null;
  const usage = 'must be "host:port" (like "127.0.0.1:8080", "[::1]:8080"), or a port for every interface';
  if (text === null) throw new ConfigProblem(path, `${usage}, got ${shown(v)}`);
  const m = /^(?:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)?:)?(\d{1,5})$/.exec(text);
  if (!m) throw new ConfigProblem(path, `${usage}, got ${shown(v)}`);
  const port = Number(m[2]);
  if (port > 65535) throw new ConfigProblem(path, `port ${port} is above 65535`);
  const host = m[1] === undefined ? '0.0.0.0' : m[1].replace(/^\[|\]$/g, '');
  return { host, port };
}

function parseBilling(v: unknown, path: string): { url: string; token: string } {
  if (v === undefined) throw new ConfigProblem(path, 'is required: { url, token } of your billing server');
  const o = object(v, path, ['url', 'token']);
  return {
    url: httpUrl(o.url, join(path, 'url'), 'the billing server URL, like http://127.0.0.1:4000'),
    token: string(o.token, join(path, 'token'), 'the merchant API token your billing server issued'),
  };
}

const HOST =
  /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:\d{1,5})?$/;

function parseUpstreams(raw: Record<string, unknown>): ProxyUpstream[] {
  if (raw.upstream !== undefined && raw.upstreams !== undefined) {
    throw new ConfigProblem('upstreams', 'cannot be given together with upstream: keep one of them');
  }
  if (raw.upstream !== undefined) {
    return [
      {
        url: httpUrl(raw.upstream, 'upstream', 'the URL of the site, like http://127.0.0.1:3000'),
        changeOrigin: false,
      },
    ];
  }
  if (raw.upstreams === undefined) {
    throw new ConfigProblem(
      'upstream',
      'is required: the URL of the site behind the proxy (or upstreams: [{ host, pathPrefix, url }])',
    );
  }
  if (!Array.isArray(raw.upstreams) || raw.upstreams.length === 0) {
    throw new ConfigProblem('upstreams', 'must be a non-empty list of { url, host?, pathPrefix? }');
  }
  return raw.upstreams.map((u, i) => {
    const at = join('upstreams', i);
    const o = object(u, at, ['url', 'host', 'pathPrefix', 'changeOrigin']);
    const up: ProxyUpstream = {
      url: httpUrl(o.url, join(at, 'url'), 'the URL of the site'),
      changeOrigin: bool(o.changeOrigin, join(at, 'changeOrigin'), false),
    };
    if (o.host !== undefined) {
      const h = string(o.host, join(at, 'host'));
      if (!HOST.test(h))
        throw new ConfigProblem(
          join(at, 'host'),
          `must be a host name like "news.example", "news.example:8080" or "*.example", got ${shown(h)}`,
        );
      up.host = h.toLowerCase();
    }
    if (o.pathPrefix !== undefined) {
      const p = string(o.pathPrefix, join(at, 'pathPrefix'));
      if (!p.startsWith('/'))
        throw new ConfigProblem(join(at, 'pathPrefix'), `must start with "/", got ${shown(p)}`);
      up.pathPrefix = p;
    }
    return up;
  });
}

function parseRoutes(v: unknown): ProxyRoute[] {
  if (v === undefined) return [];
  if (!Array.isArray(v))
    throw new ConfigProblem('routes', 'must be a list of { match, price, duration?, title? }');
  const seen = new Map<string, number>();
  return v.map((r, i) => {
    const at = join('routes', i);
    const o = object(r, at, ['match', 'price', 'duration', 'title', 'description']);
    const matchText = string(o.match, join(at, 'match'), 'a route like "GET /articles/*"');
    let normalised: string;
    try {
      normalised = compileMatch(matchText).match;
    } catch (e) {
      throw new ConfigProblem(
        join(at, 'match'),
        `${shown(matchText)} is not a route: ${(e as Error).message}`,
      );
    }
    const first = seen.get(normalised);
    if (first !== undefined) {
      throw new ConfigProblem(join(at, 'match'), `repeats routes[${first}].match ${shown(normalised)}`);
    }
    seen.set(normalised, i);
    if (o.price === undefined) {
      throw new ConfigProblem(join(at, 'price'), 'is required: a price like "0.002 USD", or null for free');
    }
    let price: string | null = null;
    if (o.price !== null && o.price !== 'free') {
      try {
        parsePrice(o.price);
      } catch (e) {
        throw new ConfigProblem(
          join(at, 'price'),
          `${shown(o.price)} is not a price: ${(e as Error).message}`,
        );
      }
      price = String(o.price);
    }
    const route: ProxyRoute = { match: normalised, price };
    const duration = optInt(o.duration, join(at, 'duration'), 0, MAX_SECONDS, 'seconds');
    if (duration !== undefined) route.duration = duration;
    const title = optString(o.title, join(at, 'title'));
    if (title !== undefined) route.title = title;
    const description = optString(o.description, join(at, 'description'));
    if (description !== undefined) route.description = description;
    return route;
  });
}

function parseStore(v: unknown, merchant: string): ProxyStoreConfig {
  if (v === undefined || v === 'memory') return { kind: 'memory' };
  const o = object(v, 'store', ['memory', 'redis', 'prefix']);
  if (o.redis !== undefined) {
    if (o.memory !== undefined)
      throw new ConfigProblem('store.memory', 'cannot be given together with store.redis');
    const url = string(o.redis, 'store.redis', 'a Redis URL like redis://127.0.0.1:6379');
    try {
      const u = new URL(url);
      if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error();
    } catch {
      throw new ConfigProblem('store.redis', `must be a redis:// or rediss:// URL, got ${shown(url)}`);
    }
    const prefix = o.prefix === undefined ? `micropay:${merchant}:` : string(o.prefix, 'store.prefix');
    if (/[{}]/.test(prefix)) throw new ConfigProblem('store.prefix', 'must not contain "{" or "}"');
    return { kind: 'redis', url, prefix };
  }
  if (o.prefix !== undefined) throw new ConfigProblem('store.prefix', 'only applies to store.redis');
  const m =
    o.memory === undefined || o.memory === true
      ? {}
      : object(o.memory, 'store.memory', ['maxEntries', 'maxTallies']);
  const out: ProxyStoreConfig = { kind: 'memory' };
  const maxEntries = optInt(m.maxEntries, 'store.memory.maxEntries', 1, 1e8, 'entries');
  if (maxEntries !== undefined) out.maxEntries = maxEntries;
  const maxTallies = optInt(m.maxTallies, 'store.memory.maxTallies', 1, 1e8, 'tallies');
  if (maxTallies !== undefined) out.maxTallies = maxTallies;
  return out;
}

function parseReceipts(v: unknown, baseDir: string): ProxyConfig['receipts'] {
  if (v === undefined) return {};
  const o = object(v, 'receipts', ['keyFile', 'key', 'duration']);
  const out: ProxyConfig['receipts'] = {};
  if (o.key !== undefined) {
    const key = string(o.key, 'receipts.key', 'the 32-byte seed of the receipt key (hex or base64url)');
    if (!/^([0-9a-fA-F]{64}|[A-Za-z0-9_-]{43})$/.test(key.trim())) {
      throw new ConfigProblem(
        'receipts.key',
        'must be a 32-byte seed: 64 hex digits or 43 base64url characters',
      );
    }
    out.key = key.trim();
  }
  if (o.keyFile !== undefined) {
    const file = resolve(baseDir, string(o.keyFile, 'receipts.keyFile', 'a file path'));
    if (existsSync(file)) readableFile(file, 'receipts.keyFile', baseDir, 'a file path');
    out.keyFile = file;
  }
  const duration = optInt(o.duration, 'receipts.duration', 0, MAX_SECONDS, 'seconds');
  if (duration !== undefined) out.duration = duration;
  return out;
}

function parseMetrics(v: unknown): ProxyConfig['metrics'] {
  if (v === undefined) return {};
  const o = object(v, 'metrics', ['token']);
  if (o.token === undefined) return {};
  // The token is a secret: no message here repeats it.
  if (typeof o.token !== 'string' || o.token.length < 16 || /\s/.test(o.token)) {
    throw new ConfigProblem(
      'metrics.token',
      'must be a secret of 16 or more characters without spaces (openssl rand -hex 24 makes one)',
    );
  }
  return { token: o.token };
}

/**
 * Validates a configuration object (as parsed from YAML or JSON) into a complete `ProxyConfig`.
 * `${NAME}` in string values is taken from `env`. `source` names the file in messages, and relative
 * paths are resolved against its directory when it is a file (else the current directory).
 * Throws `MicropayError` `invalid_config` naming the field.
 * @example
 * const config = parseProxyConfig({ merchant: 'news-site', upstream: 'http://127.0.0.1:3000',
 *   billing: { url: 'http://127.0.0.1:4000', token: '${MERCHANT_TOKEN}' },
 *   routes: [{ match: 'GET /articles/*', price: '0.002 USD' }] }, 'inline', process.env);
 */
export function parseProxyConfig(
  input: unknown,
  source = 'config',
  env: ProxyEnv = process.env,
): ProxyConfig {
  let baseDir = process.cwd();
  try {
    if (statSync(source).isFile()) baseDir = dirname(resolve(source));
  } catch {
    // not a file: relative paths are relative to the current directory
  }
  try {
    return parse(input, source, env, baseDir);
  } catch (e) {
    if (e instanceof ConfigProblem) {
      const why = e.why.replace(/\.+$/, '');
      throw new MicropayError('invalid_config', `${source}: ${e.path ? `${e.path}: ` : ''}${why}.`);
    }
    throw e;
  }
}

function parse(input: unknown, source: string, env: ProxyEnv, baseDir: string): ProxyConfig {
  if (!isObject(input)) {
    throw new ConfigProblem(
      '',
      `the configuration must be a mapping of fields (merchant, billing, upstream, routes...), got ${shown(input)}`,
    );
  }
  const raw = object(interpolate(input, '', env), '', PROXY_CONFIG_FIELDS);
  if (!isId(raw.merchant)) {
    throw new ConfigProblem(
      'merchant',
      `must be your merchant account id at the billing server (1 to 128 characters [A-Za-z0-9._:-]), got ${shown(raw.merchant)}`,
    );
  }
  const merchant = raw.merchant;
  const config: ProxyConfig = {
    source,
    listen: parseListen(raw.listen, 'listen'),
    merchant,
    billing: parseBilling(raw.billing, 'billing'),
    upstreams: parseUpstreams(raw),
    routes: parseRoutes(raw.routes),
    store: parseStore(raw.store, merchant),
    receipts: parseReceipts(raw.receipts, baseDir),
    deposits: {},
    trustProxy: bool(raw.trustProxy, 'trustProxy', false),
    paidHeaders: bool(raw.paidHeaders, 'paidHeaders', false),
    shutdownTimeoutMs: int(
      raw.shutdownTimeoutMs ?? 10_000,
      'shutdownTimeoutMs',
      0,
      3_600_000,
      'milliseconds',
    ),
    upstreamTimeoutMs: int(
      raw.upstreamTimeoutMs ?? 60_000,
      'upstreamTimeoutMs',
      0,
      3_600_000,
      'milliseconds',
    ),
    metrics: parseMetrics(raw.metrics),
    accessLog: bool(raw.accessLog, 'accessLog', false),
    logLevel: 'info',
  };
  if (raw.name !== undefined) config.name = string(raw.name, 'name');
  if (raw.manifest !== undefined) {
    const file = readableFile(
      raw.manifest,
      'manifest',
      baseDir,
      'the path of a manifest from micropay compile',
    );
    try {
      loadManifest(file);
    } catch (e) {
      throw new ConfigProblem('manifest', isMicropayError(e) ? e.message.replace(/\.$/, '') : String(e));
    }
    config.manifest = file;
  }
  if (raw.onlineThreshold !== undefined)
    config.onlineThreshold = amount(raw.onlineThreshold, 'onlineThreshold');
  if (raw.accepts !== undefined) {
    if (!Array.isArray(raw.accepts) || raw.accepts.length === 0)
      throw new ConfigProblem('accepts', 'must be a non-empty list of issuer ids');
    raw.accepts.forEach((a, i) => {
      if (!isId(a)) throw new ConfigProblem(join('accepts', i), `is not an issuer id: ${shown(a)}`);
    });
    config.accepts = raw.accepts as string[];
  }
  const freshness = optInt(raw.freshness, 'freshness', 1, 86_400, 'seconds');
  if (freshness !== undefined) config.freshness = freshness;
  const skew = optInt(raw.skew, 'skew', 0, 3600, 'seconds');
  if (skew !== undefined) config.skew = skew;
  if (raw.failOpen !== undefined && raw.failOpen !== false && raw.failOpen !== 'false') {
    const o = object(raw.failOpen, 'failOpen', ['max']);
    if (o.max === undefined)
      throw new ConfigProblem(
        'failOpen.max',
        'is required: the largest price accepted without the billing server',
      );
    config.failOpen = { max: amount(o.max, 'failOpen.max') };
  }
  if (raw.deposits !== undefined) {
    const o = object(raw.deposits, 'deposits', DEPOSIT_KEYS);
    for (const k of DEPOSIT_KEYS) {
      const max = k === 'maxBatch' ? 1000 : 86_400_000;
      const n = optInt(o[k], join('deposits', k), 1, max, k === 'maxBatch' ? 'orders' : 'milliseconds');
      if (n !== undefined) config.deposits[k] = n;
    }
  }
  if (raw.tls !== undefined) {
    const o = object(raw.tls, 'tls', ['cert', 'key']);
    config.tls = {
      cert: readableFile(o.cert, 'tls.cert', baseDir, 'the path of a PEM certificate (chain)'),
      key: readableFile(o.key, 'tls.key', baseDir, 'the path of a PEM private key'),
    };
  }
  if (raw.logLevel !== undefined) {
    if (!LOG_LEVELS.includes(raw.logLevel as ProxyConfig['logLevel']))
      throw new ConfigProblem(
        'logLevel',
        `must be one of ${LOG_LEVELS.join(', ')}, got ${shown(raw.logLevel)}`,
      );
    config.logLevel = raw.logLevel as ProxyConfig['logLevel'];
  }
  if (raw.walletScript === false || raw.walletScript === 'false') config.walletScript = false;
  else if (raw.walletScript !== undefined) {
    config.walletScript = string(
      raw.walletScript,
      'walletScript',
      'a path or URL of the wallet script, or false',
    );
  }
  return config;
}

/**
 * Reads a configuration file (YAML, or JSON for `.json`) and validates it with `parseProxyConfig`.
 * `${NAME}` may stand anywhere a value does, even inside a YAML flow mapping (`{ token: ${TOKEN} }`).
 * Throws `MicropayError` `invalid_config` naming the file and the field.
 * @example
 * const config = loadProxyConfig('micropay.yaml', process.env);
 * const proxy = createProxy(config);
 * console.log(await proxy.listen());
 */
export function loadProxyConfig(path: string, env: ProxyEnv = process.env): ProxyConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new MicropayError(
      'invalid_config',
      code === 'ENOENT'
        ? `${path}: no such file. Write one (see examples/proxy/micropay.yaml) or pass --config FILE.`
        : `${path}: cannot be read: ${(e as Error).message}.`,
    );
  }
  let obj: unknown;
  if (extname(path).toLowerCase() === '.json') {
    try {
      obj = JSON.parse(text);
    } catch (e) {
      throw new MicropayError('invalid_config', `${path}: is not valid JSON: ${(e as Error).message}.`);
    }
  } else {
    // `${...}` holds YAML flow indicators ({ }), so hide each one behind a plain word while parsing.
    const nonce = randomBytes(6).toString('hex');
    const hidden: string[] = [];
    const masked = text.replace(/\$\{[^}\n]*\}/g, (m) => {
      hidden.push(m);
      return `mpenv${nonce}x${hidden.length - 1}x`;
    });
    const marker = new RegExp(`mpenv${nonce}x(\\d+)x`, 'g');
    const unmask = (v: unknown): unknown => {
      if (typeof v === 'string') return v.replace(marker, (_, i: string) => hidden[Number(i)]!);
      if (Array.isArray(v)) return v.map(unmask);
      if (isObject(v)) {
        const out: Record<string, unknown> = {};
        for (const [k, x] of Object.entries(v)) out[unmask(k) as string] = unmask(x);
        return out;
      }
      return v;
    };
    try {
      obj = unmask(parseYaml(masked, { prettyErrors: false }));
    } catch (e) {
      if (e instanceof YAMLParseError) {
        const before = masked.slice(0, e.pos[0]).split('\n');
        const where = ` at line ${before.length}, column ${before[before.length - 1]!.length + 1}`;
        const why = e.message.split('\n')[0]!.replace(marker, (_, i: string) => hidden[Number(i)]!);
        throw new MicropayError('invalid_config', `${path}: is not valid YAML${where}: ${why}.`);
      }
      throw e;
    }
  }
  return parseProxyConfig(obj, path, env);
}
