/**
 * PROTOCOL.md section 9 end to end with two real billing servers: bank-a on
 * SQLite, bank-b on PostgreSQL (on SQLite too when PostgreSQL is not running
 * here), a merchant behind the real Express middleware at each, a buyer at
 * each, paying across. Claims reach the issuer, both ledgers stay balanced,
 * the settlement reports agree (equal and opposite, interchange included),
 * and a key rotation at the peer does not break the merchant's offline check.
 */
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Offer } from '../../src/protocol/messages.js';
import { eventually } from '../helpers/world.js';
import {
  type Bank,
  balance,
  buy,
  expectBalanced,
  link,
  type Payer,
  payer,
  position,
  publishedPeers,
  type Shop,
  secondBackend,
  shop,
  startBank,
} from './peering-helpers.js';

describe(`peering: bank-a on sqlite, bank-b on ${secondBackend}`, () => {
  let a: Bank;
  let b: Bank;
  let newsA: Shop;
  let newsB: Shop;
  let aliceA: Payer;
  let bobB: Payer;

  beforeAll(async () => {
    [a, b] = await Promise.all([startBank('bank-a', 'sqlite'), startBank('bank-b', secondBackend)]);
    // bank-b keeps 1% interchange on what bank-a claims there; bank-a keeps 2% the other way.
    await link(a, b, { a: 200, b: 100 });
    await eventually(
      async () => (await publishedPeers(a)).has('bank-b') && (await publishedPeers(b)).has('bank-a'),
    );
    [newsA, newsB] = await Promise.all([shop(a, 'news-a'), shop(b, 'news-b')]);
    [aliceA, bobB] = await Promise.all([payer(a, 'alice'), payer(b, 'bob')]);
  });
  afterAll(async () => {
    await Promise.all([newsA?.close(), newsB?.close()]);
    await Promise.all([a?.close(), b?.close()]);
  });

  it("publishes each other's keys under peers (never the peer's own peers), and lists the peers", async () => {
    const atA = await publishedPeers(a);
    const own = await request(b.url).get('/.well-known/micropay/keys').expect(200);
    expect(atA.get('bank-b')).toEqual(own.body.keys.map((k: { kid: string }) => k.kid));
    expect([...atA.keys()]).toEqual(['bank-b']);
    const peers = await a.admin.admin.listPeers();
    expect(peers).toEqual([
      expect.objectContaining({ issuer: 'bank-b', url: b.url, hasToken: true, feeBps: 200 }),
    ]);
    expect(peers[0]!.keysFetched).toEqual(expect.any(Number));
  });

  it('a buyer of bank-b pays a merchant of bank-a (and back); claims settle; balances and positions agree', async () => {
    const offer = (await request(newsA.app).get('/articles/1').expect(402)).body.offer as Offer;
    expect(offer.acq).toBe('bank-a');
    expect(offer.accepts).toEqual(['bank-a', 'bank-b']);
    const n = 6;
    for (let i = 0; i < n; i++) {
      const r = await buy(newsA, bobB, `/articles/${i}`);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.headers['micropay-receipt']).toBeTruthy();
    }
    // Back the other way, and a local purchase on each side that must not touch the positions.
    expect((await buy(newsB, aliceA, '/articles/9')).status).toBe(200);
    expect((await buy(newsA, aliceA, '/articles/8')).status).toBe(200);
    expect((await buy(newsB, bobB, '/articles/7')).status).toBe(200);

    // bank-b keeps 1% (20 of 2000) per order bank-a claims; bank-a keeps 2% (40) of the one bank-b claims.
    const expected = n * (2000 - 20) - (2000 - 40);
    await eventually(async () => {
      const [pa, pb] = await Promise.all([position(a, 'bank-b'), position(b, 'bank-a')]);
      return pa.pending === 0 && pb.pending === 0 && pa.net === expected && pb.net === -expected;
    });
    // Merchants credited as for a local buyer (5% commission); buyers debited the full price, once.
    expect(await balance(a, 'news-a')).toBe((n + 1) * 1900);
    expect(await balance(b, 'news-b')).toBe(2 * 1900);
    expect(await balance(b, 'bob')).toBe(-(n + 1) * 2000);
    expect(await balance(a, 'alice')).toBe(-2 * 2000);
    await expectBalanced(a);
    await expectBalanced(b);
    // The issuer's fee account holds its interchange; the acquirer's paid it out of its commission.
    expect(await balance(b, 'fees:USD')).toBe(2 * 100 + n * 20 - 40);
    expect(await balance(a, 'fees:USD')).toBe((n + 1) * 100 + 40 - n * 20);
    const sa = await a.admin.admin.settlement();
    expect(sa).toEqual([{ peer: 'bank-b', currency: 'USD', net: expected, pending: 0 }]);
    expect(await b.admin.admin.settlement()).toEqual([
      { peer: 'bank-a', currency: 'USD', net: -expected, pending: 0 },
    ]);
    // The buyer's statement at its own bank shows each purchase, with the merchant and its bank.
    const r = await request(b.url).get('/v1/me/entries').set('Authorization', `Bearer ${bobB.token}`);
    const foreign = r.body.entries.filter((e: { memo: string | null }) => e.memo === 'at bank-a');
    expect(foreign).toHaveLength(n);
    expect(foreign[0]).toMatchObject({ kind: 'order', amount: -2000, counterparty: 'news-a' });
  });

  it('a foreign order past cert.lim is rejected over_limit at deposit and declined online; within it, credited', async () => {
    const small = await payer(b, 'carol', 3000); // cert.lim 3000: one 2000 article offline, not two
    const o1 = { mer: 'news-a', res: 'GET /x/1', amt: 2000, cur: 'USD' };
    const d = await request(a.url)
      .post('/v1/deposits')
      .set('Authorization', `Bearer ${newsA.token}`)
      .send({
        batch: 'lim-1',
        orders: [
          { cert: small.cert, order: small.order(o1) },
          { cert: small.cert, order: small.order({ ...o1, res: 'GET /x/2' }) },
        ],
      })
      .expect(200);
    expect(d.body.results.map((x: { status: string; reason?: string }) => x.reason ?? x.status)).toEqual([
      'credited',
      'over_limit',
    ]);
    const auth = await request(a.url)
      .post('/v1/authorizations')
      .set('Authorization', `Bearer ${newsA.token}`)
      .send({ cert: small.cert, order: small.order({ ...o1, res: 'GET /x/3' }) })
      .expect(200);
    expect(auth.body).toMatchObject({ status: 'declined', reason: 'over_limit' });
    // The merchant asks online for a price over its threshold: declined for a foreign credential.
    const big = (await request(newsA.app).get('/big/1').expect(402)).body.offer as Offer;
    expect(big.amt).toBe(1_500_000);
    const r = await request(newsA.app).get('/big/1').set('Micropay-Payment', bobB.pay(big)).expect(402);
    expect(r.body.error).toBe('declined');
    await eventually(async () => (await position(a, 'bank-b')).pending === 0);
    await expectBalanced(a);
    await expectBalanced(b);
  });

  it('a key rotation at bank-b: the merchant of bank-a refetches on the new kid and verifies offline; the deposit and claim go through', async () => {
    const before = await position(b, 'bank-a');
    const rotated = await b.admin.admin.rotateKeys();
    await bobB.renew(); // signed by the new key
    expect(JSON.parse(Buffer.from(bobB.cert.split('.')[0]!, 'base64url').toString()).kid).toBe(rotated.kid);
    const r = await buy(newsA, bobB, '/articles/rotated');
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect((await publishedPeers(a)).get('bank-b')).toContain(rotated.kid);
    await eventually(async () => (await position(b, 'bank-a')).net === before.net - (2000 - 20));
    await eventually(async () => (await position(a, 'bank-b')).pending === 0);
    expect((await position(a, 'bank-b')).net).toBe(-(await position(b, 'bank-a')).net);
    await expectBalanced(a);
    await expectBalanced(b);
  });

  it('re-posting a deposit or the same order changes nothing on either side', async () => {
    const o = { mer: 'news-a', res: 'GET /again', amt: 2000, cur: 'USD' };
    const item = { cert: bobB.cert, order: bobB.order(o) };
    const bob = await balance(b, 'bob');
    const post = (batch: string) =>
      request(a.url)
        .post('/v1/deposits')
        .set('Authorization', `Bearer ${newsA.token}`)
        .send({ batch, orders: [item] })
        .expect(200);
    const first = await post('again-1');
    expect(first.body.results[0].status).toBe('credited');
    expect((await post('again-1')).body).toEqual(first.body);
    expect((await post('again-2')).body.results[0].status).toBe('duplicate');
    await eventually(async () => (await position(a, 'bank-b')).pending === 0);
    expect(await balance(b, 'bob')).toBe(bob - 2000);
    expect((await position(a, 'bank-b')).net).toBe(-(await position(b, 'bank-a')).net);
  });
});
