/**
 * Issue 7's end of the line: pages compiled by `micropay compile` drive the
 * middleware through the manifest file, fixed and dynamic prices.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import pino from 'pino';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compile } from '../../src/compile/compile.js';
import { micropay } from '../../src/middleware/express.js';
import { startWorld, type World } from '../helpers/world.js';

let world: World;
const dir = mkdtempSync(join(tmpdir(), 'mp-manifest-'));
beforeAll(async () => {
  world = await startWorld();
  mkdirSync(join(dir, 'site'));
  writeFileSync(
    join(dir, 'site', 'index.html'),
    '<!doctype html><html><head><title>News</title></head><body>\n<a href="/articles/42" data-price="0.02 USD" data-duration="86400">Article 42</a>\n<a href="/live/cup-final">Live</a>\n<a href="/about">About</a>\n</body></html>\n',
  );
  writeFileSync(join(dir, 'prices.yaml'), '- match: /live/*\n  dynamic: livePrice\n  title: Live coverage\n');
  await compile({
    input: join(dir, 'site'),
    outDir: join(dir, 'out'),
    rules: join(dir, 'prices.yaml'),
    merchant: 'news-site',
  });
});
afterAll(async () => {
  await world.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a compiled manifest drives the middleware', () => {
  it('prices the compiled link at 0.02 USD (amt 20000), a dynamic link by its function, and leaves others free', async () => {
    const asked: string[] = [];
    const mw = micropay({
      merchant: 'news-site',
      billing: { url: world.url, token: world.merchant.token },
      manifest: join(dir, 'out', 'micropay-manifest.json'),
      dynamicPrices: {
        livePrice: ({ params }) => {
          asked.push(params['*']!);
          return '0.005 USD';
        },
      },
      logger: pino({ level: 'silent' }),
    });
    const app = express();
    app.use(mw);
    app.get('*splat', (_req, res) => {
      res.send('ok');
    });
    const fixed = await request(app).get('/articles/42').expect(402);
    expect(fixed.body.offer).toMatchObject({ amt: 20000, cur: 'USD', dur: 86400, res: 'GET /articles/42' });
    const live = await request(app).get('/live/cup-final').expect(402);
    expect(live.body.offer).toMatchObject({ amt: 5000, cur: 'USD', title: 'Live coverage' });
    expect(asked).toEqual(['cup-final']);
    await request(app).get('/about').expect(200, 'ok');
    // And the compiled price is really charged.
    const paid = await request(app)
      .get('/articles/42')
      .set('Micropay-Payment', world.buyer.pay(fixed.body.offer))
      .expect(200);
    expect(paid.headers['micropay-receipt']).toBeTruthy();
    await mw.close();
  });

  it('refuses a manifest whose dynamic route has no registered function', () => {
    expect(() =>
      micropay({
        merchant: 'news-site',
        billing: { url: world.url, token: 't' },
        manifest: join(dir, 'out', 'micropay-manifest.json'),
      }),
    ).toThrowError(
      expect.objectContaining({
        code: 'invalid_option',
        message: expect.stringMatching(/dynamicPrices: \{ livePrice/),
      }),
    );
  });

  it('refuses a broken manifest file naming it', () => {
    writeFileSync(
      join(dir, 'bad.json'),
      '{"micropay":"manifest","version":1,"routes":[{"match":"GET /a","price":"x"}]}',
    );
    expect(() =>
      micropay({
        merchant: 'news-site',
        billing: { url: world.url, token: 't' },
        manifest: join(dir, 'bad.json'),
      }),
    ).toThrowError(
      expect.objectContaining({ code: 'invalid_manifest', message: expect.stringContaining('bad.json') }),
    );
  });
});
