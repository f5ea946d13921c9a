/**
 * The wallet itself, runtime-neutral: it needs a `Signer`, a `tid` function,
 * fetch and WebCrypto's `getRandomValues`, nothing else, so the Node entry
 * (`index.ts`, node:crypto and files) and the browser entry (`browser.ts`,
 * @noble/ed25519 and IndexedDB) only plug those in.
 *
 * `request` is the buyer's side of PROTOCOL.md sections 4, 5 and 7: send a
 * receipt if one is held for the resource; on 402 read the offer, check the
 * policy, hold a fresh credential, sign one order and try once more; keep the
 * receipt of a charged answer. It never loops: one paid attempt, plus one
 * more only after renewing a credential the merchant called expired or
 * unknown.
 */
import { isBillingError } from '../billing-client/errors.js';
import { request as billingRequest, type HttpConfig } from '../billing-client/http.js';
import { b64urlDecode, b64urlEncode, fromUtf8 } from '../protocol/base64url.js';
import { decodeToken } from '../protocol/codec.js';
import { isMicropayError } from '../protocol/errors.js';
import { formatPaymentHeader } from '../protocol/header.js';
import { type Offer, type Order, parseCredential, parseOffer, parseReceipt } from '../protocol/messages.js';
import { type Money, parseMoney } from '../protocol/money.js';
import { WalletError } from './errors.js';
import { memoryWalletStore } from './memory.js';
import { type CompiledPolicy, checkPolicy, compilePolicy } from './policy.js';
import type {
  KeyStore,
  PaymentRecord,
  PayOptions,
  Signer,
  StoredCredential,
  StoredReceipt,
  WalletPolicy,
  WalletResponse,
  WalletState,
  WalletStatus,
  WalletStore,
} from './types.js';

/** Options shared by both entries' `createWallet`. */
export interface WalletOptions {
  /** The buyer's billing server, e.g. `https://bank.example` (credentials come from `POST /v1/certificates`). */
  billingUrl: string;
  /** The buyer API token the billing server issued. Sent only to `billingUrl`; never printed or put in an error. */
  token: string;
  /** The spending policy. Default: pay every offer in the account's currency. */
  policy?: WalletPolicy;
  /** Where history, receipts, today's spending and the credential are kept. Default: memory. */
  store?: WalletStore;
  /** The fetch used for merchants and the billing server. Default: the global `fetch`. */
  fetch?: typeof fetch;
  /** The clock in Unix seconds. Default: the system clock. For tests. */
  clock?: () => number;
}

/** What an entry plugs in. */
export interface WalletRuntime {
  signer: Signer;
  /** `tid(token)`: base64url SHA-256 of the token. */
  tid: (token: string) => string | Promise<string>;
}

/** A buyer's wallet: an auto-paying fetch with a spending policy, its history and its credential. */
export interface Wallet {
  /** Like `fetch`, paying a 402 within the policy; throws `WalletError` when it will not or cannot pay. */
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>;
  /** Like `fetch`, and says how access was had and what was paid. */
  request(input: string | URL | Request, init?: RequestInit, options?: PayOptions): Promise<WalletResponse>;
  /** The credential, renewed first if it is due (or if `renew` is set). */
  credential(options?: { renew?: boolean }): Promise<StoredCredential>;
  /** Credential, today's spending and policy, without calling anyone. */
  status(): Promise<WalletStatus>;
  /** Payments made, newest first. */
  history(): Promise<PaymentRecord[]>;
  /** Spent today (UTC day), micro-units, in `currency` (default: the account's currency). */
  spentToday(currency?: string): Promise<number>;
  /** The buyer's public key (base64url). */
  publicKey(): Promise<string>;
}

const MAX_HISTORY = 1000;
const MAX_RECEIPTS = 1000;
const USER_AGENT = 'micropay-wallet/0.1';
/** Error codes a merchant answers a paid request with when it did not take the payment (PROTOCOL.md section 6). */
const NOT_TAKEN = new Set(['malformed_payment', 'billing_unavailable', 'store_unavailable', 'shutting_down']);

function invalid(message: string): WalletError {
  return new WalletError('invalid_option', message);
}

function billingBase(url: unknown): URL {
  let u: URL;
  try {
    u = new URL(String(url));
  } catch {
    throw invalid('billingUrl must be an absolute URL of your billing server, like "https://bank.example".');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw invalid('billingUrl must be an http: or https: URL.');
  if (u.username || u.password)
    throw invalid('billingUrl must not hold credentials; pass the buyer token as `token`.');
  u.search = '';
  u.hash = '';
  if (!u.pathname.endsWith('/')) u.pathname += '/';
  return u;
}

/** `YYYY-MM-DD` of a Unix time, UTC. */
export function utcDay(t: number): string {
  return new Date(t * 1000).toISOString().slice(0, 10);
}

/** A fresh order id: 22 characters of base64url over 16 random bytes. */
export function newOid(): string {
  return b64urlEncode(globalThis.crypto.getRandomValues(new Uint8Array(16)));
}

/** Whether a credential should be renewed before paying: another key, or less than 10% of its life (at most 1 h) left. */
export function renewDue(c: StoredCredential, publicKey: string, now: number): boolean {
  const margin = Math.min(Math.floor((c.exp - c.nbf) / 10), 3600);
  return c.key !== publicKey || now >= c.exp - margin;
}

/**
 * A `Signer` over a key store: the seed is loaded (or made and saved) on first use.
 * `fromSeed` turns the 32-byte seed into a signer; `newSeed` makes a random one.
 */
export function seedSigner(
  keyStore: KeyStore,
  newSeed: () => Uint8Array,
  fromSeed: (seed: Uint8Array) => Signer | Promise<Signer>,
): Signer {
  if (!keyStore || typeof keyStore.load !== 'function' || typeof keyStore.save !== 'function') {
    throw invalid('keyStore must have load() and save(seed), like fileKeyStore(path) or memoryKeyStore().');
  }
  let ready: Promise<Signer> | null = null;
  const get = (): Promise<Signer> => {
    if (!ready) {
      ready = (async () => {
        let seed = await keyStore.load();
        if (!seed) {
          await keyStore.save(newSeed());
          // Read back: a store that found a key written meanwhile keeps that one.
          seed = await keyStore.load();
        }
        if (seed?.length !== 32) {
          throw new WalletError(
            'invalid_key',
            'The key store holds something that is not a 32-byte Ed25519 seed.',
          );
        }
        return fromSeed(seed);
      })();
      ready.catch(() => {
        ready = null;
      });
    }
    return ready;
  };
  return {
    publicKey: async () => (await get()).publicKey(),
    sign: async (payload) => (await get()).sign(payload),
  };
}

function emptyState(billingUrl: string): WalletState {
  return { v: 1, billingUrl, credential: null, receipts: [], history: [], spent: { day: '', amounts: {} } };
}

/** A state read from a store, checked enough to be used; anything else starts afresh. */
function usableState(s: unknown, billingUrl: string): WalletState {
  if (typeof s !== 'object' || s === null) return emptyState(billingUrl);
  const x = s as Partial<WalletState>;
  if (x.v !== 1 || !Array.isArray(x.receipts) || !Array.isArray(x.history) || typeof x.spent !== 'object') {
    return emptyState(billingUrl);
  }
  const st = x as WalletState;
  if (st.billingUrl !== billingUrl) {
    // Another billing server: its credential is no use here; history and spending stay the buyer's.
    st.billingUrl = billingUrl;
    st.credential = null;
  }
  return st;
}

interface Challenge {
  status: number;
  code: string;
  message: string | undefined;
  offer: unknown;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads a 402 (or an error answer): the merchant's code and message, and the offer from the body or the header. */
async function readChallenge(res: Response): Promise<Challenge> {
  let body: Record<string, unknown> | null = null;
  try {
    const j: unknown = JSON.parse(await res.text());
    if (isObject(j)) body = j;
  } catch {
    // An HTML paywall page or no body: the header still carries the offer.
  }
  const code =
    typeof body?.error === 'string' && /^[A-Za-z0-9_.:-]{1,64}$/.test(body.error)
      ? body.error
      : 'payment_required';
  const message = typeof body?.message === 'string' ? body.message.slice(0, 500) : undefined;
  let offer: unknown = body?.offer;
  if (offer === undefined) {
    const h = res.headers.get('micropay-offer');
    const bytes = h ? b64urlDecode(h.trim()) : null;
    const text = bytes ? fromUtf8(bytes) : null;
    if (text) {
      try {
        offer = JSON.parse(text);
      } catch {
        offer = undefined;
      }
    }
  }
  return { status: res.status, code, message, offer };
}

function who(offer: Offer): string {
  return offer.name ? `${offer.name} (${offer.mer})` : offer.mer;
}

function merchantRefusal(ch: Challenge, offer: Offer): WalletError {
  const why = ch.message ?? `it answered ${ch.status} ${ch.code}`;
  return new WalletError(ch.code, `${who(offer)} refused the payment: ${why}`, {
    status: ch.status,
    merchantCode: ch.code,
    offer,
  });
}

class WalletImpl implements Wallet {
  private readonly base: URL;
  private readonly http: HttpConfig;
  private readonly fetchImpl: typeof fetch;
  private readonly policy: CompiledPolicy;
  private readonly store: WalletStore;
  private readonly now: () => number;
  private readonly signer: Signer;
  private readonly tid: WalletRuntime['tid'];
  private state: Promise<WalletState> | null = null;
  private renewing: Promise<StoredCredential> | null = null;
  private saving: Promise<void> = Promise.resolve();
  /** Amounts of payments in flight, by currency: counted against the daily budget until settled. */
  private readonly pending = new Map<string, number>();

  constructor(o: WalletOptions, rt: WalletRuntime) {
    if (typeof o !== 'object' || o === null) {
      throw invalid('createWallet needs an options object: createWallet({ billingUrl, token }).');
    }
    this.base = billingBase(o.billingUrl);
    if (typeof o.token !== 'string' || o.token.length === 0 || /[\r\n]/.test(o.token)) {
      throw invalid('token must be the buyer API token your billing server issued (one line).');
    }
    if (o.fetch !== undefined && typeof o.fetch !== 'function') throw invalid('fetch must be a function.');
    if (o.clock !== undefined && typeof o.clock !== 'function')
      throw invalid('clock must be a function returning Unix seconds.');
    // Bound: browsers throw "Illegal invocation" for a fetch called detached from window.
    const f = o.fetch ?? (typeof fetch === 'function' ? fetch.bind(globalThis) : undefined);
    if (!f)
      throw invalid('There is no global fetch here (Node 18 or later has one); pass the `fetch` option.');
    this.fetchImpl = f;
    this.http = {
      base: this.base,
      token: o.token,
      timeoutMs: 10_000,
      retries: 2,
      retryBaseMs: 100,
      retryMaxDelayMs: 2000,
      fetch: f,
      userAgent: USER_AGENT,
    };
    this.policy = compilePolicy(o.policy);
    this.store = o.store ?? memoryWalletStore();
    if (typeof this.store.load !== 'function' || typeof this.store.save !== 'function') {
      throw invalid('store must have load() and save(state), like memoryWalletStore().');
    }
    this.now = o.clock ?? (() => Math.floor(Date.now() / 1000));
    this.signer = rt.signer;
    this.tid = rt.tid;
  }

  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> =>
    (await this.request(input, init)).response;

  readonly publicKey = (): Promise<string> => this.signer.publicKey();

  private load(): Promise<WalletState> {
    if (!this.state) {
      this.state = (async () => usableState(await this.store.load(), this.base.toString()))();
      this.state.catch(() => {
        this.state = null;
      });
    }
    return this.state;
  }

  /** Saves a snapshot; saves run one after another, in order. */
  private async persist(st: WalletState): Promise<void> {
    const now = this.now();
    st.receipts = st.receipts.filter((r) => r.exp > now);
    if (st.receipts.length > MAX_RECEIPTS) st.receipts = st.receipts.slice(-MAX_RECEIPTS);
    if (st.history.length > MAX_HISTORY) st.history = st.history.slice(-MAX_HISTORY);
    const snapshot = structuredClone(st);
    const next = this.saving.then(() => this.store.save(snapshot));
    this.saving = next.catch(() => {});
    try {
      await next;
    } catch (e) {
      throw new WalletError(
        'wallet_store_failed',
        `The wallet could not save its state: ${isMicropayError(e) ? e.message : (e as Error)?.message}`,
        { cause: e },
      );
    }
  }

  private spentOn(st: WalletState, cur: string): number {
    return st.spent.day === utcDay(this.now()) ? (st.spent.amounts[cur] ?? 0) : 0;
  }

  async spentToday(currency?: string): Promise<number> {
    const st = await this.load();
    const cur = currency ?? st.credential?.cur ?? this.policy.summary.currency;
    if (cur) return this.spentOn(st, cur);
    const today = st.spent.day === utcDay(this.now()) ? Object.values(st.spent.amounts) : [];
    return today.length === 1 ? today[0]! : 0;
  }

  async history(): Promise<PaymentRecord[]> {
    const st = await this.load();
    return structuredClone(st.history).reverse();
  }

  async status(): Promise<WalletStatus> {
    const st = await this.load();
    const pub = await this.signer.publicKey();
    const now = this.now();
    const c = st.credential;
    let credential: WalletStatus['credential'] = null;
    if (c) {
      const { cert: _cert, cid: _cid, ...rest } = c;
      credential = rest;
    }
    return {
      billingUrl: this.base.toString(),
      publicKey: pub,
      credential,
      renewDue: c === null || renewDue(c, pub, now),
      spentToday: st.spent.day === utcDay(now) ? { ...st.spent.amounts } : {},
      policy: structuredClone(this.policy.summary),
      receipts: st.receipts.filter((r) => r.exp > now).length,
    };
  }

  async credential(options: { renew?: boolean } = {}): Promise<StoredCredential> {
    return { ...(await this.freshCredential(options.renew === true)) };
  }

  private async freshCredential(force: boolean): Promise<StoredCredential> {
    const st = await this.load();
    const pub = await this.signer.publicKey();
    const c = st.credential;
    if (!force && !this.renewing && c && !renewDue(c, pub, this.now())) return c;
    if (!this.renewing) {
      this.renewing = this.fetchCredential(st, pub);
      this.renewing.then(
        () => {
          this.renewing = null;
        },
        () => {
          this.renewing = null;
        },
      );
    }
    return this.renewing;
  }

  private async fetchCredential(st: WalletState, pub: string): Promise<StoredCredential> {
    let body: unknown;
    try {
      body = (
        await billingRequest(this.http, {
          method: 'POST',
          path: 'v1/certificates',
          body: { key: pub },
          retry: true,
          timeoutMs: this.http.timeoutMs,
        })
      ).body;
    } catch (e) {
      const code = isBillingError(e) ? e.code : undefined;
      const status = isBillingError(e) ? e.status : undefined;
      const why =
        status === 401
          ? 'it did not accept the buyer token. Check the token, or ask the billing server operator for a new one.'
          : code === 'forbidden'
            ? 'the token is not a buyer token. Use the token of a buyer account.'
            : `${isMicropayError(e) ? e.message : 'the request failed'}`;
      const o: { billingCode?: string; status?: number; cause: unknown } = { cause: e };
      if (code !== undefined) o.billingCode = code;
      if (status !== undefined) o.status = status;
      throw new WalletError(
        'no_credential',
        `Could not get a credential from the billing server at ${this.base.origin}: ${why}`,
        o,
      );
    }
    const cert = isObject(body) ? body.cert : undefined;
    let c: StoredCredential;
    try {
      const p = parseCredential(decodeToken(cert, 'mp-cert').payload);
      c = {
        cert: cert as string,
        cid: await this.tid(cert as string),
        iss: p.iss,
        sub: p.sub,
        key: p.key,
        cur: p.cur,
        lim: p.lim,
        nbf: p.nbf,
        exp: p.exp,
      };
    } catch (e) {
      throw new WalletError(
        'no_credential',
        `The billing server at ${this.base.origin} answered with something that is not a credential; check billingUrl.`,
        { cause: e },
      );
    }
    if (c.key !== pub) {
      throw new WalletError(
        'no_credential',
        `The billing server at ${this.base.origin} issued a credential for another key; check billingUrl.`,
      );
    }
    st.credential = c;
    await this.persist(st);
    return c;
  }

  private send(req: Request, payment: string | null): Promise<Response> {
    const r = req.clone();
    if (payment === null) r.headers.delete('micropay-payment');
    else r.headers.set('micropay-payment', payment);
    return this.fetchImpl(r);
  }

  async request(
    input: string | URL | Request,
    init?: RequestInit,
    options: PayOptions = {},
  ): Promise<WalletResponse> {
    const maxPrice = options.maxPrice === undefined ? null : this.money(options.maxPrice, 'maxPrice');
    const req = new Request(input, init);
    const url = new URL(req.url);
    const method = req.method.toUpperCase();
    const st = await this.load();
    const key = `${url.origin} ${method} ${url.pathname}${url.search}`;
    const now = this.now();
    const held = st.receipts.find((r) => r.key === key && r.exp > now);
    let res: Response | null = null;
    if (held) {
      res = await this.send(req, formatPaymentHeader({ kind: 'receipt', receipt: held.token }));
      const refused =
        res.status === 402 ||
        (res.status === 400 && (await readChallenge(res.clone())).code === 'malformed_payment');
      if (!refused) return { response: res, via: 'receipt', payment: null };
      // Expired or not honoured any more: forget it, and pay from this answer's offer (a 400 has none: ask again).
      st.receipts = st.receipts.filter((r) => r !== held);
      await this.persist(st);
      if (res.status === 400) res = null;
    }
    if (!res) {
      res = await this.send(req, null);
      if (res.status !== 402) return { response: res, via: 'free', payment: null };
    }
    const ch = await readChallenge(res);
    if (ch.offer === undefined) {
      throw new WalletError(
        'no_offer',
        `${url.host} answered 402 Payment Required without a micropay offer, so there is nothing this wallet can pay.`,
        { status: 402 },
      );
    }
    let offer: Offer;
    try {
      offer = parseOffer(ch.offer);
    } catch (e) {
      throw new WalletError(
        'invalid_offer',
        `${url.host} sent an offer this wallet cannot read: ${(e as Error).message}`,
        {
          status: 402,
          cause: e,
        },
      );
    }
    // The merchant names the resource; sign only if it is the one asked for (after redirects, the final URL).
    const finalUrl = res.url ? new URL(res.url) : url;
    const target = `${method} ${finalUrl.pathname}${finalUrl.search}`;
    if (offer.res !== target) {
      throw new WalletError(
        'offer_mismatch',
        `${who(offer)} offered "${offer.res.slice(0, 200)}" for the request "${target.slice(0, 200)}"; the wallet pays only for the resource it asked for.`,
        { offer },
      );
    }
    return this.pay(req, finalUrl, offer, maxPrice);
  }

  private money(v: unknown, name: string): Money {
    try {
      return parseMoney(v);
    } catch (e) {
      throw invalid(`${name}: ${(e as Error).message}`);
    }
  }

  private async pay(req: Request, url: URL, offer: Offer, maxPrice: Money | null): Promise<WalletResponse> {
    const st = await this.load();
    const cur = offer.cur;
    // Counted as in flight before the first await, so concurrent payments cannot both pass the daily budget.
    const inFlight = this.pending.get(cur) ?? 0;
    this.pending.set(cur, inFlight + offer.amt);
    try {
      await checkPolicy(this.policy, offer, { url, spentToday: this.spentOn(st, cur) + inFlight, maxPrice });
      let cred = await this.freshCredential(false);
      if (cred.cur !== cur) {
        throw new WalletError(
          'currency_not_allowed',
          `${who(offer)} charges in ${cur}, but your account at ${cred.iss} is in ${cred.cur}.`,
          { offer },
        );
      }
      if (!offer.accepts.includes(cred.iss)) {
        throw new WalletError(
          'issuer_not_accepted',
          `${who(offer)} does not take credentials of your billing server ${cred.iss} (it takes ${offer.accepts.join(', ') || 'none'}).`,
          { offer },
        );
      }
      let renewed = false;
      for (;;) {
        const order: Order = {
          typ: 'mp-order',
          v: 1,
          cid: cred.cid,
          mer: offer.mer,
          res: offer.res,
          amt: offer.amt,
          cur,
          iat: this.now(),
          oid: newOid(),
        };
        const token = await this.signer.sign(order);
        const res = await this.send(
          req,
          formatPaymentHeader({ kind: 'order', cert: cred.cert, order: token }),
        );
        if (res.status === 402) {
          const ch = await readChallenge(res);
          if (!renewed && (ch.code === 'expired_credential' || ch.code === 'unknown_issuer')) {
            renewed = true;
            cred = await this.freshCredential(true);
            continue;
          }
          throw merchantRefusal(ch, offer);
        }
        if (res.status === 400 || res.status === 503) {
          const ch = await readChallenge(res.clone());
          if (NOT_TAKEN.has(ch.code)) throw merchantRefusal(ch, offer);
        }
        return { response: res, via: 'paid', payment: await this.settle(st, url, offer, order, cred, res) };
      }
    } finally {
      const left = (this.pending.get(cur) ?? offer.amt) - offer.amt;
      if (left > 0) this.pending.set(cur, left);
      else this.pending.delete(cur);
    }
  }

  /** Records a charged payment (a receipt came back, or the status says charged) and keeps its receipt. */
  private async settle(
    st: WalletState,
    url: URL,
    offer: Offer,
    order: Order,
    cred: StoredCredential,
    res: Response,
  ): Promise<PaymentRecord | null> {
    const receipt = this.receiptOf(res.headers.get('micropay-receipt'), offer, order, url);
    if (!receipt && res.status >= 400) return null;
    const now = this.now();
    const day = utcDay(now);
    if (st.spent.day !== day) st.spent = { day, amounts: {} };
    st.spent.amounts[order.cur] = (st.spent.amounts[order.cur] ?? 0) + order.amt;
    const rec: PaymentRecord = {
      time: now,
      url: url.toString(),
      mer: offer.mer,
      res: offer.res,
      amt: order.amt,
      cur: order.cur,
      oid: order.oid,
      sub: cred.sub,
      status: res.status,
    };
    if (offer.name !== undefined) rec.name = offer.name;
    if (offer.title !== undefined) rec.title = offer.title;
    if (receipt) {
      rec.receiptExp = receipt.exp;
      st.receipts = st.receipts.filter((r) => r.key !== receipt.key);
      st.receipts.push(receipt);
    }
    st.history.push(rec);
    await this.persist(st);
    return { ...rec };
  }

  /** The receipt of a charged answer, if it is well formed and for this order; its signature is the merchant's to check. */
  private receiptOf(token: string | null, offer: Offer, order: Order, url: URL): StoredReceipt | null {
    if (!token) return null;
    try {
      const r = parseReceipt(decodeToken(token, 'mp-receipt').payload);
      if (r.mer !== offer.mer || r.res !== offer.res || r.oid !== order.oid) return null;
      return { key: `${url.origin} ${offer.res}`, token, mer: r.mer, res: r.res, exp: r.exp };
    } catch {
      return null;
    }
  }
}

/**
 * Makes a wallet from a runtime (signer and tid). The entries' `createWallet` call this.
 * @example
 * const wallet = createWalletWith({ billingUrl, token }, { signer, tid });
 */
export function createWalletWith(options: WalletOptions, runtime: WalletRuntime): Wallet {
  return new WalletImpl(options, runtime);
}
