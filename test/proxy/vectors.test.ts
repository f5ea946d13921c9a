/**
 * The shared merchant vectors (PROTOCOL.md section 6) through micropay-proxy
 * over HTTP, as test/middleware/vectors.test.ts runs them through Express and
 * Koa: every error code, online and offline acceptance. The vectors' keys are
 * fixed seeds and their clock is `now`, so the billing side is the vectors'
 * key set (a `MerchantBilling` over `StaticKeyResolver`) passed as `billing`.
 */
import { describe, expect, it } from 'vitest';
import type { MerchantBilling } from '../../src/middleware/core.js';
import { decodeToken } from '../../src/protocol/codec.js';
import { StaticKeyResolver } from '../../src/protocol/keys.js';
import { vectors as V } from '../helpers/vectors.js';
import { config, get, startProxy, upstreamForFile } from './helpers.js';

const m = V.merchant;
const path = m.res.slice(m.res.indexOf(' ') + 1);

const upstream = upstreamForFile();

function vectorBilling() {
  const calls = { authorize: 0 };
  const keys = new StaticKeyResolver(V.billingKeys, m.skew);
  const billing: MerchantBilling = {
    keyResolver: () => keys,
    authorize: async () => {
      calls.authorize++;
      return { status: 'approved', auth: 'vector-auth' };
    },
    deposit: async ({ batch }) => ({ batch, results: [], credited: 0 }),
  };
  return { billing, calls };
}

async function proxyFor(billing: MerchantBilling): Promise<string> {
  const cfg = config(upstream().url, {
    merchant: m.mer,
    accepts: m.accepts,
    onlineThreshold: m.onlineThreshold,
    freshness: m.freshness,
    skew: m.skew,
    routes: [
      {
        match: `GET ${path.split('?')[0]}`,
        price: `${m.price.amt / 1e6} ${m.price.cur}`,
        title: 'Article 42',
      },
    ],
    deposits: { maxDelayMs: 60_000 },
    paidHeaders: true,
  });
  return (await startProxy(cfg, { billing, clock: () => V.now })).url;
}

describe('merchant vectors through micropay-proxy', () => {
  for (const c of V.merchantCases) {
    it(`${c.name} -> ${c.expect}`, async () => {
      const { billing, calls } = vectorBilling();
      const url = await proxyFor(billing);
      for (const h of c.before ?? []) {
        expect((await get(`${url}${path}`, { 'Micropay-Payment': h })).status).toBe(200);
      }
      calls.authorize = 0;
      const seen = upstream().seen.length;
      const r = await get(`${url}${path}`, { 'Micropay-Payment': c.header });
      if (c.expect === 'ok' || c.expect === 'online') {
        expect(r.status).toBe(200);
        expect(r.json()).toMatchObject({ name: 'upstream', path });
        const upstreamSaw = upstream().seen[upstream().seen.length - 1]!.headers;
        expect(upstreamSaw['micropay-payment']).toBeUndefined();
        const buyer = upstreamSaw['micropay-paid-buyer'];
        expect(buyer).toMatch(/^(alice|bob)$/);
        const receipt = decodeToken(r.headers['micropay-receipt'], 'mp-receipt').payload;
        expect(receipt).toMatchObject({
          mer: m.mer,
          res: m.res,
          sub: buyer,
          amt: expect.any(Number),
          iat: V.now,
        });
        expect(calls.authorize).toBe(c.expect === 'online' ? 1 : 0);
      } else {
        expect(r.status).toBe(c.expect === 'malformed_payment' ? 400 : 402);
        const body = r.json();
        expect(body.error).toBe(c.expect);
        expect(typeof body.message).toBe('string');
        if (r.status === 402) {
          expect(r.headers['www-authenticate']).toBe(`Micropay realm="${m.mer}"`);
          expect(body.offer).toMatchObject({
            typ: 'mp-offer',
            mer: m.mer,
            res: m.res,
            amt: 2000,
            cur: 'USD',
          });
          expect(
            JSON.parse(Buffer.from(String(r.headers['micropay-offer']), 'base64url').toString()),
          ).toEqual(body.offer);
        }
        expect(calls.authorize).toBe(0);
        expect(upstream().seen.length).toBe(seen); // refused payments never reach the site
      }
    });
  }
});
