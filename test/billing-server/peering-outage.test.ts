/**
 * PROTOCOL.md section 9 when the issuer is down: bank-a keeps crediting its
 * merchant for bank-b buyers (offline verification, the promise), the claims
 * wait in bank-a's durable outbox and are retried with backoff; bank-b comes
 * back on the same port and data and every order settles exactly once.
 * Removing the peer stops new acceptance while the claims already owed still
 * settle. A peer unreachable past the grace period leaves the published set.
 * bank-a on SQLite, bank-b on PostgreSQL (SQLite when it is not running).
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

const count = async (bank: Bank, sql: string, params: (string | number)[] = []): Promise<number> =>
  Number((await bank.db().get<{ n: number }>(sql, params))?.n ?? 0);

describe(`the issuer down, then back (bank-b on ${secondBackend})`, () => {
  let a: Bank;
  let b: Bank;
  let newsA: Shop;
  let bob: Payer;

  beforeAll(async () => {
    [a, b] = await Promise.all([startBank('bank-a', 'sqlite'), startBank('bank-b', secondBackend)]);
    await link(a, b, { b: 100 });
    await eventually(async () => (await publishedPeers(a)).has('bank-b'));
    newsA = await shop(a, 'news-a');
    bob = await payer(b, 'bob');
  });
  afterAll(async () => {
    await newsA?.close();
    await Promise.all([a?.close(), b?.close()]);
  });

  it('keeps selling while bank-b is down; every claim settles exactly once when it is back', async () => {
    for (let i = 0; i < 2; i++) expect((await buy(newsA, bob, `/articles/${i}`)).status).toBe(200);
    await eventually(async () => (await position(a, 'bank-b')).net === 2 * 1980);

    await b.stop();
    // The merchant verifies offline with the keys it has; bank-a credits it and queues the claims.
    for (let i = 2; i < 7; i++) {
      const r = await buy(newsA, bob, `/articles/${i}`);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
    }
    await eventually(async () => (await balance(a, 'news-a')) === 7 * 1900);
    expect(await position(a, 'bank-b')).toEqual({ net: 2 * 1980, pending: 5 * 2000 });
    // The batches are retried: their ids are fixed, their attempts count up, and they say why they wait.
    await eventually(
      async () =>
        (await count(a, "SELECT MIN(attempts) AS n FROM claims WHERE status = 'open'")) >= 2 &&
        (await count(a, 'SELECT COUNT(*) AS n FROM claim_orders WHERE claim IS NULL')) === 0,
    );
    const waiting = await a
      .db()
      .all<{ id: string; last_error: string }>("SELECT id, last_error FROM claims WHERE status = 'open'");
    expect(waiting.length).toBeGreaterThan(0);
    expect(waiting[0]!.last_error).toMatch(/unreachable/);
    await expectBalanced(a);

    await b.restart();
    await eventually(async () => (await position(a, 'bank-b')).pending === 0, 15_000);
    const [pa, pb] = await Promise.all([position(a, 'bank-b'), position(b, 'bank-a')]);
    expect(pa).toEqual({ net: 7 * 1980, pending: 0 });
    expect(pb).toEqual({ net: -7 * 1980, pending: 0 });
    // Exactly once: seven orders at the issuer, the buyer debited seven times, one batch per claim id.
    expect(await balance(b, 'bob')).toBe(-7 * 2000);
    expect(await count(b, "SELECT COUNT(*) AS n FROM orders WHERE acq = 'bank-a'")).toBe(7);
    expect(await count(b, "SELECT COUNT(*) AS n FROM batches WHERE mer = 'peer:bank-a'")).toBe(
      await count(a, "SELECT COUNT(*) AS n FROM claims WHERE status = 'done'"),
    );
    for (const id of waiting.map((w) => w.id)) {
      expect(await count(a, "SELECT COUNT(*) AS n FROM claims WHERE id = ? AND status = 'done'", [id])).toBe(
        1,
      );
    }
    await expectBalanced(a);
    await expectBalanced(b);
  });

  it('removing the peer stops acceptance of its credentials; the claims already owed still settle', async () => {
    await b.stop();
    for (let i = 10; i < 12; i++) expect((await buy(newsA, bob, `/articles/${i}`)).status).toBe(200);
    await eventually(async () => (await position(a, 'bank-b')).pending === 2 * 2000);

    await a.admin.admin.removePeer('bank-b');
    expect((await publishedPeers(a)).has('bank-b')).toBe(false);
    expect(await a.admin.admin.listPeers()).toEqual([]);
    const offer = { mer: 'news-a', res: 'GET /articles/13', amt: 2000, cur: 'USD' };
    const d = await request(a.url)
      .post('/v1/deposits')
      .set('Authorization', `Bearer ${newsA.token}`)
      .send({ batch: 'after-removal', orders: [{ cert: bob.cert, order: bob.order(offer) }] })
      .expect(200);
    expect(d.body.results[0]).toMatchObject({ status: 'rejected', reason: 'unknown_issuer' });
    // A merchant that refetches the key set stops offering bank-b.
    const fresh = await shop(a, 'news-a2');
    try {
      const o = (await request(fresh.app).get('/articles/1').expect(402)).body.offer as Offer;
      expect(o.accepts).toEqual(['bank-a']);
      const r = await request(fresh.app).get('/articles/1').set('Micropay-Payment', bob.pay(o)).expect(402);
      expect(r.body.error).toBe('unknown_issuer');
    } finally {
      await fresh.close();
    }

    await b.restart();
    await eventually(async () => (await position(a, 'bank-b')).pending === 0, 15_000);
    const [pa, pb] = await Promise.all([position(a, 'bank-b'), position(b, 'bank-a')]);
    expect(pa.net).toBe(9 * 1980);
    expect(pb.net).toBe(-pa.net);
    expect(await balance(b, 'bob')).toBe(-9 * 2000);
    await expectBalanced(a);
    await expectBalanced(b);
    // Registered again, the peer's credentials are accepted again.
    const again = await a.admin.admin.addPeer({ issuer: 'bank-b', url: b.url, token: 'unused-here-0000' });
    expect(again.peer.issuer).toBe('bank-b');
    await eventually(async () => (await publishedPeers(a)).has('bank-b'));
  });
});

describe('a peer unreachable past the grace period', () => {
  let c: Bank;
  let d: Bank;
  beforeAll(async () => {
    [c, d] = await Promise.all([
      startBank('bank-c', 'sqlite', {
        peerKeys: { tickMs: 50, minRefetchMs: 50, backoffBaseMs: 20, backoffMaxMs: 100, graceSeconds: 1 },
      }),
      startBank('bank-d', 'sqlite'),
    ]);
    await link(c, d);
    await eventually(async () => (await publishedPeers(c)).has('bank-d'));
  });
  afterAll(async () => {
    await Promise.all([c?.close(), d?.close()]);
  });

  it('keeps the last good keys for a while, then stops publishing them; they come back with the peer', async () => {
    const dan = await payer(d, 'dan');
    const shopC = await shop(c, 'shop-c');
    try {
      await d.stop();
      // Within the grace period the set is still published (fetches fail meanwhile).
      expect((await publishedPeers(c)).has('bank-d')).toBe(true);
      await eventually(async () => !(await publishedPeers(c)).has('bank-d'), 5000);
      // Orders a merchant accepted meanwhile still verify at deposit: only new acceptance stops.
      const o = { mer: 'shop-c', res: 'GET /x', amt: 1000, cur: 'USD' };
      const r = await request(c.url)
        .post('/v1/deposits')
        .set('Authorization', `Bearer ${shopC.token}`)
        .send({ batch: 'late', orders: [{ cert: dan.cert, order: dan.order(o) }] })
        .expect(200);
      expect(r.body.results[0].status).toBe('credited');
      await d.restart();
      await eventually(async () => (await publishedPeers(c)).has('bank-d'), 5000);
      await eventually(async () => (await position(c, 'bank-d')).pending === 0, 5000);
      expect((await position(d, 'bank-c')).net).toBe(-1000);
    } finally {
      await shopC.close();
    }
  });
});
