/**
 * Deposits and authorizations on both backends: crediting with fees,
 * duplicates and racing deposits, re-posted batches, every rejection code,
 * the promise of section 8 (offline limit, auth, credit), and reservations
 * that lapse.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Credential, generateSigningKey, signToken, tid } from '../../src/protocol/index.js';
import { type Buyer, backends, expectBalanced, type Harness, oid, startServer } from './helpers.js';

describe.each(backends)('ledger on $name', ({ name, skip }) => {
  describe.skipIf(skip)('deposits and authorizations', () => {
    let h: Harness;
    let mer: { id: string; token: string };
    let alice: Buyer;
    beforeEach(async () => {
      h = await startServer(name);
      mer = await h.merchant('news', { commissionBps: 250 });
      alice = await h.buyer('alice');
    });
    afterEach(async () => {
      await h.close();
    });

    const deposit = (batch: string, orders: unknown[], token = mer.token) =>
      h.call('post', '/v1/deposits', token, { batch, orders });
    const balance = async (id: string) =>
      (await h.call('get', `/v1/admin/accounts/${id}`, h.admin)).body.account.balance as number;

    it('credits an order in one double-entry transaction: buyer -amt, merchant +amt-fee, fees +fee', async () => {
      const r = await deposit('b1', [
        { cert: alice.cert, order: h.order(alice, { mer: 'news', amt: 2001 }) },
      ]);
      expect(r.status).toBe(200);
      expect(r.body.results[0]).toMatchObject({ status: 'credited', amt: 2001, fee: 50 });
      expect(r.body.credited).toBe(1951);
      expect(await balance('alice')).toBe(-2001);
      expect(await balance('news')).toBe(1951);
      expect(await balance('fees:USD')).toBe(50);
      const e = await h.call('get', '/v1/me/entries', mer.token);
      // The merchant's statement has one net entry per deposit batch; the buyer's one entry per order.
      expect(e.body.entries).toEqual([
        expect.objectContaining({
          amount: 1951,
          balance: 1951,
          kind: 'deposit',
          counterparty: null,
          batch: 'b1',
          memo: '1 order, 50 commission',
        }),
      ]);
      const be = await h.call('get', '/v1/me/entries', alice.token);
      expect(be.body.entries).toEqual([
        expect.objectContaining({
          amount: -2001,
          balance: -2001,
          kind: 'order',
          counterparty: 'news',
          res: 'GET /articles/1',
          batch: 'b1',
        }),
      ]);
      await expectBalanced(h);
    });

    it('credits an order once across batches, and a re-posted batch id returns the first answer and changes nothing', async () => {
      const o = { cert: alice.cert, order: h.order(alice, { mer: 'news' }) };
      const first = await deposit('b1', [o, o]);
      expect(first.body.results.map((x: { status: string }) => x.status)).toEqual(['credited', 'duplicate']);
      const other = { cert: alice.cert, order: h.order(alice, { mer: 'news' }) };
      const again = await deposit('b1', [other]);
      expect(again.body).toEqual(first.body);
      const second = await deposit('b2', [o, other]);
      expect(second.body.results.map((x: { status: string }) => x.status)).toEqual(['duplicate', 'credited']);
      expect(await balance('alice')).toBe(-2000);
      await expectBalanced(h);
    });

    it('two racing deposits carrying the same order credit it once', async () => {
      for (let round = 0; round < 5; round++) {
        const o = { cert: alice.cert, order: h.order(alice, { mer: 'news', amt: 7 }) };
        const [a, b] = await Promise.all([deposit(`race-a${round}`, [o]), deposit(`race-b${round}`, [o])]);
        const statuses = [a.body.results[0].status, b.body.results[0].status].sort();
        expect(statuses).toEqual(['credited', 'duplicate']);
      }
      expect(await balance('alice')).toBe(-35);
      await expectBalanced(h);
    });

    it('rejects with the protocol codes and credits nothing for them', async () => {
      const foreignKey = generateSigningKey();
      const certOf = (p: Partial<Credential>, key = foreignKey) => {
        const c: Credential = {
          typ: 'mp-cert',
          v: 1,
          iss: 'bank-a',
          kid: 'nope',
          sub: 'alice',
          key: alice.key.x,
          cur: 'USD',
          lim: 1e6,
          nbf: h.clock.t - 10,
          exp: h.clock.t + 1000,
          ...p,
        };
        return signToken(c, key);
      };
      const kid = JSON.parse(Buffer.from(alice.cert.split('.')[0]!, 'base64url').toString()).kid as string;
      const withCert = (cert: string, o: Record<string, unknown> = {}) => ({
        cert,
        order: h.order({ ...alice, cid: tid(cert) }, { mer: 'news', ...o }),
      });
      const other = generateSigningKey();
      const cases: [string, { cert: string; order: string }][] = [
        ['malformed_payment', { cert: alice.cert, order: 'garbage' }],
        ['malformed_payment', { cert: 'x.y', order: h.order(alice, { mer: 'news' }) }],
        ['unknown_issuer', withCert(certOf({ iss: 'bank-b' }))],
        ['unknown_issuer', withCert(certOf({ kid: 'k-unknown' }))],
        ['bad_credential', withCert(certOf({ kid }))],
        [
          'expired_credential',
          { cert: alice.cert, order: h.order(alice, { mer: 'news', iat: h.clock.t + 86_400 * 3 }) },
        ],
        ['bad_signature', { cert: alice.cert, order: h.order({ ...alice, key: other }, { mer: 'news' }) }],
        [
          'bad_signature',
          { cert: alice.cert, order: h.order({ ...alice, cid: tid('something else') }, { mer: 'news' }) },
        ],
        ['wrong_merchant', { cert: alice.cert, order: h.order(alice, { mer: 'other-shop' }) }],
        ['insufficient_amount', { cert: alice.cert, order: h.order(alice, { mer: 'news', cur: 'EUR' }) }],
      ];
      const r = await deposit(
        'rej',
        cases.map(([, o]) => o),
      );
      expect(r.status).toBe(200);
      expect(r.body.results.map((x: { reason: string }) => x.reason)).toEqual(cases.map(([c]) => c));
      for (const x of r.body.results) {
        expect(x.status).toBe('rejected');
        expect(typeof x.message).toBe('string');
      }
      expect(r.body.credited).toBe(0);
      expect(await balance('alice')).toBe(0);
      const m = await h.call('get', '/metrics');
      expect(m.text).toMatch(/micropay_orders_rejected_total\{[^}]*reason="bad_signature"[^}]*\} 2/);
    });

    it('refuses a deposit of more than 1000 orders and bad deposit bodies with 400 invalid_request', async () => {
      const o = { cert: alice.cert, order: h.order(alice, { mer: 'news' }) };
      const big = await deposit('big', new Array(1001).fill(o));
      expect(big.status).toBe(400);
      expect(big.body.error).toBe('invalid_request');
      expect(big.body.message).toMatch(/orders/);
      for (const [body, field] of [
        [{ orders: [] }, 'batch'],
        [{ batch: 'has space', orders: [] }, 'batch'],
        [{ batch: 'b' }, 'orders'],
        [{ batch: 'b', orders: [1] }, 'orders\\[0\\]'],
        [{ batch: 'b', orders: [{ cert: 5, order: 'x' }] }, 'orders\\[0\\].cert'],
        [{ batch: 'b', orders: [{ cert: 'x', order: 'y', auth: 3 }] }, 'orders\\[0\\].auth'],
      ] as const) {
        const r = await h.call('post', '/v1/deposits', mer.token, body);
        expect(r.status, JSON.stringify(body)).toBe(400);
        expect(r.body.message).toMatch(new RegExp(field));
      }
      const full = await deposit('full', new Array(1000).fill(o));
      expect(full.body.results.filter((x: { status: string }) => x.status === 'credited')).toHaveLength(1);
    });

    it('keeps the promise: within cert.lim an order is credited even after the buyer was disabled', async () => {
      const bob = await h.buyer('bob', { creditLimit: 3000 });
      expect(bob.lim).toBe(3000);
      await h.call('patch', '/v1/admin/accounts/bob', h.admin, { status: 'disabled' });
      const within = await deposit(
        'p1',
        [1000, 2000].map((amt) => ({ cert: bob.cert, order: h.order(bob, { mer: 'news', amt }) })),
      );
      expect(within.body.results.map((x: { status: string }) => x.status)).toEqual(['credited', 'credited']);
      const past = await deposit('p2', [{ cert: bob.cert, order: h.order(bob, { mer: 'news', amt: 1 }) }]);
      expect(past.body.results[0]).toMatchObject({ status: 'rejected', reason: 'over_limit' });
      // The limit is per merchant: another merchant gets its own cert.lim.
      await h.merchant('shop2');
      const m2 = await h.call('post', '/v1/admin/accounts/shop2/tokens', h.admin);
      const other = await deposit(
        'p3',
        [{ cert: bob.cert, order: h.order(bob, { mer: 'shop2', amt: 3000 }) }],
        m2.body.token,
      );
      expect(other.body.results[0].status).toBe('credited');
      expect(await balance('bob')).toBe(-6000);
      await expectBalanced(h);
    });

    it('past cert.lim credits while an active buyer has available credit, then rejects over_limit', async () => {
      const carol = await h.buyer('carol', { creditLimit: 5000, dailyLimit: 1000 });
      expect(carol.lim).toBe(1000);
      const orders = [1000, 2000, 2000, 1].map((amt) => ({
        cert: carol.cert,
        order: h.order(carol, { mer: 'news', amt }),
      }));
      const r = await deposit('c1', orders);
      expect(r.body.results.map((x: { status: string; reason?: string }) => x.reason ?? x.status)).toEqual([
        'credited',
        'credited',
        'credited',
        'over_limit',
      ]);
      expect(await balance('carol')).toBe(-5000);
    });

    it('past cert.lim credits with a live auth (its reservation consumed), even for a disabled buyer; authorized orders do not use cert.lim', async () => {
      const dan = await h.buyer('dan', { creditLimit: 5000, dailyLimit: 1000 });
      const big = h.order(dan, { mer: 'news', amt: 4000 });
      const a = await h.call('post', '/v1/authorizations', mer.token, { cert: dan.cert, order: big });
      expect(a.body.status).toBe('approved');
      const again = await h.call('post', '/v1/authorizations', mer.token, { cert: dan.cert, order: big });
      expect(again.body).toEqual(a.body);
      const auth = JSON.parse(Buffer.from(a.body.auth.split('.')[0], 'base64url').toString());
      expect(auth).toMatchObject({
        typ: 'mp-auth',
        v: 1,
        iss: 'bank-a',
        mer: 'news',
        amt: 4000,
        sub: 'dan',
        exp: h.clock.t + 300,
      });
      // Only 1000 of credit is left unreserved: a second authorization of 2000 is declined.
      const second = await h.call('post', '/v1/authorizations', mer.token, {
        cert: dan.cert,
        order: h.order(dan, { mer: 'news', amt: 2000 }),
      });
      expect(second.body).toMatchObject({ status: 'declined', reason: 'insufficient_credit' });
      await h.call('patch', '/v1/admin/accounts/dan', h.admin, { status: 'disabled' });
      const r = await deposit('d1', [
        { cert: dan.cert, order: big, auth: a.body.auth },
        { cert: dan.cert, order: h.order(dan, { mer: 'news', amt: 1000 }) },
        { cert: dan.cert, order: h.order(dan, { mer: 'news', amt: 1 }) },
      ]);
      expect(r.body.results.map((x: { status: string; reason?: string }) => x.reason ?? x.status)).toEqual([
        'credited',
        'credited',
        'over_limit',
      ]);
      // An auth does not credit another order, nor the same one twice.
      const r2 = await deposit('d2', [
        { cert: dan.cert, order: big, auth: a.body.auth },
        { cert: dan.cert, order: h.order(dan, { mer: 'news', amt: 4000 }), auth: a.body.auth },
      ]);
      expect(r2.body.results.map((x: { status: string; reason?: string }) => x.reason ?? x.status)).toEqual([
        'duplicate',
        'over_limit',
      ]);
      expect(await balance('dan')).toBe(-5000);
      await expectBalanced(h);
    });

    it('an unused reservation lapses after authorizationLifetime and frees the credit; a lapsed auth no longer credits', async () => {
      const eve = await h.buyer('eve', { creditLimit: 3000, dailyLimit: 0 });
      const o1 = h.order(eve, { mer: 'news', amt: 3000 });
      const a1 = await h.call('post', '/v1/authorizations', mer.token, { cert: eve.cert, order: o1 });
      expect(a1.body.status).toBe('approved');
      const o2 = h.order(eve, { mer: 'news', amt: 3000 });
      expect(
        (await h.call('post', '/v1/authorizations', mer.token, { cert: eve.cert, order: o2 })).body.reason,
      ).toBe('insufficient_credit');
      expect((await h.call('get', '/v1/me', eve.token)).body.account.available).toBe(0);
      h.clock.t += 301;
      expect((await h.call('get', '/v1/me', eve.token)).body.account.available).toBe(3000);
      const o3 = h.order(eve, { mer: 'news', amt: 3000 });
      const a3 = await h.call('post', '/v1/authorizations', mer.token, { cert: eve.cert, order: o3 });
      expect(a3.body.status).toBe('approved');
      // o1's auth lapsed; o1 falls back to credit, which a3 now reserves: over_limit. o3 with its live auth is credited.
      const r = await deposit('e1', [
        { cert: eve.cert, order: o1, auth: a1.body.auth },
        { cert: eve.cert, order: o3, auth: a3.body.auth },
      ]);
      expect(r.body.results.map((x: { status: string; reason?: string }) => x.reason ?? x.status)).toEqual([
        'over_limit',
        'credited',
      ]);
      expect(await balance('eve')).toBe(-3000);
    });

    it('declines authorizations with a reason', async () => {
      const cases: [string, Record<string, string>][] = [
        ['wrong_merchant', { cert: alice.cert, order: h.order(alice, { mer: 'elsewhere' }) }],
        ['malformed_payment', { cert: alice.cert, order: 'a.b' }],
        [
          'insufficient_credit',
          { cert: alice.cert, order: h.order(alice, { mer: 'news', amt: 10_000_001 }) },
        ],
      ];
      for (const [reason, body] of cases) {
        const r = await h.call('post', '/v1/authorizations', mer.token, body);
        expect(r.status).toBe(200);
        expect(r.body, reason).toMatchObject({ status: 'declined', reason });
      }
      const done = h.order(alice, { mer: 'news' });
      await deposit('x', [{ cert: alice.cert, order: done }]);
      expect(
        (await h.call('post', '/v1/authorizations', mer.token, { cert: alice.cert, order: done })).body
          .reason,
      ).toBe('replayed_order');
      await h.call('patch', '/v1/admin/accounts/alice', h.admin, { status: 'disabled' });
      const r = await h.call('post', '/v1/authorizations', mer.token, {
        cert: alice.cert,
        order: h.order(alice, { mer: 'news' }),
      });
      expect(r.body).toMatchObject({ status: 'declined', reason: 'account_disabled' });
      const signedAt = h.clock.t;
      h.clock.t += 1000;
      const stale = await h.call('post', '/v1/authorizations', mer.token, {
        cert: alice.cert,
        order: h.order(alice, { mer: 'news', iat: signedAt }),
      });
      expect(stale.body).toMatchObject({ status: 'declined', reason: 'stale_order' });
      const bad = await h.call('post', '/v1/authorizations', mer.token, { cert: alice.cert });
      expect(bad.status).toBe(400);
      expect(bad.body.message).toMatch(/order/);
    });

    it('a disabled merchant cannot deposit or authorize', async () => {
      await h.call('patch', '/v1/admin/accounts/news', h.admin, { status: 'disabled' });
      const r = await deposit('z', [{ cert: alice.cert, order: h.order(alice, { mer: 'news' }) }]);
      expect(r.status).toBe(403);
      expect(r.body.error).toBe('account_disabled');
    });

    it('computes fees exactly for large amounts and keeps order ids per buyer', async () => {
      const rich = await h.buyer('rich', { creditLimit: 2 ** 53 - 1 });
      const amt = 2 ** 52 + 3;
      const r = await deposit('big', [{ cert: rich.cert, order: h.order(rich, { mer: 'news', amt }) }]);
      expect(r.body.results[0]).toMatchObject({
        status: 'credited',
        fee: Number((BigInt(amt) * 250n) / 10000n),
      });
      // The same oid from another buyer is another order.
      const shared = oid();
      const r2 = await deposit('same-oid', [
        { cert: alice.cert, order: h.order(alice, { mer: 'news', oid: shared }) },
        { cert: rich.cert, order: h.order(rich, { mer: 'news', oid: shared }) },
      ]);
      expect(r2.body.results.map((x: { status: string }) => x.status)).toEqual(['credited', 'credited']);
      await expectBalanced(h);
    });
  });
});
