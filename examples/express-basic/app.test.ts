/**
 * examples/express-basic through supertest: the front page is free, an
 * article answers 402 with an offer until paid, a wallet's payment opens it
 * and its receipt opens it again, and the deposit reaches the billing server.
 */
import { randomBytes } from 'node:crypto';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBillingClient } from '../../src/billing-client/index.js';
import { type BillingServer, createBillingServer } from '../../src/billing-server/index.js';
import { b64urlDecode, fromUtf8 } from '../../src/protocol/base64url.js';
import { createWallet, memoryKeyStore } from '../../src/wallet/index.js';
import { createApp, type ExampleApp } from './app.js';

let billing: BillingServer;
let billingUrl: string;
let app: ExampleApp;
let buyerToken: string;
const admin = () => createBillingClient({ url: billingUrl, token: billing.adminToken }).admin;

beforeAll(async () => {
  billing = await createBillingServer({
    issuer: 'bank-a',
    db: ':memory:',
    logger: false,
    adminToken: `admin-${randomBytes(12).toString('hex')}`,
  });
  billingUrl = await billing.listen(0, '127.0.0.1');
  const m = await admin().createAccount({
    id: 'news-site',
    role: 'merchant',
    currency: 'USD',
    commissionBps: 250,
  });
  buyerToken = (
    await admin().createAccount({ id: 'bob', role: 'buyer', currency: 'USD', creditLimit: 1_000_000 })
  ).token;
  app = createApp({
    merchant: 'news-site',
    billing: { url: billingUrl, token: m.token },
    deposits: { maxDelayMs: 20 },
    logger: { info() {}, warn() {}, error() {} },
  });
});
afterAll(async () => {
  await app.micropay.close();
  await billing.close();
});

/** A fetch that sends the wallet's requests for http://shop.test through supertest to `app` (the rest goes out). */
const viaSupertest: typeof fetch = async (input, init) => {
  const req = new Request(input, init);
  const url = new URL(req.url);
  if (url.host !== 'shop.test') return fetch(req);
  let t = request(app).get(url.pathname + url.search);
  req.headers.forEach((v, k) => {
    t = t.set(k, v);
  });
  const r = await t;
  const headers = new Headers();
  for (const [k, v] of Object.entries(r.headers)) headers.set(k, Array.isArray(v) ? v.join(', ') : String(v));
  return new Response(r.text, { status: r.status, headers });
};

describe('examples/express-basic', () => {
  it('serves the front page free', async () => {
    const r = await request(app).get('/').expect(200);
    expect(r.body.articles).toEqual([
      { url: '/articles/42', title: 'The answer, explained', price: '0.002 USD' },
      { url: '/articles/43', title: 'Paying per click', price: '0.002 USD' },
    ]);
  });

  it('asks 0.002 USD for an article, with the offer in the body and the header', async () => {
    const r = await request(app).get('/articles/42').set('accept', 'application/json').expect(402);
    expect(r.headers['www-authenticate']).toBe('Micropay realm="news-site"');
    expect(r.body).toMatchObject({
      error: 'payment_required',
      message: 'This resource costs 0.002 USD.',
      offer: {
        mer: 'news-site',
        acq: 'bank-a',
        res: 'GET /articles/42',
        amt: 2000,
        cur: 'USD',
        title: 'The answer, explained',
        name: 'News Site',
      },
    });
    expect(JSON.parse(fromUtf8(b64urlDecode(r.headers['micropay-offer'])!)!)).toEqual(r.body.offer);
  });

  it('answers an unknown article with a free 404', async () => {
    await request(app).get('/articles/7').expect(404);
  });

  it('opens an article for a wallet, then again with its receipt, and deposits the payment', async () => {
    const wallet = createWallet({
      billingUrl,
      token: buyerToken,
      keyStore: memoryKeyStore(),
      fetch: viaSupertest,
    });
    const paid = await wallet.request('http://shop.test/articles/43');
    expect(paid.via).toBe('paid');
    expect(await paid.response.json()).toMatchObject({ id: '43', paidBy: 'bob', via: 'order' });
    const again = await wallet.request('http://shop.test/articles/43');
    expect(again.via).toBe('receipt');
    expect(await again.response.json()).toMatchObject({ via: 'receipt' });
    // 2000 less 2.5%: 1950 to the merchant, once.
    const deadline = Date.now() + 5000;
    let balance = (await admin().getAccount('news-site')).balance;
    while (Date.now() < deadline && balance < 1950) {
      await new Promise((r) => setTimeout(r, 20));
      balance = (await admin().getAccount('news-site')).balance;
    }
    expect(balance).toBe(1950);
    expect((await admin().getAccount('bob')).balance).toBe(-2000);
  });
});
