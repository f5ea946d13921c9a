import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey } from '../../src/protocol/crypto.js';
import {
  HttpKeyResolver,
  type KeySetDocument,
  parseKeySet,
  StaticKeyResolver,
} from '../../src/protocol/keys.js';
import { vectors as V } from '../helpers/vectors.js';

const a = generateSigningKey();
const b = generateSigningKey();
const now = Math.floor(Date.now() / 1000);

let doc: KeySetDocument = {
  issuer: 'bank-a',
  keys: [{ kid: 'k1', x: a.x, nbf: 0, exp: now + 3600 }],
  peers: [],
};
let requests = 0;
let maxAge = 300;
let delayMs = 0;
let server: Server;
let url = '';

beforeAll(async () => {
  server = createServer((req, res) => {
    requests++;
    setTimeout(() => {
      if (req.url !== '/.well-known/micropay/keys') {
        res.statusCode = 404;
        res.end();
        return;
      }
      res.setHeader('Content-Type', 'application/json');
      res.setHeader('Cache-Control', `max-age=${maxAge}`);
      res.end(JSON.stringify(doc));
    }, delayMs);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('HttpKeyResolver', () => {
  it('resolves keys, and concurrent misses share one fetch', async () => {
    requests = 0;
    delayMs = 30;
    const r = new HttpKeyResolver({ url });
    const got = await Promise.all(Array.from({ length: 50 }, () => r.resolve('bank-a', 'k1', now)));
    delayMs = 0;
    expect(got.every((k) => k?.equals(a.publicKey))).toBe(true);
    expect(requests).toBe(1);
    expect(r.peek('bank-a', 'k1', now)?.equals(a.publicKey)).toBe(true);
    expect(await r.issuers()).toEqual(['bank-a']);
  });

  it('an unknown kid refetches at most once per minRefetchMs', async () => {
    let clock = 1_000_000;
    requests = 0;
    const r = new HttpKeyResolver({ url, clock: () => clock, minRefetchMs: 10_000 });
    expect(await r.resolve('bank-a', 'nope', now)).toBeNull();
    expect(await r.resolve('bank-a', 'nope', now)).toBeNull();
    expect(await r.resolve('bank-a', 'nope2', now)).toBeNull();
    expect(requests).toBe(1);
    // A rotation at the billing server: the new kid shows up after the window.
    doc = { ...doc, keys: [...doc.keys, { kid: 'k2', x: b.x, nbf: 0, exp: now + 3600 }] };
    expect(await r.resolve('bank-a', 'k2', now)).toBeNull();
    clock += 10_001;
    expect((await r.resolve('bank-a', 'k2', now))?.equals(b.publicKey)).toBe(true);
    expect(requests).toBe(2);
  });

  it('honours max-age: a stale set keeps serving and is revalidated in the background', async () => {
    let clock = 5_000_000;
    maxAge = 60;
    requests = 0;
    const r = new HttpKeyResolver({ url, clock: () => clock });
    let changes = 0;
    r.subscribe(() => changes++);
    await r.resolve('bank-a', 'k1', now);
    clock += 59_000;
    expect(r.peek('bank-a', 'k1', now)).toBeDefined();
    expect(requests).toBe(1);
    clock += 2_000;
    // Peers appear at the billing server; a stale peek triggers one refresh.
    doc = { ...doc, peers: [{ issuer: 'bank-b', keys: [{ kid: 'p1', x: b.x, nbf: 0, exp: now + 3600 }] }] };
    expect(r.peek('bank-a', 'k1', now)).toBeDefined();
    await new Promise((res) => setTimeout(res, 50));
    expect(requests).toBe(2);
    expect(changes).toBe(2);
    expect(await r.issuers()).toEqual(['bank-a', 'bank-b']);
    maxAge = 300;
  });

  it('refuses a key past its exp plus skew', async () => {
    const r = new StaticKeyResolver(
      { issuer: 'x', keys: [{ kid: 'k', x: a.x, nbf: 0, exp: 1000 }], peers: [] },
      60,
    );
    expect(r.peek('x', 'k', 1060)).toBeDefined();
    expect(r.peek('x', 'k', 1061)).toBeUndefined();
  });

  it('a billing server that cannot be reached gives billing_unavailable', async () => {
    const r = new HttpKeyResolver({ url: 'http://127.0.0.1:9', timeoutMs: 500 });
    await expect(r.resolve('bank-a', 'k1', now)).rejects.toMatchObject({ code: 'billing_unavailable' });
  });

  it('validates key sets', () => {
    expect(parseKeySet(V.billingKeys).peers[0]!.issuer).toBe('bank-b');
    for (const bad of [
      null,
      {},
      { issuer: 'a b', keys: [] },
      { issuer: 'a', keys: [{ kid: 'k', x: 'short', nbf: 0, exp: 1 }] },
      { issuer: 'a', keys: 'x' },
    ]) {
      expect(() => parseKeySet(bad)).toThrowError(expect.objectContaining({ code: 'invalid_key_set' }));
    }
  });
});
