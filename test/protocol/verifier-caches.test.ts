/**
 * The verifier's caches of tokens whose signatures held, found by the end of the token and
 * compared whole: credentials, and orders refused as replays (sent yet again, one is refused
 * without a signature check or a receipt signature, and still gets the answer PROTOCOL.md section
 * 6 gives: the first check that fails, in order).
 */
import type { KeyObject } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeToken } from '../../src/protocol/codec.js';
import {
  generateSigningKey,
  type SigningKey,
  signToken,
  tid,
  verifySignature,
} from '../../src/protocol/crypto.js';
import { cryptoThread } from '../../src/protocol/crypto-thread.js';
import { formatPaymentHeader } from '../../src/protocol/header.js';
import type { KeyResolver } from '../../src/protocol/keys.js';
import { receiptHead, receiptJson } from '../../src/protocol/receipt-json.js';
import type { AcceptRequest, AcceptResult, PaymentStore } from '../../src/protocol/store.js';
import { createVerifier, type VerifierOptions } from '../../src/protocol/verifier.js';
import { MemoryPaymentStore } from '../../src/stores/memory.js';

const NOW = 1_790_000_000;
const RES = 'GET /articles/1';
const PRICE = { amt: 2000, cur: 'USD' };
const bank = generateSigningKey();
const buyer = generateSigningKey();
const receiptKey = generateSigningKey();

/** The one issuer key, resolved without I/O. */
const keys: KeyResolver = {
  peek: (iss, kid) => (iss === 'bank-a' && kid === 'k1' ? bank.publicKey : undefined),
  resolve: async (iss, kid) => (iss === 'bank-a' && kid === 'k1' ? bank.publicKey : null),
  issuers: async () => ['bank-a'],
};

function credential(exp = NOW + 86_400): string {
  return signToken(
    {
      typ: 'mp-cert',
      v: 1,
      iss: 'bank-a',
      kid: 'k1',
      sub: 'alice',
      key: buyer.x,
      cur: 'USD',
      lim: 1_000_000,
      nbf: NOW - 60,
      exp,
    },
    bank,
  );
}

let oids = 0;
function pay(cert: string, o: { res?: string; oid?: string; key?: SigningKey } = {}): string {
  const order = signToken(
    {
      typ: 'mp-order',
      v: 1,
      cid: tid(cert),
      mer: 'news-site',
      res: o.res ?? RES,
      amt: 2000,
      cur: 'USD',
      iat: NOW,
      oid: o.oid ?? `order-${++oids}-abcdefghijklmnop`,
    },
    o.key ?? buyer,
  );
  return formatPaymentHeader({ kind: 'order', cert, order });
}

/** A memory store that can lose every mark, as an emptied store would. */
class ForgetfulStore implements PaymentStore {
  inner = new MemoryPaymentStore();
  accept(req: AcceptRequest): Promise<AcceptResult> {
    return this.inner.accept(req);
  }
  release(cid: string, mer: string, amt: number): Promise<void> {
    return this.inner.release(cid, mer, amt);
  }
  spent(cid: string, mer: string): Promise<number> {
    return this.inner.spent(cid, mer);
  }
  async forget(): Promise<void> {
    await this.inner.close();
    this.inner = new MemoryPaymentStore();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

const stores: PaymentStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

function verifier(extra: Partial<VerifierOptions> = {}) {
  const store = extra.store ?? new MemoryPaymentStore();
  stores.push(store);
  return createVerifier({
    merchant: 'news-site',
    accepts: ['bank-a'],
    keys,
    store,
    receiptSigner: { kid: 'r1', key: receiptKey },
    receiptKeys: new Map<string, KeyObject>([['r1', receiptKey.publicKey]]),
    ...extra,
  });
}

/** Ed25519 jobs done so far, on the crypto thread or the event loop. */
function cryptoJobs(): number {
  const s = cryptoThread().stats;
  return s.jobs + s.fallbacks + s.inline;
}

describe('orders replayed again', () => {
  it('are refused as replayed_order without a signature check or a receipt', async () => {
    const v = verifier();
    const header = pay(credential());
    const run = (h = header, res = RES, now = NOW) =>
      v.verify({ res, price: PRICE, header: h, now, receiptDuration: 600 });
    const first = await run();
    expect(first).toMatchObject({ ok: true, kind: 'order', mode: 'offline' });
    // Accepted, it is not remembered: its first replay is checked in full (order and receipt).
    let before = cryptoJobs();
    expect(await run()).toMatchObject({ ok: false, code: 'replayed_order' });
    expect(cryptoJobs() - before).toBe(2);
    before = cryptoJobs();
    for (let i = 0; i < 5; i++) {
      const again = await run();
      expect(again).toMatchObject({ ok: false, code: 'replayed_order', status: 402 });
      expect('receipt' in again).toBe(false);
    }
    expect(cryptoJobs()).toBe(before);
    // A fresh order still costs its checks: the count moves, so the assertion above can fail.
    expect((await run(pay(credential()))).ok).toBe(true);
    expect(cryptoJobs()).toBeGreaterThan(before);
  });

  it('still get the first failing check of section 6, in its order', async () => {
    const v = verifier({ freshness: 300, skew: 60 });
    const cert = credential(NOW + 3600);
    const header = pay(cert);
    const run = (o: { res?: string; now?: number; amt?: number } = {}) =>
      v.verify({
        res: o.res ?? RES,
        price: { amt: o.amt ?? PRICE.amt, cur: 'USD' },
        header,
        now: o.now ?? NOW,
        receiptDuration: 600,
      });
    expect((await run()).ok).toBe(true);
    expect(await run()).toMatchObject({ code: 'replayed_order' });
    // Check 3 (the credential expired), 5 (another resource), 6 (a higher price), 7 (stale), then 8.
    expect(await run({ now: NOW + 3600 + 61 })).toMatchObject({ code: 'expired_credential' });
    expect(await run({ res: 'GET /articles/2' })).toMatchObject({ code: 'wrong_resource' });
    expect(await run({ amt: 2001 })).toMatchObject({ code: 'insufficient_amount' });
    expect(await run({ now: NOW + 361 })).toMatchObject({ code: 'stale_order' });
    expect(await run({ now: NOW + 360 })).toMatchObject({ code: 'replayed_order' });
  });

  it('are matched on the whole token, never on its last characters alone', async () => {
    const v = verifier();
    const cert = credential();
    const header = pay(cert, { oid: 'same-oid-abcdefghijklmnop' });
    expect((await v.verify({ res: RES, price: PRICE, header, now: NOW })).ok).toBe(true);
    expect(await v.verify({ res: RES, price: PRICE, header, now: NOW })).toMatchObject({
      code: 'replayed_order',
    });
    // The same signature under another payload: its cache key matches, its text does not.
    const forged = samePayloadEnd(/order="([^"]+)"/.exec(header)![1]!, { oid: 'other-oid-abcdefghijklmnop' });
    const before = cryptoJobs();
    const v2 = await v.verify({
      res: RES,
      price: PRICE,
      header: formatPaymentHeader({ kind: 'order', cert, order: forged }),
      now: NOW,
    });
    expect(v2).toMatchObject({ ok: false, code: 'bad_signature' });
    expect(cryptoJobs()).toBeGreaterThan(before);
  });

  it('that the store takes again (its mark lost) are payments, with a receipt signed then', async () => {
    const store = new ForgetfulStore();
    const v = verifier({ store });
    const header = pay(credential());
    const run = () => v.verify({ res: RES, price: PRICE, header, now: NOW, receiptDuration: 600 });
    expect((await run()).ok).toBe(true);
    expect(await run()).toMatchObject({ ok: false, code: 'replayed_order' });
    await store.forget();
    const again = await run();
    expect(again).toMatchObject({ ok: true, kind: 'order', mode: 'offline' });
    if (!again.ok || again.kind !== 'order') throw new Error('accepted expected');
    const rd = decodeToken(again.receipt, 'mp-receipt');
    expect(verifySignature(rd, receiptKey.publicKey)).toBe(true);
    expect(rd.payload).toMatchObject({
      res: RES,
      oid: again.order.oid,
      amt: 2000,
      sub: 'alice',
      exp: NOW + 600,
    });
    expect(await run()).toMatchObject({ ok: false, code: 'replayed_order' });
  });

  it('are checked again when the cache is turned off (replayCacheSize: 0)', async () => {
    const v = verifier({ replayCacheSize: 0 });
    const header = pay(credential());
    expect((await v.verify({ res: RES, price: PRICE, header, now: NOW })).ok).toBe(true);
    expect((await v.verify({ res: RES, price: PRICE, header, now: NOW })).ok).toBe(false);
    const before = cryptoJobs();
    expect(await v.verify({ res: RES, price: PRICE, header, now: NOW })).toMatchObject({
      code: 'replayed_order',
    });
    expect(cryptoJobs()).toBeGreaterThan(before);
  });
});

/** The same signature under another payload (so the same last characters): what a cache key sees alike. */
function samePayloadEnd(token: string, change: Record<string, unknown>): string {
  const [payload, sig] = token.split('.');
  const body = JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8'));
  return `${Buffer.from(JSON.stringify({ ...body, ...change })).toString('base64url')}.${sig}`;
}

describe('the credential cache', () => {
  it('never takes another token with the same ending for a cached credential', async () => {
    const v = verifier();
    const cert = credential();
    expect((await v.verify({ res: RES, price: PRICE, header: pay(cert), now: NOW })).ok).toBe(true);
    const forged = samePayloadEnd(cert, { lim: 999_999_999 });
    expect(forged.slice(-24)).toBe(cert.slice(-24));
    // Taken for the cached one, its orders (made under its own tid) would fail as bad_signature.
    const v2 = await v.verify({ res: RES, price: PRICE, header: pay(forged), now: NOW });
    expect(v2).toMatchObject({ ok: false, code: 'bad_credential' });
    expect((await v.verify({ res: RES, price: PRICE, header: pay(cert), now: NOW })).ok).toBe(true);
  });
});

describe('the receipt payload', () => {
  it('is written by its template exactly as JSON.stringify writes the receipt (property)', () => {
    const text = fc.string({ unit: 'binary', maxLength: 40 });
    fc.assert(
      fc.property(
        fc.record({ mer: text, kid: text, res: text, oid: text, cur: text, sub: text }),
        fc.record({
          amt: fc.maxSafeNat(),
          iat: fc.integer({ min: 0, max: 2 ** 40 }),
          dur: fc.integer({ min: 0, max: 2 ** 31 }),
        }),
        (s, n) => {
          const receipt = {
            typ: 'mp-receipt',
            v: 1,
            mer: s.mer,
            kid: s.kid,
            res: s.res,
            oid: s.oid,
            amt: n.amt,
            cur: s.cur,
            sub: s.sub,
            iat: n.iat,
            exp: n.iat + n.dur,
          };
          const order = { res: s.res, oid: s.oid, amt: n.amt, cur: s.cur };
          expect(receiptJson(receiptHead(s.mer, s.kid), order, s.sub, n.iat, n.iat + n.dur)).toBe(
            JSON.stringify(receipt),
          );
        },
      ),
      { numRuns: 3000 },
    );
  });
});
