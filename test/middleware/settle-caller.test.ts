/**
 * `handle(..., { settle: 'caller' })`, as micropay-proxy uses it: a paid order's
 * charge comes back in the outcome, the response is left as it is (no
 * wrapped `writeHead`, no extra listener or property), and `settleCharge`
 * decides it once: charged below 400 (receipt header, deposit), released
 * otherwise or with status 0. Real sockets: a server of node:http and clients.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Charge, MicropayCore, type Outcome, settleCharge } from '../../src/middleware/core.js';
import { type Bank, eventually, get, startBank } from '../proxy/helpers.js';

let bank: Bank;
let core: MicropayCore;
let server: http.Server;
let url: string;
/** What the server saw of each paid response before it was settled. */
const seen: { own: (string | symbol)[]; closeListeners: number; charge?: Charge; outcome: Outcome }[] = [];

beforeAll(async () => {
  bank = startBank();
  core = new MicropayCore({
    merchant: 'news-site',
    billing: bank.billing,
    prices: { 'GET /paid/*': '0.002 USD' },
    deposits: { maxDelayMs: 10 },
    logger: pino({ level: 'silent' }),
  });
  server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const own = Reflect.ownKeys(res);
    void core.handle(req, res, req.url, { settle: 'caller' }).then((o) => {
      if (o.action === 'answered') return;
      if (o.action === 'paid') {
        seen.push({
          own: Reflect.ownKeys(res).filter((k) => !own.includes(k)),
          closeListeners: res.listenerCount('close'),
          charge: o.charge,
          outcome: o,
        });
        // /paid/<status>: the status this "site" answers with.
        const status = Number(req.url!.split('/')[2]);
        settleCharge(res, o.charge!, status);
        settleCharge(res, o.charge!, 200); // only the first call counts
      }
      res.end('content');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => server?.close(() => r()));
  await core?.close();
});

describe("handle with settle: 'caller'", () => {
  it('leaves the response as it is and returns the charge; a status below 400 charges it once', async () => {
    const ann = bank.buyer('ann', { lim: 3000 });
    const r = await get(`${url}/paid/200`, { 'Micropay-Payment': ann.pay('GET /paid/200') });
    expect(r.status).toBe(200);
    expect(r.headers['micropay-receipt']).toBeTruthy();
    const s = seen.at(-1)!;
    expect(s.own).toEqual([]); // no own writeHead, no symbol
    expect(s.closeListeners).toBe(0);
    expect(s.charge?.decided).toBe(true);
    await eventually(() => bank.deposits.some((d) => d.cert === ann.cert));
    await new Promise((r) => setTimeout(r, 50));
    expect(bank.deposits.filter((d) => d.cert === ann.cert)).toHaveLength(1);
  });

  it('a status of 400 or more, or 0, releases the order: no receipt, no deposit, the tally freed', async () => {
    const bo = bank.buyer('bo', { lim: 2000 });
    for (const status of [500, 0]) {
      const path = `/paid/${status}`;
      const r = await get(`${url}${path}`, { 'Micropay-Payment': bo.pay(`GET ${path}`) });
      expect(r.headers['micropay-receipt']).toBeUndefined();
    }
    // The whole limit (one order's price) was free each time: offline, no authorization.
    expect(bank.authorizations).toBe(0);
    await new Promise((r) => setTimeout(r, 50));
    expect(bank.deposits.filter((d) => d.cert === bo.cert)).toHaveLength(0);
  });

  it('without the option, the core hooks writeHead and close as before, and the outcome has no charge', async () => {
    const res = new http.ServerResponse(new http.IncomingMessage(null as never));
    const cy = bank.buyer('cy');
    const req = res.req;
    req.method = 'GET';
    req.url = '/paid/200';
    req.headers = { 'micropay-payment': cy.pay('GET /paid/200') };
    const o = await core.handle(req, res);
    expect(o.action).toBe('paid');
    expect('charge' in o).toBe(false);
    expect(Object.hasOwn(res, 'writeHead')).toBe(true);
    expect(res.listenerCount('close')).toBe(1);
    res.writeHead(200);
    expect(res.writeHead).toBe(http.ServerResponse.prototype.writeHead); // put back once decided
    expect(res.getHeader('micropay-receipt')).toBeTruthy();
  });
});
