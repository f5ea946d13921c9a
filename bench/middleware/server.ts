/**
 * The bench's merchant process: the same app under Express and under Koa
 * with a free route and a paid route (receipts re-access the paid one).
 * `GET /_bench/deposits` (free, outside the measured routes) tells how many
 * orders each app charged and how many the billing server credited.
 * Prints one JSON line with the two URLs.
 */

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Koa from 'koa';
import pino from 'pino';
import type { DepositAnswer } from '../../src/billing-client/batcher.js';
import type { MicropayCore } from '../../src/middleware/core.js';
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

/** Charged orders (`onPaid` of an order) and credited ones (the batcher's answers), per app. */
function counted() {
  const c = { charged: 0, credited: 0, rejected: 0 };
  const hooks = {
    onPaid: (info: { kind: string }) => {
      if (info.kind === 'order') c.charged++;
    },
  };
  const watch = (core: MicropayCore) => {
    core.deposits!.on('deposited', (a: DepositAnswer) => {
      for (const r of a.results) r.status === 'credited' ? c.credited++ : c.rejected++;
    });
  };
  return { c, hooks, watch };
}

const exCount = counted();
const exMw = expressMicropay({ ...options, ...exCount.hooks });
const ex = express();
ex.get('/_bench/deposits', (_req, res) => {
  res.json(exCount.c);
});
ex.use(exMw);
ex.get(['/free', '/paid'], (_req, res) => {
  res.type('text/plain').send(body);
});
const koaCount = counted();
const koaMw = koaMicropay({ ...options, ...koaCount.hooks });
const koa = new Koa();
koa.use(async (ctx, next) => {
  if (ctx.path === '/_bench/deposits') ctx.body = koaCount.c;
  else await next();
});
koa.use(koaMw);
koa.use((ctx) => {
  ctx.type = 'text/plain';
  ctx.body = body;
});
await Promise.all([exMw.core.ready(), koaMw.core.ready()]);
exCount.watch(exMw.core);
koaCount.watch(koaMw.core);

async function listen(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const s = createServer(handler);
  s.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

const out = { express: await listen(ex), koa: await listen(koa.callback()) };
console.log(JSON.stringify(out));
process.on('SIGTERM', () => process.exit(0));
