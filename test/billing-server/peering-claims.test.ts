/**
 * `POST /v1/interbank/claims` at the issuer, called directly the way a peer
 * (or a forger) would: who may claim, what is verified (its own credential,
 * its buyer's signature, never a third issuer's credential), the promise
 * (within cert.lim even for a buyer disabled since), idempotency (batch ids,
 * per-order uniqueness whoever brings the order), the interchange fee in the
 * answer, a removed peer's tombstone, and the acquirer refetching the peer's
 * keys on an unknown kid at deposit. bank-a on SQLite, bank-b on PostgreSQL
 * (SQLite when it is not running).
 */
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64urlEncode } from '../../src/protocol/base64url.js';
import { generateSigningKey, signToken, tid } from '../../src/protocol/crypto.js';
import { eventually } from '../helpers/world.js';
import {
  type Bank,
  balance,
  expectBalanced,
  link,
  type Payer,
  payer,
  position,
  publishedPeers,
  secondBackend,
  startBank,
} from './peering-helpers.js';

const order = { mer: 'news-a', res: 'GET /articles/1', amt: 2000, cur: 'USD' };

describe(`claims at the issuer (bank-b on ${secondBackend})`, () => {
  let a: Bank;
  let b: Bank;
  let tokens: { aAtB: string; bAtA: string };
  let bob: Payer;
  let alice: Payer;
  const claim = (body: unknown, token: string | null = tokens.aAtB) => {
    let r = request(b.url).post('/v1/interbank/claims');
    if (token) r = r.set('Authorization', `Bearer ${token}`);
    return r.send(body as object);
  };

  beforeAll(async () => {
    [a, b] = await Promise.all([startBank('bank-a', 'sqlite'), startBank('bank-b', secondBackend)]);
    tokens = await link(a, b, { b: 250 });
    [bob, alice] = await Promise.all([payer(b, 'bob', 5000), payer(a, 'alice')]);
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
  });

  it('refuses callers other than the peer: no or a wrong token 401, other roles 403, bad bodies 400', async () => {
    const body = { batch: 'f1', orders: [{ cert: bob.cert, order: bob.order(order) }] };
    expect((await claim(body, null)).status).toBe(401);
    expect((await claim(body, 'mpt_forgedTokenForgedTokenForgedTokenForged0000')).status).toBe(401);
    expect((await claim(body, tokens.bAtA)).status).toBe(401); // bank-b's own token for bank-a is not valid here
    expect((await claim(body, b.adminToken)).status).toBe(403);
    expect((await claim(body, bob.token)).status).toBe(403);
    for (const bad of [
      {},
      { batch: 'x y', orders: [] },
      { batch: 'f1', orders: {} },
      { batch: 'f1', orders: [null] },
      { batch: 'f1', orders: [{ cert: 1, order: 'x' }] },
      { batch: 'f1', orders: new Array(1001).fill({ cert: 'a', order: 'b' }) },
    ]) {
      const r = await claim(bad);
      expect(r.status, JSON.stringify(bad).slice(0, 80)).toBe(400);
      expect(r.body.error).toBe('invalid_request');
    }
    expect(await balance(b, 'bob')).toBe(0);
  });

  it("verifies every order itself: a forged signature, a third issuer, the claimant's own credential are rejected", async () => {
    const mallory = generateSigningKey();
    const forged = signToken(
      {
        typ: 'mp-order',
        v: 1,
        cid: tid(bob.cert),
        ...order,
        iat: Math.floor(Date.now() / 1000),
        oid: 'forgedForgedForged01',
      },
      mallory,
    );
    // A credential of a third issuer, signed by a key nobody publishes.
    const thirdKey = generateSigningKey();
    const buyerKey = generateSigningKey();
    const now = Math.floor(Date.now() / 1000);
    const thirdCert = signToken(
      {
        typ: 'mp-cert',
        v: 1,
        iss: 'bank-c',
        kid: 'k1',
        sub: 'bob',
        key: buyerKey.x,
        cur: 'USD',
        lim: 9_000_000,
        nbf: now - 10,
        exp: now + 3600,
      },
      thirdKey,
    );
    const thirdOrder = signToken(
      { typ: 'mp-order', v: 1, cid: tid(thirdCert), ...order, iat: now, oid: 'thirdIssuerOrder0001' },
      buyerKey,
    );
    const r = await claim({
      batch: 'f2',
      orders: [
        { cert: bob.cert, order: forged },
        { cert: thirdCert, order: thirdOrder },
        { cert: alice.cert, order: alice.order(order) }, // bank-a's own buyer: bank-b is not its issuer
        { cert: bob.cert, order: 'not-a-token' },
      ],
    }).expect(200);
    expect(r.body.credited).toBe(0);
    expect(r.body.results.map((x: { status: string; reason: string }) => `${x.status}:${x.reason}`)).toEqual([
      'rejected:bad_signature',
      'rejected:unknown_issuer',
      'rejected:unknown_issuer',
      'rejected:malformed_payment',
    ]);
    expect(await balance(b, 'bob')).toBe(0);
    expect((await position(b, 'bank-a')).net).toBe(0);
    await expectBalanced(b);
  });

  it('credits a good claim once (batch id and order), keeps the interchange, and says how much', async () => {
    const o1 = bob.order(order);
    const o2 = bob.order({ ...order, res: 'GET /articles/2' });
    const first = await claim({
      batch: 'g1',
      orders: [
        { cert: bob.cert, order: o1 },
        { cert: bob.cert, order: o2 },
      ],
    }).expect(200);
    expect(first.body.results).toEqual([
      expect.objectContaining({ status: 'credited', amt: 2000, fee: 50 }),
      expect.objectContaining({ status: 'credited', amt: 2000, fee: 50 }),
    ]);
    expect(first.body.credited).toBe(2 * 1950);
    // The same batch id: the first answer, nothing moves.
    expect((await claim({ batch: 'g1', orders: [] }).expect(200)).body).toEqual(first.body);
    // The same order in another batch: duplicate, with what it was credited with.
    const dup = await claim({ batch: 'g2', orders: [{ cert: bob.cert, order: o1 }] }).expect(200);
    expect(dup.body.results[0]).toMatchObject({ status: 'duplicate', amt: 2000, fee: 50 });
    expect(dup.body.credited).toBe(0);
    expect(await balance(b, 'bob')).toBe(-4000);
    expect(await balance(b, 'fees:USD')).toBe(100);
    expect((await position(b, 'bank-a')).net).toBe(-3900);
    // Brought by a merchant of bank-b with the same id, the order is a replay, not a duplicate.
    const local = await b.account({ id: 'news-a', role: 'merchant', currency: 'USD' });
    const dep = await request(b.url)
      .post('/v1/deposits')
      .set('Authorization', `Bearer ${local}`)
      .send({ batch: 'l1', orders: [{ cert: bob.cert, order: o1 }] })
      .expect(200);
    expect(dep.body.results[0]).toMatchObject({ status: 'rejected', reason: 'replayed_order' });
    expect(await balance(b, 'news-a')).toBe(0);
    await expectBalanced(b);
  });

  it('honours cert.lim per merchant even for a buyer disabled since; past it only with credit', async () => {
    // bob's credential has lim 5000; 4000 of it went to news-a above.
    await b.admin.admin.updateAccount('bob', { status: 'disabled' });
    const r = await claim({
      batch: 'h1',
      orders: [
        { cert: bob.cert, order: bob.order({ ...order, amt: 1000, res: 'GET /a' }) }, // 5000: within
        { cert: bob.cert, order: bob.order({ ...order, amt: 1, res: 'GET /b' }) }, // past it, disabled
        { cert: bob.cert, order: bob.order({ ...order, mer: 'shop-2', amt: 5000 }) }, // another merchant: its own lim
      ],
    }).expect(200);
    expect(r.body.results.map((x: { status: string; reason?: string }) => x.reason ?? x.status)).toEqual([
      'credited',
      'over_limit',
      'credited',
    ]);
    await b.admin.admin.updateAccount('bob', { status: 'active' });
    await expectBalanced(b);
  });

  it('a removed peer still claims orders signed before the removal, not after', async () => {
    const before = bob.order({ ...order, res: 'GET /before' });
    const later = bob.order({ ...order, res: 'GET /later' }, { iat: Math.floor(Date.now() / 1000) + 600 });
    await b.admin.admin.removePeer('bank-a');
    const r = await claim({
      batch: 'r1',
      orders: [
        { cert: bob.cert, order: before },
        { cert: bob.cert, order: later },
      ],
    }).expect(200);
    expect(r.body.results.map((x: { status: string; reason?: string }) => x.reason ?? x.status)).toEqual([
      'credited',
      'unknown_issuer',
    ]);
    expect((await publishedPeers(b)).has('bank-a')).toBe(false);
    // Registered again: a new token; the old one stops.
    const again = await b.admin.admin.addPeer({
      issuer: 'bank-a',
      url: a.url,
      token: tokens.bAtA,
      feeBps: 250,
    });
    expect((await claim({ batch: 'r2', orders: [] })).status).toBe(401);
    await a.admin.admin.updatePeer('bank-b', { token: again.token });
    tokens = { ...tokens, aAtB: again.token };
    expect((await claim({ batch: 'r2', orders: [] })).status).toBe(200);
    await expectBalanced(b);
  });

  it("bank-a refetches bank-b's keys at once on an unknown kid in a deposit", async () => {
    await eventually(async () => (await publishedPeers(a)).has('bank-b'));
    const news = await a.account({ id: 'news-a', role: 'merchant', currency: 'USD' });
    const carol = await payer(b, 'carol');
    await b.admin.admin.rotateKeys();
    await carol.renew();
    await new Promise((r) => setTimeout(r, 150)); // past bank-a's minimum refetch interval of the test
    const r = await request(a.url)
      .post('/v1/deposits')
      .set('Authorization', `Bearer ${news}`)
      .send({
        batch: 'k1',
        orders: [{ cert: carol.cert, order: carol.order(order, { oid: b64urlEncode(Buffer.alloc(16, 7)) }) }],
      })
      .expect(200);
    expect(r.body.results[0].status, JSON.stringify(r.body)).toBe('credited');
    await eventually(async () => (await position(a, 'bank-b')).pending === 0);
    expect(await balance(b, 'carol')).toBe(-2000);
    await expectBalanced(a);
    await expectBalanced(b);
  });
});
