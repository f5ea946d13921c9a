import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { TokenType } from '../../src/protocol/codec.js';
import { parsePaymentHeader } from '../../src/protocol/header.js';
import {
  type Authorizer,
  createVerifier,
  decodeToken,
  generateSigningKey,
  StaticKeyResolver,
  signingKeyFromSeed,
  signToken,
  tid,
  verifySignature,
} from '../../src/protocol/index.js';
import { publicKeyOf, signTokenAsync, tidAsync, verifySignatureAsync } from '../../src/protocol/noble.js';
import { MemoryPaymentStore } from '../../src/stores/memory.js';
import { copyVectorsPath, sharedVectorsPath, vectors as V } from '../helpers/vectors.js';

describe('shared vectors v1', () => {
  it.skipIf(!sharedVectorsPath)('the synced copy under test/vectors equals shared/vectors/v1.json', () => {
    expect(readFileSync(copyVectorsPath, 'utf8')).toBe(readFileSync(sharedVectorsPath!, 'utf8'));
  });

  it('derives every published key from its seed, on both backends', async () => {
    for (const [name, k] of Object.entries(V.keys)) {
      expect(signingKeyFromSeed(k.seed).x, name).toBe(k.x);
      expect(await publicKeyOf(Buffer.from(k.seed, 'hex')), name).toBe(k.x);
    }
  });

  for (const name of ['cert', 'order', 'receipt'] as const) {
    it(`signs the ${name} token byte for byte and computes its tid (node:crypto and noble)`, async () => {
      const t = V.tokens[name];
      const keyName = name === 'cert' ? 'billing' : name === 'order' ? 'buyer' : 'merchantReceipt';
      const seed = V.keys[keyName]!.seed;
      const payload = t.payload as { typ: TokenType };
      expect(signToken(payload, signingKeyFromSeed(seed))).toBe(t.token);
      expect(await signTokenAsync(payload, Buffer.from(seed, 'hex'))).toBe(t.token);
      if ('tid' in t) {
        expect(tid(t.token)).toBe(t.tid);
        expect(await tidAsync(t.token)).toBe(t.tid);
      }
      const d = decodeToken(t.token, payload.typ);
      expect(d.payload).toEqual(t.payload);
      expect(verifySignature(d, signingKeyFromSeed(seed).publicKey)).toBe(true);
      expect(await verifySignatureAsync(d, V.keys[keyName]!.x)).toBe(true);
    });
  }

  for (const bad of V.badTokens) {
    it(`rejects bad token: ${bad.name} (both backends)`, async () => {
      const key = signingKeyFromSeed(V.keys[bad.key]!.seed);
      let ok = false;
      let okNoble = false;
      try {
        const d = decodeToken(bad.token, bad.typ as TokenType);
        ok = verifySignature(d, key.publicKey);
        okNoble = await verifySignatureAsync(d, key.x);
      } catch (e) {
        expect((e as { code?: string }).code).toBe('malformed_payment');
      }
      expect(ok).toBe(false);
      expect(okNoble).toBe(false);
    });
  }

  describe('merchant cases through the verifier', () => {
    const m = V.merchant;
    // Every accepted order also comes back with its receipt, signed in the same trip.
    const receiptKey = generateSigningKey();
    for (const c of V.merchantCases) {
      it(`${c.name} -> ${c.expect}`, async () => {
        const store = new MemoryPaymentStore();
        let asked = 0;
        const authorize: Authorizer = async () => {
          asked++;
          return { status: 'approved', auth: 'auth-token' };
        };
        const verifier = createVerifier({
          merchant: m.mer,
          accepts: m.accepts,
          keys: new StaticKeyResolver(V.billingKeys, m.skew),
          store,
          authorize,
          onlineThreshold: m.onlineThreshold,
          freshness: m.freshness,
          skew: m.skew,
          receiptSigner: { kid: 'r1', key: receiptKey },
          receiptKeys: new Map([['r1', receiptKey.publicKey]]),
        });
        const run = (header: string) =>
          verifier.verify({ res: m.res, price: m.price, header, now: V.now, receiptDuration: 600 });
        for (const h of c.before ?? []) expect((await run(h)).ok).toBe(true);
        asked = 0;
        const v = await run(c.header);
        await store.close();
        if (v.ok && v.kind === 'order') {
          const rd = decodeToken(v.receipt, 'mp-receipt');
          expect(verifySignature(rd, receiptKey.publicKey)).toBe(true);
          expect(rd.payload).toEqual({
            typ: 'mp-receipt',
            v: 1,
            mer: m.mer,
            kid: 'r1',
            res: v.order.res,
            oid: v.order.oid,
            amt: v.order.amt,
            cur: v.order.cur,
            sub: v.cert.sub,
            iat: V.now,
            exp: V.now + 600,
          });
          const again = await verifier.verify({
            res: m.res,
            price: m.price,
            now: V.now,
            header: `receipt="${v.receipt}"`,
          });
          expect(again).toMatchObject({ ok: true, kind: 'receipt' });
        }
        if (c.expect === 'ok') {
          expect(v).toMatchObject({ ok: true, kind: 'order', mode: 'offline' });
          expect(asked).toBe(0);
        } else if (c.expect === 'online') {
          expect(v).toMatchObject({ ok: true, kind: 'order', mode: 'online', auth: 'auth-token' });
          expect(asked).toBe(1);
        } else {
          expect(v.ok).toBe(false);
          if (!v.ok) {
            expect(v.code).toBe(c.expect);
            expect(v.status).toBe(c.expect === 'malformed_payment' ? 400 : 402);
            expect(v.message.length).toBeGreaterThan(10);
          }
          expect(asked).toBe(0);
        }
      });
    }
  });
});

describe('verifier property: mutated payments are never accepted', () => {
  it('random mutations of a valid header give a coded rejection, never an exception or an acceptance', async () => {
    const fc = (await import('fast-check')).default;
    const m = V.merchant;
    const base = V.tokens.paymentHeader;
    const store = new MemoryPaymentStore();
    const verifier = createVerifier({
      merchant: m.mer,
      accepts: m.accepts,
      keys: new StaticKeyResolver(V.billingKeys, m.skew),
      store,
      onlineThreshold: m.onlineThreshold,
    });
    await fc.assert(
      fc.asyncProperty(
        fc.nat(base.length - 1),
        fc.string({ minLength: 1, maxLength: 3 }),
        fc.nat(3),
        async (pos, ins, del) => {
          const h = base.slice(0, pos) + ins + base.slice(pos + del);
          // A mutation in the whitespace between members leaves the same tokens: that is the same payment.
          try {
            const p = parsePaymentHeader(h);
            const b = parsePaymentHeader(base);
            if (p.kind === 'order' && b.kind === 'order' && p.cert === b.cert && p.order === b.order) return;
          } catch (e) {
            expect(e).toMatchObject({ code: 'malformed_payment' });
          }
          const v = await verifier.verify({ res: m.res, price: m.price, header: h, now: V.now });
          expect(v.ok).toBe(false);
          if (!v.ok) expect(typeof v.code).toBe('string');
        },
      ),
      { numRuns: 2000 },
    );
    await store.close();
  });
});
