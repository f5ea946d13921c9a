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
  verifySignatureOffThread,
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

/** One Ed25519 signature a check still needs verified. */
interface SignatureJob {
  d: DecodedToken;
  key: KeyObject;
}

/** A credential read whose issuer signature is still to be verified (then it is cached). */
interface UnverifiedCert {
  entry: CachedCert;
  job: SignatureJob;
  token: string;
}

/**
 * An order and its credential read, their keys found, and every check that needs no
 * signature result still to come: `finish` runs checks 2 to 6 in PROTOCOL.md's order
 * once it can ask whether each of `jobs` verified.
 */
interface Prepared {
  jobs: SignatureJob[];
  finish(verified: (job: SignatureJob) => boolean): CheckResult;
}

/** Uncached credentials met in one batch, by token: one issuer signature check each. */
type BatchCerts = Map<string, UnverifiedCert>;

/** Verifies payment pairs and mp-auth tokens for this billing server. */
export class OrderChecker {
  private readonly certs = new Lru<string, CachedCert>(10_000);
  private readonly buyerKeys = new PublicKeyCache(10_000);
  // The (iss, kid) of the last credential whose key was not loaded (read right after `MISS`, synchronously).
  private lastMissed = { iss: '', kid: '' };

  constructor(private readonly o: CheckerOptions) {}

  /**
   * The credential: verified and cached, failed, `MISS` when its key is not loaded yet (and
   * `missing` says to ask), or read with its issuer signature still to verify (shared by the
   * batch's other orders under the same token).
   */
  private credential(
    token: unknown,
    missing: 'miss' | 'fail',
    batch: BatchCerts | null,
  ): CachedCert | UnverifiedCert | FailedCheck | typeof MISS {
    if (typeof token !== 'string')
      return fail('malformed_payment', 'The credential token is missing or not a string.');
    const hit = this.certs.get(token);
    // A peer's credential stays good only while the peer is active and still lists the key.
    if (
      hit &&
      (hit.cert.iss === this.o.issuer || this.o.peers?.peek(hit.cert.iss, hit.cert.kid) === hit.issuerKey)
    )
      return hit;
    const seen = batch?.get(token);
    if (seen) return seen;
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
    let buyerKey: KeyObject;
    try {
      buyerKey = this.buyerKeys.get(cert.key);
    } catch {
      // (Reported as a bad credential whether or not its signature holds: the same code either way.)
      return fail('bad_credential', 'The credential holds an invalid buyer key.');
    }
    const u: UnverifiedCert = {
      entry: { cert, cid: tid(token), issuerKey, buyerKey },
      job: { d, key: issuerKey },
      token,
    };
    batch?.set(token, u);
    return u;
  }

  /**
   * Checks 2 to 6 for an order deposited or authorized by merchant `mer`
   * (`null`: any merchant, for an order a peer claims for one of its merchants).
   * `now` (authorizations) also requires the credential valid now and the order fresh.
   * Synchronous, signatures included, unless the credential names a key this instance has not
   * loaded yet: then it re-reads the key table and answers through a promise. For one order
   * (an online authorization); a batch goes through `checkAll`.
   */
  check(
    certToken: unknown,
    orderToken: unknown,
    mer: string | null,
    now?: number,
  ): CheckResult | Promise<CheckResult> {
    const p = this.prepare(certToken, orderToken, mer, now, 'miss', null);
    if (p === MISS)
      return this.afterMiss().then(() =>
        verifyHere(this.prepare(certToken, orderToken, mer, now, 'fail', null) as Prepared | FailedCheck),
      );
    return verifyHere(p);
  }

  /**
   * `check` for every order of a deposit or a claim, with their signatures verified on the crypto
   * thread (`protocol/crypto-thread.ts`) rather than on the event loop, which a batch of 1,000
   * orders would otherwise hold for over 100 ms (credential fetches and online authorizations
   * waiting behind it). A credential shared by several orders has its signature checked once.
   */
  async checkAll(
    items: readonly { cert: unknown; order: unknown }[],
    mer: string | null,
  ): Promise<CheckResult[]> {
    const batch: BatchCerts = new Map();
    const prepared: (Prepared | FailedCheck)[] = [];
    for (const it of items) {
      let p = this.prepare(it.cert, it.order, mer, undefined, 'miss', batch);
      if (p === MISS) {
        await this.afterMiss();
        p = this.prepare(it.cert, it.order, mer, undefined, 'fail', batch) as Prepared | FailedCheck;
      }
      prepared.push(p);
    }
    const jobs = new Set<SignatureJob>();
    for (const p of prepared) if ('jobs' in p) for (const j of p.jobs) jobs.add(j);
    const list = [...jobs];
    const ok = await Promise.all(list.map((j) => verifySignatureOffThread(j.d, j.key)));
    const verified = new Map<SignatureJob, boolean>();
    for (let i = 0; i < list.length; i++) verified.set(list[i]!, ok[i]!);
    return prepared.map((p) => ('jobs' in p ? p.finish((j) => verified.get(j)!) : p));
  }

  /** After `MISS`: refetches the key set that lacked the key (rate-limited). */
  private afterMiss(): Promise<void> {
    const { iss, kid } = this.lastMissed;
    return iss === this.o.issuer || !this.o.peers
      ? this.o.keys.refreshAfterMiss(kid)
      : this.o.peers.refreshAfterMiss(iss, kid);
  }

  private prepare(
    certToken: unknown,
    orderToken: unknown,
    mer: string | null,
    now: number | undefined,
    missing: 'miss' | 'fail',
    batch: BatchCerts | null,
  ): Prepared | FailedCheck | typeof MISS {
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
    const c = this.credential(certToken, missing, batch);
    if (c === MISS || 'ok' in c) return c;
    const pending = 'job' in c ? c : null;
    const entry = pending ? pending.entry : (c as CachedCert);
    // An order under another credential fails check 4 without its signature being looked at.
    const orderJob: SignatureJob | null = order.cid === entry.cid ? { d: od, key: entry.buyerKey } : null;
    const jobs: SignatureJob[] = [];
    if (pending) jobs.push(pending.job);
    if (orderJob) jobs.push(orderJob);
    return {
      jobs,
      finish: (verified) => {
        if (pending) {
          if (!verified(pending.job))
            return fail('bad_credential', `The credential is not signed by "${entry.cert.iss}".`);
          this.certs.set(pending.token, entry);
        }
        return this.rest(entry, order, orderJob, verified, mer, now);
      },
    };
  }

  /** Checks 3 to 6, given a verified credential. */
  private rest(
    c: CachedCert,
    order: Order,
    orderJob: SignatureJob | null,
    verified: (job: SignatureJob) => boolean,
    mer: string | null,
    now: number | undefined,
  ): CheckResult {
    const { cert } = c;
    const skew = this.o.skew;
    if (order.iat < cert.nbf - skew || order.iat > cert.exp + skew) {
      return fail('expired_credential', "The order was signed outside its credential's validity period.");
    }
    if (now !== undefined && (now < cert.nbf - skew || now > cert.exp + skew)) {
      return fail('expired_credential', 'The credential is not valid now. The buyer must fetch a fresh one.');
    }
    if (!orderJob) return fail('bad_signature', 'The order was not made under the credential sent with it.');
    if (!verified(orderJob))
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

/** A prepared check finished with its signatures verified here, synchronously. */
function verifyHere(p: Prepared | FailedCheck): CheckResult {
  return 'jobs' in p ? p.finish((j) => verifySignature(j.d, j.key)) : p;
}

function messageOf(e: unknown): string {
  return isMicropayError(e) ? e.message : 'The payment could not be read.';
}
