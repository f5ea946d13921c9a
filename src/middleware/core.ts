/**
 * The merchant, framework-neutral: one request handler over `node:http`
 * types doing PROTOCOL.md sections 4 to 7 (price lookup, challenge, verify,
 * charge, receipt), and the deposit path (queue + batcher). `express.ts`,
 * `koa.ts` and the proxy are thin adapters over `MicropayCore`.
 *
 * Everything that can be done once is done in the constructor: options are
 * validated, prices parsed, route patterns compiled, keys imported. The hot
 * path does one price lookup and one verifier call (cached credential, one
 * store call, and the order's signature check with the receipt's signature in
 * one trip to the crypto thread, `protocol/crypto-thread.ts`).
 *
 * Charging is decided when the response's headers are written (a wrapped
 * `writeHead`, which Node calls for implicit headers too): the body is never
 * buffered, so streams and server-sent events flow.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import pino from 'pino';
import { Counter, Registry } from 'prom-client';
import { type DeadLetter, type DepositAnswer, DepositBatcher } from '../billing-client/batcher.js';
import type { PriceManifest } from '../compile/manifest.js';
import { cryptoThread } from '../protocol/crypto-thread.js';
import { MicropayError } from '../protocol/errors.js';
import { isId } from '../protocol/ids.js';
import type { KeyResolver, KeySetDocument } from '../protocol/keys.js';
import type { Offer, Receipt } from '../protocol/messages.js';
import { type Money, parsePrice } from '../protocol/money.js';
import {
  buildOffer,
  challengeBody,
  encodeOfferHeader,
  priceSentence,
  wwwAuthenticate,
} from '../protocol/offer.js';
import type { PaymentStore } from '../protocol/store.js';
import {
  type Authorizer,
  type OrderAcceptance,
  type Rejection,
  type Verdict,
  Verifier,
} from '../protocol/verifier.js';
import { MemoryDepositQueue, MemoryPaymentStore } from '../stores/memory.js';
import type { DepositItem, DepositQueue } from '../stores/types.js';
import { FastHistogram, type HistogramSeries } from './histogram.js';
import { holdOutput } from './hold.js';
import { prefersHtml, renderPaywall } from './paywall.js';
import { type PriceFunction, type PriceSpec, PriceTable, type ResolvedPrice } from './prices.js';
import { loadReceiptKey, type ReceiptKey, type ReceiptOptions } from './receipts.js';
import { WALLET_SCRIPT_PATH, type WalletScriptAsset, walletScriptAsset } from './wallet-script.js';

/** The part of a billing client the merchant needs. `createBillingClient` from `micropay/billing-client` fits. */
export interface MerchantBilling {
  /** The key resolver of the merchant's own billing server. */
  keyResolver(): KeyResolver & { subscribe?(l: (doc: KeySetDocument) => void): () => void };
  /** `POST /v1/authorizations`; throws when the server cannot be reached. */
  authorize: Authorizer;
  /** `POST /v1/deposits`; throws when the server cannot be reached. */
  deposit(req: { batch: string; orders: DepositItem[] }): Promise<DepositAnswer>;
}

/** Minimal logger (pino-compatible). */
export interface MicropayLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** What the application sees of a payment: `req.micropay` (Express) or `ctx.state.micropay` (Koa). */
export type PaymentInfo =
  | {
      kind: 'order';
      /** Buyer account (`sub`) and its issuer. */
      buyer: string;
      issuer: string;
      /** Amount paid, micro-units, and currency. */
      amount: number;
      currency: string;
      oid: string;
      /** The resource string paid for. */
      res: string;
      /** How it was accepted. */
      mode: OrderAcceptance['mode'];
    }
  | {
      kind: 'receipt';
      buyer: string;
      amount: number;
      currency: string;
      oid: string;
      res: string;
      receipt: Receipt;
    };

/** Options of `micropay()` (Express and Koa) and of `MicropayCore`. */
export interface MicropayOptions {
  /** This merchant's account id at its billing server. */
  merchant: string;
  /** The billing server: `{ url, token }` (merchant token), or a billing client. */
  billing: { url: string; token: string } | MerchantBilling;
  /**
   * Prices by `"METHOD /pattern"` (`:param` and a trailing `*`; first match wins): a price string
   * (`"0.002 USD"`), `{ price, duration, title, description }`, a function of the request returning a
   * price (sync or async), or `null` for free. Unmatched requests are free.
   * @example { 'GET /articles/:id': '0.002 USD', 'GET /live/*': (ctx) => livePrice(ctx.params['*']), 'GET /articles/free': null }
   */
  prices?: Record<string, PriceSpec>;
  /** A price manifest written by `micropay compile` (a path, or the parsed object); tried after `prices`. */
  manifest?: string | PriceManifest;
  /** Price functions for the manifest's `dynamic` routes, by name. */
  dynamicPrices?: Record<string, PriceFunction>;
  /** Issuers whose credentials are taken. Default: the billing server's issuer and its peers, followed as they change. */
  accepts?: string[];
  /** Orders of this amount or more are always approved online. Default `"1 USD"`-equivalent: 1,000,000 micro-units. */
  onlineThreshold?: number | string;
  /** Freshness window of `order.iat`, seconds. Default 300. */
  freshness?: number;
  /** Clock skew allowed on every time check, seconds. Default 60. */
  skew?: number;
  /** Receipt key and default receipt lifetime. Default: a key for this process only, 3600 s. */
  receipts?: ReceiptOptions;
  /** Replay marks and spend tallies. Default: in memory (warns when NODE_ENV=production). */
  store?: PaymentStore;
  /**
   * The durable deposit queue. Default: in memory (warns when NODE_ENV=production). With a durable
   * queue (`redisQueue`), a charged response's bytes wait for the order's append (one round trip),
   * so a crash can never leave content served for an order that is not queued.
   */
  queue?: DepositQueue;
  /** Batching of deposits. */
  deposits?: {
    maxBatch?: number;
    maxDelayMs?: number;
    retryBaseMs?: number;
    retryMaxMs?: number;
    drainTimeoutMs?: number;
  };
  /** Whether a response status is charged. Default: `status < 400`. */
  charge?: (status: number) => boolean;
  /**
   * When the billing server must approve a payment and cannot be reached: `false` (default) answers
   * 503; `{ max }` accepts orders up to `max` (a price) without it.
   */
  failOpen?: false | { max: number | string };
  /**
   * Called after a payment is charged: its order is in the deposit queue and the response is on its
   * way. (With a durable queue, such as Redis, the response is held until the order is queued; if it
   * cannot be, the connection is closed, the order released, and this is not called.)
   */
  onPaid?: (info: PaymentInfo, req: IncomingMessage) => void;
  /** Called when a payment is refused. */
  onRejected?: (rejection: Rejection, req: IncomingMessage) => void;
  /** A pino-compatible logger. Default: pino at level `warn` on stderr. */
  logger?: MicropayLogger;
  /** Display name of the merchant in offers and the paywall page. */
  name?: string;
  /** Seconds a quoted price holds (offer `exp`). Default 300. */
  offerTtl?: number;
  /**
   * The browser wallet script (`micropay/wallet`'s click-to-pay script). Default `/_micropay/wallet.js`:
   * the core answers `GET` and `HEAD` of that path with it, and the paywall page loads it from there.
   * Another path on this site (`/assets/wallet.js`) moves both; an absolute URL (a CDN) is what the
   * paywall page loads while the core still serves the default path; `false`: the core serves no script
   * (serve `micropay/dist/browser/micropay-wallet.js` yourself; the paywall page still loads the default path).
   */
  walletScript?: string | false;
  /** A prom-client registry to register metrics in. Default: a registry of this instance (`core.metrics`). */
  registry?: Registry;
  /** The clock, in Unix seconds. Default: the system clock. For tests. */
  clock?: () => number;
}

/**
 * What `handle` decided. A paid order handled with `{ settle: 'caller' }` carries its `charge`, which
 * the caller decides with `settleCharge`.
 */
export type Outcome =
  | { action: 'free' }
  | { action: 'answered' }
  | { action: 'paid'; info: PaymentInfo; charge?: Charge };

/** Options of one `handle` call. */
export interface HandleOptions {
  /**
   * Who decides a paid order's charge. `'headers'` (the default): the core, when the response's head
   * is written (it wraps `res.writeHead` until then) or when the response closes first. `'caller'`:
   * the outcome carries the `charge` and the core touches nothing on `res`; the caller must call
   * `settleCharge` once, with the status it is about to send and before any byte of the head is
   * written, or with 0 when the response closes with nothing sent (micropay-proxy, which knows the
   * upstream's status when its headers arrive). An undecided charge holds its order's share of the
   * spend tally.
   */
  settle?: 'headers' | 'caller';
}

/** A paid order's pending charge (`HandleOptions.settle`); opaque. */
export interface Charge {
  /** Whether it was decided (charged or released). */
  readonly decided: boolean;
}

/**
 * Decides a charge handled with `{ settle: 'caller' }`: when the core's `charge` option says so (by
 * default, a status below 400) the order is charged (the `Micropay-Receipt` header is set on `res`, the order
 * queued for deposit), otherwise it is released. Status 0: nothing was sent, never charged. Only the
 * first call counts.
 */
export function settleCharge(res: ServerResponse, charge: Charge, status: number): void {
  const c = charge as PendingCharge;
  c.settle(res, c, status);
}

function optionError(message: string): MicropayError {
  return new MicropayError('invalid_option', message);
}

function seconds(v: unknown, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw optionError(`${name} must be a whole number of seconds (>= 0).`);
  return v;
}

function amountOption(v: number | string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 1)
      throw optionError(`${name} must be an integer number of micro-units (>= 1) or a price string.`);
    return v;
  }
  try {
    return parsePrice(v).amt;
  } catch (e) {
    throw optionError(`${name}: ${(e as Error).message}`);
  }
}

/**
 * The merchant's billing client, over `node:http` rather than the global `fetch`: its deposits then
 * run through the same socket and stream code as the site's own requests (src/billing-client/node-fetch.ts).
 */
async function createClient(b: { url: string; token: string }): Promise<MerchantBilling> {
  const [mod, transport] = await Promise.all([
    import('../billing-client/index.js'),
    import('../billing-client/node-fetch.js'),
  ]);
  return mod.createBillingClient({
    url: b.url,
    token: b.token,
    fetch: transport.nodeFetch(),
  }) as unknown as MerchantBilling;
}

/**
 * A paid response whose charge waits for its status, kept under a symbol on the response and read
 * by `writeHeadCharging` and `closeCharging`, two functions shared by every response. A closure per
 * response installed as `res.writeHead` did the same work, but under bench/proxy's paid load (V8's
 * heap spaces read after each collection) 1.6 MB was promoted at each young-generation collection,
 * against 1.0 MB with the shared functions, and 1.85 MB survived it, against 1.3 MB.
 */
interface PendingCharge {
  readonly settle: (res: ServerResponse, c: PendingCharge, status: number) => void;
  /** `res.writeHead` as it was, put back once the charge is decided; null when the caller settles. */
  readonly original: ServerResponse['writeHead'] | null;
  decided: boolean;
  readonly req: IncomingMessage;
  readonly v: OrderAcceptance;
  readonly receipt: string;
  readonly info: PaymentInfo;
}
const CHARGE = Symbol('micropay.charge');
type Chargeable = ServerResponse & { [CHARGE]?: PendingCharge };

/** `res.writeHead` while the charge is pending: decides it on the status, then writes the head. */
function writeHeadCharging(this: Chargeable, ...args: unknown[]): ServerResponse {
  const c = this[CHARGE]!;
  const original = c.original!;
  c.settle(this, c, typeof args[0] === 'number' ? args[0] : this.statusCode);
  return (original as (...a: unknown[]) => ServerResponse).apply(this, args);
}

/** The response's 'close': one that closes before its head was written is decided then, uncharged. */
function closeCharging(this: Chargeable): void {
  const c = this[CHARGE];
  if (c !== undefined && !c.decided) c.settle(this, c, this.headersSent ? this.statusCode : 0);
}

/** The framework-neutral merchant. Build one per app; adapters wrap it. */
export class MicropayCore {
  readonly merchant: string;
  readonly name: string | undefined;
  readonly prices: PriceTable;
  readonly receipt: ReceiptKey;
  readonly store: PaymentStore;
  readonly queue: DepositQueue;
  readonly metrics: Registry;
  readonly logger: MicropayLogger;
  private readonly options: MicropayOptions;
  private readonly charge: (status: number) => boolean;
  private readonly offerTtl: number;
  private readonly freshness: number;
  private readonly skew: number;
  private readonly onlineThreshold: number;
  private readonly failOpenMax: number;
  private readonly now: () => number;
  private readonly ownsStore: boolean;
  private readonly ownsQueue: boolean;
  /** The queue is durable: a charged response is held until its order is appended. */
  private readonly holdForQueue: boolean;
  /** Path the wallet script is served at, or null when `walletScript: false`. */
  private readonly walletPath: string | null;
  private billing: MerchantBilling | null = null;
  private verifier: Verifier | null = null;
  private batcher: DepositBatcher | null = null;
  private acq = '';
  private accepts: string[] = [];
  private init: Promise<void> | null = null;
  /** Set once `ready()` has resolved: the hot path then skips awaiting it. */
  private connected = false;
  private closed = false;
  /**
   * Queue appends and order releases not settled yet, which `close()` waits for. A count, not a set
   * of promises: a set the size of the requests in flight is rehashed as it grows and shrinks, and
   * its new tables, held by this long-lived object, were promoted by the young-generation GC.
   */
  private unsettled = 0;
  private readonly onSettled: (() => void)[] = [];
  private readonly untrack = (): void => {
    if (--this.unsettled === 0) for (const f of this.onSettled.splice(0)) f();
  };
  private readonly m: {
    payments: Counter<'mode'>;
    rejections: Counter<'code'>;
    receipts: Counter;
    uncharged: Counter;
    deposits: Counter<'status'>;
    verify: HistogramSeries;
  };

  constructor(options: MicropayOptions) {
    if (typeof options !== 'object' || options === null) {
      throw optionError('micropay() needs an options object: micropay({ merchant, billing, prices }).');
    }
    const o = options;
    if (!isId(o.merchant))
      throw optionError('merchant must be your merchant account id (1 to 128 characters [A-Za-z0-9._:-]).');
    if (typeof o.billing !== 'object' || o.billing === null) {
      throw optionError(
        'billing must be { url, token } (your billing server and merchant token) or a billing client.',
      );
    }
    const b = o.billing as Partial<MerchantBilling> & { url?: unknown; token?: unknown };
    if (
      typeof b.authorize === 'function' &&
      typeof b.deposit === 'function' &&
      typeof b.keyResolver === 'function'
    ) {
      // A billing client (it may also carry a `url`): use it as it is.
      this.billing = o.billing as MerchantBilling;
    } else if (b.url !== undefined) {
      try {
        new URL(String(b.url));
      } catch {
        throw optionError(`billing.url is not a URL: ${JSON.stringify(String(b.url).slice(0, 100))}.`);
      }
      if (typeof b.token !== 'string' || b.token.length === 0) {
        throw optionError('billing.token must be the merchant API token your billing server issued.');
      }
    } else {
      throw optionError(
        'billing must be { url, token } or a billing client with keyResolver(), authorize() and deposit().',
      );
    }
    if (
      o.accepts !== undefined &&
      (!Array.isArray(o.accepts) || !o.accepts.every(isId) || o.accepts.length === 0)
    ) {
      throw optionError('accepts must be a non-empty list of issuer ids.');
    }
    if (o.charge !== undefined && typeof o.charge !== 'function')
      throw optionError('charge must be a function (status) => boolean.');
    if (
      o.walletScript !== undefined &&
      o.walletScript !== false &&
      (typeof o.walletScript !== 'string' || o.walletScript.trim() === '')
    ) {
      throw optionError('walletScript must be a path or URL of the wallet script, or false to serve none.');
    }
    this.options = o;
    this.walletPath =
      o.walletScript === false
        ? null
        : typeof o.walletScript === 'string' && /^\/(?!\/)/.test(o.walletScript)
          ? o.walletScript.split(/[?#]/)[0]!
          : WALLET_SCRIPT_PATH;
    this.merchant = o.merchant;
    this.name = o.name;
    this.freshness = seconds(o.freshness, 'freshness', 300);
    this.skew = seconds(o.skew, 'skew', 60);
    this.offerTtl = seconds(o.offerTtl, 'offerTtl', 300);
    this.onlineThreshold = amountOption(o.onlineThreshold, 'onlineThreshold', 1_000_000);
    this.failOpenMax = o.failOpen ? amountOption(o.failOpen.max, 'failOpen.max', 0) : 0;
    this.charge = o.charge ?? ((s) => s < 400);
    this.now = o.clock ?? (() => Math.floor(Date.now() / 1000));
    this.logger =
      o.logger ??
      pino({ name: 'micropay', level: process.env.MICROPAY_LOG_LEVEL ?? 'warn' }, pino.destination(2));
    this.receipt = loadReceiptKey(o.receipts);
    const defaultDuration = seconds(o.receipts?.duration, 'receipts.duration', 3600);
    this.prices = new PriceTable({
      prices: o.prices,
      manifest: o.manifest,
      dynamicPrices: o.dynamicPrices,
      defaultDuration,
    });
    const production = process.env.NODE_ENV === 'production';
    this.ownsStore = !o.store;
    this.store = o.store ?? new MemoryPaymentStore();
    this.ownsQueue = !o.queue;
    this.queue = o.queue ?? new MemoryDepositQueue();
    this.holdForQueue = this.queue.durable !== false;
    if (production && (this.ownsStore || this.ownsQueue)) {
      this.logger.warn(
        {},
        'micropay: using the in-memory store and deposit queue in production: replays are only caught per process and queued deposits die with it. Pass store: redisStore(...) and queue: redisQueue(...).',
      );
    }
    if (this.receipt.ephemeral && production) {
      this.logger.warn(
        {},
        'micropay: no receipts.keyFile: receipts stop working at restart and on other instances.',
      );
    }
    const reg = o.registry ?? new Registry();
    this.metrics = reg;
    this.m = {
      payments: new Counter({
        name: 'micropay_payments_total',
        help: 'Payments accepted, by mode',
        labelNames: ['mode'],
        registers: [reg],
      }),
      rejections: new Counter({
        name: 'micropay_rejections_total',
        help: 'Payments refused, by code',
        labelNames: ['code'],
        registers: [reg],
      }),
      receipts: new Counter({
        name: 'micropay_receipt_accesses_total',
        help: 'Accesses with a receipt',
        registers: [reg],
      }),
      uncharged: new Counter({
        name: 'micropay_uncharged_total',
        help: 'Accepted orders not charged (response failed)',
        registers: [reg],
      }),
      deposits: new Counter({
        name: 'micropay_deposited_orders_total',
        help: 'Deposited orders, by status',
        labelNames: ['status'],
        registers: [reg],
      }),
      verify: new FastHistogram({
        name: 'micropay_verify_seconds',
        help: 'Time to verify a payment order (receipts, a cache lookup, are not timed)',
        buckets: [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1],
        registers: [reg],
      }).series(), // observed per order: one series, no label hashing per call
    };
    if (!this.prices.empty) this.connectSoon(0);
  }

  private connectTimer: NodeJS.Timeout | null = null;

  /**
   * Connects in the background from construction on, retrying with backoff, so that deposits an
   * earlier process left queued go out without waiting for a priced request.
   */
  private connectSoon(ms: number): void {
    this.connectTimer = setTimeout(() => {
      this.connectTimer = null;
      this.ready().catch((e) => {
        this.logger.info(
          { err: (e as Error).message },
          'micropay: billing server not reachable yet; retrying',
        );
        if (!this.closed) this.connectSoon(Math.min(30_000, Math.max(1000, ms * 2)));
      });
    }, ms);
    this.connectTimer.unref();
  }

  /** Connects to the billing server (key set, issuer) and starts the batcher. Also awaited by the first priced request. */
  ready(): Promise<void> {
    if (!this.init) {
      this.init = this.connect().then(
        () => {
          this.connected = true;
        },
        (e) => {
          this.init = null; // try again on the next request
          throw e;
        },
      );
    }
    return this.init;
  }

  private async connect(): Promise<void> {
    const o = this.options;
    if (!this.billing) this.billing = await createClient(o.billing as { url: string; token: string });
    const billing = this.billing;
    const keys = billing.keyResolver();
    const issuers = await keys.issuers();
    this.acq = issuers[0]!;
    this.accepts = o.accepts ?? issuers;
    const verifierOpts = {
      merchant: this.merchant,
      accepts: this.accepts,
      keys,
      store: this.store,
      authorize: (r: { cert: string; order: string }) => billing.authorize(r),
      onlineThreshold: this.onlineThreshold,
      freshness: this.freshness,
      skew: this.skew,
      failOpenMax: this.failOpenMax,
      receiptKeys: new Map([[this.receipt.kid, this.receipt.key.publicKey]]),
      receiptSigner: this.receipt,
    };
    this.verifier = new Verifier(verifierOpts);
    // The thread that checks orders and signs receipts, started now rather than by the first payment.
    void cryptoThread().start();
    if (!o.accepts && keys.subscribe) {
      keys.subscribe((doc) => {
        this.accepts = [doc.issuer, ...doc.peers.map((p) => p.issuer)];
        this.verifier?.setAccepts(this.accepts);
      });
    }
    const d = o.deposits ?? {};
    this.batcher = new DepositBatcher({ queue: this.queue, billing, logger: this.logger, ...d });
    this.batcher.on('deposited', (a: DepositAnswer) => {
      for (const r of a.results) this.m.deposits.inc({ status: r.status });
    });
    this.batcher.on('rejected', (dl: DeadLetter) => this.emitDeadLetter(dl));
    this.batcher.start();
    void this.warnAboutStores();
  }

  /** Logs, once, what the store and queue say is wrong with their setup (a Redis that evicts keys). */
  private async warnAboutStores(): Promise<void> {
    const said = new Set<string>();
    for (const s of [this.store, this.queue] as { warnings?: () => Promise<string[]> }[]) {
      const ws = await s.warnings?.().catch(() => []);
      for (const w of ws ?? []) {
        if (said.has(w)) continue; // the store and queue usually share one Redis
        said.add(w);
        this.logger.warn({}, `micropay: ${w}`);
      }
    }
  }

  private readonly deadLetterListeners = new Set<(dl: DeadLetter) => void>();
  private emitDeadLetter(dl: DeadLetter): void {
    for (const l of this.deadLetterListeners) l(dl);
  }
  /** Calls `listener` for every order the billing server rejects. */
  onDeadLetter(listener: (dl: DeadLetter) => void): () => void {
    this.deadLetterListeners.add(listener);
    return () => this.deadLetterListeners.delete(listener);
  }
  /** Orders the billing server rejected (bounded, newest last). */
  get deadLetters(): readonly DeadLetter[] {
    return this.batcher?.deadLetters ?? [];
  }
  /** The deposit batcher, once connected. */
  get deposits(): DepositBatcher | null {
    return this.batcher;
  }

  /**
   * Handles one request. `target` is the request target as the merchant received it (for Express
   * `req.originalUrl`). Resolves `free` (go on), `paid` (go on; the charge is decided when headers are
   * written, or by the caller: `options.settle`), or `answered` (a 402/400/503 was sent; do not go on).
   */
  async handle(
    req: IncomingMessage,
    res: ServerResponse,
    target = req.url ?? '/',
    options?: HandleOptions,
  ): Promise<Outcome> {
    const method = req.method ?? 'GET';
    // (No split of the target per request: most requests are not for the script.)
    // The browser wallet script, answered here so every adapter and the proxy serve it where compiled
    // pages and the paywall page load it (src/middleware/wallet-script.ts). Off with `walletScript: false`.
    if (
      this.walletPath !== null &&
      (method === 'GET' || method === 'HEAD') &&
      target.startsWith(this.walletPath) &&
      (target.length === this.walletPath.length || target[this.walletPath.length] === '?')
    ) {
      await this.sendWalletScript(req, res);
      return { action: 'answered' };
    }
    let priced: ResolvedPrice | null;
    try {
      const p = this.prices.lookup(req, method, target);
      priced = p instanceof Promise ? await p : p;
    } catch (e) {
      this.logger.error(
        { err: (e as Error).message, route: target.slice(0, 200) },
        'micropay: the price function failed',
      );
      this.sendError(
        res,
        500,
        'price_unavailable',
        'The price of this resource could not be computed. Try again later.',
      );
      return { action: 'answered' };
    }
    if (!priced) return { action: 'free' };
    if (this.closed) {
      this.sendError(res, 503, 'shutting_down', 'This server is shutting down. Try again shortly.', 1);
      return { action: 'answered' };
    }
    try {
      if (!this.connected) await this.ready();
    } catch (e) {
      this.logger.error({ err: (e as Error).message }, 'micropay: cannot reach the billing server');
      this.sendError(
        res,
        503,
        'billing_unavailable',
        'The billing server cannot be reached, so no payment can be taken. Try again shortly.',
        5,
      );
      return { action: 'answered' };
    }
    const res_ = `${method} ${target}`;
    const header = req.headers['micropay-payment'];
    if (header === undefined) {
      this.challenge(req, res, res_, priced);
      return { action: 'answered' };
    }
    const t0 = performance.now();
    let v: Verdict;
    try {
      v = await this.verifier!.verify({
        res: res_,
        price: priced.price,
        header,
        now: this.now(),
        receiptDuration: priced.duration,
      });
    } catch (e) {
      // The verifier answers every bad payment itself; what throws is the payment store (Redis down):
      // without the replay mark no order can be taken, so none is (PROTOCOL.md section 6, check 8).
      this.logger.error(
        { err: (e as Error).message },
        'micropay: the payment store failed; the payment was refused with 503 store_unavailable',
      );
      this.sendError(
        res,
        503,
        'store_unavailable',
        "Payments cannot be taken right now: this site's payment store is unreachable. Nothing was charged. Try again shortly.",
        5,
      );
      return { action: 'answered' };
    }
    // Orders are timed; a receipt is a cache lookup once its signature is known.
    if (!v.ok || v.kind === 'order') this.m.verify.observe((performance.now() - t0) / 1000);
    if (!v.ok) {
      this.m.rejections.inc({ code: v.code });
      this.options.onRejected?.(v, req);
      if (v.status === 402) this.challenge(req, res, res_, priced, v);
      else this.sendError(res, v.status, v.code, v.message, v.retryAfter);
      return { action: 'answered' };
    }
    if (v.kind === 'receipt') {
      this.m.receipts.inc();
      const r = v.receipt;
      return {
        action: 'paid',
        info: {
          kind: 'receipt',
          buyer: r.sub,
          amount: r.amt,
          currency: r.cur,
          oid: r.oid,
          res: r.res,
          receipt: r,
        },
      };
    }
    this.m.payments.inc({ mode: v.mode });
    const info: PaymentInfo = {
      kind: 'order',
      buyer: v.cert.sub,
      issuer: v.cert.iss,
      amount: v.order.amt,
      currency: v.order.cur,
      oid: v.order.oid,
      res: res_,
      mode: v.mode,
    };
    // The receipt was signed with the order's check, on the crypto thread; it is sent only if the
    // response is charged.
    const byCaller = options?.settle === 'caller';
    const charge = this.pendingCharge(req, res, v, v.receipt!, info, byCaller);
    if (charge === null) return { action: 'answered' };
    return byCaller ? { action: 'paid', info, charge } : { action: 'paid', info };
  }

  /**
   * The pending charge of an accepted order, decided on the status before the first byte of the
   * body: by the caller (`byCaller`), or here, with `res.writeHead` as `writeHeadCharging` until then.
   * Null, having released the order, when the client has already hung up.
   *
   * The caller's way leaves `res` as it is: the hook adds two own properties to a paid response, and
   * V8 then makes node's response code, which every free response runs through too, handle both
   * shapes. Counted with callgrind on micropay-proxy's event loop (3,000 free requests after 6,000 free
   * and 900 paid ones, four runs each), a free request cost 349,100 to 352,400 instructions with the
   * hook and 346,900 to 347,900 with the proxy deciding; 327,700 to 331,800 where no paid request
   * came before.
   */
  private pendingCharge(
    req: IncomingMessage,
    res: ServerResponse,
    v: OrderAcceptance,
    receipt: string,
    info: PaymentInfo,
    byCaller: boolean,
  ): PendingCharge | null {
    const c: PendingCharge = {
      settle: this.settleCharge,
      original: byCaller ? null : res.writeHead,
      decided: false,
      req,
      v,
      receipt,
      info,
    };
    if (res.closed || res.destroyed) {
      // Gone while its payment was checked: its 'close' has passed, so it is decided now, uncharged.
      this.settleCharge(res, c, 0);
      return null;
    }
    if (byCaller) return c;
    (res as Chargeable)[CHARGE] = c;
    res.writeHead = writeHeadCharging as typeof res.writeHead;
    // A connection that closes before any header was written is not charged.
    res.on('close', closeCharging);
    return c;
  }

  /** Charges (receipt header, order queued for deposit) or releases the order of `c`, once. */
  private readonly settleCharge = (res: ServerResponse, c: PendingCharge, status: number): void => {
    if (c.decided) return;
    c.decided = true;
    if (c.original !== null) res.writeHead = c.original;
    const { req, v, info } = c;
    if (!(status > 0 && this.charge(status))) {
      this.m.uncharged.inc();
      this.track(v.release().catch(() => {}));
      return;
    }
    if (!res.headersSent) res.setHeader('Micropay-Receipt', c.receipt);
    const item: DepositItem = { cert: v.certToken, order: v.orderToken };
    if (v.auth !== undefined) item.auth = v.auth;
    if (!this.holdForQueue) {
      this.track(
        this.queue.append(item).then(
          () => this.batcher?.notify(),
          (e) => this.appendFailed(e, v),
        ),
      );
      this.options.onPaid?.(info, req);
      return;
    }
    // Nothing goes out until the order is in the queue (src/middleware/hold.ts); the answer to an
    // upgrade request (the proxy's websockets) is written on the socket itself.
    const upgrade = (req as IncomingMessage & { upgrade?: boolean }).upgrade === true;
    const hold = holdOutput(res, upgrade ? (res.socket ?? undefined) : undefined);
    this.track(
      this.queue.append(item).then(
        () => {
          hold.open();
          this.batcher?.notify();
          this.options.onPaid?.(info, req);
        },
        (e) => {
          hold.fail();
          this.appendFailed(e, v);
          this.m.uncharged.inc();
          return v.release().catch(() => {});
        },
      ),
    );
  };

  private appendFailed(e: unknown, v: OrderAcceptance): void {
    this.logger.error(
      { err: (e as Error).message, oid: v.order.oid },
      this.holdForQueue
        ? 'micropay: could not queue a charged order for deposit; the response was not sent and the order was released'
        : 'micropay: could not queue a charged order for deposit',
    );
  }

  private track(p: Promise<unknown>): void {
    this.unsettled++;
    p.then(this.untrack, this.untrack);
  }

  /** The offer for a resource at a price. */
  offer(res: string, priced: ResolvedPrice): Offer {
    return buildOffer({
      mer: this.merchant,
      acq: this.acq,
      accepts: this.accepts,
      res,
      amt: priced.price.amt,
      cur: priced.price.cur,
      dur: priced.duration,
      exp: this.now() + this.offerTtl,
      ...(priced.title !== undefined ? { title: priced.title } : {}),
      ...(this.name !== undefined ? { name: this.name } : {}),
    });
  }

  private challenge(
    req: IncomingMessage,
    res: ServerResponse,
    resource: string,
    priced: ResolvedPrice,
    why?: Rejection,
  ): void {
    const offer = this.offer(resource, priced);
    res.statusCode = 402;
    res.setHeader('WWW-Authenticate', wwwAuthenticate(this.merchant));
    res.setHeader('Micropay-Offer', encodeOfferHeader(offer));
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Vary', 'Accept, Micropay-Payment');
    if (prefersHtml(req.headers.accept)) {
      res.setHeader('Content-Type', 'text/html; charset=utf-8');
      const opts: Parameters<typeof renderPaywall>[1] = {};
      if (this.options.walletScript) opts.walletScript = this.options.walletScript;
      if (priced.description) opts.description = priced.description;
      if (why) {
        opts.error = why.code;
        opts.message = why.message;
      }
      res.end(renderPaywall(offer, opts));
      return;
    }
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    const body = why
      ? challengeBody(offer, why.code, why.message)
      : challengeBody(offer, 'payment_required', priceSentence(offer.amt, offer.cur));
    res.end(JSON.stringify(body));
  }

  /** Sends the wallet script: cacheable, revalidated by its ETag. */
  private async sendWalletScript(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let a: WalletScriptAsset;
    try {
      a = await walletScriptAsset();
    } catch (e) {
      this.logger.error({ err: (e as Error).message }, 'micropay: the wallet script is unavailable');
      this.sendError(
        res,
        503,
        'wallet_script_unavailable',
        'The wallet script is not available on this server.',
      );
      return;
    }
    res.setHeader('Content-Type', 'application/javascript; charset=utf-8');
    res.setHeader('Cache-Control', 'public, max-age=600');
    res.setHeader('ETag', a.etag);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    if (req.headers['if-none-match']?.split(/\s*,\s*/).includes(a.etag)) {
      res.statusCode = 304;
      res.end();
      return;
    }
    res.statusCode = 200;
    res.setHeader('Content-Length', String(a.body.length));
    res.end(req.method === 'HEAD' ? undefined : a.body);
  }

  private sendError(
    res: ServerResponse,
    status: number,
    code: string,
    message: string,
    retryAfter?: number,
  ): void {
    res.statusCode = status;
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.setHeader('Cache-Control', 'no-store');
    if (retryAfter !== undefined) res.setHeader('Retry-After', String(retryAfter));
    res.end(JSON.stringify({ error: code, message }));
  }

  /** Stops taking payments, waits for queued appends, drains deposits (see `deposits.drainTimeoutMs`), closes owned stores. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.connectTimer) clearTimeout(this.connectTimer);
    if (this.unsettled > 0) await new Promise<void>((r) => this.onSettled.push(r));
    if (this.batcher) {
      const left = await this.batcher.close();
      if (left > 0)
        this.logger.warn(
          { left },
          'micropay: deposits still queued at close; they are delivered by the next start (Redis queue)',
        );
    }
    if (this.ownsStore) await this.store.close();
    if (this.ownsQueue) await this.queue.close();
  }
}

/** Reads a price for use outside requests (e.g. `onlineThreshold`). */
export function toMoney(p: string | Money): Money {
  return parsePrice(p);
}
