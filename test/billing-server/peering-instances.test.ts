/**
 * Two instances of the acquirer on one PostgreSQL database, each with its own
 * claimer: every claim batch is sent once (leases; rows assigned under
 * FOR UPDATE SKIP LOCKED), counted at the issuer by its request metrics, and
 * everything settles once. Both instances publish the peer's keys from the
 * shared table. Needs PostgreSQL; skipped (loudly, by global-setup) without it.
 */
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BillingServer, createBillingServer } from '../../src/billing-server/index.js';
import { pgUrl } from '../helpers/services.js';
import { eventually } from '../helpers/world.js';
import {
  type Bank,
  balance,
  expectBalanced,
  FAST,
  link,
  type Payer,
  payer,
  position,
  publishedPeers,
  startBank,
} from './peering-helpers.js';

/** How many claim POSTs the issuer answered, from its metrics. */
async function claimRequests(bank: Bank): Promise<number> {
  const text = (await request(bank.url).get('/metrics').expect(200)).text;
  let n = 0;
  for (const line of text.split('\n')) {
    if (
      line.startsWith('micropay_http_request_duration_seconds_count') &&
      line.includes('route="/v1/interbank/claims"')
    )
      n += Number(line.split(' ').pop());
  }
  return n;
}

describe.skipIf(!pgUrl)('two acquirer instances on one PostgreSQL database', () => {
  let a: Bank;
  let a2: BillingServer;
  let url2: string;
  let b: Bank;
  let bob: Payer;
  let merchant: string;

  beforeAll(async () => {
    [a, b] = await Promise.all([
      startBank('bank-a', 'postgres', { claims: { ...FAST.claims, intervalMs: 50, batchSize: 3 } }),
      startBank('bank-b', 'sqlite'),
    ]);
    await link(a, b);
    a2 = await createBillingServer(a.opts);
    url2 = await a2.listen(0, '127.0.0.1');
    await eventually(async () => (await publishedPeers(a)).has('bank-b'));
    merchant = await a.account({ id: 'news-a', role: 'merchant', currency: 'USD' });
    bob = await payer(b, 'bob');
  });
  afterAll(async () => {
    await a2?.close();
    await Promise.all([a?.close(), b?.close()]);
  });

  it('sends every claim batch once and settles every order once', async () => {
    const second = await request(url2).get('/.well-known/micropay/keys').expect(200);
    expect(second.body.peers.map((p: { issuer: string }) => p.issuer)).toEqual(['bank-b']);
    const deposit = (url: string, i: number) =>
      request(url)
        .post('/v1/deposits')
        .set('Authorization', `Bearer ${merchant}`)
        .send({
          batch: `d${i}`,
          orders: Array.from({ length: 4 }, (_, j) => ({
            cert: bob.cert,
            order: bob.order({ mer: 'news-a', res: `GET /a/${i}/${j}`, amt: 1000, cur: 'USD' }),
          })),
        })
        .expect(200);
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => deposit(i % 2 ? url2 : a.url, i)));
    for (const r of answers) expect(r.body.credited).toBe(4000);
    await eventually(async () => (await position(a, 'bank-b')).pending === 0, 15_000);
    const claims = Number(
      (await a.db().get<{ n: number }>("SELECT COUNT(*) AS n FROM claims WHERE status = 'done'"))?.n,
    );
    // 48 orders, at most 3 a batch (fewer when a round found fewer waiting), each order in one batch.
    expect(claims).toBeGreaterThanOrEqual(16);
    const inBatches = await a
      .db()
      .get<{ n: number; o: number }>(
        'SELECT SUM(orders) AS n, COUNT(DISTINCT claim) AS o FROM claims JOIN (SELECT DISTINCT claim FROM claim_orders) x ON x.claim = claims.id',
      );
    expect([Number(inBatches?.n), Number(inBatches?.o)]).toEqual([48, claims]);
    expect(await claimRequests(b)).toBe(claims);
    expect((await position(a, 'bank-b')).net).toBe(48_000);
    expect((await position(b, 'bank-a')).net).toBe(-48_000);
    expect(await balance(b, 'bob')).toBe(-48_000);
    await expectBalanced(a);
    await expectBalanced(b);
  });
});
