/**
 * The billing server down for 10 s (real time) and back on the same port with
 * the same SQLite file and key directory, while paid requests keep coming:
 * offline payments keep being served (verification is offline), deposits fail
 * and are retried with backoff, and once it is back every deposit is credited
 * exactly once. A payment that needs online authorization gets `503
 * billing_unavailable` with `Retry-After`, unless `failOpen` allows it; the
 * order served failing open is deposited later.
 *
 * One merchant instance queues in memory; the fail-open one on Redis when a
 * Redis is available (its release-and-reclaim path is the durable one).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { Redis } from 'ioredis';
import pino from 'pino';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BillingServer, createBillingServer } from '../../src/billing-server/index.js';
import type { MicropayOptions, PaymentInfo } from '../../src/middleware/core.js';
import { type MicropayExpressMiddleware, micropay } from '../../src/middleware/express.js';
import type { Offer } from '../../src/protocol/messages.js';
import { type DepositQueue, type PaymentStore, redisQueue, redisStore } from '../../src/stores/index.js';
import { redisUrl } from '../helpers/services.js';
import { eventually, startWorld, type World } from '../helpers/world.js';

const DOWN_MS = 10_000;
const SMALL = 2000; // 0.002 USD, offline
const BIG = 2_000_000; // 2 USD, at or above the 1 USD online threshold
const net = (amt: number) => amt - Math.floor((amt * 500) / 10_000);

describe('the billing server down for 10 s and back', () => {
  const dir = mkdtempSync(join(tmpdir(), 'micropay-billing-down-'));
  const db = join(dir, 'billing.db');
  const keyDir = join(dir, 'keys');
  const prefix = `mp-test-down-${process.pid}-${randomBytes(4).toString('hex')}:`;
  let world: World;
  let port: number;
  let restarted: BillingServer | null = null;
  let redisParts: { store: PaymentStore; queue: DepositQueue } | null = null;
  let plain: { app: express.Express; mw: MicropayExpressMiddleware };
  let open: { app: express.Express; mw: MicropayExpressMiddleware };
  let bounded: { app: express.Express; mw: MicropayExpressMiddleware };
  /** Orders served with a 200, by oid, with their amounts. */
  const served = new Map<string, number>();
  let downAt = 0;
  const retries: { attempt: number; delayMs: number; code: string }[] = [];

  function merchant(extra: Partial<MicropayOptions>) {
    const mw = micropay({
      merchant: world.merchant.id,
      billing: { url: world.url, token: world.merchant.token },
      prices: { 'GET /articles/:id': '0.002 USD', 'GET /reports/:id': '2 USD' },
      onlineThreshold: '1 USD',
      deposits: { maxBatch: 10, maxDelayMs: 100, retryBaseMs: 200, retryMaxMs: 1000 },
      logger: pino({ level: 'silent' }),
      ...extra,
    });
    const app = express();
    app.use(mw);
    app.get(['/articles/:id', '/reports/:id'], (req, res) => {
      res.json({ paid: req.micropay ?? null });
    });
    return { app, mw };
  }

  beforeAll(async () => {
    world = await startWorld({ db, keyDir });
    port = Number(new URL(world.url).port);
    if (redisUrl) {
      redisParts = {
        store: redisStore({ url: redisUrl, prefix }),
        queue: redisQueue({ url: redisUrl, prefix, claimTimeoutMs: 5000 }),
      };
    }
    plain = merchant({});
    open = merchant({ failOpen: { max: '5 USD' }, ...(redisParts ?? {}) });
    bounded = merchant({ failOpen: { max: '1 USD' } });
  });

  afterAll(async () => {
    await Promise.allSettled([plain, open, bounded].map((x) => x?.mw.close()));
    if (redisParts) {
      await Promise.allSettled([redisParts.store.close(), redisParts.queue.close()]);
      const redis = new Redis(redisUrl!);
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
    await world?.close();
    await restarted?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function pay(app: express.Express, path: string) {
    const challenge = await request(app).get(path).expect(402);
    const offer = challenge.body.offer as Offer;
    return request(app).get(path).set('Micropay-Payment', world.buyer.pay(offer));
  }

  async function paySmall(app: express.Express, n: number): Promise<void> {
    const r = await pay(app, `/articles/${n}`);
    expect(r.status).toBe(200);
    expect(r.headers['micropay-receipt']).toBeTruthy();
    const info = r.body.paid as PaymentInfo & { kind: 'order' };
    expect(info).toMatchObject({ amount: SMALL, mode: 'offline' });
    served.set(info.oid, info.amount);
  }

  const balance = async () => (await world.admin.admin.getAccount('news-site')).balance;
  const expectedBalance = () => [...served.values()].reduce((s, a) => s + net(a), 0);

  it('deposits while the billing server is up', async () => {
    for (let i = 0; i < 3; i++) await paySmall(plain.app, i);
    await paySmall(open.app, 3);
    await request(bounded.app).get('/reports/0').expect(402); // connected while the server is up
    await eventually(async () => (await balance()) === expectedBalance());
    plain.mw.core.deposits!.on('retry', (r: (typeof retries)[number]) => retries.push(r));
  });

  it('keeps serving offline payments while it is down; deposits fail and are retried with backoff', async () => {
    await world.server.close();
    downAt = Date.now();
    // Paid requests keep coming for most of the outage, on both instances.
    let n = 100;
    while (Date.now() - downAt < DOWN_MS - 2500) {
      await paySmall(n % 2 === 0 ? plain.app : open.app, n);
      n++;
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(n - 100).toBeGreaterThanOrEqual(10);
    // Nothing could be deposited: it is all still queued, and the batcher keeps retrying.
    expect(await plain.mw.core.queue.size()).toBeGreaterThan(0);
    expect(await open.mw.core.queue.size()).toBeGreaterThan(0);
    expect(retries.length).toBeGreaterThanOrEqual(3);
    expect(retries.map((r) => r.attempt)).toEqual(retries.map((_, i) => i + 1));
    // Full jitter: each delay is drawn in [1, cap + 1] ms, the cap doubling from 200 ms up to retryMaxMs.
    expect(retries.every((r) => r.code === 'billing_unavailable' && r.delayMs <= 1001)).toBe(true);
  });

  it('answers 503 billing_unavailable with Retry-After when online authorization is needed', async () => {
    expect(Date.now() - downAt).toBeLessThan(DOWN_MS);
    const r = await pay(plain.app, '/reports/1');
    expect(r.status).toBe(503);
    expect(r.body.error).toBe('billing_unavailable');
    expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
    expect(r.headers['micropay-receipt']).toBeUndefined();
  });

  it('serves it failing open up to failOpen.max', async () => {
    expect(Date.now() - downAt).toBeLessThan(DOWN_MS);
    const r = await pay(open.app, '/reports/2');
    expect(r.status).toBe(200);
    expect(r.headers['micropay-receipt']).toBeTruthy();
    expect(r.body.paid).toMatchObject({ kind: 'order', amount: BIG, mode: 'fail-open' });
    served.set(r.body.paid.oid, BIG);
    // Above the bound it is refused all the same.
    const refused = await pay(bounded.app, '/reports/3');
    expect(refused.status).toBe(503);
    expect(refused.body.error).toBe('billing_unavailable');
  });

  it('credits every deposit exactly once when it is back on the same port', async () => {
    await new Promise((r) => setTimeout(r, Math.max(0, downAt + DOWN_MS - Date.now())));
    restarted = await createBillingServer({ issuer: 'bank-a', db, keyDir, logger: false });
    expect(await restarted.listen(port, '127.0.0.1')).toBe(world.url);
    const expected = expectedBalance();
    await eventually(async () => (await balance()) === expected, 15_000);
    await Promise.all([plain.mw.core.deposits!.flush(), open.mw.core.deposits!.flush()]);
    expect(await plain.mw.core.queue.size()).toBe(0);
    expect(await open.mw.core.queue.size()).toBe(0);
    expect(await balance()).toBe(expected);
    const stats = [plain, open].map((x) => x.mw.core.deposits!.stats);
    expect(stats.reduce((s, x) => s + x.rejected, 0)).toBe(0);
    // The buyer's ledger holds each served order once, the fail-open one included.
    const bought = new Map<string, number>();
    for await (const e of world.buyer.client.allEntries()) {
      if (e.kind !== 'order') continue;
      expect(bought.has(e.oid!)).toBe(false);
      bought.set(e.oid!, -e.amount);
    }
    expect(bought).toEqual(served);
  });
});
