/**
 * The payment store unreachable (a Redis store on a port nobody listens on):
 * a paid request is answered at once with `503 store_unavailable`, a
 * `Retry-After` and a sentence, never a 500 or a stack trace, and nothing is
 * charged; free routes and the 402 challenge are untouched. Express and Koa.
 */
import { createServer, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Koa from 'koa';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MicropayCore, type MicropayOptions } from '../../src/middleware/core.js';
import { micropay as expressMicropay } from '../../src/middleware/express.js';
import { micropay as koaMicropay } from '../../src/middleware/koa.js';
import type { Offer } from '../../src/protocol/messages.js';
import { redisQueue, redisStore } from '../../src/stores/index.js';
import { Opened } from '../helpers/opened.js';
import { startWorld, type World } from '../helpers/world.js';

let world: World;
let dead: string;
const opened = new Opened();

beforeAll(async () => {
  world = await startWorld();
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  dead = `redis://127.0.0.1:${(s.address() as AddressInfo).port}`;
  await new Promise((r) => s.close(r)); // nothing listens there now
});
afterAll(async () => {
  await opened.close();
  await world.close();
});

function options(lines: string[]): MicropayOptions {
  const store = redisStore({ url: dead });
  const queue = redisQueue({ url: dead });
  opened.onClose(
    () => store.close(),
    () => queue.close(),
  );
  return {
    merchant: world.merchant.id,
    billing: { url: world.url, token: world.merchant.token },
    prices: { 'GET /paid': '0.001 USD' },
    store,
    queue,
    logger: pino({ level: 'info' }, { write: (l: string) => void lines.push(l) }),
  };
}

async function serve(handler: RequestListener): Promise<string> {
  return opened.listen(createServer(handler));
}

const apps: [string, (o: MicropayOptions) => RequestListener][] = [
  [
    'Express',
    (o) => {
      const mw = expressMicropay(o);
      opened.onClose(mw.close);
      const app = express();
      app.use(mw);
      app.get(['/free', '/paid'], (_req, res) => {
        res.send('content');
      });
      return app;
    },
  ],
  [
    'Koa',
    (o) => {
      const mw = koaMicropay(o);
      opened.onClose(mw.close);
      const app = new Koa();
      app.silent = true;
      app.use(mw);
      app.use((ctx) => {
        ctx.body = 'content';
      });
      return app.callback();
    },
  ],
];

describe.each(apps)('%s with the payment store down', (_name, make) => {
  it('answers a paid request 503 store_unavailable at once; free routes and the challenge still work', async () => {
    const lines: string[] = [];
    const base = await serve(make(options(lines)));
    expect(await (await fetch(`${base}/free`)).text()).toBe('content');
    const challenge = await fetch(`${base}/paid`);
    expect(challenge.status).toBe(402);
    const { offer } = (await challenge.json()) as { offer: Offer };
    const before = (await world.admin.admin.getAccount(world.merchant.id)).balance;
    const header = world.buyer.pay(offer);
    const t0 = Date.now();
    const r = await fetch(`${base}/paid`, { headers: { 'Micropay-Payment': header } });
    const elapsed = Date.now() - t0;
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('5');
    const body = (await r.json()) as { error: string; message: string };
    expect(body.error).toBe('store_unavailable');
    expect(body.message).toMatch(/Nothing was charged/);
    expect(JSON.stringify(body)).not.toMatch(/\n\s+at /);
    // Bounded by the client's two reconnection attempts, not ioredis's twenty (about 30 s).
    expect(elapsed).toBeLessThan(10_000);
    const logged = lines.join('\n');
    expect(logged).toContain('store_unavailable');
    expect(logged).not.toContain(header.slice(-40));
    expect((await world.admin.admin.getAccount(world.merchant.id)).balance).toBe(before);
  });
});

describe('closing while the payment store is down', () => {
  it('ends even when the stores are closed under a merchant still reading them', async () => {
    const lines: string[] = [];
    const o = options(lines);
    const core = new MicropayCore(o);
    await core.ready(); // its batcher now polls the unreachable queue
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    // All at once, as a careless shutdown would: ioredis 5 left a client closed while reconnecting
    // 'reconnecting' for good, and the batcher's command with it.
    await Promise.all([core.close(), o.store!.close(), o.queue!.close()]);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});
