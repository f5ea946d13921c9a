/**
 * `reload(config)` of micropay-proxy: a good configuration is swapped in at
 * once while a request in flight finishes (and is charged) on the old core;
 * receipts and replay marks outlive the reload; a bad configuration is
 * refused and the running one stays.
 */

import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Bank,
  closeProxies,
  config,
  eventually,
  get,
  startBank,
  startProxy,
  startUpstream,
  tempDir,
  type Upstream,
} from './helpers.js';

let up: Upstream;
let other: Upstream;
let bank: Bank;
const tmp = tempDir('micropay-proxy-reload-');

beforeAll(async () => {
  up = await startUpstream('first');
  other = await startUpstream('second');
  bank = startBank();
});
afterAll(async () => {
  await closeProxies();
  await up.close();
  await other.close();
  tmp.remove();
});

describe('reload', () => {
  it('swaps a good configuration in while a paid request in flight finishes on the old core', async () => {
    const { proxy, url } = await startProxy(config(up.url), { billing: bank.billing });
    const ivan = bank.buyer('ivan');
    const oldCore = proxy.core;

    // A paid, slow request in flight across the reload.
    const inflight = new Promise<{ status: number; receipt: unknown; body: string }>((resolve, reject) => {
      http
        .get(
          `${url}/slow-paid`,
          { agent: false, headers: { 'Micropay-Payment': ivan.pay('GET /slow-paid') } },
          (res) => {
            let body = '';
            res.on('data', (c) => {
              body += c;
            });
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, receipt: res.headers['micropay-receipt'], body }),
            );
          },
        )
        .on('error', reject);
    });
    await up.slowStarted;

    // Before: articles priced. A paid article, its receipt, and its order header for a replay.
    const order = ivan.pay('GET /articles/1');
    const paid = await get(`${url}/articles/1`, { 'Micropay-Payment': order });
    expect(paid.status).toBe(200);
    const receipt = String(paid.headers['micropay-receipt']);

    await proxy.reload(
      config(other.url, {
        routes: [
          { match: 'GET /articles/*', price: '0.002 USD' },
          { match: 'GET /new', price: '0.005 USD' },
        ],
      }),
    );
    expect(proxy.core).not.toBe(oldCore);
    expect(proxy.config.upstreams[0]!.url).toBe(other.url);

    // After: the new prices and the new upstream.
    const offer = await get(`${url}/new`);
    expect(offer.status).toBe(402);
    expect(offer.json().offer).toMatchObject({ res: 'GET /new', amt: 5000 });
    expect((await get(`${url}/status/200`)).json()).toMatchObject({ name: 'second' }); // no longer priced
    // The receipt from before the reload still opens the resource; the order cannot be replayed.
    const again = await get(`${url}/articles/1`, { 'Micropay-Payment': `receipt="${receipt}"` });
    expect(again.status).toBe(200);
    expect(again.json().name).toBe('second');
    const replay = await get(`${url}/articles/1`, { 'Micropay-Payment': order });
    expect(replay.json().error).toBe('replayed_order');
    // And after a second reload.
    await proxy.reload(proxy.config);
    expect((await get(`${url}/articles/1`, { 'Micropay-Payment': `receipt="${receipt}"` })).status).toBe(200);

    // The request in flight completes, charged, and the old core closes after it, its deposit made.
    expect(oldCore.deposits).not.toBeNull();
    up.releaseSlow();
    const done = await inflight;
    expect(done).toMatchObject({ status: 200, body: 'first\nsecond\n' });
    expect(done.receipt).toBeTruthy();
    await eventually(() => bank.deposits.filter((d) => d.cert === ivan.cert).length === 2);
    const metrics = await proxy.metrics.getSingleMetricAsString('micropay_proxy_reloads_total');
    expect(metrics).toContain('micropay_proxy_reloads_total{result="ok"} 2');
  });

  it('refuses a bad configuration and keeps the running one', async () => {
    const { proxy, url } = await startProxy(config(up.url), { billing: bank.billing });
    const manifest = join(tmp.dir, 'dynamic.json');
    writeFileSync(
      manifest,
      JSON.stringify({
        micropay: 'manifest',
        version: 1,
        routes: [{ match: 'GET /live/*', dynamic: 'livePrice' }],
      }),
    );
    const core = proxy.core;
    await expect(proxy.reload(config(other.url, { manifest }))).rejects.toMatchObject({
      code: 'invalid_config',
      message: expect.stringMatching(/^test: manifest route "GET \/live\/\*" needs a price function/),
    });
    expect(proxy.core).toBe(core);
    expect(proxy.config.upstreams[0]!.url).toBe(up.url);
    expect((await get(`${url}/articles/3`)).status).toBe(402);
    expect((await get(`${url}/about`)).json().name).toBe('first');
    const metrics = await proxy.metrics.getSingleMetricAsString('micropay_proxy_reloads_total');
    expect(metrics).toContain('micropay_proxy_reloads_total{result="failed"} 1');
  });

  it('keeps the receipt key of a key file, and opens a new store when the store changes', async () => {
    const keyFile = join(tmp.dir, 'receipt.key');
    const { proxy, url } = await startProxy(config(up.url, { receipts: { keyFile } }), {
      billing: bank.billing,
    });
    const jo = bank.buyer('jo');
    const paid = await get(`${url}/articles/5`, { 'Micropay-Payment': jo.pay('GET /articles/5') });
    const receipt = String(paid.headers['micropay-receipt']);
    const store = proxy.core.store;
    await proxy.reload(config(up.url, { receipts: { keyFile }, store: { memory: { maxEntries: 5000 } } }));
    expect(proxy.core.store).not.toBe(store);
    expect((await get(`${url}/articles/5`, { 'Micropay-Payment': `receipt="${receipt}"` })).status).toBe(200);
  });

  it('refuses to reload once closing', async () => {
    const { proxy } = await startProxy(config(up.url), { billing: bank.billing });
    await proxy.close();
    await expect(proxy.reload(config(up.url))).rejects.toMatchObject({ code: 'shutting_down' });
  });
});
