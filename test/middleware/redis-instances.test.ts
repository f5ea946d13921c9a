/**
 * Two instances of one merchant (two Express apps on real sockets) sharing a
 * Redis payment store and deposit queue, against a real billing server:
 * concurrent replays of one order split across both instances are accepted
 * exactly once, receipts of one instance are honoured by the other when they
 * share a receipt key file, and every order is credited exactly once.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MicropayOptions, PaymentInfo } from '../../src/middleware/core.js';
import { type MicropayExpressMiddleware, micropay } from '../../src/middleware/express.js';
import { tid } from '../../src/protocol/crypto.js';
import type { Offer } from '../../src/protocol/messages.js';
import {
  type RedisDepositQueue,
  type RedisPaymentStore,
  redisQueue,
  redisStore,
} from '../../src/stores/index.js';
import { redisUrl } from '../helpers/services.js';
import { eventually, startWorld, type World } from '../helpers/world.js';

const ORDERS = 50;
const SENDS = 10;
const AMT = 2000; // 0.002 USD
const FEE = Math.floor((AMT * 500) / 10_000);

interface Instance {
  name: string;
  url: string;
  mw: MicropayExpressMiddleware;
  store: RedisPaymentStore;
  queue: RedisDepositQueue;
  server: Server;
  paid: PaymentInfo[];
}

async function listen(app: express.Express): Promise<{ server: Server; url: string }> {
  const server = createServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function stopServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}

async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    if (keys.length > 0) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
}

describe.skipIf(!redisUrl)('two merchant instances sharing Redis', () => {
  const url = redisUrl!;
  const prefix = `mp-test-instances-${process.pid}-${randomBytes(4).toString('hex')}:`;
  const dir = mkdtempSync(join(tmpdir(), 'micropay-instances-'));
  const keyFile = join(dir, 'receipt-key');
  let world: World;
  let redis: Redis;
  const instances: Instance[] = [];
  const extra: { server: Server; mw: MicropayExpressMiddleware }[] = [];

  const options = (): MicropayOptions => ({
    merchant: world.merchant.id,
    billing: { url: world.url, token: world.merchant.token },
    prices: { 'GET /articles/:id': '0.002 USD' },
    deposits: { maxBatch: 20, maxDelayMs: 50 },
    logger: pino({ level: 'silent' }),
  });

  function appWith(mw: MicropayExpressMiddleware): express.Express {
    const app = express();
    app.use(mw);
    app.get('/articles/:id', (req, res) => {
      res.json({ id: req.params.id, paid: req.micropay ?? null });
    });
    return app;
  }

  async function startInstance(name: string): Promise<Instance> {
    const store = redisStore({ url, prefix });
    const queue = redisQueue({ url, prefix });
    const paid: PaymentInfo[] = [];
    const mw = micropay({
      ...options(),
      store,
      queue,
      receipts: { keyFile },
      onPaid: (info) => paid.push(info),
    });
    const { server, url: base } = await listen(appWith(mw));
    return { name, url: base, mw, store, queue, server, paid };
  }

  beforeAll(async () => {
    world = await startWorld();
    redis = new Redis(url);
    instances.push(await startInstance('a'), await startInstance('b'));
  });

  afterAll(async () => {
    for (const x of [...instances, ...extra]) await stopServer(x.server).catch(() => {});
    await Promise.allSettled([...instances, ...extra].map((x) => x.mw.close()));
    await Promise.allSettled(instances.flatMap((i) => [i.store.close(), i.queue.close()]));
    if (redis) {
      await deleteKeys(redis, prefix).catch(() => {});
      redis.disconnect();
    }
    await world?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function offerFrom(base: string, path: string): Promise<Offer> {
    const r = await fetch(`${base}${path}`);
    expect(r.status).toBe(402);
    return ((await r.json()) as { offer: Offer }).offer;
  }

  let winners: { i: number; instance: Instance; receipt: string }[] = [];
  /** Orders paid in all: the race's, and any paid alone below. */
  let paidOrders = ORDERS;

  /** Pays order `i` once, at `instance` only. */
  async function payAlone(instance: Instance, i: number) {
    const h = world.buyer.pay(await offerFrom(instance.url, `/articles/${i}`));
    const r = await fetch(`${instance.url}/articles/${i}`, { headers: { 'Micropay-Payment': h } });
    await r.arrayBuffer();
    expect(r.status).toBe(200);
    paidOrders++;
    return { i, instance, receipt: r.headers.get('micropay-receipt')! };
  }

  it(`accepts each of ${ORDERS} orders once when each is sent ${SENDS} times at once to both instances`, async () => {
    const [a, b] = instances as [Instance, Instance];
    const headers = await Promise.all(
      Array.from({ length: ORDERS }, async (_, i) => {
        // Offers from both instances: they must quote the same thing.
        const offer = await offerFrom(i % 2 === 0 ? a.url : b.url, `/articles/${i}`);
        expect(offer).toMatchObject({ mer: 'news-site', res: `GET /articles/${i}`, amt: AMT });
        return world.buyer.pay(offer);
      }),
    );
    // Alternate which instance gets the first send, so neither wins every race by going first.
    const sends = headers.flatMap((h, i) =>
      Array.from({ length: SENDS }, (_, j) => ({ i, instance: (i + j) % 2 === 0 ? a : b, h })),
    );
    const answers = await Promise.all(
      sends.map(async ({ i, instance, h }) => {
        const r = await fetch(`${instance.url}/articles/${i}`, { headers: { 'Micropay-Payment': h } });
        const body = (await r.json()) as { error?: string };
        return {
          i,
          instance,
          status: r.status,
          error: body.error,
          receipt: r.headers.get('micropay-receipt'),
        };
      }),
    );
    winners = [];
    for (let i = 0; i < ORDERS; i++) {
      const mine = answers.filter((x) => x.i === i);
      const ok = mine.filter((x) => x.status === 200);
      expect(ok, `order ${i}`).toHaveLength(1);
      expect(ok[0]!.receipt).toBeTruthy();
      const refused = mine.filter((x) => x.status !== 200);
      expect(refused.map((x) => [x.status, x.error])).toEqual(
        Array.from({ length: SENDS - 1 }, () => [402, 'replayed_order']),
      );
      winners.push({ i, instance: ok[0]!.instance, receipt: ok[0]!.receipt! });
    }
    // Exactly ORDERS were taken between them. (Which instance wins each race is the scheduler's
    // choice: both winning some is likely, not certain, so the next test pays alone if it must.)
    expect(a.paid.length + b.paid.length).toBe(ORDERS);
    expect(new Set([...a.paid, ...b.paid].map((p) => p.kind === 'order' && p.oid)).size).toBe(ORDERS);
    // The replays charged nothing: the shared spend tally holds each order once.
    expect(await a.store.spent(tid(world.buyer.cert), 'news-site')).toBe(ORDERS * AMT);
  });

  it('honours the receipts of one instance on the other (shared key file), not on one with another key', async () => {
    expect(winners).toHaveLength(ORDERS);
    const [a, b] = instances as [Instance, Instance];
    const fromA = winners.find((w) => w.instance === a) ?? (await payAlone(a, ORDERS));
    const fromB = winners.find((w) => w.instance === b) ?? (await payAlone(b, ORDERS + 1));
    for (const [w, other] of [
      [fromA, b],
      [fromB, a],
    ] as const) {
      const r = await fetch(`${other.url}/articles/${w.i}`, {
        headers: { 'Micropay-Payment': `receipt="${w.receipt}"` },
      });
      expect(r.status).toBe(200);
      expect(r.headers.get('micropay-receipt')).toBeNull();
      const body = (await r.json()) as { paid: PaymentInfo };
      expect(body.paid).toMatchObject({ kind: 'receipt', buyer: 'alice', amount: AMT });
    }
    // An instance with its own (ephemeral) receipt key does not know these receipts.
    const lone = micropay({ ...options(), receipts: {} });
    const { server, url: base } = await listen(appWith(lone));
    extra.push({ server, mw: lone });
    const r = await fetch(`${base}/articles/${fromA.i}`, {
      headers: { 'Micropay-Payment': `receipt="${fromA.receipt}"` },
    });
    expect(r.status).toBe(402);
    expect(((await r.json()) as { error: string }).error).toBe('invalid_receipt');
  });

  it('credits every order exactly once between the two depositors', async () => {
    const expected = paidOrders * (AMT - FEE);
    const balance = async () => (await world.admin.admin.getAccount('news-site')).balance;
    await eventually(async () => (await balance()) === expected, 15_000);
    await Promise.all(instances.map((i) => i.mw.core.deposits!.flush()));
    expect(await balance()).toBe(expected);
    expect(await instances[0]!.queue.size()).toBe(0);
    const stats = instances.map((i) => i.mw.core.deposits!.stats);
    expect(stats.reduce((s, x) => s + x.credited, 0)).toBe(paidOrders);
    expect(stats.reduce((s, x) => s + x.rejected + x.duplicate, 0)).toBe(0);
    // One buyer entry per order, each order once; the merchant's entries add up to its balance.
    const bought = [];
    for await (const e of world.buyer.client.allEntries()) if (e.kind === 'order') bought.push(e);
    expect(bought).toHaveLength(paidOrders);
    expect(new Set(bought.map((e) => e.oid)).size).toBe(paidOrders);
    expect(bought.every((e) => e.amount === -AMT && e.counterparty === 'news-site')).toBe(true);
    let sum = 0;
    for await (const e of world.merchant.client.allEntries()) sum += e.amount;
    expect(sum).toBe(expected);
  });
});
