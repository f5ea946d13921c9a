/**
 * The merchant's verifier: checks 1 to 9 of PROTOCOL.md section 6 as one
 * function of (resource string, price, now, header), with its dependencies
 * injected (key resolver, replay/tally store, online authorizer), and the
 * receipt check of section 7. Returns an acceptance or a coded rejection
 * carrying a sentence; it never throws for anything a client sent.
 *
 * Hot path: a credential seen before is found in an LRU by its token text
 * (signature checked once, `tid` computed once); buyer keys are `KeyObject`s
 * in an LRU; the issuer key is a synchronous cache hit. One Ed25519 check
 * (the order) and one store call per payment. An order refused as a replay is
 * remembered by its text, so that replaying it again is refused (check 8)
 * without checking its signature again or signing a receipt for it.
 */
import type { KeyObject } from 'node:crypto';
import { decodeToken } from './codec.js';
import {
  PublicKeyCache,
  type SigningKey,
  signJsonOffThread,
  tid,
  verifySignature,
  verifySignatureOffThread,
} from './crypto.js';
import { isMicropayError } from './errors.js';
import { type PaymentHeader, parsePaymentHeader } from './header.js';
import type { KeyResolver } from './keys.js';
import { Lru, ownString } from './lru.js';
import {
  type Credential,
  type Order,
  parseCredential,
  parseOrder,
  parseReceipt,
  type Receipt,
} from './messages.js';
import type { Money } from './money.js';
import { formatMoney } from './money.js';
import { receiptHead, receiptJson } from './receipt-json.js';
import type { PaymentStore } from './store.js';

/** Codes of PROTOCOL.md section 6, plus the receipt and availability codes. */
export type RejectionCode =
  | 'malformed_payment'
  | 'unknown_issuer'
  | 'bad_credential'
  | 'expired_credential'
  | 'bad_signature'
  | 'wrong_merchant'
  | 'wrong_resource'
  | 'insufficient_amount'
  | 'stale_order'
  | 'replayed_order'
  | 'limit_exceeded'
  | 'declined'
  | 'billing_unavailable'
  | 'invalid_receipt'
  | 'expired_receipt';

/** A refused payment: answer `status` with `{ error: code, message }` (and the offer, for 402). */
export interface Rejection {
  ok: false;
  code: RejectionCode;
  status: 400 | 402 | 503;
  message: string;
  /** Seconds, for `Retry-After` on 503. */
  retryAfter?: number;
}

/** An accepted payment order. */
export interface OrderAcceptance {
  ok: true;
  kind: 'order';
  cert: Credential;
  order: Order;
  /** The credential token (the cache's own copy, shared by all of its orders). */
  certToken: string;
  /** The order token, copied out of the header it came in. */
  orderToken: string;
  /** `tid` of the credential. */
  cid: string;
  /** The `mp-auth` token when the billing server approved it online. */
  auth?: string;
  /** The signed `mp-receipt` token, when `receiptDuration` was asked for. */
  receipt?: string;
  /** How it was accepted: within the offline limit, approved online, or failed open. */
  mode: 'offline' | 'online' | 'fail-open';
  /**
   * Call when the response is not charged: the amount leaves the spend tally
   * (the oid stays burnt). Safe to call more than once.
   */
  release(): Promise<void>;
}

/** A valid receipt for this resource: serve again without a charge. */
export interface ReceiptAcceptance {
  ok: true;
  kind: 'receipt';
  receipt: Receipt;
}

export type Verdict = OrderAcceptance | ReceiptAcceptance | Rejection;

/** The billing server's answer to `POST /v1/authorizations`. */
export type AuthorizationAnswer =
  | { status: 'approved'; auth: string }
  | { status: 'declined'; reason: string };

/**
 * Asks the billing server online. Throws when the billing server cannot be
 * reached (the verifier then answers 503 `billing_unavailable`, or fails open if configured).
 */
export type Authorizer = (req: { cert: string; order: string }) => Promise<AuthorizationAnswer>;

/** Options of `createVerifier`. Defaults in `resolveVerifierOptions`. */
export interface VerifierOptions {
  /** This merchant's id (`mer`). */
  merchant: string;
  /** Issuers whose credentials are taken. */
  accepts: readonly string[];
  /** Resolves `(iss, kid)` to the issuer's public key. */
  keys: KeyResolver;
  /** Replay marks and spend tallies (checks 8 and 9). */
  store: PaymentStore;
  /** Online authorization; without it, orders past the offline rule get `limit_exceeded`. */
  authorize?: Authorizer;
  /** Orders of this amount or more always go online. Default 1,000,000 (1 unit). */
  onlineThreshold?: number;
  /** Freshness window for `order.iat`, seconds. Default 300. */
  freshness?: number;
  /** Clock skew allowed on every time check, seconds. Default 60. */
  skew?: number;
  /**
   * Accept without the billing server when it is needed and unreachable, for
   * orders up to this amount (micro-units). Default 0: fail closed.
   */
  failOpenMax?: number;
  /** Receipt keys of this merchant, by `kid` (section 7). */
  receiptKeys?: ReadonlyMap<string, KeyObject>;
  /**
   * The key this merchant signs receipts with. With it, and `receiptDuration` in the input, an
   * accepted order comes with its receipt (`OrderAcceptance.receipt`), signed in the same trip to
   * the crypto thread as the order's check (a receipt for an order that fails is thrown away).
   */
  receiptSigner?: { kid: string; key: SigningKey };
  /** Seconds to suggest in `Retry-After` when the billing server is down. Default 5. */
  retryAfter?: number;
  /** Credentials kept verified in the LRU. Default 10,000. */
  credentialCacheSize?: number;
  /** Receipts kept verified in the LRU. Default 10,000. */
  receiptCacheSize?: number;
  /** Buyer public keys kept in the LRU. Default 10,000. */
  buyerKeyCacheSize?: number;
  /**
   * Orders refused as replays, remembered in an LRU: the same order sent yet again costs no
   * signature check (and no receipt signature), and is refused by check 8 as before. Orders are
   * remembered only once replayed, so honest traffic keeps none. Default 10,000; 0 remembers none.
   */
  replayCacheSize?: number;
}

/** What to verify: the request's resource string and current price. */
export interface VerifyInput {
  /** `METHOD SP request-target`, exactly as received. */
  res: string;
  /** The current price of the resource. */
  price: Money;
  /** The `Micropay-Payment` header value (already-parsed headers are accepted too). */
  header: string | string[] | PaymentHeader | undefined;
  /** Unix seconds. Default: now. */
  now?: number;
  /** Sign the order's receipt too, valid for this many seconds (needs `receiptSigner`). */
  receiptDuration?: number;
}

interface CachedCredential {
  ok: true;
  /** The token, copied out of the header it came in (see `ownString`): the cache's key. */
  token: string;
  cert: Credential;
  cid: string;
  issuerKey: KeyObject;
  buyerKey: KeyObject | null;
}

const reject = (
  code: RejectionCode,
  message: string,
  status: 400 | 402 | 503 = 402,
  retryAfter?: number,
): Rejection =>
  retryAfter === undefined
    ? { ok: false, code, status, message }
    : { ok: false, code, status, message, retryAfter };

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** The verifier; see `createVerifier`. */
export class Verifier {
  readonly merchant: string;
  private accepts: Set<string>;
  private readonly keys: KeyResolver;
  private readonly store: PaymentStore;
  private readonly authorize: Authorizer | undefined;
  readonly onlineThreshold: number;
  readonly freshness: number;
  readonly skew: number;
  private readonly failOpenMax: number;
  private readonly receiptKeys: ReadonlyMap<string, KeyObject>;
  private readonly receiptSigner: { kid: string; key: SigningKey } | undefined;
  /** The receipt payload's JSON up to its `res` (see `receiptJson`). */
  private readonly receiptHead: string;
  private readonly retryAfter: number;
  /** Verified credentials by `tokenKey` of their token (each entry holds its whole token). */
  private readonly credentials: Lru<string, CachedCredential>;
  /** Verified receipts by `tokenKey` of their token (each entry holds its whole token). */
  private readonly receipts: Lru<string, { token: string; receipt: Receipt }>;
  private readonly buyerKeys: PublicKeyCache;
  /** Orders refused here as replays, by `tokenKey` of their token: the value is the whole token (a copy). */
  private readonly replayedOrders: Lru<string, string> | null;

  constructor(o: VerifierOptions) {
    this.merchant = o.merchant;
    this.accepts = new Set(o.accepts);
    this.keys = o.keys;
    this.store = o.store;
    this.authorize = o.authorize;
    this.onlineThreshold = o.onlineThreshold ?? 1_000_000;
    this.freshness = o.freshness ?? 300;
    this.skew = o.skew ?? 60;
    this.failOpenMax = o.failOpenMax ?? 0;
    this.receiptKeys = o.receiptKeys ?? new Map();
    this.receiptSigner = o.receiptSigner;
    this.receiptHead = receiptHead(this.merchant, o.receiptSigner?.kid ?? '');
    this.retryAfter = o.retryAfter ?? 5;
    // Keyed by the end of their own copy of each token, not by a slice of the header it came in.
    this.credentials = new Lru(o.credentialCacheSize ?? 10_000);
    this.receipts = new Lru(o.receiptCacheSize ?? 10_000);
    this.buyerKeys = new PublicKeyCache(o.buyerKeyCacheSize ?? 10_000);
    const replays = o.replayCacheSize ?? 10_000;
    this.replayedOrders = replays > 0 ? new Lru(replays) : null;
  }

  /** Replaces the accepted issuers (e.g. after the billing server's peers changed). */
  setAccepts(accepts: readonly string[]): void {
    this.accepts = new Set(accepts);
  }

  /** Checks 1 to 9 for an order, or the receipt of section 7. Never throws for client input. */
  async verify(input: VerifyInput): Promise<Verdict> {
    const now = input.now ?? nowSeconds();
    // A receipt seen before, sent as the wallet sends it (`receipt="<token>"`), is found without
    // parsing the header: what the parser would make of it is that same token.
    const h = input.header;
    if (typeof h === 'string' && h.startsWith('receipt="') && h.charCodeAt(h.length - 1) === 0x22) {
      const known = this.knownReceipt(h.slice(9, -1));
      if (known) return this.receiptVerdict(known, input.res, now);
    }
    let header: PaymentHeader;
    try {
      header =
        typeof input.header === 'object' && input.header !== null && !Array.isArray(input.header)
          ? input.header
          : parsePaymentHeader(input.header);
    } catch (e) {
      return reject('malformed_payment', messageOf(e), 400);
    }
    if (header.kind === 'receipt') return this.verifyReceipt(header.receipt, input.res, now);
    return this.verifyOrder(header.cert, header.order, input, now);
  }

  private async credential(certToken: string, now: number): Promise<CachedCredential | Rejection> {
    // Found by the end of its signature (a key of 24 characters to hash, not the 500 or so of the
    // token), then compared whole.
    const hit = this.credentials.get(tokenKey(certToken));
    if (hit !== undefined && hit.token === certToken) {
      // Still accepted, and its issuer key still published (a removed peer stops at once).
      if (
        !this.accepts.has(hit.cert.iss) ||
        this.keys.peek(hit.cert.iss, hit.cert.kid, now) !== hit.issuerKey
      ) {
        this.credentials.delete(tokenKey(certToken));
      } else return hit;
    }
    let decoded: ReturnType<typeof decodeToken>;
    let cert: Credential;
    try {
      decoded = decodeToken(certToken, 'mp-cert');
      cert = parseCredential(decoded.payload);
    } catch (e) {
      return reject('malformed_payment', messageOf(e), 400);
    }
    if (!this.accepts.has(cert.iss)) {
      return reject('unknown_issuer', `This merchant does not take credentials issued by "${cert.iss}".`);
    }
    let issuerKey: KeyObject | null;
    try {
      issuerKey =
        this.keys.peek(cert.iss, cert.kid, now) ?? (await this.keys.resolve(cert.iss, cert.kid, now));
    } catch {
      return reject(
        'billing_unavailable',
        'The billing server could not be reached to look up a signing key. Try again shortly.',
        503,
        this.retryAfter,
      );
    }
    if (!issuerKey) {
      return reject(
        'unknown_issuer',
        `The signing key "${cert.kid}" of issuer "${cert.iss}" is not known. Fetch a fresh credential.`,
      );
    }
    if (!verifySignature(decoded, issuerKey)) {
      return reject(
        'bad_credential',
        'The credential is not signed by its issuer. Fetch a fresh credential from your billing server.',
      );
    }
    const token = ownString(certToken);
    const entry: CachedCredential = { ok: true, token, cert, cid: tid(token), issuerKey, buyerKey: null };
    try {
      entry.buyerKey = this.buyerKeys.get(cert.key);
    } catch {
      return reject('bad_credential', 'The credential holds an invalid buyer key.');
    }
    this.credentials.set(tokenKey(token), entry);
    return entry;
  }

  private async verifyOrder(
    certToken: string,
    orderToken: string,
    input: VerifyInput,
    now: number,
  ): Promise<Verdict> {
    // Check 1 for the order token (the credential's is inside `credential`).
    let od: ReturnType<typeof decodeToken>;
    let order: Order;
    try {
      od = decodeToken(orderToken, 'mp-order');
      order = parseOrder(od.payload);
    } catch (e) {
      return reject('malformed_payment', messageOf(e), 400);
    }
    const c = await this.credential(certToken, now);
    if (!c.ok) return c;
    const { cert } = c;
    const skew = this.skew;
    // Check 3, times (every request: a cached credential still expires).
    if (now < cert.nbf - skew)
      return reject('expired_credential', 'The credential is not valid yet. Check your clock.');
    if (now > cert.exp + skew)
      return reject(
        'expired_credential',
        'The credential has expired. Fetch a fresh one from your billing server.',
      );
    // Check 4.
    if (order.cid !== c.cid)
      return reject('bad_signature', 'The order was not made under the credential sent with it.');
    // An order refused here as a replay before has a signature known to hold (under this credential,
    // which its `cid` names): sent again, it goes on to the checks below without the crypto thread.
    const seen = this.replayedOrders?.get(tokenKey(orderToken)) === orderToken;
    const duration = input.receiptDuration;
    const signer = duration === undefined ? undefined : this.receiptSigner;
    const signReceipt = () =>
      signJsonOffThread(
        'mp-receipt',
        receiptJson(this.receiptHead, order, cert.sub, now, now + duration!),
        signer!.key,
      );
    // The receipt is signed alongside: both jobs leave for the crypto thread in one batch.
    const signed = signer !== undefined && !seen ? signReceipt() : undefined;
    if (!seen && !(await verifySignatureOffThread(od, c.buyerKey!))) {
      signed?.catch(() => {});
      return reject('bad_signature', "The order's signature does not verify under the credential's key.");
    }
    let receipt = await signed;
    // Check 5.
    if (order.mer !== this.merchant) {
      return reject('wrong_merchant', `The order is for merchant "${order.mer}", not "${this.merchant}".`);
    }
    if (order.res !== input.res)
      return reject(
        'wrong_resource',
        `The order pays for "${order.res.slice(0, 200)}", not for this resource.`,
      );
    // Check 6.
    const price = input.price;
    if (order.cur !== cert.cur || order.cur !== price.cur) {
      return reject(
        'insufficient_amount',
        `This resource is priced in ${price.cur}; the order or credential is in another currency.`,
      );
    }
    if (order.amt < price.amt) {
      return reject(
        'insufficient_amount',
        `This resource costs ${formatMoney(price.amt, price.cur)}; the order offers ${formatMoney(order.amt, order.cur)}.`,
      );
    }
    // Check 7.
    if (Math.abs(now - order.iat) > this.freshness + skew) {
      return reject(
        'stale_order',
        'The order was not signed just now. Check your clock and sign a new order.',
      );
    }
    // Checks 8 and 9, atomically with acceptance.
    const base = {
      iss: cert.iss,
      sub: cert.sub,
      oid: order.oid,
      iat: order.iat,
      replayTtl: this.freshness + 2 * skew,
    };
    const tally = {
      cid: c.cid,
      mer: this.merchant,
      amt: order.amt,
      limit: cert.lim,
      ttl: Math.max(1, cert.exp + skew - now),
    };
    const accepted = (mode: OrderAcceptance['mode'], auth?: string): OrderAcceptance => {
      let released = mode !== 'offline';
      const a: OrderAcceptance = {
        ok: true,
        kind: 'order',
        cert,
        order,
        // Copies, not slices of the header: these wait in the deposit queue, where a slice would
        // keep the whole header alive (the credential's copy is the cache's, one for all its orders).
        certToken: c.token,
        orderToken: ownString(orderToken),
        cid: c.cid,
        mode,
        release: async () => {
          if (released) return;
          released = true;
          await this.store.release(tally.cid, tally.mer, tally.amt);
        },
      };
      if (auth !== undefined) a.auth = auth;
      if (receipt !== undefined) a.receipt = receipt;
      return a;
    };
    // A replayed order that the store takes after all (its replay mark was lost since: a store
    // emptied, a mark evicted without a floor) is a payment like any other, and gets its receipt now.
    const late = seen && signer !== undefined;
    if (order.amt < this.onlineThreshold) {
      const r = await this.store.accept({ ...base, tally });
      if (r === 'accepted') {
        if (late) receipt = await signReceipt();
        return accepted('offline');
      }
      if (r === 'replayed') return this.replayed(orderToken, seen);
    }
    // Online: the replay mark alone, then the billing server.
    const r = await this.store.accept({ ...base, tally: null });
    if (r === 'replayed') return this.replayed(orderToken, seen);
    if (!this.authorize) {
      return reject(
        'limit_exceeded',
        "This payment is over the credential's offline limit and this merchant does not ask online.",
      );
    }
    if (late) receipt = await signReceipt();
    let answer: AuthorizationAnswer;
    try {
      answer = await this.authorize({ cert: certToken, order: orderToken });
    } catch {
      if (order.amt <= this.failOpenMax) return accepted('fail-open');
      return reject(
        'billing_unavailable',
        'The billing server must approve this payment and cannot be reached. Try again shortly.',
        503,
        this.retryAfter,
      );
    }
    if (answer.status === 'approved') return accepted('online', answer.auth);
    return reject(
      'declined',
      `The billing server declined this payment (${String(answer.reason).slice(0, 64)}).`,
    );
  }

  /** Check 8's refusal; the order (its signature checked) is remembered for when it comes again. */
  private replayed(orderToken: string, seen: boolean): Rejection {
    if (!seen && this.replayedOrders !== null) {
      const own = ownString(orderToken);
      this.replayedOrders.set(tokenKey(own), own);
    }
    return reject('replayed_order', 'This order was already used. Sign a new order with a fresh oid.');
  }

  /** A receipt whose signature was checked before, found by its text. */
  private knownReceipt(token: string): Receipt | undefined {
    const e = this.receipts.get(tokenKey(token));
    return e !== undefined && e.token === token ? e.receipt : undefined;
  }

  private verifyReceipt(token: string, res: string, now: number): Verdict {
    // A receipt is re-presented many times: its signature is checked once, then found by its text.
    let receipt = this.knownReceipt(token);
    if (!receipt) {
      let d: ReturnType<typeof decodeToken>;
      try {
        d = decodeToken(token, 'mp-receipt');
        receipt = parseReceipt(d.payload);
      } catch (e) {
        return reject('malformed_payment', messageOf(e), 400);
      }
      const key = this.receiptKeys.get(receipt.kid);
      if (receipt.mer !== this.merchant || !key || !verifySignature(d, key)) {
        return reject(
          'invalid_receipt',
          'This receipt was not issued by this merchant. Pay again to get a new one.',
        );
      }
      const own = ownString(token);
      this.receipts.set(tokenKey(own), { token: own, receipt });
    }
    return this.receiptVerdict(receipt, res, now);
  }

  /** Section 7 for a receipt whose signature holds: this resource, and not expired. */
  private receiptVerdict(receipt: Receipt, res: string, now: number): Verdict {
    if (receipt.res !== res) return reject('invalid_receipt', 'This receipt is for another resource.');
    if (now > receipt.exp + this.skew)
      return reject('expired_receipt', 'This receipt has expired. Pay again to get access.');
    return { ok: true, kind: 'receipt', receipt };
  }
}

/**
 * The caches' key for a token (credentials, receipts, replayed orders): its last 24 characters
 * (of its signature), so a lookup hashes 24 characters rather than the whole token of 300 or
 * more; the entry's token is then compared whole.
 */
function tokenKey(token: string): string {
  return token.slice(-24);
}

function messageOf(e: unknown): string {
  return isMicropayError(e) ? e.message : 'The payment could not be read.';
}

/**
 * Creates the verifier of PROTOCOL.md section 6.
 * @example
 * const verifier = createVerifier({ merchant: 'news-site', accepts: ['bank-a'], keys, store });
 * const v = await verifier.verify({ res: 'GET /articles/42', price: { amt: 2000, cur: 'USD' }, header });
 * if (!v.ok) respond(v.status, { error: v.code, message: v.message });
 */
export function createVerifier(options: VerifierOptions): Verifier {
  return new Verifier(options);
}
