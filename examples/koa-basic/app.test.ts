/**
 * examples/koa-basic through supertest on `app.callback()`, against a real
 * billing server (test/helpers/world.ts): the front page is free, an article
 * answers 402 with an offer until paid, a signed order opens it, its receipt
 * opens it again without a charge, and the deposit reaches the billing server.
 */
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeToken } from '../../src/protocol/codec.js';
import type { Offer } from '../../src/protocol/messages.js';
import { eventually, startWorld, type World } from '../../test/helpers/world.js';
import { createApp, type ExampleApp } from './app.js';

let world: World;
let app: ExampleApp;
let handler: ReturnType<ExampleApp['callback']>;

beforeAll(async () => {
  world = await startWorld();
  app = createApp({
    merchant: world.merchant.id,
    billing: { url: world.url, token: world.merchant.token },
    deposits: { maxDelayMs: 20 },
    logger: { info() {}, warn() {}, error() {} },
  });
  app.silent = true;
  handler = app.callback();
});
afterAll(async () => {
  await app?.micropay.close();
  await world?.close();
});

describe('examples/koa-basic', () => {
  it('serves the front page free', async () => {
    const r = await request(handler).get('/').expect(200);
    expect(r.body.articles).toEqual([
      { url: '/articles/42', title: 'The answer, explained', price: '0.002 USD' },
      { url: '/articles/43', title: 'Paying per click', price: '0.002 USD' },
    ]);
  });

  it('asks 0.002 USD for an article: JSON for programs, a paywall page for browsers', async () => {
    const r = await request(handler).get('/articles/42').expect(402);
    expect(r.headers['www-authenticate']).toBe('Micropay realm="news-site"');
    expect(r.body).toMatchObject({
      error: 'payment_required',
      offer: { mer: 'news-site', res: 'GET /articles/42', amt: 2000, cur: 'USD', name: 'News Site' },
    });
    const page = await request(handler).get('/articles/42').set('Accept', 'text/html').expect(402);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.text).toContain('The answer, explained');
  });

  it('answers an unknown article and an unknown path with a free 404', async () => {
    const r = await request(handler).get('/articles/7').expect(404);
    expect(r.body.error).toBe('not_found');
    await request(handler).get('/nowhere').expect(404);
  });

  it('opens an article for a payment, again for its receipt, and deposits it once', async () => {
    const offer = (await request(handler).get('/articles/43').expect(402)).body.offer as Offer;
    const paid = await request(handler)
      .get('/articles/43')
      .set('Micropay-Payment', world.buyer.pay(offer))
      .expect(200);
    expect(paid.body).toMatchObject({ id: '43', title: 'Paying per click', paidBy: 'alice', via: 'order' });
    const receipt = paid.headers['micropay-receipt'] as string;
    expect(decodeToken(receipt, 'mp-receipt').payload).toMatchObject({ res: 'GET /articles/43', amt: 2000 });
    const again = await request(handler)
      .get('/articles/43')
      .set('Micropay-Payment', `receipt="${receipt}"`)
      .expect(200);
    expect(again.body).toMatchObject({ paidBy: 'alice', via: 'receipt' });
    expect(again.headers['micropay-receipt']).toBeUndefined();
    // 2000 less the 5% commission, once: the receipt charged nothing.
    await eventually(async () => (await world.admin.admin.getAccount('news-site')).balance === 1900);
    await app.micropay.core.deposits!.flush();
    expect((await world.admin.admin.getAccount('news-site')).balance).toBe(1900);
    expect((await world.admin.admin.getAccount('alice')).balance).toBe(-2000);
  });
});
