/** The merchant middleware against a real billing server: 402, pay, receipt, deposit, ledger. */
import { createServer, get as httpGet } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Koa from 'koa';
import pino from 'pino';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MicropayOptions } from '../../src/middleware/core.js';
import { micropay as expressMicropay } from '../../src/middleware/express.js';
import { micropay as koaMicropay } from '../../src/middleware/koa.js';
import { decodeToken } from '../../src/protocol/codec.js';
import { tid } from '../../src/protocol/crypto.js';
import { MemoryPaymentStore } from '../../src/stores/memory.js';
import { eventually, startWorld, type World } from '../helpers/world.js';

let world: World;
beforeAll(async () => {
  world = await startWorld();
});
afterAll(() => world.close());

const baseOptions = (): MicropayOptions => ({
  merchant: world.merchant.id,
  billing: { url: world.url, token: world.merchant.token },
  prices: {
    'GET /free/*': null,
    'GET /articles/:id': { price: '0.002 USD', duration: 60, title: 'An article' },
    'GET /dyn/:n': ({ params }) => ({ price: { amt: Number(params.n), cur: 'USD' } }),
    'GET /adyn/:n': async ({ params }) => (params.n === '0' ? null : `${params.n} USD`),
    'GET /broken': () => {
      throw new Error('boom');
    },
    'GET /stream': '0.001 USD',
    'GET /missing': '0.001 USD',
    'GET /throws': '0.001 USD',
    'GET /hang': '0.001 USD',
  },
  deposits: { maxBatch: 50, maxDelayMs: 20 },
  logger: pino({ level: 'silent' }),
});

const closers: (() => Promise<void>)[] = [];
/** Requests that reached the `/hang` handler (paid and accepted), which never answers them. */
let hanging = 0;
afterAll(async () => {
  await Promise.all(closers.map((c) => c()));
});

function expressApp(extra: Partial<MicropayOptions> = {}) {
  const mw = expressMicropay({ ...baseOptions(), ...extra });
  closers.push(mw.close);
  const app = express();
  app.use(mw);
  app.get('/', (_req, res) => {
    res.send('home');
  });
  app.get('/free/x', (_req, res) => {
    res.send('free');
  });
  app.get(['/articles/:id', '/dyn/:n', '/adyn/:n'], (req, res) => {
    res.json({ paid: req.micropay ?? null });
  });
  app.get('/stream', (_req, res) => {
    res.setHeader('Content-Type', 'text/plain');
    res.write('first\n');
    setTimeout(() => res.end('second\n'), 300);
  });
  app.get('/throws', () => {
    throw new Error('handler failed');
  });
  app.get('/hang', () => {
    hanging++;
  });
  return { app, mw };
}

function koaApp(extra: Partial<MicropayOptions> = {}) {
  const mw = koaMicropay({ ...baseOptions(), ...extra });
  closers.push(mw.close);
  const app = new Koa();
  app.silent = true;
  app.use(mw);
  app.use(async (ctx) => {
    if (ctx.path === '/throws') throw new Error('handler failed');
    if (ctx.path === '/missing') return; // Koa's default 404
    if (ctx.path === '/hang') {
      hanging++;
      await new Promise((r) => ctx.res.once('close', r));
      return;
    }
    ctx.body = { paid: ctx.state.micropay ?? null };
  });
  return { app: app.callback(), mw };
}

async function offerFor(app: Parameters<typeof request>[0], path: string) {
  const r = await request(app).get(path).expect(402);
  return r.body.offer;
}

/**
 * Serves `app` on a real socket and sends one paid GET for `path` that the test then cuts off
 * (`req.destroy()`); `close` stops the server.
 */
async function paidRequestToCut(app: Parameters<typeof createServer>[1], path: string, payment: string) {
  const server = createServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const req = httpGet({ host: '127.0.0.1', port, path, headers: { 'Micropay-Payment': payment } });
  req.on('error', () => {});
  const close = async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return { req, close };
}

/** `micropay_uncharged_total` of a middleware. */
async function unchargedOf(mw: { core: { metrics: import('prom-client').Registry } }): Promise<number> {
  return (await mw.core.metrics.getSingleMetric('micropay_uncharged_total')!.get()).values[0]?.value ?? 0;
}

describe.each([
  ['express', expressApp],
  ['koa', koaApp],
] as const)('%s middleware with a real billing server', (_name, make) => {
  it('leaves free routes alone', async () => {
    const { app } = make();
    if (_name === 'express') {
      await request(app).get('/').expect(200, 'home');
      await request(app).get('/free/x').expect(200, 'free');
    } else {
      await request(app).get('/free/x').expect(200);
    }
  });

  it('answers 402 with the offer of section 4', async () => {
    const { app } = make();
    const r = await request(app).get('/articles/42?ref=home').expect(402);
    expect(r.headers['content-type']).toMatch(/application\/json/);
    expect(r.headers['www-authenticate']).toBe('Micropay realm="news-site"');
    expect(r.body).toMatchObject({ error: 'payment_required', message: 'This resource costs 0.002 USD.' });
    expect(r.body.offer).toMatchObject({
      typ: 'mp-offer',
      v: 1,
      mer: 'news-site',
      acq: 'bank-a',
      accepts: ['bank-a'],
      res: 'GET /articles/42?ref=home',
      amt: 2000,
      cur: 'USD',
      dur: 60,
      title: 'An article',
    });
    expect(JSON.parse(Buffer.from(r.headers['micropay-offer'], 'base64url').toString())).toEqual(
      r.body.offer,
    );
  });

  it('serves a browser an HTML paywall page with escaped values', async () => {
    const { app } = make({ prices: { 'GET /x': { price: '0.5 USD', title: '<script>alert(1)</script>' } } });
    const r = await request(app)
      .get('/x')
      .set('Accept', 'text/html,application/xhtml+xml,*/*;q=0.8')
      .expect(402);
    expect(r.headers['content-type']).toMatch(/text\/html/);
    expect(r.text).toContain('0.5 USD');
    expect(r.text).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(r.text).not.toContain('<script>alert(1)');
    expect(r.headers['micropay-offer']).toBeTruthy();
  });

  it('takes a payment, serves at once with a receipt, re-serves with the receipt, and deposits once', async () => {
    const { app, mw } = make();
    const before = (await world.admin.admin.getAccount('news-site')).balance;
    const offer = await offerFor(app, '/articles/7');
    const paid = await request(app)
      .get('/articles/7')
      .set('Micropay-Payment', world.buyer.pay(offer))
      .expect(200);
    expect(paid.body.paid).toMatchObject({
      kind: 'order',
      buyer: 'alice',
      issuer: 'bank-a',
      amount: 2000,
      currency: 'USD',
      mode: 'offline',
    });
    const receipt = paid.headers['micropay-receipt'];
    const rp = decodeToken(receipt, 'mp-receipt').payload;
    expect(rp).toMatchObject({
      mer: 'news-site',
      res: 'GET /articles/7',
      amt: 2000,
      cur: 'USD',
      sub: 'alice',
    });
    expect((rp.exp as number) - (rp.iat as number)).toBe(60);
    const again = await request(app)
      .get('/articles/7')
      .set('Micropay-Payment', `receipt="${receipt}"`)
      .expect(200);
    expect(again.body.paid).toMatchObject({ kind: 'receipt', buyer: 'alice' });
    expect(again.headers['micropay-receipt']).toBeUndefined();
    // The receipt is for /articles/7 only.
    const other = await request(app)
      .get('/articles/8')
      .set('Micropay-Payment', `receipt="${receipt}"`)
      .expect(402);
    expect(other.body.error).toBe('invalid_receipt');
    await eventually(async () => (await world.admin.admin.getAccount('news-site')).balance === before + 1900);
    await mw.core.deposits!.flush();
    expect(mw.core.deposits!.stats.credited).toBeGreaterThanOrEqual(1);
  });

  it('finds a receipt by its whole token: the same signature over another payload is refused', async () => {
    const { app } = make();
    const offer = await offerFor(app, '/articles/11');
    const paid = await request(app)
      .get('/articles/11')
      .set('Micropay-Payment', world.buyer.pay(offer))
      .expect(200);
    const receipt: string = paid.headers['micropay-receipt'];
    await request(app).get('/articles/11').set('Micropay-Payment', `receipt="${receipt}"`).expect(200);
    // The same signature (so the same tail, which the cache is keyed by) on a payload naming another buyer.
    const dot = receipt.lastIndexOf('.');
    const payload = JSON.parse(Buffer.from(receipt.slice(0, dot), 'base64url').toString());
    const forged = `${Buffer.from(JSON.stringify({ ...payload, sub: 'mallory' })).toString('base64url')}${receipt.slice(dot)}`;
    const r = await request(app)
      .get('/articles/11')
      .set('Micropay-Payment', `receipt="${forged}"`)
      .expect(402);
    expect(r.body.error).toBe('invalid_receipt');
    // The real one still works, after the forged one was looked up under the same key.
    const again = await request(app)
      .get('/articles/11')
      .set('Micropay-Payment', `receipt="${receipt}"`)
      .expect(200);
    expect(again.body.paid).toMatchObject({ kind: 'receipt', buyer: 'alice' });
  });

  it('refuses a replay, a wrong amount and a wrong resource with their codes', async () => {
    const { app } = make();
    const offer = await offerFor(app, '/articles/9');
    const h = world.buyer.pay(offer);
    await request(app).get('/articles/9').set('Micropay-Payment', h).expect(200);
    const replay = await request(app).get('/articles/9').set('Micropay-Payment', h).expect(402);
    expect(replay.body.error).toBe('replayed_order');
    expect(replay.body.offer.res).toBe('GET /articles/9');
    const low = await request(app)
      .get('/articles/9')
      .set('Micropay-Payment', world.buyer.pay(offer, { amt: 1999 }))
      .expect(402);
    expect(low.body.error).toBe('insufficient_amount');
    const wrong = await request(app)
      .get('/articles/10')
      .set('Micropay-Payment', world.buyer.pay(offer))
      .expect(402);
    expect(wrong.body.error).toBe('wrong_resource');
    const bad = await request(app).get('/articles/9').set('Micropay-Payment', 'nonsense').expect(400);
    expect(bad.body.error).toBe('malformed_payment');
  });

  it('prices dynamically, sync and async, and a failing price function is a coded 500', async () => {
    const { app } = make();
    expect((await offerFor(app, '/dyn/1234')).amt).toBe(1234);
    expect((await offerFor(app, '/adyn/2')).amt).toBe(2_000_000);
    const free = await request(app).get('/adyn/0');
    expect(free.status).toBe(200);
    const broken = await request(app).get('/broken').expect(500);
    expect(broken.body.error).toBe('price_unavailable');
  });

  it('goes online at the threshold: approved by the billing server', async () => {
    const { app } = make({ onlineThreshold: '1 USD' });
    const offer = await offerFor(app, '/adyn/3');
    const r = await request(app).get('/adyn/3').set('Micropay-Payment', world.buyer.pay(offer)).expect(200);
    expect(r.body.paid.mode).toBe('online');
  });

  it('does not charge a handler that throws or answers 404, and releases the tally', async () => {
    const { app, mw } = make();
    const spentBefore = await mw.core.store.spent(tid(world.buyer.cert), 'news-site');
    for (const path of ['/throws', '/missing']) {
      const offer = await offerFor(app, path);
      const r = await request(app).get(path).set('Micropay-Payment', world.buyer.pay(offer));
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.headers['micropay-receipt']).toBeUndefined();
    }
    await eventually(
      async () => (await mw.core.store.spent(tid(world.buyer.cert), 'news-site')) === spentBefore,
    );
    expect(await mw.core.queue.size()).toBe(0);
  });

  it('does not charge a client that hangs up while its payment is checked, and releases the tally', async () => {
    // A store that takes 300 ms to accept: the client is gone by then.
    class SlowStore extends MemoryPaymentStore {
      override async accept(r: Parameters<MemoryPaymentStore['accept']>[0]) {
        await new Promise((ok) => setTimeout(ok, 300));
        return super.accept(r);
      }
    }
    const { app, mw } = make({ store: new SlowStore() });
    const offer = await offerFor(app, '/articles/9');
    const { req, close } = await paidRequestToCut(app, '/articles/9', world.buyer.pay(offer));
    await new Promise((r) => setTimeout(r, 100));
    req.destroy();
    await eventually(async () => (await unchargedOf(mw)) === 1);
    expect(await mw.core.store.spent(tid(world.buyer.cert), 'news-site')).toBe(0);
    expect(await mw.core.queue.size()).toBe(0);
    await close();
  });

  it('does not charge a paid request whose client hangs up before any header is written, and releases the tally', async () => {
    const { app, mw } = make();
    const offer = await offerFor(app, '/hang');
    const before = hanging;
    const { req, close } = await paidRequestToCut(app, '/hang', world.buyer.pay(offer));
    // Accepted (the handler has it), so the tally is charged until the response is decided.
    await eventually(() => hanging > before);
    expect(await mw.core.store.spent(tid(world.buyer.cert), 'news-site')).toBe(1000);
    req.destroy();
    await eventually(async () => (await unchargedOf(mw)) === 1);
    await eventually(async () => (await mw.core.store.spent(tid(world.buyer.cert), 'news-site')) === 0);
    expect(await mw.core.queue.size()).toBe(0);
    await close();
  });

  it('streams: the first bytes of a paid response arrive before the handler ends', async () => {
    if (_name === 'koa') return; // the Koa app above has no streaming route; Express covers the core path
    const { app } = make();
    const offer = await offerFor(app, '/stream');
    const server = (await import('node:http')).createServer(app);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as import('node:net').AddressInfo).port;
    const t0 = Date.now();
    const res = await fetch(`http://127.0.0.1:${port}/stream`, {
      headers: { 'Micropay-Payment': world.buyer.pay(offer) },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('micropay-receipt')).toBeTruthy();
    const reader = res.body!.getReader();
    const first = await reader.read();
    const firstAt = Date.now() - t0;
    expect(new TextDecoder().decode(first.value)).toBe('first\n');
    let rest = '';
    for (;;) {
      const c = await reader.read();
      if (c.done) break;
      rest += new TextDecoder().decode(c.value);
    }
    const endAt = Date.now() - t0;
    expect(rest).toBe('second\n');
    expect(firstAt).toBeLessThan(250);
    expect(endAt).toBeGreaterThanOrEqual(290);
    await new Promise<void>((r) => server.close(() => r()));
  });
});

describe('options are validated at construction', () => {
  it.each([
    [{}, /merchant/],
    [{ merchant: 'bad id!' }, /merchant/],
    [{ merchant: 'm', billing: null }, /billing/],
    [{ merchant: 'm', billing: { url: 'nope', token: 't' } }, /billing.url/],
    [{ merchant: 'm', billing: { url: 'http://x', token: '' } }, /billing.token/],
    [
      { merchant: 'm', billing: { url: 'http://x', token: 't' }, prices: { 'GET /a': '1 dollar' } },
      /prices\["GET \/a"\]/,
    ],
    [{ merchant: 'm', billing: { url: 'http://x', token: 't' }, prices: { 'FETCH a': '1 USD' } }, /prices/],
    [
      {
        merchant: 'm',
        billing: { url: 'http://x', token: 't' },
        prices: { 'GET /a': { price: '1 USD', duration: -1 } },
      },
      /duration/,
    ],
    [{ merchant: 'm', billing: { url: 'http://x', token: 't' }, onlineThreshold: 0.5 }, /onlineThreshold/],
    [{ merchant: 'm', billing: { url: 'http://x', token: 't' }, accepts: [] }, /accepts/],
    [{ merchant: 'm', billing: { url: 'http://x', token: 't' }, receipts: { key: 'xyz' } }, /receipts.key/],
  ])('%j', (opts, msg) => {
    expect(() => expressMicropay(opts as MicropayOptions)).toThrowError(
      expect.objectContaining({
        code: expect.stringMatching(/^invalid_(option|price)$/),
        message: expect.stringMatching(msg),
      }),
    );
  });

  it('catches app.use(micropay) without the call', () => {
    expect(() =>
      (expressMicropay as unknown as (a: unknown, b: unknown, c: unknown) => void)({}, {}, () => {}),
    ).toThrowError(/Call micropay/);
  });
});

describe('a billing client as the billing option', () => {
  it('takes a BillingClient (which also has a url) as it is', async () => {
    const { createBillingClient } = await import('../../src/billing-client/index.js');
    const client = createBillingClient({ url: world.url, token: world.merchant.token });
    const mw = expressMicropay({ ...baseOptions(), billing: client });
    closers.push(mw.close);
    const app = express();
    app.use(mw);
    app.get('/articles/:id', (req, res) => {
      res.json({ paid: req.micropay ?? null });
    });
    const offer = (await request(app).get('/articles/5').expect(402)).body.offer;
    await request(app).get('/articles/5').set('Micropay-Payment', world.buyer.pay(offer)).expect(200);
  });
});
