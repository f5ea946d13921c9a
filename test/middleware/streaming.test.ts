/**
 * Paid responses are not buffered: a Koa stream body and server-sent events
 * (Express and Koa) reach the client as they are written, on a real socket,
 * with the charge decided when the headers go out (the receipt is a header)
 * and the order deposited at a real billing server.
 */
import { createServer, type RequestListener } from 'node:http';
import { Readable } from 'node:stream';
import express from 'express';
import Koa from 'koa';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MicropayOptions } from '../../src/middleware/core.js';
import { micropay as expressMicropay } from '../../src/middleware/express.js';
import { micropay as koaMicropay } from '../../src/middleware/koa.js';
import { decodeToken } from '../../src/protocol/codec.js';
import type { Offer } from '../../src/protocol/messages.js';
import { Opened } from '../helpers/opened.js';
import { eventually, startWorld, type World } from '../helpers/world.js';

const AMT = 1000; // 0.001 USD
const NET = AMT - Math.floor((AMT * 500) / 10_000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let world: World;
const opened = new Opened();

beforeAll(async () => {
  world = await startWorld();
});
afterAll(async () => {
  await opened.close();
  await world.close();
});

const options = (): MicropayOptions => ({
  merchant: world.merchant.id,
  billing: { url: world.url, token: world.merchant.token },
  prices: { 'GET /stream': '0.001 USD', 'GET /events': '0.001 USD' },
  deposits: { maxBatch: 10, maxDelayMs: 20 },
  logger: pino({ level: 'silent' }),
});

async function serve(handler: RequestListener): Promise<string> {
  return opened.listen(createServer(handler));
}

/** Pays for `path` and reads the answer chunk by chunk, noting when each arrived (ms after the request). */
async function payAndRead(base: string, path: string) {
  const challenge = await fetch(`${base}${path}`);
  expect(challenge.status).toBe(402);
  const { offer } = (await challenge.json()) as { offer: Offer };
  const t0 = Date.now();
  const res = await fetch(`${base}${path}`, { headers: { 'Micropay-Payment': world.buyer.pay(offer) } });
  const chunks: { at: number; text: string }[] = [];
  const decoder = new TextDecoder();
  const reader = res.body!.getReader();
  for (;;) {
    const c = await reader.read();
    if (c.done) break;
    chunks.push({ at: Date.now() - t0, text: decoder.decode(c.value, { stream: true }) });
  }
  return { res, chunks, endAt: Date.now() - t0, text: chunks.map((c) => c.text).join('') };
}

function expectReceipt(res: Response, path: string): void {
  const receipt = res.headers.get('micropay-receipt');
  expect(receipt).toBeTruthy();
  expect(decodeToken(receipt!, 'mp-receipt').payload).toMatchObject({ res: `GET ${path}`, amt: AMT });
}

/** Server-sent events: three events 200 ms apart, headers flushed before the first. */
async function* events(): AsyncGenerator<string> {
  for (let i = 1; i <= 3; i++) {
    if (i > 1) await sleep(200);
    yield `id: ${i}\nevent: tick\ndata: {"n":${i}}\n\n`;
  }
}

const SSE = [1, 2, 3].map((i) => `id: ${i}\nevent: tick\ndata: {"n":${i}}\n\n`).join('');

describe('streamed paid responses', () => {
  let paid = 0;

  it('Koa: a stream body reaches the client before the stream ends, with a receipt', async () => {
    const mw = koaMicropay(options());
    opened.onClose(mw.close);
    const app = new Koa();
    app.silent = true;
    app.use(mw);
    app.use((ctx) => {
      if (ctx.path !== '/stream') return;
      const body = new Readable({ read() {} });
      body.push('first\n');
      setTimeout(() => {
        body.push('second\n');
        body.push(null);
      }, 300);
      ctx.type = 'text/plain';
      ctx.body = body;
    });
    const base = await serve(app.callback());
    const { res, chunks, endAt, text } = await payAndRead(base, '/stream');
    expect(res.status).toBe(200);
    expectReceipt(res, '/stream');
    expect(text).toBe('first\nsecond\n');
    expect(chunks[0]!.text).toBe('first\n');
    // Relative to the end, so a loaded machine does not make it flaky: it came a stream's pause earlier.
    expect(chunks[0]!.at).toBeLessThan(endAt - 200);
    expect(endAt).toBeGreaterThanOrEqual(290);
    paid++;
  });

  it('Express: server-sent events flow one by one, with a receipt', async () => {
    const mw = expressMicropay(options());
    opened.onClose(mw.close);
    const app = express();
    app.use(mw);
    app.get('/events', async (_req, res) => {
      res.setHeader('Content-Type', 'text/event-stream');
      res.setHeader('Cache-Control', 'no-cache');
      res.flushHeaders();
      for await (const e of events()) res.write(e);
      res.end();
    });
    const base = await serve(app);
    const { res, chunks, endAt, text } = await payAndRead(base, '/events');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expectReceipt(res, '/events');
    expect(text).toBe(SSE);
    expect(chunks[0]!.text).toContain('id: 1\n');
    expect(chunks.length).toBeGreaterThanOrEqual(3);
    expect(chunks[0]!.at).toBeLessThan(endAt - 300);
    expect(endAt).toBeGreaterThanOrEqual(390);
    paid++;
  });

  it('Koa: server-sent events flow too', async () => {
    const mw = koaMicropay(options());
    opened.onClose(mw.close);
    const app = new Koa();
    app.silent = true;
    app.use(mw);
    app.use((ctx) => {
      ctx.type = 'text/event-stream';
      ctx.set('Cache-Control', 'no-cache');
      ctx.body = Readable.from(events());
    });
    const base = await serve(app.callback());
    const { res, chunks, endAt, text } = await payAndRead(base, '/events');
    expect(res.status).toBe(200);
    expectReceipt(res, '/events');
    expect(text).toBe(SSE);
    expect(chunks.length).toBeGreaterThanOrEqual(3);
    expect(chunks[0]!.at).toBeLessThan(endAt - 300);
    expect(endAt).toBeGreaterThanOrEqual(390);
    paid++;
  });

  it('deposits each streamed order once', async () => {
    expect(paid).toBe(3);
    await eventually(async () => (await world.admin.admin.getAccount('news-site')).balance === paid * NET);
  });
});
