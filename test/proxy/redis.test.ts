/**
 * Two micropay-proxy instances of one merchant sharing `store: { redis }` (and
 * with it the Redis deposit queue) and a receipt key file, against the real
 * billing server: an order taken by one is a replay at the other, a receipt of
 * one opens the resource at the other, and the order is credited once. A
 * priced websocket upgrade goes through too: with the Redis queue the 101 is
 * held until the order is in the stream (src/middleware/hold.ts).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { decodeToken } from '../../src/protocol/codec.js';
import type { Offer } from '../../src/protocol/messages.js';
import { redisUrl } from '../helpers/services.js';
import { eventually, startWorld, type World } from '../helpers/world.js';
import { closeProxies, config, get, startProxy, startUpstream, tempDir, type Upstream } from './helpers.js';

describe.skipIf(!redisUrl)('micropay-proxy instances sharing Redis', () => {
  const prefix = `test-proxy-${randomBytes(4).toString('hex')}:`;
  const tmp = tempDir('micropay-proxy-redis-');
  let world: World;
  let up: Upstream;
  let a: string;
  let b: string;

  beforeAll(async () => {
    world = await startWorld();
    up = await startUpstream();
    const cfg = () =>
      config(up.url, {
        billing: { url: world.url, token: world.merchant.token },
        store: { redis: redisUrl!, prefix },
        receipts: { keyFile: join(tmp.dir, 'receipt.key') },
      });
    a = (await startProxy(cfg())).url;
    b = (await startProxy(cfg())).url;
  });
  afterAll(async () => {
    await closeProxies();
    await up.close();
    await world.close();
    const r = new Redis(redisUrl!);
    const keys = await r.keys(`${prefix}*`);
    if (keys.length > 0) await r.del(...keys);
    await r.quit();
    tmp.remove();
  });

  it('refuses at one instance the order taken by the other, honours its receipt, and credits once', async () => {
    const before = (await world.admin.admin.getAccount('news-site')).balance;
    const offer = (await get(`${a}/articles/11`)).json().offer as Offer;
    const h = world.buyer.pay(offer);
    const first = await get(`${a}/articles/11`, { 'Micropay-Payment': h });
    expect(first.status).toBe(200);
    const replay = await get(`${b}/articles/11`, { 'Micropay-Payment': h });
    expect(replay.status).toBe(402);
    expect(replay.json().error).toBe('replayed_order');
    const again = await get(`${b}/articles/11`, {
      'Micropay-Payment': `receipt="${first.headers['micropay-receipt']}"`,
    });
    expect(again.status).toBe(200);
    await eventually(async () => (await world.admin.admin.getAccount('news-site')).balance === before + 1900);
    await new Promise((r) => setTimeout(r, 100));
    expect((await world.admin.admin.getAccount('news-site')).balance).toBe(before + 1900);
  });

  it('takes a priced websocket upgrade, answers the 101 once the order is queued, and credits it', async () => {
    const before = (await world.admin.admin.getAccount('news-site')).balance;
    const offer = (await get(`${a}/ws-paid`)).json().offer as Offer;
    const ws = new WebSocket(`${a.replace(/^http/, 'ws')}/ws-paid`, {
      headers: { 'Micropay-Payment': world.buyer.pay(offer) },
    });
    const opened = new Promise((r) => ws.once('open', r));
    const receipt = await new Promise<string>((resolve, reject) => {
      ws.once('upgrade', (res) => resolve(res.headers['micropay-receipt'] as string));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`refused: ${res.statusCode}`)));
      ws.once('error', reject);
    });
    expect(decodeToken(receipt, 'mp-receipt').payload).toMatchObject({ res: 'GET /ws-paid', amt: 2000 });
    await opened;
    const echo = new Promise<string>((r) => ws.once('message', (d) => r(d.toString())));
    ws.send('paid');
    expect(await echo).toBe('echo:paid');
    ws.close();
    await eventually(async () => (await world.admin.admin.getAccount('news-site')).balance === before + 1900);
  });
});
