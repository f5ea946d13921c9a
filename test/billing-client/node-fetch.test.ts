/**
 * `nodeFetch`, the merchant's billing transport over `node:http`: the
 * billing client through it against a real billing server (the merchant's
 * calls, a streamed statement), its failures over real sockets (retries,
 * refused connections, timeouts, aborts, redirects), and the fetch contract
 * it keeps (bodies, headers, statuses without a body, kept-alive sockets).
 */
import type http from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createBillingClient } from '../../src/billing-client/index.js';
import { nodeFetch } from '../../src/billing-client/node-fetch.js';
import {
  buyer,
  type Front,
  failure,
  generateSigningKey,
  merchantAndBuyer,
  reservePort,
  Started,
  type Step,
  startBillingServer,
  type TestServer,
  unavailable,
} from './helpers.js';

let srv: TestServer;
let merchantToken: string;
let buyerToken: string;
const started = new Started();
const transport = nodeFetch();
const fast = { retryBaseMs: 5, retryMaxDelayMs: 20, fetch: transport };

const front = (...script: Step[]): Promise<Front> => started.front(srv.url, script);

/** A raw server answering every request with `handler`; closed after each test. */
const raw = (handler: http.RequestListener): Promise<string> => started.server(handler);

beforeAll(async () => {
  srv = await startBillingServer('bank-n');
  ({ merchantToken, buyerToken } = await merchantAndBuyer(srv, 'n', transport));
});
afterEach(async () => {
  await started.closeAll();
});
afterAll(async () => {
  await srv?.close();
});

describe('the billing client over nodeFetch, against a real billing server', () => {
  it("takes a merchant's deposit, online authorization and key set, and a buyer's credential", async () => {
    const b = createBillingClient({ url: srv.url, token: buyerToken, fetch: transport });
    const key = generateSigningKey();
    const { cert } = await b.createCertificate(key);
    const alice = buyer(cert, key);
    const m = createBillingClient({ url: srv.url, token: merchantToken, fetch: transport });
    const order = alice.order({ mer: 'n-merchant', amt: 2000 });
    const a = await m.deposit({ batch: 'n-1', orders: [{ cert, order }] });
    expect(a.results.map((r) => r.status)).toEqual(['credited']);
    // The same batch again: the first answer, nothing credited twice.
    expect((await m.deposit({ batch: 'n-1', orders: [{ cert, order }] })).credited).toBe(a.credited);
    const auth = await m.authorize({ cert, order: alice.order({ mer: 'n-merchant', amt: 3000 }) });
    expect(auth.status).toBe('approved');
    expect(await m.issuer()).toBe('bank-n');
    expect((await m.me()).id).toBe('n-merchant');
  });

  it('streams a statement: the first bytes arrive before the server ends it, and the signal cancels it', async () => {
    const url = await raw((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/csv' });
      res.write('record,id\r\n');
    });
    const c = createBillingClient({ url, token: 'mpt_x', timeoutMs: 200, fetch: transport });
    const ctl = new AbortController();
    const stream = await c.statement({ format: 'csv' }, { signal: ctl.signal });
    const reader = stream.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('record,id\r\n');
    const next = reader.read();
    ctl.abort();
    await expect(next).rejects.toBeDefined();
  });
});

describe('failures over real sockets', () => {
  it('a GET answered 503 twice then served succeeds on the third attempt', async () => {
    const f = await front(unavailable, unavailable);
    const c = createBillingClient({ url: f.url, token: merchantToken, ...fast });
    expect((await c.me()).id).toBe('n-merchant');
    expect(f.seen).toEqual(['GET /v1/me', 'GET /v1/me', 'GET /v1/me']);
  });

  it('reads Retry-After and the server code of an error answer', async () => {
    const f = await front({
      status: 429,
      headers: { 'Retry-After': '7' },
      body: { error: 'rate_limited', message: 'Slow down.' },
    });
    const c = createBillingClient({ url: f.url, token: merchantToken, ...fast, retries: 0 });
    const e = await failure(c.me());
    expect([e.code, e.status, e.retryAfter, e.serverCode]).toEqual([
      'billing_unavailable',
      429,
      7,
      'rate_limited',
    ]);
  });

  it('a refused connection is billing_unavailable naming ECONNREFUSED, without the token', async () => {
    const port = await reservePort();
    const c = createBillingClient({ url: `http://127.0.0.1:${port}`, token: buyerToken, ...fast });
    const e = await failure(c.me());
    expect([e.code, e.status]).toEqual(['billing_unavailable', 503]);
    expect(e.message).toMatch(/could not be reached \(ECONNREFUSED\)/);
    expect(e.message).not.toContain(buyerToken);
  });

  it('a server that hangs times out per attempt; a per-call signal aborts with code aborted', async () => {
    const f = await front('hang', 'hang');
    const c = createBillingClient({ url: f.url, token: merchantToken, timeoutMs: 100, retries: 1, ...fast });
    const t0 = Date.now();
    const e = await failure(c.me());
    expect(e.message).toMatch(/did not answer within 100 ms/);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(f.seen).toHaveLength(2);
    const g = await front('hang');
    const d = createBillingClient({ url: g.url, token: merchantToken, ...fast });
    expect((await failure(d.me({ signal: AbortSignal.timeout(50) }))).code).toBe('aborted');
    // Aborted before it starts: no request at all.
    const h = await front();
    const gone = AbortSignal.abort();
    expect((await failure(createBillingClient({ url: h.url, ...fast }).me({ signal: gone }))).code).toBe(
      'aborted',
    );
    expect(h.seen).toEqual([]);
  });

  it('a redirect is refused, as fetch does with redirect: error', async () => {
    const url = await raw((_req, res) => {
      res.writeHead(302, { location: 'http://127.0.0.1:9/elsewhere' });
      res.end();
    });
    const c = createBillingClient({ url, token: merchantToken, ...fast, retries: 0 });
    const e = await failure(c.me());
    expect(e.code).toBe('billing_unavailable');
    expect(e.message).toMatch(/could not be reached/);
  });
});

describe('the fetch contract it keeps', () => {
  it('sends the method, headers and body with its length, and answers headers, status and text', async () => {
    const seen: { method?: string; headers?: http.IncomingHttpHeaders; body?: string }[] = [];
    const url = await raw((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        seen.push({ method: req.method, headers: req.headers, body });
        res.writeHead(201, 'Made', { 'content-type': 'application/json', 'x-one': 'a' });
        res.end('{"ok":true}');
      });
    });
    const r = await transport(new URL('/v1/thing?x=1', url), {
      method: 'post',
      headers: { Authorization: 'Bearer t', 'content-type': 'application/json' },
      body: 'é{}',
    });
    expect([r.status, r.statusText, r.ok, r.headers.get('X-One')]).toEqual([201, 'Made', true, 'a']);
    expect(await r.json()).toEqual({ ok: true });
    expect(seen[0]).toMatchObject({ method: 'POST', body: 'é{}' });
    expect(seen[0]!.headers).toMatchObject({ authorization: 'Bearer t', 'content-length': '4' });
    const bytes = await transport(`${url}/b`, { method: 'PUT', body: new TextEncoder().encode('abc') });
    await bytes.text();
    expect(seen[1]).toMatchObject({ method: 'PUT', body: 'abc' });
    expect(seen[1]!.headers!['content-length']).toBe('3');
  });

  it('a 204 or a HEAD has a null body; sequential calls share one kept-alive connection', async () => {
    const ports = new Set<number>();
    const url = await raw((req, res) => {
      ports.add(req.socket.remotePort!);
      res.writeHead(req.method === 'HEAD' ? 200 : 204, {
        'content-length': req.method === 'HEAD' ? '5' : '0',
      });
      res.end();
    });
    const a = await transport(url);
    expect([a.status, a.body]).toEqual([204, null]);
    expect(await a.text()).toBe('');
    const b = await transport(url, { method: 'HEAD' });
    expect([b.status, b.body]).toEqual([200, null]);
    await transport(url);
    expect(ports.size).toBe(1);
  });

  it('refuses other protocols and bodies it cannot send, with a TypeError', async () => {
    await expect(transport('ftp://127.0.0.1/x')).rejects.toThrow(/ftp: URLs are not supported/);
    const url = await raw((_req, res) => res.end());
    await expect(
      transport(url, { method: 'POST', body: new Blob(['x']) as unknown as string }),
    ).rejects.toThrow(/only a string or byte body/);
  });
});
