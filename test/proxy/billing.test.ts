/**
 * micropay-proxy against the real billing server (`createBillingServer`, SQLite
 * in memory): the merchant token from the configuration, a buyer's credential
 * from `POST /v1/certificates`, a paid request deposited and credited (minus
 * commission), an order at the online threshold approved online, an uncharged
 * order never deposited, and 503 billing_unavailable when the billing server
 * cannot be reached (free routes still pass).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeToken } from '../../src/protocol/codec.js';
import { eventually, startWorld, type World } from '../helpers/world.js';
import { closeProxies, config, deadPort, get, startProxy, startUpstream, type Upstream } from './helpers.js';

let world: World;
let up: Upstream;
let url: string;

beforeAll(async () => {
  world = await startWorld();
  up = await startUpstream();
  ({ url } = await startProxy(
    config(up.url, {
      billing: { url: world.url, token: world.merchant.token },
      onlineThreshold: '0.5 USD',
      routes: [
        { match: 'GET /articles/*', price: '0.002 USD', duration: 60, title: 'An article' },
        { match: 'GET /status/*', price: '0.002 USD' },
        { match: 'GET /report', price: '0.75 USD' },
      ],
    }),
  ));
});
afterAll(async () => {
  await closeProxies();
  await up.close();
  await world.close();
});

const balance = async (id: string) => (await world.admin.admin.getAccount(id)).balance;

describe('micropay-proxy with the real billing server', () => {
  it('offers, takes a payment, serves with a receipt, and is credited through a deposit', async () => {
    const before = await balance('news-site');
    const challenge = await get(`${url}/articles/7`);
    expect(challenge.status).toBe(402);
    const offer = challenge.json().offer as Parameters<World['buyer']['pay']>[0];
    expect(offer).toMatchObject({
      mer: 'news-site',
      acq: 'bank-a',
      accepts: ['bank-a'],
      res: 'GET /articles/7',
    });
    const r = await get(`${url}/articles/7`, { 'Micropay-Payment': world.buyer.pay(offer) });
    expect(r.status).toBe(200);
    expect(r.json()).toMatchObject({ path: '/articles/7' });
    expect(up.seen[up.seen.length - 1]!.headers['micropay-payment']).toBeUndefined();
    expect(decodeToken(r.headers['micropay-receipt'], 'mp-receipt').payload).toMatchObject({
      sub: 'alice',
      res: 'GET /articles/7',
    });
    await eventually(async () => (await balance('news-site')) === before + 1900); // 5% commission
  });

  it('asks the billing server online at the threshold, and deposits with the authorization', async () => {
    const before = await balance('news-site');
    const offer = (await get(`${url}/report`)).json().offer as Parameters<World['buyer']['pay']>[0];
    const r = await get(`${url}/report`, { 'Micropay-Payment': world.buyer.pay(offer) });
    expect(r.status).toBe(200);
    await eventually(async () => (await balance('news-site')) === before + 712_500);
  });

  it('never deposits an order whose request failed upstream', async () => {
    const bob = await world.addBuyer('bob');
    const offer = (await get(`${url}/status/500`)).json().offer as Parameters<World['buyer']['pay']>[0];
    const r = await get(`${url}/status/500`, { 'Micropay-Payment': bob.pay(offer) });
    expect(r.status).toBe(500);
    expect(r.headers['micropay-receipt']).toBeUndefined();
    await new Promise((res) => setTimeout(res, 300)); // well past the 20 ms deposit batching delay
    expect(await balance('bob')).toBe(0);
  });

  it('answers 503 billing_unavailable on priced routes when the billing server is down', async () => {
    const { url: u } = await startProxy(
      config(up.url, { billing: { url: `http://127.0.0.1:${await deadPort()}`, token: 'x' } }),
    );
    const r = await get(`${u}/articles/1`);
    expect(r.status).toBe(503);
    expect(r.json().error).toBe('billing_unavailable');
    expect(r.headers['retry-after']).toBeTruthy();
    expect((await get(`${u}/about`)).status).toBe(200);
  });
});
