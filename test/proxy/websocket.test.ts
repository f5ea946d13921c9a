/**
 * Websocket upgrades through micropay-proxy (the ws package on both ends):
 * a free round trip; a priced upgrade refused with a 402 written on the raw
 * socket, then paid with the Micropay-Payment header of the upgrade request
 * and charged when the upstream switches protocols; not charged when the
 * upstream refuses the upgrade or is down.
 */
import type { IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { decodeToken } from '../../src/protocol/codec.js';
import {
  type Bank,
  closeProxies,
  config,
  deadPort,
  eventually,
  startBank,
  startProxy,
  startUpstream,
  type Upstream,
} from './helpers.js';

let up: Upstream;
let bank: Bank;
let wsUrl: string;

beforeAll(async () => {
  up = await startUpstream();
  bank = startBank();
  const { url } = await startProxy(config(up.url, { paidHeaders: true }), { billing: bank.billing });
  wsUrl = url.replace(/^http/, 'ws');
});
afterAll(async () => {
  await closeProxies();
  await up.close();
});

/** Opens a websocket; resolves the open socket and the 101's headers, or the refusal's status and body. */
function open(
  url: string,
  headers: Record<string, string> = {},
): Promise<
  | { ok: true; ws: WebSocket; headers: IncomingMessage['headers'] }
  | { ok: false; status: number; headers: IncomingMessage['headers']; body: string }
> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    let upgradeHeaders: IncomingMessage['headers'] = {};
    ws.once('upgrade', (res) => {
      upgradeHeaders = res.headers;
    });
    ws.once('open', () => resolve({ ok: true, ws, headers: upgradeHeaders }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => {
        body += c;
      });
      res.on('end', () => resolve({ ok: false, status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    ws.once('error', reject);
  });
}

function roundTrip(ws: WebSocket, text: string): Promise<string> {
  return new Promise((resolve) => {
    ws.once('message', (d) => resolve(d.toString()));
    ws.send(text);
  });
}

describe('websockets through micropay-proxy', () => {
  it('passes a free upgrade and echoes both ways', async () => {
    const r = await open(`${wsUrl}/ws`);
    if (!r.ok) throw new Error(`refused: ${r.status} ${r.body}`);
    expect(await roundTrip(r.ws, 'hello')).toBe('echo:hello');
    expect(await roundTrip(r.ws, 'again')).toBe('echo:again');
    r.ws.close();
  });

  it('answers an unpaid priced upgrade with the 402 on the raw socket, and never asks the upstream', async () => {
    const n = up.wsSeen.length;
    const r = await open(`${wsUrl}/ws-paid`);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.status).toBe(402);
    expect(r.headers['www-authenticate']).toBe('Micropay realm="news-site"');
    const body = JSON.parse(r.body);
    expect(body).toMatchObject({
      error: 'payment_required',
      offer: { mer: 'news-site', res: 'GET /ws-paid', amt: 2000, cur: 'USD' },
    });
    const bad = await open(`${wsUrl}/ws-paid`, { 'Micropay-Payment': 'nonsense' });
    expect(bad.ok ? 0 : bad.status).toBe(400);
    expect(up.wsSeen.length).toBe(n);
  });

  it('takes a payment at upgrade time: a receipt in the 101, the round trip, one deposit', async () => {
    const frank = bank.buyer('frank');
    const r = await open(`${wsUrl}/ws-paid`, { 'Micropay-Payment': frank.pay('GET /ws-paid') });
    if (!r.ok) throw new Error(`refused: ${r.status} ${r.body}`);
    expect(decodeToken(r.headers['micropay-receipt'], 'mp-receipt').payload).toMatchObject({
      res: 'GET /ws-paid',
      sub: 'frank',
      amt: 2000,
    });
    expect(await roundTrip(r.ws, 'paid')).toBe('echo:paid');
    const seen = up.wsSeen[up.wsSeen.length - 1]!.headers;
    expect(seen['micropay-payment']).toBeUndefined();
    expect(seen['micropay-paid-buyer']).toBe('frank');
    expect(seen['x-forwarded-proto']).toBe('ws');
    r.ws.close();
    await eventually(() => bank.deposits.some((d) => d.cert === frank.cert));
  });

  it('does not charge an upgrade the upstream refuses, and releases its tally', async () => {
    const gina = bank.buyer('gina', { lim: 2000 });
    const r = await open(`${wsUrl}/ws-missing`, { 'Micropay-Payment': gina.pay('GET /ws-missing') });
    expect(r.ok ? 101 : r.status).toBe(404);
    if (!r.ok) expect(r.headers['micropay-receipt']).toBeUndefined();
    const auths = bank.authorizations;
    const ok = await open(`${wsUrl}/ws-paid`, { 'Micropay-Payment': gina.pay('GET /ws-paid') });
    expect(ok.ok).toBe(true);
    expect(bank.authorizations).toBe(auths); // the whole limit was free again: offline
    if (ok.ok) ok.ws.close();
    await new Promise((res) => setTimeout(res, 80));
    expect(bank.deposits.filter((d) => d.cert === gina.cert)).toHaveLength(1);
  });

  it('answers 502 upstream_unavailable on the raw socket when the upstream is down, charging nothing', async () => {
    const b = startBank();
    const { url } = await startProxy(config(`http://127.0.0.1:${await deadPort()}`), { billing: b.billing });
    const u = url.replace(/^http/, 'ws');
    const free = await open(`${u}/ws`);
    expect(free.ok ? 101 : free.status).toBe(502);
    const hana = b.buyer('hana');
    const paid = await open(`${u}/ws-paid`, { 'Micropay-Payment': hana.pay('GET /ws-paid') });
    expect(paid.ok).toBe(false);
    if (paid.ok) return;
    expect(paid.status).toBe(502);
    expect(JSON.parse(paid.body).error).toBe('upstream_unavailable');
    expect(paid.headers['micropay-receipt']).toBeUndefined();
    await new Promise((res) => setTimeout(res, 80));
    expect(b.deposits).toHaveLength(0);
  });
});
