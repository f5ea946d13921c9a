/**
 * CORS for the browser wallet: preflights for `POST /v1/certificates` and
 * `GET /v1/me*` from configured origins only, the `Authorization` header
 * allowed, no credentials flag, nothing for other calls or origins, and a
 * wildcard or malformed origin refused at start-up.
 */
import { Writable } from 'node:stream';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBillingServer } from '../../src/billing-server/index.js';
import { parseCorsOrigins } from '../../src/billing-server/web/cors.js';
import { serve } from '../../src/cli/commands/billing/serve.js';
import { type Harness, startServer } from './helpers.js';

const SHOP = 'http://127.0.0.1:3000';
const OTHER = 'https://evil.example';

describe('CORS for the browser wallet', () => {
  let h: Harness;
  let buyer: { id: string; token: string };
  beforeAll(async () => {
    h = await startServer('sqlite', { corsOrigins: [SHOP, 'https://news.example'] });
    const a = await h.account({ id: 'cors-buyer', role: 'buyer', currency: 'USD', creditLimit: 1_000_000 });
    buyer = { id: a.id, token: a.token };
  });
  afterAll(() => h.close());

  const preflight = (path: string, origin: string, method: string, headers = 'authorization, content-type') =>
    h
      .call('options' as 'get', path)
      .set('Origin', origin)
      .set('Access-Control-Request-Method', method)
      .set('Access-Control-Request-Headers', headers);

  it('answers the preflight of POST /v1/certificates for a configured origin', async () => {
    const r = await preflight('/v1/certificates', SHOP, 'POST');
    expect(r.status).toBe(204);
    expect(r.headers['access-control-allow-origin']).toBe(SHOP);
    expect(r.headers['access-control-allow-methods']).toBe('POST');
    expect(r.headers['access-control-allow-headers']).toMatch(/Authorization/);
    expect(r.headers['access-control-allow-headers']).toMatch(/Content-Type/);
    expect(r.headers['access-control-max-age']).toBe('600');
    expect(r.headers['access-control-allow-credentials']).toBeUndefined();
    expect(r.headers.vary).toMatch(/Origin/);
  });

  it('answers the preflight of GET /v1/me and /v1/me/entries', async () => {
    for (const path of ['/v1/me', '/v1/me/entries']) {
      const r = await preflight(path, 'https://news.example', 'GET', 'authorization');
      expect(r.status, path).toBe(204);
      expect(r.headers['access-control-allow-origin']).toBe('https://news.example');
      expect(r.headers['access-control-allow-methods']).toBe('GET');
    }
  });

  it('the real calls carry Access-Control-Allow-Origin for the origin, never a wildcard or credentials', async () => {
    const c = await h
      .call('post', '/v1/certificates', buyer.token, { key: 'A'.repeat(43) })
      .set('Origin', SHOP);
    expect(c.status).toBe(201);
    expect(c.headers['access-control-allow-origin']).toBe(SHOP);
    expect(c.headers['access-control-allow-credentials']).toBeUndefined();
    const me = await h.call('get', '/v1/me', buyer.token).set('Origin', SHOP);
    expect(me.status).toBe(200);
    expect(me.headers['access-control-allow-origin']).toBe(SHOP);
    expect(me.body.account.id).toBe(buyer.id);
    // Errors are readable too, so the wallet can say why.
    const bad = await h.call('get', '/v1/me/entries', 'wrong-token-123').set('Origin', SHOP);
    expect(bad.status).toBe(401);
    expect(bad.headers['access-control-allow-origin']).toBe(SHOP);
  });

  it('gives nothing to an origin that is not configured', async () => {
    const p = await preflight('/v1/certificates', OTHER, 'POST');
    expect(p.headers['access-control-allow-origin']).toBeUndefined();
    expect(p.status).toBe(405);
    const r = await h.call('get', '/v1/me', buyer.token).set('Origin', OTHER);
    expect(r.status).toBe(200);
    expect(r.headers['access-control-allow-origin']).toBeUndefined();
    expect(r.headers.vary).toMatch(/Origin/);
  });

  it('gives nothing for other calls or methods, even to a configured origin', async () => {
    for (const [path, method] of [
      ['/v1/admin/accounts', 'GET'],
      ['/v1/admin/accounts/cors-buyer', 'PATCH'],
      ['/v1/deposits', 'POST'],
      ['/v1/authorizations', 'POST'],
      ['/v1/certificates', 'DELETE'],
      ['/v1/me', 'POST'],
      ['/', 'POST'],
      ['/login', 'POST'],
    ] as const) {
      const r = await preflight(path, SHOP, method);
      expect(r.headers['access-control-allow-origin'], `${method} ${path}`).toBeUndefined();
    }
    const admin = await h.call('get', '/v1/admin/accounts', h.admin).set('Origin', SHOP);
    expect(admin.status).toBe(200);
    expect(admin.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('without corsOrigins nothing is opened', async () => {
    const h2 = await startServer('sqlite');
    try {
      const r = await h2
        .call('options' as 'get', '/v1/certificates')
        .set('Origin', SHOP)
        .set('Access-Control-Request-Method', 'POST');
      expect(r.headers['access-control-allow-origin']).toBeUndefined();
    } finally {
      await h2.close();
    }
  });
});

describe('corsOrigins validation', () => {
  it('normalises origins and refuses wildcards, paths and other schemes', async () => {
    expect(parseCorsOrigins(['https://news.example', 'http://127.0.0.1:3000/'])).toEqual([
      'https://news.example',
      'http://127.0.0.1:3000',
    ]);
    expect(() => parseCorsOrigins(['*'])).toThrow(/wildcard/);
    expect(() => parseCorsOrigins(['https://*.news.example'])).toThrow(/wildcard/);
    expect(() => parseCorsOrigins(['https://news.example/wallet'])).toThrow(/not an origin/);
    expect(() => parseCorsOrigins(['ftp://news.example'])).toThrow(/not an origin/);
    expect(() => parseCorsOrigins(['news.example'])).toThrow(/not an origin/);
    const e = await createBillingServer({
      issuer: 'bank-a',
      db: ':memory:',
      logger: false,
      corsOrigins: ['*'],
    }).catch((x: unknown) => x);
    expect((e as { code?: string }).code).toBe('invalid_config');
  });
});

describe('micropay billing serve --cors-origin', () => {
  it('opens the wallet calls to each origin given, and refuses a wildcard', async () => {
    let out = '';
    const sink = () =>
      new Writable({
        write(chunk, _enc, cb) {
          out += String(chunk);
          cb();
        },
      });
    const io = { stdout: sink(), stderr: sink(), env: {}, cwd: process.cwd() };
    let stop!: () => void;
    const stopped = new Promise<string>((r) => {
      stop = () => r('test');
    });
    const args = ['--port', '0', '--db', ':memory:', '--quiet', '--json'];
    const done = serve(
      [...args, '--cors-origin', SHOP, '--cors-origin', 'https://news.example'],
      io,
      () => stopped,
    );
    while (!out.includes('"url"')) await new Promise((r) => setTimeout(r, 10));
    const { url } = JSON.parse(out) as { url: string };
    for (const origin of [SHOP, 'https://news.example']) {
      const r = await request(url)
        .options('/v1/certificates')
        .set('Origin', origin)
        .set('Access-Control-Request-Method', 'POST');
      expect(r.status).toBe(204);
      expect(r.headers['access-control-allow-origin']).toBe(origin);
    }
    stop();
    expect(await done).toBe(0);
    const e = await serve([...args, '--cors-origin', '*'], io, () => stopped).catch((x: unknown) => x);
    expect((e as { code?: string }).code).toBe('invalid_config');
  });
});
