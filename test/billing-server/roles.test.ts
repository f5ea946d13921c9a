/**
 * The role matrix of PROTOCOL.md section 8 on every route: no token or an
 * unknown one gets 401 `unauthorized`, the right token for another role 403
 * `forbidden`, exactly; the right role gets past authentication.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, type Harness, startServer } from './helpers.js';

type Caller = 'none' | 'unknown' | 'malformed' | 'admin' | 'merchant' | 'buyer' | 'peer';
type Method = 'get' | 'post' | 'patch' | 'delete';

/** Every route, with the roles it admits (empty: public). Path ids point at nothing, so no call changes state much. */
const ROUTES: [Method, string, Caller[]][] = [
  ['get', '/.well-known/micropay/keys', []],
  ['get', '/healthz', []],
  ['get', '/metrics', []],
  ['post', '/v1/certificates', ['buyer']],
  ['post', '/v1/deposits', ['merchant']],
  ['post', '/v1/authorizations', ['merchant']],
  ['get', '/v1/me', ['buyer', 'merchant']],
  ['get', '/v1/me/entries', ['buyer', 'merchant']],
  ['get', '/v1/me/statement', ['buyer', 'merchant']],
  ['get', '/v1/admin/statements?period=2026-11', ['admin']],
  ['get', '/v1/admin/statements/summary?period=2026-11', ['admin']],
  ['post', '/v1/admin/webhooks', ['admin']],
  ['get', '/v1/admin/webhooks', ['admin']],
  ['delete', '/v1/admin/webhooks/wh_ghost', ['admin']],
  ['get', '/v1/admin/webhooks/wh_ghost/deliveries', ['admin']],
  ['post', '/v1/admin/accounts', ['admin']],
  ['get', '/v1/admin/accounts', ['admin']],
  ['get', '/v1/admin/accounts/ghost', ['admin']],
  ['patch', '/v1/admin/accounts/ghost', ['admin']],
  ['delete', '/v1/admin/accounts/ghost', ['admin']],
  ['post', '/v1/admin/accounts/ghost/tokens', ['admin']],
  ['delete', '/v1/admin/tokens/tok_ghost', ['admin']],
  ['post', '/v1/admin/accounts/ghost/adjustments', ['admin']],
  ['post', '/v1/admin/peers', ['admin']],
  ['get', '/v1/admin/peers', ['admin']],
  ['patch', '/v1/admin/peers/ghost', ['admin']],
  ['delete', '/v1/admin/peers/ghost', ['admin']],
  ['post', '/v1/admin/keys/rotate', ['admin']],
  ['get', '/v1/admin/settlement', ['admin']],
  ['post', '/v1/interbank/claims', ['peer']],
];

const CALLERS: Caller[] = ['none', 'unknown', 'malformed', 'admin', 'merchant', 'buyer', 'peer'];

describe.each(backends)('role matrix on $name', ({ name, skip }) => {
  describe.skipIf(skip)('every route x every caller', () => {
    let h: Harness;
    const tokens: Partial<Record<Caller, string>> = {};
    beforeAll(async () => {
      h = await startServer(name);
      tokens.admin = h.admin;
      tokens.merchant = (await h.merchant('news')).token;
      tokens.buyer = (await h.buyer('alice')).token;
      tokens.peer = (
        await h.call('post', '/v1/admin/peers', h.admin, { issuer: 'bank-b', url: 'http://127.0.0.1:1' })
      ).body.token;
      tokens.unknown = 'mpt_thisTokenWasNeverIssuedByTheServerAtAll00000';
    });
    afterAll(async () => {
      await h.close();
    });

    it.each(ROUTES)('%s %s', async (method, path, roles) => {
      for (const who of CALLERS) {
        let r = h.call(method, path, tokens[who] ?? null);
        if (who === 'malformed') r = r.set('Authorization', 'Basic dXNlcjpwYXNz');
        if (method !== 'get' && method !== 'delete') r = r.send({});
        const res = await r;
        const label = `${who} -> ${method.toUpperCase()} ${path}: ${res.status} ${JSON.stringify(res.body)}`;
        if (roles.length === 0 || roles.includes(who)) {
          expect(res.status, label).not.toBe(401);
          expect(res.status, label).not.toBe(403);
          expect(res.status, label).toBeLessThan(500 + (path === '/v1/interbank/claims' ? 2 : 0));
        } else if (who === 'none' || who === 'unknown' || who === 'malformed') {
          expect(res.status, label).toBe(401);
          expect(res.body, label).toEqual({ error: 'unauthorized', message: expect.any(String) });
        } else {
          expect(res.status, label).toBe(403);
          expect(res.body, label).toEqual({ error: 'forbidden', message: expect.any(String) });
        }
      }
    });
  });
});
