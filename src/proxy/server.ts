/**
 * micropay-proxy: the paywall in front of any site. An HTTP(S) server whose
 * every request goes through `MicropayCore` (the same merchant as the
 * Express and Koa middleware: no second verifier) and then, unless the core
 * answered (402, 400, 503), to the upstream through http-proxy with a
 * keep-alive agent. Bodies stream both ways; the charge is decided by the
 * core when the upstream's status arrives, so an upstream error (a 502 here,
 * or a 504 when the upstream stays silent for `upstreamTimeoutMs`) is never
 * charged.
 *
 * Websocket upgrades go through the core as well: a priced upgrade is paid
 * with the `Micropay-Payment` header of the upgrade request, charged when the
 * upstream switches protocols, and refused with an HTTP response written on
 * the raw socket.
 *
 * Reload builds a new core from the new configuration and swaps it in one
 * assignment: requests already in flight finish with the core they started
 * with, which is closed (deposits drained) once they are done. The payment
 * store and deposit queue carry over when their configuration is unchanged,
 * so a reload never forgets a replay mark.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders, type IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import pino from 'pino';
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import {
  type Charge,
  type HandleOptions,
  type MerchantBilling,
  MicropayCore,
  type MicropayLogger,
  type MicropayOptions,
  type PaymentInfo,
  settleCharge,
} from '../middleware/core.js';
import { FastHistogram, type HistogramSeries } from '../middleware/histogram.js';
import type { PriceFunction, PriceSpec } from '../middleware/prices.js';
import { exportSeed } from '../protocol/crypto.js';
import { isMicropayError, MicropayError } from '../protocol/errors.js';
import type { PaymentStore } from '../protocol/store.js';
import { memoryQueue, memoryStore, redisQueue, redisStore } from '../stores/index.js';
import type { DepositQueue } from '../stores/types.js';
import type { ProxyConfig, ProxyUpstream } from './config.js';
import { isSilence, SilenceWatch } from './silence.js';

/** Options of `createProxy` that a configuration file cannot hold. */
export interface CreateProxyOptions {
  /**
   * A billing client to use instead of `config.billing` (kept across reloads). For tests (a key set
   * of fixed keys) or to share one client with other code.
   */
  billing?: MerchantBilling;
  /** A pino logger. Default: pino at `config.logLevel` on stdout. Tokens and keys are never logged. */
  logger?: pino.Logger;
  /** Price functions for the manifest's `dynamic` routes, by name. */
  dynamicPrices?: Record<string, PriceFunction>;
  /** Called after a payment is charged (the response is on its way). */
  onPaid?: (info: PaymentInfo, req: IncomingMessage) => void;
  /** The clock of the core, in Unix seconds. For tests. Default: the system clock. */
  clock?: () => number;
  /** Also export Node's process metrics (memory, CPU, event loop) at `/_micropay/metrics`. Default `true`. */
  processMetrics?: boolean;
}

/** A running (or ready to listen) proxy. */
export interface MicropayProxy {
  /** The `node:http` (or `node:https` with `tls`) server. */
  readonly server: http.Server | https.Server;
  /** The configuration in force. */
  readonly config: ProxyConfig;
  /** The core in force (it changes on reload). */
  readonly core: MicropayCore;
  /** The proxy's own metrics (the core's are in `core.metrics`); both are served at `/_micropay/metrics`. */
  readonly metrics: Registry;
  /** The base URL once listening, e.g. `http://127.0.0.1:8080`; `null` before. */
  readonly url: string | null;
  /** Starts listening on `config.listen`; resolves the base URL. */
  listen(): Promise<string>;
  /**
   * Swaps in a new configuration without dropping a connection: a new core is built (a bad
   * configuration rejects with `invalid_config` and the old one stays), requests in flight finish
   * with the old core, which is then closed. `listen` changes need a restart; `tls` files are reloaded.
   */
  reload(config: ProxyConfig): Promise<void>;
  /**
   * Stops accepting, lets requests in flight finish (at most `shutdownTimeoutMs`), closes websocket
   * tunnels, drains deposits (`core.close()`) and closes the stores.
   */
  close(): Promise<void>;
}

/** An `http-proxy` target, parsed once (http-proxy would re-parse a string per request). */
interface Target {
  protocol: string;
  host: string;
  hostname: string;
  port: string;
  path: string;
  pathname: string;
}

interface Upstream {
  url: string;
  host?: string;
  /** `.example` for `*.example`. */
  suffix?: string;
  hostHasPort: boolean;
  pathPrefix?: string;
  origin: string;
  options: httpProxy.ServerOptions;
  /**
   * An http-proxy instance holding `options` for plain requests: called without per-request options
   * or callback, it copies no options and makes no closure per request (its events carry the request).
   */
  web: httpProxy;
}

interface Shared<T> {
  key: string;
  value: T;
  users: number;
  close: () => Promise<void>;
}

interface State {
  config: ProxyConfig;
  core: MicropayCore;
  upstreams: Upstream[];
  anyUpstream: Upstream | null;
  /** No price functions: `prices.lookup` is synchronous and calls nothing. */
  syncPrices: boolean;
  /** Where the core serves the wallet script (as it decides from `walletScript`); never the fast path. */
  walletPath: string;
  store: Shared<PaymentStore>;
  queue: Shared<DepositQueue>;
  inflight: number;
  retired: boolean;
  closed: Promise<void> | null;
}

interface WsContext {
  state: State;
  /** The core's response object, kept until the charge of a priced upgrade is decided. */
  res: ServerResponse | null;
  settled: boolean;
  done: () => void;
}

/** How a request ended, for the metrics. */
type Outcome = 'free' | 'paid' | 'answered' | 'error';

/** Per request: for the close listener and the `proxyReq` and `proxyRes` events. */
interface RequestContext {
  t0: number;
  outcome: Outcome;
  proxyReq: http.ClientRequest | null;
  /** When the request was sent upstream (`performance.now()`). */
  sent: number;
  /** What was paid, when the access log is on. */
  paid: PaymentInfo | null;
  /**
   * A paid order's charge, which the proxy decides itself (`settle: 'caller'`): on the upstream's
   * status when its headers arrive, on the proxy's own error status, or uncharged when the response
   * closes with nothing sent.
   */
  charge: Charge | null;
}
const CTX = Symbol('micropay-proxy');
/** The core leaves paid responses as they are; the proxy decides their charges (`RequestContext.charge`). */
const BY_CALLER: HandleOptions = { settle: 'caller' };
type WithContext = IncomingMessage & { [CTX]?: RequestContext };

const PAID_PREFIX = 'micropay-paid-';
const UPSTREAM_DOWN =
  'The site behind this paywall did not answer, so nothing was charged. Try again shortly.';
const NO_UPSTREAM = 'No site is configured behind this proxy for this host and path.';
const UPSTREAM_SILENT =
  'The site behind this paywall did not answer in time, so nothing was charged. Try again shortly.';

/** A request URL's path, without its query string (which may hold secrets, so it is never logged). */
function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/** What the client is told when the upstream failed before its headers: silent (504) or not there (502). */
function upstreamFailure(err: Error): { status: 502 | 504; code: string; message: string } {
  return isSilence(err)
    ? { status: 504, code: 'upstream_timeout', message: UPSTREAM_SILENT }
    : { status: 502, code: 'upstream_unavailable', message: UPSTREAM_DOWN };
}

/** Whether two secrets are equal, in time independent of where they differ (and of their lengths). */
function sameSecret(given: string, expected: string): boolean {
  const digest = (x: string) => createHash('sha256').update(x).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** Whether a socket's peer address is this machine's loopback (IPv4, IPv6, or IPv4-mapped). */
function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

function configError(config: ProxyConfig, e: unknown): MicropayError {
  if (isMicropayError(e) && e.code === 'invalid_config') return e;
  const message = e instanceof Error ? e.message : String(e);
  return new MicropayError('invalid_config', `${config.source}: ${message.replace(/\.$/, '')}.`, {
    cause: e,
  });
}

function sendJson(res: ServerResponse, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: code, message });
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

/** An HTTP response written straight on a socket (upgrade requests have no `ServerResponse`). */
function rawJson(socket: Duplex, status: number, code: string, message: string): void {
  if (socket.destroyed || !socket.writable) return;
  const body = JSON.stringify({ error: code, message });
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\n` +
      'Content-Type: application/json; charset=utf-8\r\nCache-Control: no-store\r\nConnection: close\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

function target(url: string): Target {
  const u = new URL(url);
  const path = u.pathname === '/' ? '' : u.pathname.replace(/\/$/, '');
  return {
    protocol: u.protocol,
    host: u.hostname.replace(/^\[|\]$/g, ''),
    hostname: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port,
    path,
    pathname: path,
  };
}

/** Strips what a client must not pass upstream: `Micropay-Paid-*`, and untrusted `X-Forwarded-*`. */
function cleanHeaders(h: IncomingHttpHeaders, trustProxy: boolean): void {
  for (const k in h) {
    if (k.charCodeAt(0) === 109 /* m */ && k.startsWith(PAID_PREFIX)) delete h[k];
    else if (!trustProxy && k.charCodeAt(0) === 120 /* x */ && k.startsWith('x-forwarded-')) delete h[k];
    else if (!trustProxy && k === 'forwarded') delete h[k];
  }
}

function setPaidHeaders(h: IncomingHttpHeaders, info: PaymentInfo): void {
  h['micropay-paid-buyer'] = info.buyer;
  h['micropay-paid-amount'] = String(info.amount);
  h['micropay-paid-currency'] = info.currency;
  h['micropay-paid-oid'] = info.oid;
  // A receipt names no issuer: the header is left out (a client-sent one was stripped).
  if (info.kind === 'order') h['micropay-paid-issuer'] = info.issuer;
}

/**
 * The path the core answers with the wallet script for this configuration (its rule: a local path,
 * else the default), or a path no request has when it serves none.
 */
function walletPathOf(config: ProxyConfig): string {
  const w = config.walletScript;
  if (w === false) return '\u0000';
  return typeof w === 'string' && /^\/(?!\/)/.test(w) ? w.split(/[?#]/)[0]! : '/_micropay/wallet.js';
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

/**
 * The core's options for a configuration. `receiptSeed`: the key generated for this process by the
 * first core, used when the configuration names no receipt key.
 */
function coreOptions(
  config: ProxyConfig,
  opts: CreateProxyOptions,
  receiptSeed: string | null,
  store: PaymentStore,
  queue: DepositQueue,
  logger: MicropayLogger,
): MicropayOptions {
  const prices: Record<string, PriceSpec> = {};
  for (const r of config.routes) {
    if (r.price === null) prices[r.match] = null;
    else {
      prices[r.match] = {
        price: r.price,
        ...(r.duration !== undefined ? { duration: r.duration } : {}),
        ...(r.title !== undefined ? { title: r.title } : {}),
        ...(r.description !== undefined ? { description: r.description } : {}),
      };
    }
  }
  const receipts = { ...config.receipts };
  // A key generated for this process must outlive reloads, or receipts given before them stop working.
  if (receipts.key === undefined && receipts.keyFile === undefined && receiptSeed !== null) {
    receipts.key = receiptSeed;
  }
  const o: MicropayOptions = {
    merchant: config.merchant,
    billing: opts.billing ?? config.billing,
    prices,
    receipts,
    store,
    queue,
    deposits: config.deposits,
    logger,
  };
  if (config.name !== undefined) o.name = config.name;
  if (config.manifest !== undefined) o.manifest = config.manifest;
  if (opts.dynamicPrices) o.dynamicPrices = opts.dynamicPrices;
  if (config.accepts) o.accepts = config.accepts;
  if (config.onlineThreshold !== undefined) o.onlineThreshold = config.onlineThreshold;
  if (config.freshness !== undefined) o.freshness = config.freshness;
  if (config.skew !== undefined) o.skew = config.skew;
  if (config.failOpen) o.failOpen = config.failOpen;
  if (config.walletScript !== undefined) o.walletScript = config.walletScript;
  if (opts.onPaid) o.onPaid = opts.onPaid;
  if (opts.clock) o.clock = opts.clock;
  return o;
}

class PaywallProxy implements MicropayProxy {
  readonly server: http.Server | https.Server;
  readonly metrics = new Registry();
  private state: State;
  private readonly opts: CreateProxyOptions;
  private readonly log: pino.Logger;
  private readonly proxy: httpProxy;
  private readonly agents = new Map<string, http.Agent>();
  /** Every state not closed yet: the current one and old ones still finishing requests or closing. */
  private readonly live = new Set<State>();
  private readonly tunnels = new Set<Duplex>();
  private readonly ws = new WeakMap<IncomingMessage, WsContext>();
  /** Gives up on upstream connections silent for `upstreamTimeoutMs`. */
  private readonly silence = new SilenceWatch(() => this.agents.values());
  private readonly started = Date.now();
  private inflight = 0;
  /** Seed of the receipt key generated for this process when no key is configured (never logged). */
  private receiptSeed: string | null = null;
  private idle: (() => void)[] = [];
  private closing = false;
  private closed: Promise<void> | null = null;
  private address: string | null = null;
  private readonly m: {
    requests: Counter<'outcome' | 'status'>;
    duration: FastHistogram<'outcome'>;
    upstream: FastHistogram;
    upstreamErrors: Counter;
    inflight: Gauge;
    websockets: Gauge;
    reloads: Counter<'result'>;
  };
  private readonly durationBy: Record<Outcome, HistogramSeries>;
  private readonly upstreamTime: HistogramSeries;
  /** Requests by outcome, then status, copied into `micropay_proxy_requests_total` at each scrape. */
  private readonly counted: Record<Outcome, Map<number, number>> = {
    free: new Map(),
    paid: new Map(),
    answered: new Map(),
    error: new Map(),
  };

  constructor(config: ProxyConfig, opts: CreateProxyOptions) {
    this.opts = opts;
    this.log =
      opts.logger ??
      pino({
        name: 'micropay-proxy',
        level: config.logLevel,
        redact: { paths: ['token', '*.token', 'headers["micropay-payment"]'], censor: '[redacted]' },
      });
    const reg = this.metrics;
    const self = this;
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: reg });
    const buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];
    this.m = {
      requests: new Counter({
        name: 'micropay_proxy_requests_total',
        help: 'Requests answered, by outcome (free, paid, answered by the paywall, error) and status',
        labelNames: ['outcome', 'status'],
        registers: [reg],
        // Counted in a Map per request: prom-client's labelled inc validates and hashes labels on each call.
        collect() {
          this.reset();
          for (const [outcome, byStatus] of Object.entries(self.counted)) {
            for (const [status, n] of byStatus) this.inc({ outcome, status: String(status) }, n);
          }
        },
      }),
      duration: new FastHistogram({
        name: 'micropay_proxy_request_duration_seconds',
        help: 'Time from request to the end of the response, by outcome',
        labelNames: ['outcome'],
        buckets,
        registers: [reg],
      }),
      upstream: new FastHistogram({
        name: 'micropay_proxy_upstream_response_seconds',
        help: "Time from sending a request upstream to the upstream's response headers",
        buckets,
        registers: [reg],
      }),
      upstreamErrors: new Counter({
        name: 'micropay_proxy_upstream_errors_total',
        help: 'Requests the upstream did not answer (502) or not in time (504)',
        registers: [reg],
      }),
      inflight: new Gauge({
        name: 'micropay_proxy_requests_in_flight',
        help: 'Requests being handled',
        registers: [reg],
        collect() {
          this.set(self.inflight);
        },
      }),
      websockets: new Gauge({
        name: 'micropay_proxy_websockets_open',
        help: 'Open websocket tunnels',
        registers: [reg],
        collect() {
          this.set(self.tunnels.size);
        },
      }),
      reloads: new Counter({
        name: 'micropay_proxy_reloads_total',
        help: 'Configuration reloads, by result',
        labelNames: ['result'],
        registers: [reg],
      }),
    };
    const d = this.m.duration;
    this.durationBy = {
      free: d.series({ outcome: 'free' }),
      paid: d.series({ outcome: 'paid' }),
      answered: d.series({ outcome: 'answered' }),
      error: d.series({ outcome: 'error' }),
    };
    this.upstreamTime = this.m.upstream.series();

    this.state = this.build(config, null);
    this.live.add(this.state);
    this.silence.set(config.upstreamTimeoutMs);
    // Websockets go through this one (with per-call options); plain requests through their upstream's.
    this.proxy = httpProxy.createProxyServer({ xfwd: true });
    this.proxy.on('error', () => {}); // every ws call passes its own error callback
    this.proxy.on('proxyReqWs', (proxyReq, req) => this.onProxyReqWs(proxyReq, req));
    this.server = config.tls ? https.createServer(this.tlsFiles(config)) : http.createServer();
    this.server.on('request', (req, res) => this.onRequest(req, res));
    this.server.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
  }

  get config(): ProxyConfig {
    return this.state.config;
  }

  get core(): MicropayCore {
    return this.state.core;
  }

  get url(): string | null {
    return this.address;
  }

  // -------------------------------------------------------------------------------------------
  // Building and retiring cores

  private tlsFiles(config: ProxyConfig): { cert: Buffer; key: Buffer } {
    const tls = config.tls!;
    const read = (file: string, field: string) => {
      try {
        return readFileSync(file);
      } catch (e) {
        throw new MicropayError(
          'invalid_config',
          `${config.source}: ${field}: cannot read ${JSON.stringify(file)}: ${(e as Error).message}.`,
        );
      }
    };
    return { cert: read(tls.cert, 'tls.cert'), key: read(tls.key, 'tls.key') };
  }

  private agentFor(origin: string, protocol: string): http.Agent {
    let a = this.agents.get(origin);
    if (!a) {
      const o = { keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo' as const };
      a = protocol === 'https:' ? new https.Agent(o) : new http.Agent(o);
      this.agents.set(origin, a);
    }
    return a;
  }

  private upstream(u: ProxyUpstream): Upstream {
    const t = target(u.url);
    const origin = `${t.protocol}//${t.hostname}:${t.port}`;
    const options: httpProxy.ServerOptions = {
      target: t,
      agent: this.agentFor(origin, t.protocol),
      changeOrigin: u.changeOrigin,
      xfwd: true,
    };
    const up: Upstream = {
      url: u.url,
      hostHasPort: false,
      origin,
      options,
      web: httpProxy.createProxyServer(options),
    };
    up.web.on('proxyReq', this.onProxyReq);
    up.web.on('proxyRes', this.onProxyRes);
    up.web.on('error', (err, req, res) => this.onUpstreamError(err, req, res, up));
    if (u.host !== undefined) {
      up.host = u.host;
      up.hostHasPort = /:\d+$/.test(u.host);
      if (u.host.startsWith('*.')) up.suffix = u.host.slice(1);
    }
    if (u.pathPrefix !== undefined) up.pathPrefix = u.pathPrefix;
    return up;
  }

  private shared<T>(
    prev: Shared<T> | undefined,
    key: string,
    make: () => { value: T; close: () => Promise<void> },
  ): Shared<T> {
    if (prev && prev.key === key) {
      prev.users++;
      return prev;
    }
    const { value, close } = make();
    return { key, value, users: 1, close };
  }

  /** Builds a state (core, upstreams, stores) for `config`; throws `invalid_config`. Reuses `prev`'s stores when unchanged. */
  private build(config: ProxyConfig, prev: State | null): State {
    const sc = config.store;
    const production = process.env.NODE_ENV === 'production';
    const store = this.shared(prev?.store, JSON.stringify(sc), () => {
      const s =
        sc.kind === 'redis'
          ? redisStore({ url: sc.url, prefix: sc.prefix })
          : memoryStore({
              ...(sc.maxEntries ? { maxEntries: sc.maxEntries } : {}),
              ...(sc.maxTallies ? { maxTallies: sc.maxTallies } : {}),
            });
      return { value: s, close: () => s.close() };
    });
    // Orders queued for one billing server are never handed to another.
    const queueKey = JSON.stringify([sc.kind === 'redis' ? [sc.url, sc.prefix] : 'memory', config.billing]);
    const queue = this.shared(prev?.queue, queueKey, () => {
      const q = sc.kind === 'redis' ? redisQueue({ url: sc.url, prefix: sc.prefix }) : memoryQueue();
      return { value: q, close: () => q.close() };
    });
    const unshare = async () => {
      for (const s of [store, queue] as Shared<unknown>[]) {
        if (--s.users === 0) await s.close().catch(() => {});
      }
    };
    if (production && sc.kind === 'memory' && !prev) {
      this.log.warn(
        {},
        'micropay-proxy: store is in memory: replays are caught by this process only and queued deposits die with it. Set store: { redis: URL }.',
      );
    }
    try {
      const logger = this.log.child({ component: 'core' }) as MicropayLogger;
      const core = new MicropayCore(
        coreOptions(config, this.opts, this.receiptSeed, store.value, queue.value, logger),
      );
      if (core.receipt.ephemeral && this.receiptSeed === null) {
        this.receiptSeed = Buffer.from(exportSeed(core.receipt.key)).toString('hex');
      }
      const upstreams = config.upstreams.map((u) => this.upstream(u));
      const only = upstreams.length === 1 ? upstreams[0]! : null;
      return {
        config,
        core,
        upstreams,
        anyUpstream: only && only.host === undefined && only.pathPrefix === undefined ? only : null,
        syncPrices: this.opts.dynamicPrices === undefined,
        walletPath: walletPathOf(config),
        store,
        queue,
        inflight: 0,
        retired: false,
        closed: null,
      };
    } catch (e) {
      void unshare();
      throw configError(config, e);
    }
  }

  /** Closes a state's core (draining its deposits) and releases its stores; once. */
  private retire(s: State): Promise<void> {
    if (!s.closed) {
      s.closed = (async () => {
        try {
          await s.core.close();
        } catch (e) {
          this.log.error({ err: (e as Error).message }, 'micropay-proxy: closing the old core failed');
        }
        for (const sh of [s.store, s.queue] as Shared<unknown>[]) {
          if (--sh.users === 0) await sh.close().catch(() => {});
        }
        this.live.delete(s);
        this.pruneAgents();
      })();
    }
    return s.closed;
  }

  private pruneAgents(): void {
    // An old state may still have requests in flight on an agent: keep every agent a live state uses.
    const used = new Set<string>();
    for (const s of this.live) for (const u of s.upstreams) used.add(u.origin);
    for (const [origin, agent] of this.agents) {
      if (!used.has(origin) || this.closed) {
        agent.destroy();
        this.agents.delete(origin);
      }
    }
  }

  async reload(config: ProxyConfig): Promise<void> {
    if (this.closing)
      throw new MicropayError('shutting_down', 'The proxy is shutting down; it cannot reload.');
    let next: State;
    try {
      if (config.tls && this.server instanceof https.Server) {
        (this.server as https.Server).setSecureContext(this.tlsFiles(config));
      }
      next = this.build(config, this.state);
    } catch (e) {
      this.m.reloads.inc({ result: 'failed' });
      throw e;
    }
    const old = this.state;
    const listen = (c: ProxyConfig) => `${c.listen.host}:${c.listen.port}`;
    if (listen(old.config) !== listen(config) || !!old.config.tls !== !!config.tls) {
      this.log.warn(
        { listen: listen(old.config) },
        'micropay-proxy: listen and turning tls on or off take effect at the next start; keeping the current socket',
      );
    }
    this.state = next; // the swap: requests from now on see the new core
    this.live.add(next);
    this.silence.set(config.upstreamTimeoutMs); // for the requests of the old one too
    old.retired = true;
    if (old.inflight === 0) void this.retire(old);
    if (!this.opts.logger) this.log.level = config.logLevel;
    this.m.reloads.inc({ result: 'ok' });
    this.log.info(
      {
        merchant: config.merchant,
        routes: config.routes.length,
        upstreams: config.upstreams.map((u) => u.url),
      },
      'micropay-proxy: configuration reloaded',
    );
  }

  // -------------------------------------------------------------------------------------------
  // Requests

  private enter(s: State): void {
    s.inflight++;
    this.inflight++;
  }

  private leave(s: State): void {
    s.inflight--;
    this.inflight--;
    if (s.retired && s.inflight === 0) void this.retire(s);
    if (this.inflight === 0 && this.idle.length > 0) {
      for (const f of this.idle.splice(0)) f();
    }
  }

  private pick(s: State, req: IncomingMessage, url: string): Upstream | null {
    if (s.anyUpstream) return s.anyUpstream;
    const header = (req.headers.host ?? '').toLowerCase();
    const bare = header.replace(/:\d+$/, '');
    for (const u of s.upstreams) {
      if (u.host !== undefined) {
        const h = u.hostHasPort ? header : bare;
        if (u.suffix !== undefined ? !(h.endsWith(u.suffix) && h.length > u.suffix.length) : h !== u.host)
          continue;
      }
      if (u.pathPrefix !== undefined && !url.startsWith(u.pathPrefix)) continue;
      return u;
    }
    return null;
  }

  /** Counts a request for `micropay_proxy_requests_total`. */
  private count(outcome: Outcome, status: number): void {
    // By outcome, then status as a number: no key string is built per request.
    const byStatus = this.counted[outcome];
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    if (url.startsWith('/_micropay/') && this.internal(req, res, url)) return;
    const s = this.state;
    this.enter(s);
    const ctx: RequestContext = {
      t0: performance.now(),
      outcome: 'free',
      proxyReq: null,
      sent: 0,
      paid: null,
      charge: null,
    };
    (req as WithContext)[CTX] = ctx;
    // `on`, not `once`: 'close' comes once, and a once wrapper is an allocation per request.
    res.on('close', () => {
      if (ctx.charge !== null) settleCharge(res, ctx.charge, res.headersSent ? res.statusCode : 0);
      this.leave(s);
      // http-proxy does not abort the upstream request when the client goes away after sending its body.
      if (ctx.proxyReq !== null && !res.writableFinished) ctx.proxyReq.destroy();
      const o = ctx.outcome; // 'error': the proxy answered for a failed upstream (onUpstreamError) or none
      const seconds = (performance.now() - ctx.t0) / 1000;
      this.durationBy[o].observe(seconds);
      this.count(o, res.statusCode);
      if (s.config.accessLog) this.logAccess(req, url, res, o, seconds, ctx.paid);
    });
    if (this.closing) res.setHeader('Connection', 'close');
    cleanHeaders(req.headers, s.config.trustProxy);
    const up = this.pick(s, req, url);
    if (!up) {
      ctx.outcome = 'error';
      sendJson(res, 404, 'no_upstream', NO_UPSTREAM);
      return;
    }
    // Free at once, without a promise: a price table of fixed prices answers synchronously and the
    // core has nothing else to do for a free request (its wallet script path aside).
    if (
      s.syncPrices &&
      !url.startsWith(s.walletPath) &&
      s.core.prices.lookup(req, req.method ?? 'GET', url) === null
    ) {
      this.forward(req, res, up);
      return;
    }
    // Answered by the proxy until the core hands the request on: a 402's 'close' can come before
    // this promise settles (counted as 'free' before, when the client closed its connection at once).
    ctx.outcome = 'answered';
    s.core.handle(req, res, url, BY_CALLER).then(
      (o) => {
        if (o.action === 'answered') return;
        ctx.outcome = o.action === 'paid' ? 'paid' : 'free';
        if (o.action === 'paid') {
          if (o.charge !== undefined) {
            ctx.charge = o.charge;
            // Gone meanwhile: nothing will be sent (its 'close' decides it too; only the first counts).
            if (res.destroyed) settleCharge(res, o.charge, 0);
          }
          if (s.config.accessLog) ctx.paid = o.info;
          if (s.config.paidHeaders) setPaidHeaders(req.headers, o.info);
        }
        if (!res.destroyed) this.forward(req, res, up);
      },
      (e) => {
        ctx.outcome = 'error';
        this.log.error({ err: (e as Error).message }, 'micropay-proxy: request failed');
        if (!res.headersSent) sendJson(res, 500, 'internal_error', 'The proxy failed on this request.');
        else res.destroy();
      },
    );
  }

  /** The access log's line for a request (`accessLog`): never a header, token or query string. */
  private logAccess(
    req: IncomingMessage,
    url: string,
    res: ServerResponse,
    outcome: Outcome,
    seconds: number,
    paid: PaymentInfo | null,
  ): void {
    const line: Record<string, unknown> = {
      method: req.method,
      path: pathOf(url).slice(0, 200),
      status: res.statusCode,
      outcome,
      ms: Math.round(seconds * 10_000) / 10,
    };
    if (paid !== null) {
      line.via = paid.kind; // a new order, or a receipt shown again (no new charge)
      line.amt = paid.amount;
      line.cur = paid.currency;
      line.oid = paid.oid;
    }
    this.log.info(line, 'micropay-proxy: request');
  }

  /** Sends the request upstream, never with the buyer's tokens. */
  private forward(req: IncomingMessage, res: ServerResponse, up: Upstream): void {
    if (req.headers['micropay-payment'] !== undefined) delete req.headers['micropay-payment'];
    up.web.web(req, res);
  }

  /** http-proxy's `proxyReq`, for every upstream: the request is about to go. */
  private readonly onProxyReq = (proxyReq: http.ClientRequest, req: IncomingMessage): void => {
    // Hop-by-hop: the agent keeps the upstream connection alive whatever the client asked.
    const h = req.headers;
    if (h.connection !== undefined) proxyReq.removeHeader('connection');
    if (h['keep-alive'] !== undefined) proxyReq.removeHeader('keep-alive');
    if (h['proxy-connection'] !== undefined) proxyReq.removeHeader('proxy-connection');
    const ctx = (req as WithContext)[CTX];
    if (ctx) {
      ctx.proxyReq = proxyReq; // aborted by the request's close listener if the client goes away
      ctx.sent = performance.now();
    }
  };

  /** http-proxy's `proxyRes`, for every upstream: the upstream's headers are in (and not yet passed on). */
  private readonly onProxyRes = (
    proxyRes: IncomingMessage,
    req: IncomingMessage,
    res: ServerResponse,
  ): void => {
    const ctx = (req as WithContext)[CTX];
    if (ctx) {
      this.upstreamTime.observe((performance.now() - ctx.sent) / 1000);
      if (ctx.charge !== null) {
        // http-proxy copies the upstream's headers after this event: the receipt is the proxy's to send.
        if (proxyRes.headers['micropay-receipt'] !== undefined) delete proxyRes.headers['micropay-receipt'];
        // A client already gone gets nothing, so it is not charged.
        settleCharge(res, ctx.charge, res.destroyed ? 0 : (proxyRes.statusCode ?? 502));
      }
    }
    // An upstream that dies mid-body must not leave the client waiting.
    proxyRes.on('aborted', () => res.destroy());
  };

  private onUpstreamError(err: Error, req: IncomingMessage, res: unknown, up: Upstream): void {
    this.m.upstreamErrors.inc();
    const f = upstreamFailure(err);
    this.log.warn(
      {
        err: err.message,
        code: (err as NodeJS.ErrnoException).code,
        upstream: up.url,
        method: req.method,
        path: pathOf(req.url ?? '').slice(0, 200),
      },
      f.status === 504 ? 'micropay-proxy: upstream timed out' : 'micropay-proxy: upstream unavailable',
    );
    if (!(res instanceof ServerResponse)) return;
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    // Counted as the proxy's failure, where a 502 or 504 from the upstream itself counts as its answer.
    const ctx = (req as WithContext)[CTX];
    if (ctx !== undefined) {
      ctx.outcome = 'error';
      if (ctx.charge !== null) settleCharge(res, ctx.charge, f.status);
    }
    sendJson(res, f.status, f.code, f.message);
  }

  /** `/_micropay/healthz` and `/_micropay/metrics`; anything else under `/_micropay/` goes upstream. */
  private internal(req: IncomingMessage, res: ServerResponse, url: string): boolean {
    const path = pathOf(url);
    if (path !== '/_micropay/healthz' && path !== '/_micropay/metrics') return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      sendJson(res, 405, 'method_not_allowed', `${path} answers GET only.`);
      return true;
    }
    if (path === '/_micropay/healthz') {
      const body = JSON.stringify({
        status: this.closing ? 'draining' : 'ok',
        merchant: this.state.config.merchant,
        uptime: Math.round((Date.now() - this.started) / 1000),
        inflight: this.inflight,
      });
      res.statusCode = this.closing ? 503 : 200;
      res.setHeader('Content-Type', 'application/json; charset=utf-8');
      res.setHeader('Cache-Control', 'no-store');
      res.end(body);
      return true;
    }
    if (!this.mayReadMetrics(req, res)) return true;
    Registry.merge([this.metrics, this.state.core.metrics])
      .metrics()
      .then(
        (text) => {
          res.setHeader('Content-Type', this.metrics.contentType);
          res.setHeader('Cache-Control', 'no-store');
          res.end(text);
        },
        (e) => sendJson(res, 500, 'internal_error', `Metrics failed: ${(e as Error).message}`),
      );
    return true;
  }

  /**
   * With `metrics.token`, whether the request carries it as a bearer token; without, whether it
   * comes from this machine and not through a proxy (which would make every client look local).
   * Answers the refusal itself.
   */
  private mayReadMetrics(req: IncomingMessage, res: ServerResponse): boolean {
    const token = this.state.config.metrics.token;
    if (token !== undefined) {
      const h = req.headers.authorization;
      if (typeof h === 'string' && /^Bearer /i.test(h) && sameSecret(h.slice(7).trim(), token)) return true;
      res.setHeader('WWW-Authenticate', 'Bearer realm="micropay-proxy metrics"');
      sendJson(
        res,
        401,
        'unauthorized',
        'The metrics need the bearer token set as metrics.token in the proxy configuration.',
      );
      return false;
    }
    const h = req.headers;
    if (
      isLoopback(req.socket.remoteAddress) &&
      h['x-forwarded-for'] === undefined &&
      h.forwarded === undefined
    )
      return true;
    sendJson(
      res,
      403,
      'forbidden',
      'The metrics are served to this machine only. Set metrics.token in the proxy configuration to scrape them from elsewhere.',
    );
    return false;
  }

  // -------------------------------------------------------------------------------------------
  // Websockets

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = req.url ?? '/';
    const s = this.state;
    this.enter(s);
    let left = false;
    const done = () => {
      if (left) return;
      left = true;
      this.leave(s);
    };
    socket.on('error', () => socket.destroy());
    socket.once('close', done);
    if (this.closing) {
      rawJson(socket, 503, 'shutting_down', 'This server is shutting down. Try again shortly.');
      return;
    }
    cleanHeaders(req.headers, s.config.trustProxy);
    const up = this.pick(s, req, url);
    if (!up) {
      rawJson(socket, 404, 'no_upstream', NO_UPSTREAM);
      return;
    }
    // The core writes its 402 (or 400, 503) through a response bound to the raw socket.
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket as Socket);
    s.core.handle(req, res, url).then(
      (o) => {
        if (o.action === 'answered') {
          if (res.writableFinished) socket.end();
          else res.once('finish', () => socket.end());
          return;
        }
        delete req.headers['micropay-payment'];
        if (o.action === 'paid' && s.config.paidHeaders) setPaidHeaders(req.headers, o.info);
        if (socket.destroyed) return;
        const ctx: WsContext = { state: s, res: o.action === 'paid' ? res : null, settled: false, done };
        if (!ctx.res) res.detachSocket(socket as Socket);
        this.ws.set(req, ctx);
        this.proxy.ws(req, socket, head, up.options, (err) => this.onWsError(err, req, socket, up));
      },
      (e) => {
        this.log.error({ err: (e as Error).message }, 'micropay-proxy: upgrade failed');
        rawJson(socket, 500, 'internal_error', 'The proxy failed on this request.');
      },
    );
  }

  /** Decides the charge of a priced upgrade on the upstream's status; puts the receipt in the answer. */
  private settle(ctx: WsContext, status: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    if (ctx.settled) return;
    ctx.settled = true;
    const res = ctx.res;
    if (!res) return;
    ctx.res = null;
    res.writeHead(status); // the core's wrapped writeHead charges (or releases) here; nothing is sent
    const receipt = res.getHeader('micropay-receipt');
    if (typeof receipt === 'string') headers['micropay-receipt'] = receipt;
    res.detachSocket(socket as Socket);
  }

  private onProxyReqWs(proxyReq: http.ClientRequest, req: IncomingMessage): void {
    const ctx = this.ws.get(req);
    if (!ctx) return;
    const t0 = performance.now();
    const socket = req.socket;
    proxyReq.once('upgrade', (proxyRes: IncomingMessage, proxySocket: Socket) => {
      this.upstreamTime.observe((performance.now() - t0) / 1000);
      this.settle(ctx, 101, proxyRes.headers, socket);
      this.tunnels.add(socket);
      const closeBoth = () => {
        this.tunnels.delete(socket);
        proxySocket.destroy();
        socket.destroy();
      };
      socket.once('close', closeBoth);
      proxySocket.once('close', closeBoth);
      ctx.done(); // a tunnel is not a request in flight: reload and shutdown do not wait for it
    });
    proxyReq.once('response', (proxyRes: IncomingMessage) => {
      if ((proxyRes as { upgrade?: boolean }).upgrade) return;
      this.upstreamTime.observe((performance.now() - t0) / 1000);
      this.settle(ctx, proxyRes.statusCode ?? 502, proxyRes.headers, socket);
    });
  }

  private onWsError(err: Error, req: IncomingMessage, socket: Duplex, up: Upstream): void {
    const ctx = this.ws.get(req);
    if (ctx && !ctx.settled) {
      this.m.upstreamErrors.inc();
      const f = upstreamFailure(err);
      this.log.warn(
        { err: err.message, code: (err as NodeJS.ErrnoException).code, upstream: up.url },
        f.status === 504
          ? 'micropay-proxy: upstream timed out (websocket)'
          : 'micropay-proxy: upstream unavailable (websocket)',
      );
      this.settle(ctx, f.status, {}, socket);
      rawJson(socket, f.status, f.code, f.message);
    } else socket.destroy();
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle

  listen(): Promise<string> {
    const { host, port } = this.state.config.listen;
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => {
        reject(
          new MicropayError(
            'listen_failed',
            `Cannot listen on ${host}:${port}: ${e.message}. Pick another listen address or stop what uses it.`,
          ),
        );
      };
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        const a = this.server.address();
        if (a === null || typeof a === 'string') {
          this.address = String(a);
          resolve(this.address);
          return;
        }
        const h =
          a.address === '0.0.0.0'
            ? '127.0.0.1'
            : a.address === '::'
              ? '[::1]'
              : a.family === 'IPv6'
                ? `[${a.address}]`
                : a.address;
        this.address = `${this.state.config.tls ? 'https' : 'http'}://${h}:${a.port}`;
        this.log.info(
          {
            url: this.address,
            merchant: this.state.config.merchant,
            routes: this.state.config.routes.length,
            upstreams: this.state.config.upstreams.map((u) => u.url),
          },
          'micropay-proxy: listening',
        );
        resolve(this.address);
      });
    });
  }

  close(): Promise<void> {
    if (this.closed) return this.closed;
    this.closing = true;
    this.closed = (async () => {
      const serverClosed = new Promise<void>((r) => {
        if (!this.server.listening) r();
        else this.server.close(() => r());
      });
      this.server.closeIdleConnections();
      const timeout = this.state.config.shutdownTimeoutMs;
      const drained =
        this.inflight === 0 ||
        (await Promise.race([
          new Promise<boolean>((r) => this.idle.push(() => r(true))),
          delay(timeout).then(() => false),
        ]));
      if (!drained) {
        this.log.warn(
          { inflight: this.inflight },
          'micropay-proxy: requests still in flight at the shutdown timeout; closing them',
        );
      }
      for (const t of this.tunnels) t.end();
      this.server.closeAllConnections();
      await Promise.race([serverClosed, delay(1000)]);
      for (const t of this.tunnels) t.destroy();
      const s = this.state;
      s.retired = true;
      await Promise.all([...this.live].map((r) => this.retire(r)));
      for (const a of this.agents.values()) a.destroy();
      this.agents.clear();
      this.proxy.close();
      this.silence.close();
      this.log.info({}, 'micropay-proxy: stopped');
    })();
    return this.closed;
  }
}

/**
 * Creates the paywall proxy for a configuration from `loadProxyConfig` or `parseProxyConfig`.
 * Throws `invalid_config` when the configuration cannot make a core (e.g. a manifest route needs a
 * price function). Call `listen()` to start it.
 * @example
 * import { createProxy, loadProxyConfig } from 'micropay/proxy';
 * const proxy = createProxy(loadProxyConfig('micropay.yaml'));
 * console.log('paywall on', await proxy.listen());
 * process.on('SIGHUP', () => proxy.reload(loadProxyConfig('micropay.yaml')).catch(console.error));
 * process.on('SIGTERM', () => proxy.close().then(() => process.exit(0)));
 */
export function createProxy(config: ProxyConfig, opts: CreateProxyOptions = {}): MicropayProxy {
  return new PaywallProxy(config, opts);
}

/**
 * Checks that a configuration makes a working core (prices, manifest, receipt key) without
 * connecting to anything; throws `invalid_config` naming the problem.
 * @example
 * checkProxyConfig(loadProxyConfig('micropay.yaml'));
 */
export async function checkProxyConfig(
  config: ProxyConfig,
  opts: Pick<CreateProxyOptions, 'dynamicPrices'> = {},
): Promise<void> {
  const store = memoryStore();
  const queue = memoryQueue();
  try {
    const quiet = { info() {}, warn() {}, error() {} };
    const core = new MicropayCore(coreOptions(config, opts, null, store, queue, quiet));
    await core.close();
  } catch (e) {
    throw configError(config, e);
  } finally {
    await store.close();
    await queue.close();
  }
}
