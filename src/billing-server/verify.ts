/**
 * Re-verification of a deposited or authorized order: checks 2 to 6 of
 * PROTOCOL.md section 6 from the billing server's side (the issuer must be
 * this server, keys come from its own key ring, or, with `peers`, an active
 * peer whose keys this server publishes (section 9); `mer` must be the calling
 * merchant, the credential must be valid at `order.iat`). Pure CPU once keys
 * are loaded: verified credentials sit in an LRU by token text (their
 * signature checked and `tid` computed once), buyer keys in a PublicKeyCache.
 */
import type { KeyObject } from 'node:crypto';
import {
  type Authorization,
  type Credential,
  type DecodedToken,
  decodeToken,
  isMicropayError,
  Lru,
  type Order,
  PublicKeyCache,
  parseAuthorization,
  parseCredential,
  parseOrder,
  tid,
  verifySignature,
} from '../protocol/index.js';
import type { KeyRing } from './keyring.js';

/** Rejection codes a deposit or authorization can carry (PROTOCOL.md section 6 names). */
export type CheckCode =
  | 'malformed_payment'
  | 'unknown_issuer'
  | 'bad_credential'
  | 'expired_credential'
  | 'bad_signature'
  | 'wrong_merchant'
  | 'insufficient_amount'
  | 'stale_order';

/** A verified pair. */
export interface CheckedOrder {
  ok: true;
  cert: Credential;
  order: Order;
  /** `tid` of the credential. */
  cid: string;
}

/** A failed check: the code and a sentence. */
export interface FailedCheck {
  ok: false;
  reason: CheckCode;
  message: string;
}

interface CachedCert {
  cert: Credential;
  cid: string;
  issuerKey: KeyObject;
  buyerKey: KeyObject;
}

const fail = (reason: CheckCode, message: string): FailedCheck => ({ ok: false, reason, message });

/** The outcome of checking one order. */
export type CheckResult = CheckedOrder | FailedCheck;

// "The issuer key is not loaded here yet": re-read the key table, then decide.
const MISS = Symbol('miss');

/** The keys of peer billing servers, as this server publishes them (section 9). */
export interface PeerKeySource {
  /** Whether credentials of `iss` are accepted here now (an active peer). */
  accepts(iss: string): boolean;
  /** The public key `kid` of peer `iss`, if known now (no I/O). */
  peek(iss: string, kid: string): KeyObject | undefined;
  /** After `kid` of `iss` was not found: refetch that peer's key set (rate-limited). */
  refreshAfterMiss(iss: string, kid: string): Promise<void>;
}

/** Options of the checker. */
export interface CheckerOptions {
  issuer: string;
  keys: KeyRing;
  skew: number;
  freshness: number;
  /** Peers whose credentials verify too (deposits at the acquirer). Default: none, only this server's. */
  peers?: PeerKeySource;
}

/** Verifies payment pairs and mp-auth tokens for this billing server. */
export class OrderChecker {
  private readonly certs = new Lru<string, CachedCert>(10_000);
  private readonly buyerKeys = new PublicKeyCache(10_000);
  // The (iss, kid) of the last credential whose key was not loaded (read right after `MISS`, synchronously).
  private lastMissed = { iss: '', kid: '' };

  constructor(private readonly o: CheckerOptions) {}

  /** The verified credential, or `MISS` when its key is not loaded yet (and `missing` says to ask). */
  private credential(token: unknown, missing: 'miss' | 'fail'): CachedCert | FailedCheck | typeof MISS {
    if (typeof token !== 'string')
      return fail('malformed_payment', 'The credential token is missing or not a string.');
    const hit = this.certs.get(token);
    // A peer's credential stays good only while the peer is active and still lists the key.
    if (
      hit &&
      (hit.cert.iss === this.o.issuer || this.o.peers?.peek(hit.cert.iss, hit.cert.kid) === hit.issuerKey)
    )
      return hit;
    let d: DecodedToken;
    let cert: Credential;
    try {
      d = decodeToken(token, 'mp-cert');
      cert = parseCredential(d.payload);
    } catch (e) {
      return fail('malformed_payment', messageOf(e));
    }
    const own = cert.iss === this.o.issuer;
    const peers = this.o.peers;
    if (!own && !peers?.accepts(cert.iss)) {
      return fail(
        'unknown_issuer',
        `This billing server is "${this.o.issuer}" and does not settle credentials of "${cert.iss}".`,
      );
    }
    const issuerKey = own ? this.o.keys.peekPublicKey(cert.kid) : peers!.peek(cert.iss, cert.kid);
    if (!issuerKey) {
      this.lastMissed = { iss: cert.iss, kid: cert.kid };
      if (missing === 'miss') return MISS;
      return fail(
        'unknown_issuer',
        own
          ? `The signing key "${cert.kid}" is not one of this billing server's keys.`
          : `The signing key "${cert.kid}" is not one of the published keys of "${cert.iss}".`,
      );
    }
    if (!verifySignature(d, issuerKey))
      return fail('bad_credential', `The credential is not signed by "${cert.iss}".`);
    let buyerKey: KeyObject;
    try {
      buyerKey = this.buyerKeys.get(cert.key);
    } catch {
      return fail('bad_credential', 'The credential holds an invalid buyer key.');
    }
    const entry = { cert, cid: tid(token), issuerKey, buyerKey };
    this.certs.set(token, entry);
    return entry;
  }

  /**
   * Checks 2 to 6 for an order deposited or authorized by merchant `mer`
   * (`null`: any merchant, for an order a peer claims for one of its merchants).
   * `now` (authorizations) also requires the credential valid now and the order fresh.
   * Synchronous (no promise per order on the deposit hot path) unless the
   * credential names a key this instance has not loaded yet: then it re-reads
   * the key table and answers through a promise.
   */
  check(
    certToken: unknown,
    orderToken: unknown,
    mer: string | null,
    now?: number,
  ): CheckResult | Promise<CheckResult> {
    const r = this.checkWith(certToken, orderToken, mer, now, 'miss');
    if (r !== MISS) return r;
    const { iss, kid } = this.lastMissed;
    const refreshed =
      iss === this.o.issuer || !this.o.peers
        ? this.o.keys.refreshAfterMiss(kid)
        : this.o.peers.refreshAfterMiss(iss, kid);
    return refreshed.then(() => this.checkWith(certToken, orderToken, mer, now, 'fail') as CheckResult);
  }

  private checkWith(
    certToken: unknown,
    orderToken: unknown,
    mer: string | null,
    now: number | undefined,
    missing: 'miss' | 'fail',
  ): CheckResult | typeof MISS {
    if (typeof orderToken !== 'string')
      return fail('malformed_payment', 'The order token is missing or not a string.');
    let od: DecodedToken;
    let order: Order;
    try {
      od = decodeToken(orderToken, 'mp-order');
      order = parseOrder(od.payload);
    } catch (e) {
      return fail('malformed_payment', messageOf(e));
    }
    const c = this.credential(certToken, missing);
    if (c === MISS || !('cert' in c)) return c;
    const { cert } = c;
    const skew = this.o.skew;
    if (order.iat < cert.nbf - skew || order.iat > cert.exp + skew) {
      return fail('expired_credential', "The order was signed outside its credential's validity period.");
    }
    if (now !== undefined && (now < cert.nbf - skew || now > cert.exp + skew)) {
      return fail('expired_credential', 'The credential is not valid now. The buyer must fetch a fresh one.');
    }
    if (order.cid !== c.cid)
      return fail('bad_signature', 'The order was not made under the credential sent with it.');
    if (!verifySignature(od, c.buyerKey))
      return fail('bad_signature', "The order's signature does not verify under the credential's key.");
    if (mer !== null && order.mer !== mer)
      return fail('wrong_merchant', `The order is for merchant "${order.mer}", not "${mer}".`);
    if (order.cur !== cert.cur)
      return fail(
        'insufficient_amount',
        `The order is in ${order.cur} but its credential is in ${cert.cur}.`,
      );
    if (order.amt < 1) return fail('insufficient_amount', 'The order amount must be at least 1 micro-unit.');
    if (now !== undefined && Math.abs(now - order.iat) > this.o.freshness + skew) {
      return fail('stale_order', 'The order was not signed just now; the buyer must sign a new one.');
    }
    return { ok: true, cert, order, cid: c.cid };
  }

  /** Verifies an mp-auth token of this server; `null` when it is not one (the deposit then ignores it). */
  async authorization(token: unknown): Promise<Authorization | null> {
    if (typeof token !== 'string') return null;
    try {
      const d = decodeToken(token, 'mp-auth');
      const a = parseAuthorization(d.payload);
      if (a.iss !== this.o.issuer) return null;
      const key = this.o.keys.peekPublicKey(a.kid) ?? (await this.o.keys.publicKey(a.kid));
      if (!key || !verifySignature(d, key)) return null;
      return a;
    } catch {
      return null;
    }
  }
}

/**
 * For a loop of checks over a batch (1,000 orders take over 100 ms of Ed25519): a function that
 * returns a promise to await once the loop has held the event loop `sliceMs` since it last let go,
 * and `undefined` before that. Awaiting it lets other requests (credential fetches, online
 * authorizations) through between slices, at no cost in CPU.
 */
export function timeSlices(sliceMs = 5): () => Promise<void> | undefined {
  let since = performance.now();
  return () => {
    if (performance.now() - since < sliceMs) return undefined;
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        since = performance.now();
        resolve();
      }),
    );
  };
}

function messageOf(e: unknown): string {
  return isMicropayError(e) ? e.message : 'The payment could not be read.';
}
