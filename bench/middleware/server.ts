/**
 * The bench's merchant process: the same app under Express and under Koa
 * with a free route and a paid route (receipts re-access the paid one).
 * Prints one JSON line with the two URLs.
 */

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Koa from 'koa';
import pino from 'pino';
import { micropay as expressMicropay } from '../../src/middleware/express.js';
import { micropay as koaMicropay } from '../../src/middleware/koa.js';

const url = process.env.BENCH_BILLING_URL!;
const token = process.env.BENCH_MERCHANT_TOKEN!;

const options = {
  merchant: 'news-site',
  billing: { url, token },
  prices: { 'GET /paid': '0.002 USD' },
  logger: pino({ level: 'silent' }),
  deposits: { maxBatch: 1000, maxDelayMs: 500 },
};
const body = 'x'.repeat(512);

const ex = express();
ex.use(expressMicropay(options));
ex.get(['/free', '/paid'], (_req, res) => {
  res.type('text/plain').send(body);
});
const koa = new Koa();
koa.use(koaMicropay(options));
koa.use((ctx) => {
  ctx.type = 'text/plain';
  ctx.body = body;
});

async function listen(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const s = createServer(handler);
  s.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

const out = { express: await listen(ex), koa: await listen(koa.callback()) };
console.log(JSON.stringify(out));
process.on('SIGTERM', () => process.exit(0));
