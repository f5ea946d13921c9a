/**
 * The browser wallet script served by the middleware core at
 * `/_micropay/wallet.js`: through Express, Koa and micropay-proxy (all by the
 * core), cacheable with an ETag, HEAD and 304, moved by `walletScript: '/path'`,
 * off with `walletScript: false`; and the script itself: one small IIFE for
 * browsers, bundled from source when there is no build.
 */
import type { Server } from 'node:http';
import express from 'express';
import Koa from 'koa';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MicropayOptions, micropay } from '../../src/middleware/express.js';
import { micropay as micropayKoa } from '../../src/middleware/koa.js';
import { WALLET_SCRIPT_PATH, walletScript, walletScriptAsset } from '../../src/middleware/wallet-script.js';
import { parseProxyConfig } from '../../src/proxy/config.js';
import { closeProxies, configObject, startProxy, startUpstream, type Upstream } from '../proxy/helpers.js';
import { closeServer, listen, startWorld, type World } from '../wallet/helpers.js';

const silent = { info() {}, warn() {}, error() {} };
let world: World;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  world = await startWorld();
});
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  await closeProxies();
  await world.close();
});

/** An Express merchant on the world's billing server with these extra options. */
async function expressShop(extra: Partial<MicropayOptions>) {
  const mw = micropay({
    merchant: world.merchant.id,
    billing: { url: world.billingUrl, token: world.merchant.token },
    prices: { 'GET /paid': '0.01 USD' },
    logger: silent,
    ...extra,
  });
  const app = express();
  app.use(mw);
  app.get('/paid', (_req, res) => {
    res.send('paid content');
  });
  const { url, server } = await listen(app);
  closers.push(async () => {
    await closeServer(server);
    await mw.close();
  });
  return url;
}

describe('the wallet script itself', () => {
  it('is one IIFE for browsers, with nothing Node-only, and small', async () => {
    const s = await walletScript();
    expect(s.startsWith('"use strict";(()=>{') || s.startsWith('(()=>{')).toBe(true);
    expect(s.trimEnd().endsWith('})();')).toBe(true);
    expect(s).not.toMatch(/\brequire\(|from ?["']node:|\bimport\(|^import /m);
    expect(s).toContain('micropay-offer');
    expect(s).toContain('data-micropay-price');
    expect(Buffer.byteLength(s)).toBeLessThan(48 * 1024);
    // Read or bundled once per process.
    expect(await walletScriptAsset()).toBe(await walletScriptAsset());
  });
});

describe('GET /_micropay/wallet.js through the core', () => {
  let url: string;
  beforeAll(async () => {
    url = await expressShop({});
  });

  it('answers with the script, cacheable, with an ETag', async () => {
    const { body, etag } = await walletScriptAsset();
    const r = await request(url)
      .get(WALLET_SCRIPT_PATH)
      .buffer(true)
      .parse((res, cb) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => cb(null, Buffer.concat(chunks)));
      });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/javascript; charset=utf-8');
    expect(r.headers['cache-control']).toBe('public, max-age=600');
    expect(r.headers['x-content-type-options']).toBe('nosniff');
    expect(r.headers.etag).toBe(etag);
    expect(Buffer.compare(r.body as Buffer, body)).toBe(0);
  });

  it('answers HEAD without a body and If-None-Match with 304', async () => {
    const { body, etag } = await walletScriptAsset();
    const h = await request(url).head(WALLET_SCRIPT_PATH);
    expect(h.status).toBe(200);
    expect(h.headers['content-length']).toBe(String(body.length));
    const n = await request(url).get(`${WALLET_SCRIPT_PATH}?v=2`).set('If-None-Match', `"other", ${etag}`);
    expect(n.status).toBe(304);
    expect(n.text ?? '').toBe('');
  });

  it('leaves other methods to the app, and the paywall page loads the script', async () => {
    const p = await request(url).post(WALLET_SCRIPT_PATH);
    expect(p.status).toBe(404);
    const page = await request(url).get('/paid').set('Accept', 'text/html');
    expect(page.status).toBe(402);
    expect(page.text).toContain(`<script src="${WALLET_SCRIPT_PATH}" defer data-micropay-wallet>`);
  });

  it('walletScript: a path moves it; false turns it off', async () => {
    const moved = await expressShop({ walletScript: '/assets/mp-wallet.js' });
    expect((await request(moved).get('/assets/mp-wallet.js')).status).toBe(200);
    expect((await request(moved).get(WALLET_SCRIPT_PATH)).status).toBe(404);
    const page = await request(moved).get('/paid').set('Accept', 'text/html');
    expect(page.text).toContain('<script src="/assets/mp-wallet.js" defer data-micropay-wallet>');
    const off = await expressShop({ walletScript: false });
    expect((await request(off).get(WALLET_SCRIPT_PATH)).status).toBe(404);
    const cdn = await expressShop({ walletScript: 'https://cdn.example/micropay-wallet.js' });
    expect((await request(cdn).get(WALLET_SCRIPT_PATH)).status).toBe(200);
    const billing = { url: world.billingUrl, token: world.merchant.token };
    expect(() => micropay({ merchant: world.merchant.id, billing, walletScript: '' })).toThrow(
      /walletScript/,
    );
  });

  it('Koa serves it through the same core', async () => {
    const app = new Koa();
    const mw = micropayKoa({
      merchant: world.merchant.id,
      billing: { url: world.billingUrl, token: world.merchant.token },
      prices: { 'GET /paid': '0.01 USD' },
      logger: silent,
    });
    app.use(mw);
    const server: Server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    closers.push(async () => {
      await closeServer(server);
      await mw.close();
    });
    const r = await request(server).get(WALLET_SCRIPT_PATH);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/javascript; charset=utf-8');
    expect(r.headers.etag).toBe((await walletScriptAsset()).etag);
  });

  it('micropay-proxy serves it through the core, without asking the upstream', async () => {
    const up: Upstream = await startUpstream();
    closers.push(() => up.close());
    const cfg = parseProxyConfig(
      configObject(up.url, {
        merchant: world.merchant.id,
        billing: { url: world.billingUrl, token: world.merchant.token },
      }),
      'test',
      {},
    );
    const { url: proxyUrl } = await startProxy(cfg);
    const r = await request(proxyUrl).get(WALLET_SCRIPT_PATH);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/javascript; charset=utf-8');
    expect(up.seen.some((s) => s.url === WALLET_SCRIPT_PATH)).toBe(false);
  });
});
