/**
 * No request can cause a 500: random bodies, random token soup and mutated
 * real tokens posted to every route (with the right role, so they get past
 * authentication) always get a coded 2xx or 4xx answer with `{ error, message }`.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Buyer, backends, type Harness, startServer } from './helpers.js';

const ROUTES: [
  'post' | 'patch' | 'get' | 'delete',
  string,
  'admin' | 'merchant' | 'buyer' | 'peer' | null,
][] = [
  ['post', '/v1/certificates', 'buyer'],
  ['post', '/v1/deposits', 'merchant'],
  ['post', '/v1/authorizations', 'merchant'],
  ['get', '/v1/me/entries', 'buyer'],
  ['get', '/v1/me/statement', 'buyer'],
  ['get', '/v1/admin/statements', 'admin'],
  ['get', '/v1/admin/statements/summary', 'admin'],
  ['post', '/v1/admin/webhooks', 'admin'],
  ['get', '/v1/admin/webhooks/wh_x/deliveries', 'admin'],
  ['post', '/v1/admin/accounts', 'admin'],
  ['get', '/v1/admin/accounts', 'admin'],
  ['patch', '/v1/admin/accounts/alice', 'admin'],
  ['post', '/v1/admin/accounts/alice/adjustments', 'admin'],
  ['post', '/v1/admin/peers', 'admin'],
  ['patch', '/v1/admin/peers/bank-b', 'admin'],
  ['post', '/v1/interbank/claims', 'peer'],
];

/** Mutates one character of a token (a bit flip of the text). */
function mutate(token: string, at: number, c: string): string {
  const i = at % token.length;
  return token.slice(0, i) + c + token.slice(i + 1);
}

describe.each(backends)('fuzz on $name', ({ name, skip }) => {
  describe.skipIf(skip)('random input never gets a 500', () => {
    let h: Harness;
    let alice: Buyer;
    const tokens: Record<string, string> = {};
    beforeAll(async () => {
      h = await startServer(name);
      tokens.admin = h.admin;
      tokens.merchant = (await h.merchant('news')).token;
      alice = await h.buyer('alice');
      tokens.buyer = alice.token;
      tokens.peer = (
        await h.call('post', '/v1/admin/peers', h.admin, { issuer: 'bank-b', url: 'http://127.0.0.1:1' })
      ).body.token;
    });
    afterAll(async () => {
      await h.close();
    });

    const check = (res: { status: number; body: unknown }, label: string) => {
      expect(res.status, label).toBeLessThan(500);
      if (res.status >= 400)
        expect(res.body, label).toEqual({ error: expect.any(String), message: expect.any(String) });
    };

    it.each(ROUTES)('%s %s with random JSON bodies and queries', async (method, path, role) => {
      await fc.assert(
        fc.asyncProperty(fc.jsonValue({ maxDepth: 3 }), fc.string({ maxLength: 40 }), async (body, q) => {
          const url = method === 'get' ? `${path}?${q}` : path;
          let r = h.call(method, url, role ? tokens[role] : null);
          if (method !== 'get') r = r.set('Content-Type', 'application/json').send(JSON.stringify(body));
          const res = await r;
          check(res, `${method} ${url} ${JSON.stringify(body)?.slice(0, 200)}`);
        }),
        { numRuns: 25 },
      );
    });

    it('raw bytes with a JSON content type', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...ROUTES.filter((r) => r[0] !== 'get')),
          fc.string({ maxLength: 200 }),
          async ([method, path, role], raw) => {
            const res = await h
              .call(method, path, role ? tokens[role] : null)
              .set('Content-Type', 'application/json')
              .send(raw);
            check(res, `${method} ${path} ${JSON.stringify(raw)}`);
          },
        ),
        { numRuns: 60 },
      );
    });

    it('deposits and authorizations of token soup and mutated real tokens', async () => {
      const realOrder = h.order(alice, { mer: 'news' });
      const tokenish = fc.oneof(
        fc.string({ maxLength: 60 }),
        fc
          .tuple(fc.base64String({ maxLength: 80 }), fc.base64String({ maxLength: 90 }))
          .map(([a, b]) => `${a}.${b}`),
        fc
          .tuple(fc.nat(), fc.constantFrom('A', '_', '-', '.', '=', '+', 'é', '\u0000'))
          .map(([i, c]) => mutate(alice.cert, i, c)),
        fc
          .tuple(fc.nat(), fc.constantFrom('A', '_', '-', '.', '=', '+', 'é'))
          .map(([i, c]) => mutate(realOrder, i, c)),
      );
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.record({ cert: tokenish, order: tokenish, auth: fc.option(tokenish, { nil: undefined }) }),
            { maxLength: 8 },
          ),
          async (orders) => {
            const d = await h.call('post', '/v1/deposits', tokens.merchant!, {
              batch: `f${Math.random().toString(36).slice(2)}`,
              orders,
            });
            check(d, JSON.stringify(orders).slice(0, 300));
            if (orders.length > 0 && d.status === 200) {
              expect(d.body.results).toHaveLength(orders.length);
            }
            const a = await h.call('post', '/v1/authorizations', tokens.merchant!, orders[0] ?? {});
            check(a, 'authorization');
          },
        ),
        { numRuns: 60 },
      );
    });
  });
});
