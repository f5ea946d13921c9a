/**
 * The shared merchant vectors through the real middleware (Express and Koa) over HTTP.
 * The vectors' keys are fixed seeds, so the billing side here is the key set of the
 * vectors and an authorizer that records being asked; the real billing server is used
 * by the other middleware tests.
 */
import express from 'express';
import Koa from 'koa';
import request from 'supertest';
import { afterAll, describe, expect, it } from 'vitest';
import type { MerchantBilling } from '../../src/middleware/core.js';
import { micropay as expressMicropay } from '../../src/middleware/express.js';
import { micropay as koaMicropay } from '../../src/middleware/koa.js';
import { decodeToken } from '../../src/protocol/codec.js';
import { StaticKeyResolver } from '../../src/protocol/keys.js';
import { vectors as V } from '../helpers/vectors.js';

const m = V.merchant;
const path = m.res.slice(m.res.indexOf(' ') + 1);

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

const options = (billing: MerchantBilling) => ({
  merchant: m.mer,
  billing,
  accepts: m.accepts,
  onlineThreshold: m.onlineThreshold,
  freshness: m.freshness,
  skew: m.skew,
  clock: () => V.now,
  prices: { [`GET ${path.split('?')[0]}`]: { price: m.price, title: 'Article 42' } },
  deposits: { maxDelayMs: 60_000 },
});

const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  await Promise.all(closers.map((c) => c()));
});

const apps = {
  express: (billing: MerchantBilling) => {
    const mw = expressMicropay(options(billing));
    closers.push(mw.close);
    const app = express();
    app.use(mw);
    app.get('/articles/:id', (req, res) => {
      res.json({ article: req.params.id, paidBy: req.micropay?.buyer });
    });
    return app;
  },
  koa: (billing: MerchantBilling) => {
    const mw = koaMicropay(options(billing));
    closers.push(mw.close);
    const app = new Koa();
    app.use(mw);
    app.use((ctx) => {
      ctx.body = { article: '42', paidBy: (ctx.state.micropay as { buyer?: string } | undefined)?.buyer };
    });
    return app.callback();
  },
};

describe.each(Object.entries(apps))('merchant vectors through %s', (_name, make) => {
  for (const c of V.merchantCases) {
    it(`${c.name} -> ${c.expect}`, async () => {
      const { billing, calls } = vectorBilling();
      const app = make(billing);
      for (const h of c.before ?? []) {
        await request(app).get(path).set('Micropay-Payment', h).expect(200);
      }
      calls.authorize = 0;
      const r = await request(app).get(path).set('Micropay-Payment', c.header);
      if (c.expect === 'ok' || c.expect === 'online') {
        expect(r.status).toBe(200);
        expect(r.body).toEqual({ article: '42', paidBy: expect.stringMatching(/^(alice|bob)$/) });
        const receipt = decodeToken(r.headers['micropay-receipt'], 'mp-receipt').payload;
        expect(receipt).toMatchObject({
          mer: m.mer,
          res: m.res,
          sub: r.body.paidBy,
          amt: expect.any(Number),
          iat: V.now,
        });
        expect(calls.authorize).toBe(c.expect === 'online' ? 1 : 0);
      } else {
        expect(r.status).toBe(c.expect === 'malformed_payment' ? 400 : 402);
        expect(r.body.error).toBe(c.expect);
        expect(typeof r.body.message).toBe('string');
        if (r.status === 402) {
          expect(r.headers['www-authenticate']).toBe(`Micropay realm="${m.mer}"`);
          expect(r.body.offer).toMatchObject({
            typ: 'mp-offer',
            mer: m.mer,
            res: m.res,
            amt: 2000,
            cur: 'USD',
          });
          expect(JSON.parse(Buffer.from(r.headers['micropay-offer'], 'base64url').toString())).toEqual(
            r.body.offer,
          );
        }
        expect(calls.authorize).toBe(0);
      }
    });
  }
});
