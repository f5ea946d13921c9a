/**
 * The billing client against a real billing server (SQLite in memory, real
 * sockets): every call of the API, and the server's error codes, messages
 * and statuses carried by `BillingError`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BillingClient, createBillingClient, isBillingError } from '../../src/billing-client/index.js';
import { HttpKeyResolver, MicropayError, peekPayload } from '../../src/protocol/index.js';
import {
  type Buyer,
  buyer,
  failure,
  generateSigningKey,
  startBillingServer,
  type TestServer,
} from './helpers.js';

let srv: TestServer;
let admin: BillingClient;

beforeAll(async () => {
  srv = await startBillingServer('bank-a');
  admin = createBillingClient({ url: srv.url, token: srv.adminToken });
});
afterAll(async () => {
  await srv?.close();
});

/** A buyer account with a token, a key and a credential. */
async function newBuyer(id: string, limits = { creditLimit: 50_000_000, dailyLimit: 5_000_000 }) {
  const { token } = await admin.admin.createAccount({ id, role: 'buyer', currency: 'USD', ...limits });
  const client = createBillingClient({ url: srv.url, token });
  const key = generateSigningKey();
  const answer = await client.createCertificate(key);
  return { client, token, key, answer, buyer: buyer(answer.cert, key) as Buyer };
}

async function newMerchant(id: string, commissionBps = 0) {
  const { token } = await admin.admin.createAccount({ id, role: 'merchant', currency: 'USD', commissionBps });
  return { token, client: createBillingClient({ url: srv.url, token }) };
}

describe('keys', () => {
  it('keys() returns the validated key set, issuer() its issuer', async () => {
    const doc = await admin.keys();
    expect(doc.issuer).toBe('bank-a');
    expect(doc.keys.length).toBeGreaterThanOrEqual(1);
    expect(doc.keys[0]!.x).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(doc.peers).toEqual([]);
    // No token needed.
    const anon = createBillingClient({ url: srv.url });
    expect(await anon.issuer()).toBe('bank-a');
  });

  it('keyResolver() is one shared HttpKeyResolver that resolves the kid of a fresh credential', async () => {
    const anon = createBillingClient({ url: srv.url });
    const r = anon.keyResolver({ minRefetchMs: 0 });
    expect(r).toBeInstanceOf(HttpKeyResolver);
    expect(anon.keyResolver()).toBe(r);
    expect(anon.keyResolver({ minRefetchMs: 0 })).toBe(r);
    expect(() => anon.keyResolver({ minRefetchMs: 5 })).toThrow(MicropayError);
    const { answer } = await newBuyer('kr-buyer');
    const cert = peekPayload(answer.cert, 'mp-cert') as { iss: string; kid: string };
    expect(await r.resolve(cert.iss, cert.kid, Math.floor(Date.now() / 1000))).not.toBeNull();
    expect(await r.issuers()).toEqual(['bank-a']);
  });

  it('a server behind a path prefix: every call and the resolver keep the prefix', async () => {
    // The prefix is not served by the billing server, so the key set 404s there: proof it was asked.
    const prefixed = createBillingClient({ url: `${srv.url}/billing/`, retries: 0 });
    const e = await failure(prefixed.keys());
    expect(e.code).toBe('not_found');
    expect(e.message).toContain('/billing/.well-known/micropay/keys');
    await expect(prefixed.keyResolver().refresh()).rejects.toMatchObject({ code: 'billing_unavailable' });
  });
});

describe('certificates', () => {
  it('a buyer gets a credential whose lim is min(daily limit, available credit)', async () => {
    const { answer, key } = await newBuyer('cert-buyer', { creditLimit: 3_000_000, dailyLimit: 5_000_000 });
    expect(answer.lim).toBe(3_000_000);
    expect(answer.exp).toBeGreaterThan(Date.now() / 1000);
    const cert = peekPayload(answer.cert, 'mp-cert') as { sub: string; key: string };
    expect(cert.sub).toBe('cert-buyer');
    expect(cert.key).toBe(key.x);
  });

  it('a disabled buyer gets 403 account_disabled; a merchant token 403 forbidden; none or unknown 401', async () => {
    const b = await newBuyer('cert-disabled');
    await admin.admin.updateAccount('cert-disabled', { status: 'disabled' });
    const e = await failure(b.client.createCertificate(b.key.x));
    expect([e.code, e.status]).toEqual(['account_disabled', 403]);
    expect(e.message).toMatch(/disabled/);
    expect(e.retryable).toBe(false);

    const m = await newMerchant('cert-merchant');
    const f = await failure(m.client.createCertificate(b.key.x));
    expect([f.code, f.status]).toEqual(['forbidden', 403]);

    const anon = await failure(createBillingClient({ url: srv.url }).createCertificate(b.key.x));
    expect([anon.code, anon.status]).toEqual(['unauthorized', 401]);
    const wrongToken = 'mpt_not-a-real-token-but-long-enough';
    const wrong = await failure(
      createBillingClient({ url: srv.url, token: wrongToken }).createCertificate(b.key.x),
    );
    expect([wrong.code, wrong.status]).toEqual(['unauthorized', 401]);
    expect(wrong.message).not.toContain(wrongToken);
  });

  it('a bad key is 400 invalid_request naming the field', async () => {
    const b = await newBuyer('cert-badkey');
    const e = await failure(b.client.createCertificate('not-a-key'));
    expect([e.code, e.status]).toEqual(['invalid_request', 400]);
    expect(e.message).toContain('key');
  });
});

describe('deposits, authorizations, me and entries', () => {
  it('deposit credits orders minus commission, and a re-posted batch id returns the first answer', async () => {
    const b = await newBuyer('dep-buyer');
    const m = await newMerchant('dep-merchant', 250);
    const orders = [1_000_000, 2_000_000].map((amt) => ({
      cert: b.answer.cert,
      order: b.buyer.order({ mer: 'dep-merchant', amt }),
    }));
    const first = await m.client.deposit({ batch: 'batch-1', orders });
    expect(first.batch).toBe('batch-1');
    expect(first.results.map((r) => r.status)).toEqual(['credited', 'credited']);
    expect(first.results[0]).toMatchObject({ amt: 1_000_000, fee: 25_000 });
    expect(first.credited).toBe(3_000_000 - 75_000);
    const again = await m.client.deposit({ batch: 'batch-1', orders });
    expect(again).toEqual(first);
    const other = await m.client.deposit({ batch: 'batch-2', orders: orders.slice(0, 1) });
    expect(other.results[0]!.status).toBe('duplicate');
    expect(other.credited).toBe(0);

    const me = await m.client.me();
    expect(me).toMatchObject({ id: 'dep-merchant', role: 'merchant', balance: 3_000_000 - 75_000 });
    const bme = await b.client.me();
    expect(bme).toMatchObject({ id: 'dep-buyer', balance: -3_000_000 });
    expect(bme.available).toBe(47_000_000);
  });

  it('a rejected order carries its reason; a bad batch is 400 invalid_request; a buyer token is 403', async () => {
    const b = await newBuyer('rej-buyer');
    const m = await newMerchant('rej-merchant');
    const wrongMerchant = { cert: b.answer.cert, order: b.buyer.order({ mer: 'someone-else', amt: 1000 }) };
    const a = await m.client.deposit({ batch: 'rej-1', orders: [wrongMerchant] });
    expect(a.results[0]).toMatchObject({ status: 'rejected', reason: 'wrong_merchant' });
    const e = await failure(m.client.deposit({ batch: 'bad batch id!', orders: [] }));
    expect([e.code, e.status]).toEqual(['invalid_request', 400]);
    expect(e.message).toContain('batch');
    const f = await failure(b.client.deposit({ batch: 'rej-2', orders: [] }));
    expect([f.code, f.status]).toEqual(['forbidden', 403]);
  });

  it('authorize answers approved with an mp-auth token, or declined with a reason', async () => {
    const b = await newBuyer('auth-buyer', { creditLimit: 2_000_000, dailyLimit: 1_000_000 });
    const m = await newMerchant('auth-merchant');
    const order = b.buyer.order({ mer: 'auth-merchant', amt: 1_500_000 });
    const ok = await m.client.authorize({ cert: b.answer.cert, order });
    expect(ok.status).toBe('approved');
    if (ok.status !== 'approved') throw new Error('unreachable');
    expect(peekPayload(ok.auth, 'mp-auth')).toMatchObject({ mer: 'auth-merchant', amt: 1_500_000 });
    // The verifier's Authorizer shape.
    const again = await m.client.authorizer()({ cert: b.answer.cert, order });
    expect(again).toEqual(ok);
    const tooMuch = b.buyer.order({ mer: 'auth-merchant', amt: 1_000_000 });
    const no = await m.client.authorize({ cert: b.answer.cert, order: tooMuch });
    expect(no).toEqual({ status: 'declined', reason: 'insufficient_credit' });
    // The deposit with the auth token is credited.
    const d = await m.client.deposit({
      batch: 'auth-1',
      orders: [{ cert: b.answer.cert, order, auth: ok.auth }],
    });
    expect(d.results[0]!.status).toBe('credited');
  });

  it('entries() pages newest first; allEntries() walks every page', async () => {
    const b = await newBuyer('ent-buyer');
    const m = await newMerchant('ent-merchant');
    for (let i = 0; i < 3; i++) {
      await m.client.deposit({
        batch: `ent-${i}`,
        orders: [{ cert: b.answer.cert, order: b.buyer.order({ mer: 'ent-merchant', amt: 1000 * (i + 1) }) }],
      });
    }
    await admin.admin.adjust('ent-buyer', { amt: 10_000_000, memo: 'top-up' });
    const p1 = await b.client.entries({ limit: 2 });
    expect(p1.entries).toHaveLength(2);
    expect(p1.entries[0]).toMatchObject({ kind: 'adjustment', amount: 10_000_000, memo: 'top-up' });
    expect(p1.next).not.toBeNull();
    const p2 = await b.client.entries({ limit: 2, cursor: p1.next! });
    expect(p2.entries.map((e) => e.amount)).toEqual([-2000, -1000]);
    expect(p2.next).toBeNull();
    const all = [];
    for await (const e of b.client.allEntries({ limit: 1 })) all.push(e);
    expect(all.map((e) => e.amount)).toEqual([10_000_000, -3000, -2000, -1000]);
    const merchantEntries = await m.client.entries();
    expect(merchantEntries.entries).toHaveLength(3);
    // The merchant's side: one credit per batch (no commission here), newest first.
    expect(merchantEntries.entries.map((e) => [e.batch, e.amount])).toEqual([
      ['ent-2', 3000],
      ['ent-1', 2000],
      ['ent-0', 1000],
    ]);
    const e = await failure(b.client.entries({ cursor: 'nope' }));
    expect([e.code, e.status]).toEqual(['invalid_request', 400]);
  });

  it('me() with an admin token is 403 forbidden', async () => {
    const e = await failure(admin.me());
    expect([e.code, e.status]).toEqual(['forbidden', 403]);
  });
});

describe('admin', () => {
  it('createAccount answers the account and its first token; 409 account_exists; 400 names the field', async () => {
    const c = await admin.admin.createAccount({
      id: 'adm-1',
      role: 'buyer',
      currency: 'EUR',
      name: 'One',
      creditLimit: 7,
    });
    expect(c.account).toMatchObject({
      id: 'adm-1',
      role: 'buyer',
      status: 'active',
      currency: 'EUR',
      balance: 0,
      creditLimit: 7,
      dailyLimit: null,
      commissionBps: 0,
      name: 'One',
    });
    expect(c.token).toMatch(/^mpt_/);
    expect(c.tokenId).toMatch(/^tok_/);
    const dup = await failure(admin.admin.createAccount({ id: 'adm-1', role: 'buyer', currency: 'EUR' }));
    expect([dup.code, dup.status]).toEqual(['account_exists', 409]);
    const bad = await failure(admin.admin.createAccount({ id: 'adm-2', role: 'buyer', currency: 'usd' }));
    expect([bad.code, bad.status]).toEqual(['invalid_request', 400]);
    expect(bad.message).toContain('currency');
  });

  it('getAccount / updateAccount / 404 no_such_account', async () => {
    await admin.admin.createAccount({ id: 'adm-upd', role: 'merchant', currency: 'USD' });
    const u = await admin.admin.updateAccount('adm-upd', { commissionBps: 300, name: 'Shop', dailyLimit: 5 });
    expect(u).toMatchObject({ commissionBps: 300, name: 'Shop', dailyLimit: 5 });
    expect(await admin.admin.getAccount('adm-upd')).toMatchObject({ commissionBps: 300 });
    const cleared = await admin.admin.updateAccount('adm-upd', { dailyLimit: null });
    expect(cleared.dailyLimit).toBeNull();
    const nf = await failure(admin.admin.getAccount('adm-none'));
    expect([nf.code, nf.status]).toEqual(['no_such_account', 404]);
    const nf2 = await failure(admin.admin.updateAccount('adm-none', { name: 'x' }));
    expect(nf2.code).toBe('no_such_account');
    // Ids that cannot travel in a path are refused before any request.
    const dots = await failure(admin.admin.getAccount('..'));
    expect([dots.code, dots.status]).toEqual(['invalid_request', 400]);
  });

  it('listAccounts pages with a cursor and filters; allAccounts iterates every page', async () => {
    for (const id of ['ls-a', 'ls-b', 'ls-c'])
      await admin.admin.createAccount({ id, role: 'buyer', currency: 'PTS' });
    await admin.admin.updateAccount('ls-b', { status: 'disabled' });
    const first = await admin.admin.listAccounts({ limit: 2 });
    expect(first.accounts).toHaveLength(2);
    expect(first.next).toEqual(expect.any(String));
    const second = await admin.admin.listAccounts({ limit: 2, cursor: first.next! });
    expect(second.accounts[0]!.id > first.accounts[1]!.id).toBe(true);
    const all = [];
    for await (const a of admin.admin.allAccounts({ limit: 2 })) all.push(a.id);
    expect(all).toEqual(expect.arrayContaining(['ls-a', 'ls-b', 'ls-c']));
    expect(new Set(all).size).toBe(all.length);
    const disabled = [];
    for await (const a of admin.admin.allAccounts({ status: 'disabled' })) disabled.push(a.id);
    expect(disabled).toContain('ls-b');
    expect(disabled).not.toContain('ls-a');
    const system = await admin.admin.listAccounts({ role: 'system' });
    expect(system.accounts.every((a) => a.role === 'system')).toBe(true);
  });

  it('adjust moves the balance; deleteAccount is 409 account_not_settled until it is zero', async () => {
    await admin.admin.createAccount({ id: 'adm-adj', role: 'buyer', currency: 'USD' });
    const up = await admin.admin.adjust('adm-adj', { amt: 12_500_000, memo: 'prepaid' });
    expect(up.balance).toBe(12_500_000);
    const e = await failure(admin.admin.deleteAccount('adm-adj'));
    expect([e.code, e.status]).toEqual(['account_not_settled', 409]);
    const zero = await failure(admin.admin.adjust('adm-adj', { amt: 0, memo: 'nothing' }));
    expect([zero.code, zero.status]).toEqual(['invalid_request', 400]);
    expect((await admin.admin.adjust('adm-adj', { amt: -12_500_000 })).balance).toBe(0);
    await admin.admin.deleteAccount('adm-adj');
    expect((await failure(admin.admin.getAccount('adm-adj'))).code).toBe('no_such_account');
  });

  it('issueToken / revokeToken: a revoked token stops working at once', async () => {
    await admin.admin.createAccount({ id: 'adm-tok', role: 'merchant', currency: 'USD' });
    const t = await admin.admin.issueToken('adm-tok');
    expect(t.token).toMatch(/^mpt_/);
    const m = createBillingClient({ url: srv.url, token: t.token });
    expect((await m.me()).id).toBe('adm-tok');
    await admin.admin.revokeToken(t.tokenId);
    const e = await failure(m.me());
    expect([e.code, e.status]).toEqual(['unauthorized', 401]);
    expect(e.message).not.toContain(t.token);
    const again = await failure(admin.admin.revokeToken(t.tokenId));
    expect([again.code, again.status]).toEqual(['no_such_token', 404]);
    expect((await failure(admin.admin.issueToken('adm-none'))).code).toBe('no_such_account');
  });

  it('peers: add, list, update, remove; 409 peer_exists; settlement', async () => {
    const added = await admin.admin.addPeer({ issuer: 'bank-b', url: 'https://bank-b.example' });
    expect(added.peer).toMatchObject({ issuer: 'bank-b', url: 'https://bank-b.example' });
    expect(added.token).toMatch(/^mpt_/);
    const dup = await failure(admin.admin.addPeer({ issuer: 'bank-b', url: 'https://bank-b.example' }));
    expect([dup.code, dup.status]).toEqual(['peer_exists', 409]);
    const upd = await admin.admin.updatePeer('bank-b', {
      url: 'https://b.example',
      token: 'their-token-for-us',
    });
    expect(upd).toMatchObject({ issuer: 'bank-b', url: 'https://b.example' });
    expect(JSON.stringify(upd)).not.toContain('their-token-for-us');
    expect((await admin.admin.listPeers()).map((p) => p.issuer)).toEqual(['bank-b']);
    expect(await admin.admin.settlement()).toEqual([]);
    await admin.admin.removePeer('bank-b');
    expect(await admin.admin.listPeers()).toEqual([]);
    expect((await failure(admin.admin.removePeer('bank-b'))).status).toBe(404);
  });

  it('rotateKeys: the new key signs new credentials, the old one stays published', async () => {
    const before = await admin.keys();
    const { kid } = await admin.admin.rotateKeys();
    const after = await admin.keys();
    expect(after.keys.map((k) => k.kid)).toEqual(
      expect.arrayContaining([...before.keys.map((k) => k.kid), kid]),
    );
    const { answer } = await newBuyer('rot-buyer');
    expect((peekPayload(answer.cert, 'mp-cert') as { kid: string }).kid).toBe(kid);
  });

  it('a buyer token on an admin call is 403 forbidden', async () => {
    const b = await newBuyer('adm-buyer');
    const e = await failure(b.client.admin.listAccounts());
    expect([e.code, e.status]).toEqual(['forbidden', 403]);
    expect(isBillingError(e)).toBe(true);
    expect(e.message).not.toContain(b.token);
  });
});
