/**
 * The proxy over HTTP against a real upstream: the 402 of section 4, a paid
 * request, receipts, charge only on success, what reaches the upstream
 * (never the payment header; paid headers; X-Forwarded-*), streaming, the
 * upstream down, upstream choice, and the `/_micropay/*` endpoints. The
 * billing side is a bank of fixed keys passed as `billing`.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeToken } from '../../src/protocol/codec.js';
import {
  type Bank,
  closeProxies,
  config,
  deadPort,
  eventually,
  get,
  startBank,
  startProxy,
  startUpstream,
  type Upstream,
} from './helpers.js';

let up: Upstream;
let bank: Bank;
let url: string;
let proxy: Awaited<ReturnType<typeof startProxy>>['proxy'];

beforeAll(async () => {
  up = await startUpstream();
  bank = startBank();
  ({ proxy, url } = await startProxy(config(up.url, { paidHeaders: true }), { billing: bank.billing }));
});
afterAll(async () => {
  await closeProxies();
  await up.close();
});

const depositsOf = (b: Bank, cert: string) => b.deposits.filter((d) => d.cert === cert).length;
const lastSeen = (path: string) => [...up.seen].reverse().find((s) => s.url === path);

describe('micropay-proxy', () => {
  it('passes free routes through untouched', async () => {
    const r = await get(`${url}/about?x=1`);
    expect(r.status).toBe(200);
    expect(r.json()).toMatchObject({ name: 'upstream', path: '/about?x=1' });
    expect(r.headers['micropay-receipt']).toBeUndefined();
  });

  it('answers a priced route with the 402 of section 4 and never asks the upstream', async () => {
    const n = up.seen.length;
    const r = await get(`${url}/articles/42?ref=home`);
    expect(r.status).toBe(402);
    expect(r.headers['content-type']).toMatch(/application\/json/);
    expect(r.headers['www-authenticate']).toBe('Micropay realm="news-site"');
    const body = r.json();
    expect(body).toMatchObject({ error: 'payment_required', message: 'This resource costs 0.002 USD.' });
    expect(body.offer).toMatchObject({
      typ: 'mp-offer',
      v: 1,
      mer: 'news-site',
      acq: bank.issuer,
      accepts: [bank.issuer],
      res: 'GET /articles/42?ref=home',
      amt: 2000,
      cur: 'USD',
      dur: 60,
      title: 'An article',
    });
    expect(JSON.parse(Buffer.from(String(r.headers['micropay-offer']), 'base64url').toString())).toEqual(
      body.offer,
    );
    expect(up.seen.length).toBe(n);
  });

  it('serves a browser the HTML paywall page', async () => {
    const r = await get(`${url}/articles/1`, { Accept: 'text/html,*/*;q=0.8' });
    expect(r.status).toBe(402);
    expect(r.headers['content-type']).toMatch(/text\/html/);
    expect(r.body).toContain('0.002 USD');
  });

  it('takes a payment, forwards without the payment header, returns a receipt, and re-serves with it', async () => {
    const alice = bank.buyer('alice');
    const r = await get(`${url}/articles/7`, { 'Micropay-Payment': alice.pay('GET /articles/7') });
    expect(r.status).toBe(200);
    expect(r.json()).toMatchObject({ path: '/articles/7' });
    const seen = lastSeen('/articles/7')!;
    expect(seen.headers['micropay-payment']).toBeUndefined();
    expect(seen.headers).toMatchObject({
      'micropay-paid-buyer': 'alice',
      'micropay-paid-amount': '2000',
      'micropay-paid-currency': 'USD',
      'micropay-paid-issuer': bank.issuer,
    });
    expect(seen.headers['micropay-paid-oid']).toMatch(/^[A-Za-z0-9_-]{16,}$/);
    const receipt = String(r.headers['micropay-receipt']);
    expect(decodeToken(receipt, 'mp-receipt').payload).toMatchObject({
      mer: 'news-site',
      res: 'GET /articles/7',
      sub: 'alice',
      amt: 2000,
      cur: 'USD',
    });
    const again = await get(`${url}/articles/7`, { 'Micropay-Payment': `receipt="${receipt}"` });
    expect(again.status).toBe(200);
    expect(again.headers['micropay-receipt']).toBeUndefined();
    expect(lastSeen('/articles/7')!.headers['micropay-payment']).toBeUndefined();
    expect(lastSeen('/articles/7')!.headers['micropay-paid-buyer']).toBe('alice');
    const other = await get(`${url}/articles/8`, { 'Micropay-Payment': `receipt="${receipt}"` });
    expect(other.status).toBe(402);
    expect(other.json().error).toBe('invalid_receipt');
    await eventually(() => depositsOf(bank, alice.cert) === 1);
  });

  it('refuses a replay and a wrong amount with their codes', async () => {
    const bob = bank.buyer('bob');
    const h = bob.pay('GET /articles/9');
    expect((await get(`${url}/articles/9`, { 'Micropay-Payment': h })).status).toBe(200);
    const replay = await get(`${url}/articles/9`, { 'Micropay-Payment': h });
    expect(replay.status).toBe(402);
    expect(replay.json().error).toBe('replayed_order');
    const low = await get(`${url}/articles/9`, {
      'Micropay-Payment': bob.pay('GET /articles/9', { amt: 1 }),
    });
    expect(low.json().error).toBe('insufficient_amount');
    const bad = await get(`${url}/articles/9`, { 'Micropay-Payment': 'nonsense' });
    expect(bad.status).toBe(400);
    expect(bad.json().error).toBe('malformed_payment');
  });

  it('strips Micropay-Paid-* and untrusted X-Forwarded-* headers a client sends, and adds its own', async () => {
    const r = await get(`${url}/echo`, {
      'Micropay-Paid-Buyer': 'mallory',
      'Micropay-Paid-Amount': '999999',
      'X-Forwarded-For': '6.6.6.6',
      'X-Forwarded-Host': 'evil.example',
      'Micropay-Payment': 'cert="x", order="y"',
    });
    expect(r.status).toBe(200);
    const h = lastSeen('/echo')!.headers;
    expect(h['micropay-paid-buyer']).toBeUndefined();
    expect(h['micropay-paid-amount']).toBeUndefined();
    expect(h['micropay-payment']).toBeUndefined();
    expect(h['x-forwarded-for']).toBe('127.0.0.1');
    expect(h['x-forwarded-proto']).toBe('http');
    expect(h['x-forwarded-host']).toBe(new URL(url).host);
    expect(h['x-forwarded-port']).toBe(String(new URL(url).port));
    expect(h.host).toBe(new URL(url).host);
  });

  it('keeps the X-Forwarded-* chain with trustProxy', async () => {
    const { url: u } = await startProxy(config(up.url, { trustProxy: true }), { billing: bank.billing });
    await get(`${u}/echo-trusted`, { 'X-Forwarded-For': '203.0.113.9', 'X-Forwarded-Proto': 'https' });
    const h = lastSeen('/echo-trusted')!.headers;
    expect(h['x-forwarded-for']).toBe('203.0.113.9,127.0.0.1');
    expect(h['x-forwarded-proto']).toBe('https,http');
  });

  it('charges only when the upstream answers below 400: a 404 or a 500 is not charged and its tally is released', async () => {
    // Limit 3000, price 2000: after an uncharged order, a second one still fits offline.
    const carol = bank.buyer('carol', { lim: 3000 });
    for (const status of [404, 500]) {
      const path = `/status/${status}`;
      const r = await get(`${url}${path}`, { 'Micropay-Payment': carol.pay(`GET ${path}`) });
      expect(r.status).toBe(status);
      expect(r.headers['micropay-receipt']).toBeUndefined();
    }
    const auths = bank.authorizations;
    const ok = await get(`${url}/status/200`, { 'Micropay-Payment': carol.pay('GET /status/200') });
    expect(ok.status).toBe(200);
    expect(ok.headers['micropay-receipt']).toBeTruthy();
    expect(bank.authorizations).toBe(auths); // offline: the tally held only the charged order
    await eventually(() => depositsOf(bank, carol.cert) === 1);
    await new Promise((r) => setTimeout(r, 60));
    expect(depositsOf(bank, carol.cert)).toBe(1);
    // The tally now holds 2000 of 3000: the next order needs the billing server.
    const again = await get(`${url}/status/201`, { 'Micropay-Payment': carol.pay('GET /status/201') });
    expect(again.status).toBe(201);
    expect(bank.authorizations).toBe(auths + 1);
  });

  it("sends its own receipt for a paid request, never the upstream's Micropay-Receipt; a free one passes as it is", async () => {
    const fay = bank.buyer('fay');
    const path = '/articles/forged-receipt';
    const r = await get(`${url}${path}`, { 'Micropay-Payment': fay.pay(`GET ${path}`) });
    expect(r.status).toBe(200);
    const receipt = decodeToken(String(r.headers['micropay-receipt']), 'mp-receipt');
    expect(receipt.payload).toMatchObject({
      typ: 'mp-receipt',
      mer: 'news-site',
      res: `GET ${path}`,
      sub: 'fay',
    });
    const free = await get(`${url}/about/forged-receipt`);
    expect(free.headers['micropay-receipt']).toBe('forged');
  });

  it('streams: the first byte of a slow response reaches the client before the upstream finishes', async () => {
    const dave = bank.buyer('dave');
    for (const path of ['/slow', '/slow-paid']) {
      const headers = path === '/slow-paid' ? { 'Micropay-Payment': dave.pay(`GET ${path}`) } : {};
      const first = await new Promise<{ chunk: string; res: http.IncomingMessage }>((resolve, reject) => {
        http
          .get(`${url}${path}`, { headers, agent: false }, (res) => {
            res.once('data', (c: Buffer) => resolve({ chunk: c.toString(), res }));
          })
          .on('error', reject);
      });
      expect(first.chunk).toBe('first\n');
      expect(first.res.complete).toBe(false);
      if (path === '/slow-paid') expect(first.res.headers['micropay-receipt']).toBeTruthy();
      first.res.destroy();
    }
    up.releaseSlow();
  });

  it('streams a request body to the upstream', async () => {
    const body = Buffer.alloc(3 * 1024 * 1024, 7);
    const r = await new Promise<string>((resolve, reject) => {
      const req = http.request(`${url}/upload`, { method: 'POST', agent: false }, (res) => {
        let t = '';
        res.on('data', (c) => {
          t += c;
        });
        res.on('end', () => resolve(t));
      });
      req.on('error', reject);
      req.end(body);
    });
    expect(JSON.parse(r)).toEqual({ bytes: body.length });
  });

  it('answers 502 upstream_unavailable when the upstream is down, and charges nothing', async () => {
    const port = await deadPort();
    const b = startBank();
    const { url: u, proxy: p } = await startProxy(config(`http://127.0.0.1:${port}`), { billing: b.billing });
    const free = await get(`${u}/about`);
    expect(free.status).toBe(502);
    expect(free.json()).toEqual({
      error: 'upstream_unavailable',
      message: expect.stringMatching(/nothing was charged/),
    });
    const erin = b.buyer('erin', { lim: 2000 });
    const paid = await get(`${u}/articles/1`, { 'Micropay-Payment': erin.pay('GET /articles/1') });
    expect(paid.status).toBe(502);
    expect(paid.json().error).toBe('upstream_unavailable');
    expect(paid.headers['micropay-receipt']).toBeUndefined();
    // The proxy's own failures, counted as errors.
    const m = (await get(`${u}/_micropay/metrics`)).body;
    expect(m).toMatch(/^micropay_proxy_requests_total\{outcome="error",status="502"\} 2$/m);
    expect(m).not.toMatch(/^micropay_proxy_requests_total\{outcome="(free|paid)"/m);
    // Released: the whole limit is still there for an offline order.
    await p.reload(config(up.url));
    const ok = await get(`${u}/articles/1`, { 'Micropay-Payment': erin.pay('GET /articles/1') });
    expect(ok.status).toBe(200);
    expect(b.authorizations).toBe(0);
    await p.close();
    expect(b.deposits.length).toBe(1);
  });

  it("counts a 502 or 504 the upstream sends itself under the request's outcome, not as the proxy's error", async () => {
    const { url: u } = await startProxy(config(up.url), { billing: bank.billing });
    expect((await get(`${u}/about/x`)).status).toBe(200);
    const gail = bank.buyer('gail', { lim: 10_000 });
    for (const code of [502, 504]) {
      const r = await get(`${u}/status/${code}`, { 'Micropay-Payment': gail.pay(`GET /status/${code}`) });
      expect(r.status).toBe(code);
      expect(r.json()).toEqual({ status: code, name: 'upstream' });
      expect(r.headers['micropay-receipt']).toBeUndefined(); // not charged: 400 or more
    }
    const m = (await get(`${u}/_micropay/metrics`)).body;
    expect(m).toMatch(/^micropay_proxy_requests_total\{outcome="paid",status="502"\} 1$/m);
    expect(m).toMatch(/^micropay_proxy_requests_total\{outcome="paid",status="504"\} 1$/m);
    expect(m).toMatch(/^micropay_proxy_requests_total\{outcome="free",status="200"\} 1$/m);
    expect(m).not.toMatch(/outcome="error"/);
    expect(m).toMatch(/^micropay_proxy_upstream_errors_total 0$/m);
  });

  it('serves /_micropay/healthz, /_micropay/metrics and the wallet script, and passes the rest of /_micropay/ upstream', async () => {
    const h = await get(`${url}/_micropay/healthz`);
    expect(h.status).toBe(200);
    expect(h.json()).toMatchObject({ status: 'ok', merchant: 'news-site' });
    const m = await get(`${url}/_micropay/metrics`);
    expect(m.status).toBe(200);
    expect(m.headers['content-type']).toMatch(/text\/plain/);
    expect(m.body).toContain('micropay_proxy_request_duration_seconds_bucket{le="0.005",outcome="paid"}');
    expect(m.body).toContain('micropay_proxy_upstream_response_seconds_count');
    expect(m.body).toMatch(/micropay_payments_total\{mode="offline"\} \d+/);
    expect(m.body).toMatch(/micropay_rejections_total\{code="replayed_order"\} 1/);
    expect(m.body).toMatch(/micropay_proxy_requests_total\{outcome="answered",status="402"\} \d+/);
    // The histograms count every request their counters count (FastHistogram series, src/middleware/histogram.ts).
    const num = (re: RegExp) => [...m.body.matchAll(re)].reduce((a, x) => a + Number(x[1]), 0);
    const paid = num(/^micropay_proxy_requests_total\{outcome="paid",status="\d+"\} (\d+)$/gm);
    expect(paid).toBeGreaterThan(0);
    expect(num(/^micropay_proxy_request_duration_seconds_count\{outcome="paid"\} (\d+)$/gm)).toBe(paid);
    const payments = num(/^micropay_payments_total\{mode="\w+"\} (\d+)$/gm);
    expect(payments).toBeGreaterThan(0);
    expect(num(/^micropay_verify_seconds_count (\d+)$/gm)).toBeGreaterThanOrEqual(payments);
    const post = await get(`${url}/_micropay/metrics`, {}, 'POST');
    expect(post.status).toBe(405);
    const wallet = await get(`${url}/_micropay/wallet.js`);
    expect(wallet.status).toBe(200);
    expect(wallet.headers['content-type']).toMatch(/javascript/);
    const other = await get(`${url}/_micropay/other`);
    expect(other.json()).toMatchObject({ name: 'upstream', path: '/_micropay/other' });
  });

  it('serves the wallet script where walletScript says, and none with walletScript: false', async () => {
    const { url: moved } = await startProxy(config(up.url, { walletScript: '/assets/wallet.js' }), {
      billing: bank.billing,
    });
    const js = await get(`${moved}/assets/wallet.js?v=2`);
    expect(js.status).toBe(200);
    expect(js.headers['content-type']).toMatch(/javascript/);
    expect((await get(`${moved}/_micropay/wallet.js`)).json()).toMatchObject({ name: 'upstream' });
    const { url: none } = await startProxy(config(up.url, { walletScript: false }), {
      billing: bank.billing,
    });
    expect((await get(`${none}/_micropay/wallet.js`)).json()).toMatchObject({ path: '/_micropay/wallet.js' });
  });

  it('chooses the upstream by host and path prefix, and answers 404 no_upstream when none fits', async () => {
    const api = await startUpstream('api');
    const news = await startUpstream('news');
    try {
      const cfg = config(up.url, {
        upstream: undefined,
        upstreams: [
          { pathPrefix: '/api/', url: api.url },
          { host: 'news.example', url: news.url },
          { host: '*.blog.example', url: up.url },
        ],
      });
      const { url: u } = await startProxy(cfg, { billing: bank.billing });
      const port = new URL(u).port;
      expect((await get(`${u}/api/x`)).json().name).toBe('api');
      expect((await get(`${u}/x`, { Host: `news.example:${port}` })).json().name).toBe('news');
      expect((await get(`${u}/x`, { Host: 'a.blog.example' })).json().name).toBe('upstream');
      const none = await get(`${u}/x`, { Host: 'other.example' });
      expect(none.status).toBe(404);
      expect(none.json().error).toBe('no_upstream');
    } finally {
      await api.close();
      await news.close();
    }
  });

  it('aborts the upstream request when the client goes away', async () => {
    const slow = await startUpstream('slow');
    try {
      const { url: u, proxy: p } = await startProxy(config(slow.url), { billing: bank.billing });
      const req = http.get(`${u}/slow`, { agent: false }, (res) => res.once('data', () => req.destroy()));
      req.on('error', () => {});
      await slow.slowStarted;
      await eventually(() => slow.slowAborted === 1);
      const inflight = await p.metrics.getSingleMetricAsString('micropay_proxy_requests_in_flight');
      expect(inflight).toMatch(/micropay_proxy_requests_in_flight 0/);
    } finally {
      await slow.close();
    }
  });

  it('cuts the client off when the upstream dies in the middle of a body', async () => {
    const outcome = await new Promise<string>((resolve) => {
      http
        .get(`${url}/die`, { agent: false }, (res) => {
          res.on('data', () => {});
          res.on('end', () => resolve('ended'));
          res.on('error', (e) => resolve(`error ${e.message}`));
          res.on('aborted', () => resolve('aborted'));
        })
        .on('error', (e) => resolve(`error ${e.message}`));
    });
    expect(outcome).not.toBe('ended');
  });

  it('closes: stops listening and resolves once', async () => {
    const { proxy: p } = await startProxy(config(up.url), { billing: bank.billing });
    await Promise.all([p.close(), p.close()]);
    expect(p.server.listening).toBe(false);
  });
});

it('uses the proxy object as documented', () => {
  expect(proxy.url).toBe(url);
  expect(proxy.config.merchant).toBe('news-site');
  expect(proxy.core.merchant).toBe('news-site');
});
