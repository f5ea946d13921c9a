/**
 * `accessLog: true`: one pino line per HTTP request with method, path, status,
 * outcome and time, and what was paid; never a query string, header or token.
 * Off by default. A real upstream; the log goes to a stream read back here.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { config, get, startBank, startProxy, upstreamForFile } from './helpers.js';

const upstream = upstreamForFile();

/** A pino logger at `info` whose lines land in `lines`. */
function capture(): { logger: pino.Logger; lines: string[]; requests: () => Record<string, unknown>[] } {
  const lines: string[] = [];
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(c, _e, cb) {
        lines.push(...c.toString().split('\n').filter(Boolean));
        cb();
      },
    }),
  );
  const requests = () => lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'micropay-proxy: request');
  return { logger, lines, requests };
}

describe('accessLog', () => {
  it('logs one line per request, with what was paid, and never a token or query string', async () => {
    const bank = startBank();
    const log = capture();
    const { url } = await startProxy(config(upstream().url, { accessLog: true }), {
      billing: bank.billing,
      logger: log.logger,
    });
    const ivy = bank.buyer('ivy');
    const payment = ivy.pay('GET /articles/7');
    expect((await get(`${url}/about?session=s3cr3t`)).status).toBe(200);
    expect((await get(`${url}/articles/7`)).status).toBe(402);
    const paid = await get(`${url}/articles/7`, { 'Micropay-Payment': payment });
    expect(paid.status).toBe(200);
    const receipt = String(paid.headers['micropay-receipt']);
    const again = await get(`${url}/articles/7`, { 'Micropay-Payment': `receipt="${receipt}"` });
    expect(again.status).toBe(200);
    await new Promise((r) => setTimeout(r, 50)); // the last 'close' listeners
    const oid = JSON.parse(
      Buffer.from(payment.split('order="')[1]!.split('.')[0]!, 'base64url').toString(),
    ).oid;
    const reqs = log.requests();
    expect(reqs).toHaveLength(4);
    expect(reqs[0]).toMatchObject({ level: 30, method: 'GET', path: '/about', status: 200, outcome: 'free' });
    expect(reqs[1]).toMatchObject({ path: '/articles/7', status: 402, outcome: 'answered' });
    expect(reqs[2]).toMatchObject({
      path: '/articles/7',
      status: 200,
      outcome: 'paid',
      via: 'order',
      amt: 2000,
      cur: 'USD',
      oid,
    });
    expect(reqs[3]).toMatchObject({ status: 200, outcome: 'paid', via: 'receipt', amt: 2000, oid });
    for (const r of reqs) expect(r.ms).toEqual(expect.any(Number));
    expect(reqs[0]).not.toHaveProperty('amt');
    const all = log.lines.join('\n');
    for (const secret of ['s3cr3t', ivy.cert, payment.split('order="')[1]!.slice(0, 40), receipt]) {
      expect(all).not.toContain(secret);
    }
  });

  it('is off by default', async () => {
    const log = capture();
    const { url } = await startProxy(config(upstream().url), {
      billing: startBank().billing,
      logger: log.logger,
    });
    expect((await get(`${url}/about`)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 50));
    expect(log.requests()).toEqual([]);
  });
});
