/**
 * Durability and secrets: a restart on the same storage and key directory
 * keeps accounts, balances, tokens and keys; credentials signed before a
 * rotation and a restart still deposit. Key files and the generated admin
 * token file are 0600, and neither the token nor a seed ever reaches the logs.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { errorBody } from '../../src/billing-server/http.js';
import { createBillingServer } from '../../src/billing-server/index.js';
import { b64urlEncode, decodeToken, exportSeed, generateSigningKey } from '../../src/protocol/index.js';
import { backends, expectBalanced, type Harness, startServer } from './helpers.js';

function captureLogger(): { logger: pino.Logger; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), text: () => chunks.join('') };
}

describe.each(backends)('restart on $name', ({ name, skip }) => {
  describe.skipIf(skip)('close and reopen the same storage', () => {
    let h: Harness;
    beforeEach(async () => {
      h = await startServer(name);
    });
    afterEach(async () => {
      await h.close();
    });

    it('keeps accounts, balances, tokens and keys; a credential from before a rotation and a restart still deposits', async () => {
      const m = await h.merchant('news', { commissionBps: 100 });
      const b = await h.buyer('alice', { dailyLimit: 50_000 });
      await h.call('post', '/v1/deposits', m.token, {
        batch: 'b1',
        orders: [{ cert: b.cert, order: h.order(b, { mer: 'news', amt: 10_000 }) }],
      });
      const rotated = (await h.call('post', '/v1/admin/keys/rotate', h.admin)).body.kid;
      const keysBefore = (await h.call('get', '/.well-known/micropay/keys')).body;
      const accountsBefore = (await h.call('get', '/v1/admin/accounts?role=buyer', h.admin)).body;
      await h.server.close();
      await h.reopen();
      expect((await h.call('get', '/.well-known/micropay/keys')).body).toEqual(keysBefore);
      expect((await h.call('get', '/v1/admin/accounts?role=buyer', h.admin)).body).toEqual(accountsBefore);
      expect((await h.call('get', '/v1/me', m.token)).body.account.balance).toBe(9_900);
      // The pre-rotation credential (old kid) deposits after the restart; a new one is signed by the rotated key.
      expect(decodeToken(b.cert, 'mp-cert').payload.kid).not.toBe(rotated);
      const d = await h.call('post', '/v1/deposits', m.token, {
        batch: 'b2',
        orders: [{ cert: b.cert, order: h.order(b, { mer: 'news', amt: 5_000 }) }],
      });
      expect(d.body.results[0].status).toBe('credited');
      const again = await h.call('post', '/v1/deposits', m.token, { batch: 'b1', orders: [] });
      expect(again.body.results).toHaveLength(1);
      const fresh = await h.recert(b);
      expect(decodeToken(fresh.cert, 'mp-cert').payload.kid).toBe(rotated);
      expect((await h.call('get', '/v1/me', b.token)).body.account.balance).toBe(-15_000);
      await expectBalanced(h);
    });

    it('writes key seeds into 0600 files in keyDir', async () => {
      await h.call('post', '/v1/admin/keys/rotate', h.admin);
      const dir = h.opts.keyDir!;
      const seeds = readdirSync(dir).filter((f) => f.endsWith('.seed'));
      expect(seeds).toHaveLength(2);
      for (const f of seeds) {
        expect(statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);
        expect(readFileSync(path.join(dir, f), 'utf8').trim()).toMatch(/^[A-Za-z0-9_-]{43}$/);
      }
    });
  });
});

describe('admin token, signing key from the environment, logs', () => {
  let saved: Record<string, string | undefined>;
  beforeEach(() => {
    saved = { a: process.env.MICROPAY_ADMIN_TOKEN, k: process.env.MICROPAY_SIGNING_KEY };
    delete process.env.MICROPAY_ADMIN_TOKEN;
    delete process.env.MICROPAY_SIGNING_KEY;
  });
  afterEach(() => {
    if (saved.a === undefined) delete process.env.MICROPAY_ADMIN_TOKEN;
    else process.env.MICROPAY_ADMIN_TOKEN = saved.a;
    if (saved.k === undefined) delete process.env.MICROPAY_SIGNING_KEY;
    else process.env.MICROPAY_SIGNING_KEY = saved.k;
  });

  it('generates the admin token into a 0600 file, logs its path and never the token or a seed', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'micropay-billing-'));
    const cap = captureLogger();
    const s = await createBillingServer({
      issuer: 'bank-z',
      db: path.join(dir, 'billing.db'),
      logger: cap.logger,
    });
    try {
      const file = path.join(dir, 'keys', 'admin-token');
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(readFileSync(file, 'utf8').trim()).toBe(s.adminToken);
      const r = await request(s.app)
        .post('/v1/admin/accounts')
        .set('Authorization', `Bearer ${s.adminToken}`)
        .send({ id: 'b', role: 'buyer', currency: 'USD' });
      expect(r.status).toBe(201);
      await request(s.app).post('/v1/admin/keys/rotate').set('Authorization', `Bearer ${s.adminToken}`);
      await request(s.app).get('/v1/me').set('Authorization', `Bearer ${r.body.token}`);
      await request(s.app).get('/v1/me').set('Authorization', 'Bearer mpt_wrong');
      const logs = cap.text();
      expect(logs).toContain(file);
      expect(logs).toContain('"route":"/v1/admin/accounts"');
      expect(logs).not.toContain(s.adminToken);
      expect(logs).not.toContain(r.body.token);
      for (const f of readdirSync(path.join(dir, 'keys')).filter((x) => x.endsWith('.seed'))) {
        expect(logs).not.toContain(readFileSync(path.join(dir, 'keys', f), 'utf8').trim());
      }
      await s.close();
      // Reopened, it reads the same token back from the file.
      const s2 = await createBillingServer({
        issuer: 'bank-z',
        db: path.join(dir, 'billing.db'),
        logger: false,
      });
      expect(s2.adminToken).toBe(s.adminToken);
      await s2.close();
    } finally {
      await s.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('takes MICROPAY_ADMIN_TOKEN and MICROPAY_SIGNING_KEY from the environment', async () => {
    const key = generateSigningKey();
    process.env.MICROPAY_SIGNING_KEY = b64urlEncode(exportSeed(key));
    process.env.MICROPAY_ADMIN_TOKEN = 'env-admin-token-0123456789';
    const s = await createBillingServer({ issuer: 'bank-e', db: ':memory:', logger: false });
    try {
      expect(s.adminToken).toBe('env-admin-token-0123456789');
      const keys = await request(s.app).get('/.well-known/micropay/keys');
      expect(keys.body.keys[0].x).toBe(key.x);
    } finally {
      await s.close();
    }
  });

  it('refuses bad options with invalid_config', async () => {
    for (const o of [
      { issuer: 'bad issuer' },
      { issuer: 'a', credentialLifetime: 200_000 },
      { issuer: 'a', skew: -1 },
      { issuer: 'a', adminToken: 'short' },
    ]) {
      await expect(createBillingServer({ db: ':memory:', logger: false, ...o })).rejects.toMatchObject({
        code: 'invalid_config',
      });
    }
  });

  it('listens on a real socket and closes gracefully', async () => {
    const s = await createBillingServer({ issuer: 'bank-l', db: ':memory:', logger: false });
    const url = await s.listen(0, '127.0.0.1');
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const r = await fetch(`${url}/healthz`);
    expect(await r.json()).toEqual({ status: 'ok', issuer: 'bank-l' });
    await s.close();
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });

  it('maps unexpected errors to a coded 500 without details, and storage failures to 503', () => {
    expect(errorBody(new TypeError('x is undefined at line 3'))).toEqual([
      500,
      { error: 'internal_error', message: expect.not.stringContaining('line 3') },
    ]);
    expect(errorBody(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))[0]).toBe(
      503,
    );
  });
});
