/**
 * Every endpoint of the billing server and its error codes, on both
 * backends: keys, health, metrics, credentials, /v1/me, the admin API
 * (accounts, pagination, tokens, adjustments, keys, settlement, peers), and
 * the HTTP-level errors (404, 405, bad JSON, oversized bodies).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodeToken, importPublicKey, parseCredential, verifyToken } from '../../src/protocol/index.js';
import { backends, expectBalanced, type Harness, startServer } from './helpers.js';

describe.each(backends)('API on $name', ({ name, skip }) => {
  describe.skipIf(skip)('endpoints', () => {
    let h: Harness;
    beforeEach(async () => {
      h = await startServer(name);
    });
    afterEach(async () => {
      await h.close();
    });

    it('publishes its keys without auth, with Cache-Control max-age', async () => {
      const r = await h.call('get', '/.well-known/micropay/keys');
      expect(r.status).toBe(200);
      expect(r.headers['cache-control']).toBe('max-age=300');
      expect(r.body.issuer).toBe('bank-a');
      expect(r.body.peers).toEqual([]);
      expect(r.body.keys).toHaveLength(1);
      const k = r.body.keys[0];
      expect(k.kid).toMatch(/^[A-Za-z0-9._:-]{1,128}$/);
      expect(importPublicKey(k.x)).toBeTruthy();
      expect(k.nbf).toBeLessThanOrEqual(h.clock.t);
      expect(k.exp).toBeGreaterThanOrEqual(h.clock.t + 86_400);
    });

    it('answers /healthz and /metrics', async () => {
      const r = await h.call('get', '/healthz');
      expect(r.status).toBe(200);
      expect(r.body).toEqual({ status: 'ok', issuer: 'bank-a' });
      const m = await h.call('get', '/metrics');
      expect(m.status).toBe(200);
      expect(m.headers['content-type']).toMatch(/text\/plain/);
      for (const n of [
        'micropay_orders_credited_total',
        'micropay_orders_rejected_total',
        'micropay_deposit_duration_seconds',
        'micropay_http_request_duration_seconds',
      ]) {
        expect(m.text).toContain(`# TYPE ${n}`);
      }
      expect(m.text).toMatch(
        /micropay_http_request_duration_seconds_count\{[^}]*route="\/healthz",status="200"\} 1/,
      );
    });

    it('issues credentials: lim = min(dailyLimit, available credit), never negative; 403 for a disabled buyer; 400 for a bad key', async () => {
      const b = await h.buyer('alice', { creditLimit: 5000 });
      const r = await h.call('post', '/v1/certificates', b.token, { key: b.key.x });
      expect(r.status).toBe(201);
      const keys = await h.call('get', '/.well-known/micropay/keys');
      const cert = parseCredential(verifyToken(r.body.cert, 'mp-cert', importPublicKey(keys.body.keys[0].x)));
      expect(cert).toMatchObject({
        iss: 'bank-a',
        kid: keys.body.keys[0].kid,
        sub: 'alice',
        key: b.key.x,
        cur: 'USD',
        lim: 5000,
        nbf: h.clock.t,
        exp: h.clock.t + 86_400,
      });
      expect(r.body).toEqual({ cert: r.body.cert, exp: cert.exp, lim: 5000 });
      await h.call('patch', '/v1/admin/accounts/alice', h.admin, { dailyLimit: 1200 });
      expect((await h.call('post', '/v1/certificates', b.token, { key: b.key.x })).body.lim).toBe(1200);
      await h.call('post', '/v1/admin/accounts/alice/adjustments', h.admin, {
        amt: -9000,
        memo: 'spent elsewhere',
      });
      expect((await h.call('post', '/v1/certificates', b.token, { key: b.key.x })).body.lim).toBe(0);
      for (const key of [undefined, 'short', 'A'.repeat(44), 42]) {
        const bad = await h.call('post', '/v1/certificates', b.token, { key });
        expect(bad.status).toBe(400);
        expect(bad.body).toMatchObject({ error: 'invalid_request', message: expect.stringMatching(/`key`/) });
      }
      await h.call('patch', '/v1/admin/accounts/alice', h.admin, { status: 'disabled' });
      const off = await h.call('post', '/v1/certificates', b.token, { key: b.key.x });
      expect(off.status).toBe(403);
      expect(off.body.error).toBe('account_disabled');
    });

    it('creates accounts with defaults, refuses duplicates and bad fields naming them', async () => {
      const r = await h.call('post', '/v1/admin/accounts', h.admin, {
        id: 'news',
        role: 'merchant',
        currency: 'USD',
        name: 'News Site',
      });
      expect(r.status).toBe(201);
      expect(r.body.account).toMatchObject({
        id: 'news',
        role: 'merchant',
        status: 'active',
        currency: 'USD',
        balance: 0,
        creditLimit: 0,
        dailyLimit: null,
        commissionBps: 0,
        name: 'News Site',
      });
      expect(r.body.token).toMatch(/^mpt_[A-Za-z0-9_-]{43}$/);
      expect(r.body.tokenId).toMatch(/^[A-Za-z0-9._:-]+$/);
      const dup = await h.call('post', '/v1/admin/accounts', h.admin, {
        id: 'news',
        role: 'buyer',
        currency: 'USD',
      });
      expect(dup.status).toBe(409);
      expect(dup.body.error).toBe('account_exists');
      const bad: [Record<string, unknown>, string][] = [
        [{ role: 'buyer', currency: 'USD' }, 'id'],
        [{ id: 'a b', role: 'buyer', currency: 'USD' }, 'id'],
        [{ id: '..', role: 'buyer', currency: 'USD' }, 'id'],
        [{ id: 'fees:USD', role: 'buyer', currency: 'USD' }, 'id'],
        [{ id: 'x', role: 'admin', currency: 'USD' }, 'role'],
        [{ id: 'x', role: 'buyer', currency: 'usd' }, 'currency'],
        [{ id: 'x', role: 'buyer', currency: 'USD', creditLimit: -1 }, 'creditLimit'],
        [{ id: 'x', role: 'buyer', currency: 'USD', creditLimit: 1.5 }, 'creditLimit'],
        [{ id: 'x', role: 'buyer', currency: 'USD', dailyLimit: '5' }, 'dailyLimit'],
        [{ id: 'x', role: 'buyer', currency: 'USD', commissionBps: 10_001 }, 'commissionBps'],
        [{ id: 'x', role: 'buyer', currency: 'USD', name: 7 }, 'name'],
        [{ id: 'x', role: 'buyer', currency: 'USD', credit_limit: 5 }, 'credit_limit'],
      ];
      for (const [body, field] of bad) {
        const x = await h.call('post', '/v1/admin/accounts', h.admin, body);
        expect(x.status, JSON.stringify(body)).toBe(400);
        expect(x.body.error).toBe('invalid_request');
        expect(x.body.message).toContain(`\`${field}\``);
      }
    });

    it('lists accounts with filters and cursor pagination; shows one; 404 for an unknown one', async () => {
      for (const id of ['b1', 'b2', 'b3', 'b4', 'b5'])
        await h.account({ id, role: 'buyer', currency: 'USD' });
      await h.account({ id: 'm1', role: 'merchant', currency: 'EUR' });
      await h.call('patch', '/v1/admin/accounts/b3', h.admin, { status: 'disabled' });
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const r = await h.call(
          'get',
          `/v1/admin/accounts?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
          h.admin,
        );
        expect(r.status).toBe(200);
        seen.push(...r.body.accounts.map((a: { id: string }) => a.id));
        cursor = r.body.next;
        pages++;
      } while (cursor);
      expect(seen).toEqual(['b1', 'b2', 'b3', 'b4', 'b5', 'm1']);
      expect(pages).toBe(3);
      const buyers = await h.call('get', '/v1/admin/accounts?role=merchant', h.admin);
      expect(buyers.body.accounts.map((a: { id: string }) => a.id)).toEqual(['m1']);
      const off = await h.call('get', '/v1/admin/accounts?status=disabled', h.admin);
      expect(off.body).toEqual({
        accounts: [expect.objectContaining({ id: 'b3', status: 'disabled' })],
        next: null,
      });
      const sys = await h.call('get', '/v1/admin/accounts?role=system', h.admin);
      expect(sys.body.accounts.map((a: { id: string }) => a.id)).toEqual([
        'external:EUR',
        'external:USD',
        'fees:EUR',
        'fees:USD',
      ]);
      for (const q of ['role=admin', 'status=gone', 'limit=0', 'limit=abc', 'cursor=!!', 'limit=1&limit=2']) {
        const r = await h.call('get', `/v1/admin/accounts?${q}`, h.admin);
        expect(r.status, q).toBe(400);
        expect(r.body.error).toBe('invalid_request');
      }
      const one = await h.call('get', '/v1/admin/accounts/b1', h.admin);
      expect(one.body.account).toMatchObject({ id: 'b1', available: 0 });
      const none = await h.call('get', '/v1/admin/accounts/nobody', h.admin);
      expect(none.status).toBe(404);
      expect(none.body.error).toBe('no_such_account');
    });

    it('patches accounts and validates patches', async () => {
      await h.account({ id: 'b1', role: 'buyer', currency: 'USD', dailyLimit: 5 });
      const r = await h.call('patch', '/v1/admin/accounts/b1', h.admin, {
        creditLimit: 900,
        dailyLimit: null,
        commissionBps: 10,
        name: 'Bee',
        status: 'disabled',
      });
      expect(r.status).toBe(200);
      expect(r.body.account).toMatchObject({
        creditLimit: 900,
        dailyLimit: null,
        commissionBps: 10,
        name: 'Bee',
        status: 'disabled',
      });
      for (const [body, field] of [
        [{}, 'status'],
        [{ status: 'deleted' }, 'status'],
        [{ creditLimit: -5 }, 'creditLimit'],
        [{ commissionBps: -1 }, 'commissionBps'],
        [{ balance: 5 }, 'balance'],
      ] as const) {
        const x = await h.call('patch', '/v1/admin/accounts/b1', h.admin, body);
        expect(x.status, JSON.stringify(body)).toBe(400);
        expect(x.body.message).toContain(`\`${field}\``);
      }
      expect((await h.call('patch', '/v1/admin/accounts/zz', h.admin, { name: 'x' })).status).toBe(404);
      const sys = await h.call('patch', '/v1/admin/accounts/fees:USD', h.admin, { name: 'x' });
      expect(sys.status).toBe(409);
      expect(sys.body.error).toBe('system_account');
    });

    it('adjusts balances against external:<cur>, deletes only settled accounts, and a deleted account is gone', async () => {
      const b = await h.account({ id: 'b1', role: 'buyer', currency: 'USD' });
      const adj = await h.call('post', '/v1/admin/accounts/b1/adjustments', h.admin, {
        amt: 2500,
        memo: 'top-up',
      });
      expect(adj.status).toBe(201);
      expect(adj.body.account.balance).toBe(2500);
      const ext = await h.call('get', '/v1/admin/accounts/external:USD', h.admin);
      expect(ext.body.account.balance).toBe(-2500);
      for (const body of [
        { amt: 0 },
        { amt: 1.5 },
        { amt: '5' },
        { memo: 'x' },
        { amt: 1, memo: 5 },
        { amt: 1, note: 'x' },
      ]) {
        const x = await h.call('post', '/v1/admin/accounts/b1/adjustments', h.admin, body);
        expect(x.status, JSON.stringify(body)).toBe(400);
        expect(x.body.error).toBe('invalid_request');
      }
      expect((await h.call('post', '/v1/admin/accounts/nope/adjustments', h.admin, { amt: 1 })).status).toBe(
        404,
      );
      const del = await h.call('delete', '/v1/admin/accounts/b1', h.admin);
      expect(del.status).toBe(409);
      expect(del.body.error).toBe('account_not_settled');
      await h.call('post', '/v1/admin/accounts/b1/adjustments', h.admin, { amt: -2500, memo: 'payout' });
      const e = await h.call('get', '/v1/me/entries', b.token);
      expect(e.body.entries.map((x: { amount: number; memo: string }) => [x.amount, x.memo])).toEqual([
        [-2500, 'payout'],
        [2500, 'top-up'],
      ]);
      const ok = await h.call('delete', '/v1/admin/accounts/b1', h.admin);
      expect(ok.status).toBe(204);
      expect((await h.call('get', '/v1/admin/accounts/b1', h.admin)).status).toBe(404);
      expect((await h.call('delete', '/v1/admin/accounts/b1', h.admin)).status).toBe(404);
      expect((await h.call('get', '/v1/me', b.token)).status).toBe(401);
      const again = await h.call('post', '/v1/admin/accounts', h.admin, {
        id: 'b1',
        role: 'buyer',
        currency: 'USD',
      });
      expect(again.status).toBe(409);
      await expectBalanced(h);
    });

    it('issues and revokes tokens; a revoked token stops at once', async () => {
      await h.account({ id: 'm1', role: 'merchant', currency: 'USD' });
      const t = await h.call('post', '/v1/admin/accounts/m1/tokens', h.admin);
      expect(t.status).toBe(201);
      expect(Object.keys(t.body).sort()).toEqual(['token', 'tokenId']);
      expect((await h.call('get', '/v1/me', t.body.token)).status).toBe(200);
      expect((await h.call('delete', `/v1/admin/tokens/${t.body.tokenId}`, h.admin)).status).toBe(204);
      const gone = await h.call('get', '/v1/me', t.body.token);
      expect(gone.status).toBe(401);
      expect(gone.body.error).toBe('unauthorized');
      const again = await h.call('delete', `/v1/admin/tokens/${t.body.tokenId}`, h.admin);
      expect(again.status).toBe(404);
      expect(again.body.error).toBe('no_such_token');
      expect((await h.call('post', '/v1/admin/accounts/ghost/tokens', h.admin)).status).toBe(404);
    });

    it('shows the caller its own account and entries, newest first, paginated', async () => {
      const m = await h.merchant('news');
      const b = await h.buyer('alice');
      for (let i = 0; i < 5; i++) {
        await h.call('post', '/v1/deposits', m.token, {
          batch: `b${i}`,
          orders: [{ cert: b.cert, order: h.order(b, { mer: 'news', amt: 100 + i }) }],
        });
      }
      const me = await h.call('get', '/v1/me', b.token);
      expect(me.body.account).toMatchObject({
        id: 'alice',
        role: 'buyer',
        balance: -510,
        available: 10_000_000 - 510,
      });
      const mm = await h.call('get', '/v1/me', m.token);
      expect(mm.body.account).toMatchObject({ id: 'news', role: 'merchant', balance: 510 });
      const amounts: number[] = [];
      let cursor: string | null = null;
      do {
        const r = await h.call('get', `/v1/me/entries?limit=2${cursor ? `&cursor=${cursor}` : ''}`, b.token);
        expect(r.status).toBe(200);
        amounts.push(...r.body.entries.map((e: { amount: number }) => e.amount));
        cursor = r.body.next;
      } while (cursor);
      expect(amounts).toEqual([-104, -103, -102, -101, -100]);
      const first = (await h.call('get', '/v1/me/entries?limit=1', b.token)).body.entries[0];
      expect(first).toMatchObject({
        kind: 'order',
        counterparty: 'news',
        balance: -510,
        res: 'GET /articles/1',
        batch: 'b4',
        memo: null,
      });
      expect(typeof first.oid).toBe('string');
      for (const q of ['limit=0', 'limit=501', 'cursor=abc'])
        expect((await h.call('get', `/v1/me/entries?${q}`, b.token)).status).toBe(400);
    });

    it('rotates keys: the new key signs, the old stays listed and its credentials still deposit', async () => {
      const m = await h.merchant('news');
      const b = await h.buyer('alice');
      const oldKid = decodeToken(b.cert, 'mp-cert').payload.kid;
      const r = await h.call('post', '/v1/admin/keys/rotate', h.admin);
      expect(r.status).toBe(201);
      expect(r.body.kid).not.toBe(oldKid);
      const keys = await h.call('get', '/.well-known/micropay/keys');
      expect(keys.body.keys.map((k: { kid: string }) => k.kid)).toEqual([r.body.kid, oldKid]);
      const old = keys.body.keys[1];
      expect(old.exp).toBeGreaterThanOrEqual(decodeToken(b.cert, 'mp-cert').payload.exp as number);
      const fresh = await h.recert(b);
      expect(decodeToken(fresh.cert, 'mp-cert').payload.kid).toBe(r.body.kid);
      const d = await h.call('post', '/v1/deposits', m.token, {
        batch: 'rot',
        orders: [
          { cert: b.cert, order: h.order(b, { mer: 'news' }) },
          { cert: fresh.cert, order: h.order(fresh, { mer: 'news' }) },
        ],
      });
      expect(d.body.results.map((x: { status: string }) => x.status)).toEqual(['credited', 'credited']);
      // Once every credential of the old key has expired, it leaves the list, and its credentials still settle late deposits.
      h.clock.t += 86_400 + 120;
      const later = await h.call('get', '/.well-known/micropay/keys');
      expect(later.body.keys.map((k: { kid: string }) => k.kid)).toEqual([r.body.kid]);
      const late = await h.call('post', '/v1/deposits', m.token, {
        batch: 'late',
        orders: [{ cert: b.cert, order: h.order(b, { mer: 'news', iat: h.clock.t - 86_400 - 100 }) }],
      });
      expect(late.body.results[0].status).toBe('credited');
    });

    it('answers settlement and registers peers (peering end to end is in peering*.test.ts)', async () => {
      expect((await h.call('get', '/v1/admin/settlement', h.admin)).body).toEqual({ positions: [] });
      const p = await h.call('post', '/v1/admin/peers', h.admin, {
        issuer: 'bank-b',
        url: 'http://127.0.0.1:4001',
        token: 'mpt_given-by-bank-b',
      });
      expect(p.status).toBe(201);
      expect(p.body.peer).toMatchObject({ issuer: 'bank-b', url: 'http://127.0.0.1:4001', hasToken: true });
      expect(JSON.stringify(p.body.peer)).not.toContain('mpt_given-by-bank-b');
      expect(p.body.token).toMatch(/^mpt_/);
      expect(
        (await h.call('post', '/v1/admin/peers', h.admin, { issuer: 'bank-b', url: 'http://x' })).body.error,
      ).toBe('peer_exists');
      for (const body of [
        { url: 'http://x' },
        { issuer: 'bank-c', url: 'ftp://x' },
        { issuer: 'bank-a', url: 'http://x' },
      ]) {
        expect((await h.call('post', '/v1/admin/peers', h.admin, body)).status).toBe(400);
      }
      const patched = await h.call('patch', '/v1/admin/peers/bank-b', h.admin, {
        url: 'https://bank-b.example',
        token: null,
      });
      expect(patched.body.peer).toMatchObject({ url: 'https://bank-b.example', hasToken: false });
      expect(
        (await h.call('patch', '/v1/admin/peers/bank-z', h.admin, { url: 'https://z.example' })).status,
      ).toBe(404);
      expect(
        (await h.call('get', '/v1/admin/peers', h.admin)).body.peers.map((x: { issuer: string }) => x.issuer),
      ).toEqual(['bank-b']);
      expect(p.body.peer).toMatchObject({ feeBps: 0, keysFetched: null });
      const claim = await h.call('post', '/v1/interbank/claims', p.body.token, { batch: 'c1', orders: [] });
      expect(claim.status).toBe(200);
      expect(claim.body).toEqual({ batch: 'c1', results: [], credited: 0 });
      expect((await h.call('post', '/v1/interbank/claims', p.body.token, { batch: 'c2' })).status).toBe(400);
      expect((await h.call('delete', '/v1/admin/peers/bank-b', h.admin)).status).toBe(204);
      expect((await h.call('get', '/v1/admin/peers', h.admin)).body.peers).toEqual([]);
      // A removed peer's token still claims what we owe it (orders signed before the removal).
      expect(
        (await h.call('post', '/v1/interbank/claims', p.body.token, { batch: 'c3', orders: [] })).status,
      ).toBe(200);
      expect((await h.call('delete', '/v1/admin/peers/bank-b', h.admin)).status).toBe(404);
    });

    it('answers unknown routes 404, wrong methods 405, bad JSON 400 and oversized bodies 413, all as { error, message }', async () => {
      const nf = await h.call('get', '/v2/nothing');
      expect(nf.status).toBe(404);
      expect(nf.body).toEqual({ error: 'not_found', message: expect.any(String) });
      const na = await h.call('put', '/v1/deposits');
      expect(na.status).toBe(405);
      expect(na.headers.allow).toBe('POST');
      expect(na.body.error).toBe('method_not_allowed');
      const m = await h.merchant('news');
      const badJson = await h
        .call('post', '/v1/deposits', m.token)
        .set('Content-Type', 'application/json')
        .send('{"batch": ');
      expect(badJson.status).toBe(400);
      expect(badJson.body.error).toBe('invalid_request');
      const notObj = await h
        .call('post', '/v1/deposits', m.token)
        .set('Content-Type', 'application/json')
        .send('[1,2]');
      expect(notObj.status).toBe(400);
      const text = await h
        .call('post', '/v1/deposits', m.token)
        .set('Content-Type', 'text/plain')
        .send('hello');
      expect(text.status).toBe(400);
      expect(text.body.message).toMatch(/JSON object/);
      const huge = await h.call('post', '/v1/deposits', m.token, {
        batch: 'x',
        orders: [{ cert: 'a'.repeat(3_000_000), order: 'b' }],
      });
      expect(huge.status).toBe(413);
      expect(huge.body.error).toBe('payload_too_large');
    });
  });
});
