/**
 * The account pages over real HTTP: signing in posts the token once and
 * gets an HttpOnly, SameSite=Strict session cookie (Secure with the __Host-
 * prefix over HTTPS); buyers and merchants see balance, limits, a credential
 * on request, the per-day chart and their ledger page by page; the operator
 * lists accounts, disables, enables and sets limits. Every POST needs the
 * session's CSRF token and this origin; every value is escaped; the bearer
 * API is unchanged. On SQLite and, when it runs, PostgreSQL.
 */
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, type Harness, oid, startServer } from './helpers.js';

/** The session cookie (`name=value`) of a sign-in answer. */
function cookieOf(r: request.Response): string {
  const set = ([] as string[]).concat(r.headers['set-cookie'] ?? []);
  const c = set.find((s) => /mp_session=v1\./.test(s));
  if (!c) throw new Error(`no session cookie: ${r.status} ${JSON.stringify(set)}`);
  return c.split(';')[0]!;
}

/** The CSRF token in a page's forms. */
function csrfOf(html: string): string {
  const m = /name="csrf" value="([^"]+)"/.exec(html);
  if (!m) throw new Error('no CSRF field in the page');
  return m[1]!;
}

/** Text of a page without tags, whitespace squeezed. */
const text = (html: string) =>
  html
    .replace(/<[^>]+>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();

for (const backend of backends) {
  describe.skipIf(backend.skip)(`account pages (${backend.name})`, () => {
    let h: Harness;
    let url: string;
    let buyer: { id: string; token: string; tokenId: string };
    let merchant: { id: string; token: string };
    const agent = () => request(url);

    async function signIn(token: string): Promise<{ cookie: string; html: string; csrf: string }> {
      const r = await agent().post('/login').type('form').send({ token });
      expect(r.status).toBe(303);
      expect(r.headers.location).toBe('/');
      const cookie = cookieOf(r);
      const home = await agent().get('/').set('Cookie', cookie);
      expect(home.status).toBe(200);
      return { cookie, html: home.text, csrf: csrfOf(home.text) };
    }

    beforeAll(async () => {
      h = await startServer(backend.name);
      // The harness keeps its URL to itself; a request built by `call` (never sent) shows it.
      url = (h.call('get', '/healthz') as unknown as { url: string }).url.replace(/\/healthz$/, '');
      buyer = await h.account({
        id: 'web-buyer',
        role: 'buyer',
        currency: 'USD',
        name: 'Ann <script>alert(1)</script>',
        creditLimit: 10_000_000,
        dailyLimit: 2_000_000,
      });
      merchant = await h.merchant('web-news', { commissionBps: 500, name: 'News & "Views"' });
      // One paid order, deposited: the buyer is debited, the merchant credited (minus 5%).
      const b = await h.buyer('web-payer', { dailyLimit: 3_000_000 });
      const order = h.order(b, { mer: merchant.id, amt: 20_000, res: 'GET /articles/<b>42</b>', oid: oid() });
      const d = await h.call('post', '/v1/deposits', merchant.token, {
        batch: 'b1',
        orders: [{ cert: b.cert, order }],
      });
      expect(d.body.credited).toBe(19_000);
      // 25 adjustments for paging, one memo with markup.
      for (let i = 0; i < 25; i++) {
        const memo = i === 24 ? '<img src=x onerror=alert(1)> top-up' : `top-up ${i}`;
        await h.call('post', `/v1/admin/accounts/${buyer.id}/adjustments`, h.admin, { amt: 1000 + i, memo });
      }
    });
    afterAll(() => h.close());

    it('shows the sign-in form to a visitor, with strict headers', async () => {
      const r = await agent().get('/');
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toMatch(/text\/html/);
      expect(r.headers['content-security-policy']).toMatch(/default-src 'none'/);
      expect(r.headers['content-security-policy']).toMatch(/frame-ancestors 'none'/);
      expect(r.headers['cache-control']).toBe('no-store');
      expect(r.headers['x-frame-options']).toBe('DENY');
      expect(r.headers['referrer-policy']).toBe('same-origin');
      expect(r.text).toMatch(/<form method="post" action="\/login">/);
      expect(r.text).toMatch(/<label for="token">API token<\/label>/);
      expect(r.text).toMatch(/type="password" id="token" name="token"/);
      const css = await agent().get('/assets/account.css');
      expect(css.headers['content-type']).toMatch(/text\/css/);
      const js = await agent().get('/assets/account.js');
      expect(js.headers['content-type']).toMatch(/javascript/);
    });

    it('refuses a wrong token without echoing it, and a GET sign-in does not exist', async () => {
      const r = await agent().post('/login').type('form').send({ token: 'mpt_not-a-real-token-XYZ' });
      expect(r.status).toBe(401);
      expect(r.text).toMatch(/not known or was revoked/);
      expect(r.text).not.toContain('not-a-real-token-XYZ');
      expect(r.headers['set-cookie']).toBeUndefined();
      const g = await agent().get(`/login?token=${encodeURIComponent(buyer.token)}`);
      expect(g.status).toBe(404);
      expect(g.headers['set-cookie']).toBeUndefined();
    });

    it('signs a buyer in with an HttpOnly SameSite=Strict cookie that holds no token', async () => {
      const r = await agent().post('/login').type('form').send({ token: buyer.token });
      expect(r.status).toBe(303);
      const set = String(r.headers['set-cookie']);
      expect(set).toMatch(/^mp_session=v1\./);
      expect(set).toMatch(/HttpOnly/);
      expect(set).toMatch(/SameSite=Strict/);
      expect(set).toMatch(/Path=\//);
      expect(set).not.toMatch(/Secure/); // plain http here
      expect(set).not.toContain(buyer.token);
      expect(set).not.toContain(buyer.token.slice(4, 20));
    });

    it("shows the buyer's balance, limits, chart and ledger, everything escaped", async () => {
      const { html } = await signIn(buyer.token);
      expect(html).not.toContain('<script>alert(1)</script>');
      expect(html).toContain('Ann &lt;script&gt;alert(1)&lt;/script&gt;');
      expect(html).not.toContain('<img src=x');
      expect(html).toContain('&lt;img src=x onerror=alert(1)&gt; top-up');
      expect(html).not.toContain(buyer.token);
      const t = text(html);
      const topUps = Array.from({ length: 25 }, (_, i) => 1000 + i).reduce((a, b) => a + b, 0);
      expect(t).toContain(`Balance ${topUps / 1e6} USD`);
      expect(t).toContain('Credit limit 10 USD');
      expect(t).toContain('Daily limit 2 USD');
      expect(t).toMatch(/Spending per day, last 30 days/);
      expect(html).toMatch(/<svg [^>]*role="img"/);
      expect(html.match(/<rect /g)?.length).toBe(30);
      // Newest first, 20 a page, and a link to the older ones.
      expect(html.match(/<tr><td><time/g)?.length).toBe(20);
      expect(html).toMatch(/href="\/\?before=\d+#ledger" rel="next">Older entries/);
    });

    it('pages through the ledger with before=', async () => {
      const { cookie, html } = await signIn(buyer.token);
      const next = /href="(\/\?before=\d+)#ledger"/.exec(html)![1]!;
      const p2 = await agent().get(next).set('Cookie', cookie);
      expect(p2.status).toBe(200);
      expect(p2.text.match(/<tr><td><time/g)?.length).toBe(5);
      expect(p2.text).toMatch(/>Newest entries</);
      expect(p2.text).not.toMatch(/Older entries/);
      expect(text(p2.text)).toContain('top-up 0');
      const bad = await agent().get('/?before=drop%20table').set('Cookie', cookie);
      expect(bad.status).toBe(400);
    });

    it("shows a credential's expiry and offline limit on request (POST with the CSRF token)", async () => {
      const { cookie, csrf } = await signIn(buyer.token);
      const none = await agent().post('/credential').set('Cookie', cookie).type('form').send({});
      expect(none.status).toBe(403);
      expect(none.text).toMatch(/out of date/);
      const r = await agent().post('/credential').set('Cookie', cookie).type('form').send({ csrf });
      expect(r.status).toBe(200);
      const t = text(r.text);
      expect(t).toMatch(/Valid until \d{4}-\d\d-\d\d \d\d:\d\d UTC/);
      expect(t).toContain('Offline limit per merchant 2 USD');
      const exp = new Date((h.clock.t + 86_400) * 1000).toISOString().slice(0, 16).replace('T', ' ');
      expect(t).toContain(exp);
    });

    it('refuses POSTs from another site, even with a valid session and token', async () => {
      const { cookie, csrf } = await signIn(buyer.token);
      const a = await agent()
        .post('/credential')
        .set('Cookie', cookie)
        .set('Origin', 'https://evil.example')
        .type('form')
        .send({ csrf });
      expect(a.status).toBe(403);
      const b = await agent()
        .post('/credential')
        .set('Cookie', cookie)
        .set('Sec-Fetch-Site', 'cross-site')
        .type('form')
        .send({ csrf });
      expect(b.status).toBe(403);
      const c = await agent()
        .post('/credential')
        .set('Cookie', cookie)
        .set('Origin', 'null')
        .type('form')
        .send({ csrf });
      expect(c.status).toBe(403);
      const login = await agent()
        .post('/login')
        .set('Origin', 'https://evil.example')
        .type('form')
        .send({ token: buyer.token });
      expect(login.status).toBe(403);
      expect(login.headers['set-cookie']).toBeUndefined();
      // The same origin passes.
      const ok = await agent()
        .post('/credential')
        .set('Cookie', cookie)
        .set('Origin', url)
        .set('Sec-Fetch-Site', 'same-origin')
        .type('form')
        .send({ csrf });
      expect(ok.status).toBe(200);
    });

    it("a tampered or another session's CSRF token and a forged cookie are refused", async () => {
      const one = await signIn(buyer.token);
      const two = await signIn(buyer.token);
      expect(one.csrf).not.toBe(two.csrf);
      const r = await agent()
        .post('/credential')
        .set('Cookie', one.cookie)
        .type('form')
        .send({ csrf: two.csrf });
      expect(r.status).toBe(403);
      const [name, value] = one.cookie.split('=') as [string, string];
      const parts = value.split('.');
      const forged = Buffer.from(JSON.stringify(['admin', 'admin', 'admin', h.clock.t + 999, 'x'])).toString(
        'base64url',
      );
      const g = await agent().get('/').set('Cookie', `${name}=${parts[0]}.${forged}.${parts[2]}`);
      expect(g.text).toMatch(/action="\/login"/); // signed out
    });

    it('shows the merchant its credit and revenue', async () => {
      const { html } = await signIn(merchant.token);
      const t = text(html);
      expect(html).toContain('News &amp; &quot;Views&quot;');
      expect(t).toContain('Balance 0.019 USD');
      expect(t).toContain('Commission 5%');
      expect(t).toMatch(/Revenue per day after commission/);
      expect(t).toMatch(/deposit 1 order, 1000 commission .*0\.019 USD/);
      expect(t).toContain('batch b1');
      expect(html).not.toMatch(/action="\/credential"/);
      const bars = [...html.matchAll(/<rect [^>]*height="(\d+)"/g)].map((m) => Number(m[1]));
      expect(bars[bars.length - 1]).toBeGreaterThan(100); // today, the tallest
    });

    it('signs out, and a revoked token ends its sessions', async () => {
      const { cookie, csrf } = await signIn(buyer.token);
      const out = await agent().post('/logout').set('Cookie', cookie).type('form').send({ csrf });
      expect(out.status).toBe(303);
      expect(String(out.headers['set-cookie'])).toMatch(/Max-Age=0/);
      const extra = await h.call('post', `/v1/admin/accounts/${buyer.id}/tokens`, h.admin);
      const s = await signIn(extra.body.token);
      expect(text(s.html)).toContain('Buyer account');
      await h.call('delete', `/v1/admin/tokens/${extra.body.tokenId}`, h.admin).expect(204);
      const after = await agent().get('/').set('Cookie', s.cookie);
      expect(after.text).toMatch(/action="\/login"/);
      // The bearer API is as it was.
      const me = await h.call('get', '/v1/me', buyer.token);
      expect(me.status).toBe(200);
      expect(me.body.account.id).toBe(buyer.id);
    });

    it('lets the operator list accounts, disable and enable a buyer, and set its limits', async () => {
      const { cookie, html, csrf } = await signIn(h.admin);
      expect(text(html)).toContain('Signed in as the operator (admin)');
      expect(html).toContain('data-account="web-buyer"');
      expect(html).toContain('data-account="web-news"');
      expect(html).not.toContain('data-account="fees:USD"');
      const disable = await agent()
        .post(`/admin/accounts/${buyer.id}/status`)
        .set('Cookie', cookie)
        .type('form')
        .send({ csrf, status: 'disabled' });
      expect(disable.status).toBe(303);
      expect(disable.headers.location).toBe(`/admin/accounts/${buyer.id}?saved=status`);
      expect((await h.call('get', `/v1/admin/accounts/${buyer.id}`, h.admin)).body.account.status).toBe(
        'disabled',
      );
      const page = await agent().get(disable.headers.location!).set('Cookie', cookie);
      expect(text(page.text)).toContain('Saved: web-buyer is now disabled.');
      // A disabled buyer gets no credential, through the API or the page.
      expect((await h.call('post', '/v1/certificates', buyer.token, { key: 'A'.repeat(43) })).status).toBe(
        403,
      );
      const b = await signIn(buyer.token);
      const c = await agent().post('/credential').set('Cookie', b.cookie).type('form').send({ csrf: b.csrf });
      expect(c.status).toBe(403);
      expect(text(c.text)).toMatch(/disabled, so no credential is issued/);
      await agent()
        .post(`/admin/accounts/${buyer.id}/status`)
        .set('Cookie', cookie)
        .type('form')
        .send({ csrf, status: 'active' })
        .expect(303);
      const limits = await agent()
        .post(`/admin/accounts/${buyer.id}/limits`)
        .set('Cookie', cookie)
        .type('form')
        .send({ csrf, creditLimit: '25.5', dailyLimit: '' });
      expect(limits.status).toBe(303);
      const a = (await h.call('get', `/v1/admin/accounts/${buyer.id}`, h.admin)).body.account;
      expect(a).toMatchObject({ status: 'active', creditLimit: 25_500_000, dailyLimit: null });
      const bad = await agent()
        .post(`/admin/accounts/${buyer.id}/limits`)
        .set('Cookie', cookie)
        .type('form')
        .send({ csrf, creditLimit: '-3', dailyLimit: '1.0000001' });
      expect(bad.status).toBe(400);
      expect(text(bad.text)).toMatch(/The credit limit must be an amount like 10/);
    });

    it('keeps buyers out of the operator pages and the operator forms', async () => {
      const { cookie, csrf } = await signIn(buyer.token);
      expect((await agent().get(`/admin/accounts/${merchant.id}`).set('Cookie', cookie)).status).toBe(403);
      const r = await agent()
        .post(`/admin/accounts/${merchant.id}/status`)
        .set('Cookie', cookie)
        .type('form')
        .send({ csrf, status: 'disabled' });
      expect(r.status).toBe(403);
      expect((await h.call('get', `/v1/admin/accounts/${merchant.id}`, h.admin)).body.account.status).toBe(
        'active',
      );
      const anon = await agent().get(`/admin/accounts/${merchant.id}`);
      expect(anon.status).toBe(401);
      expect(anon.text).not.toContain('web-news</h1>');
    });

    it('over HTTPS (behind a trusted proxy) the cookie is Secure with the __Host- prefix', async () => {
      h.server.app.set('trust proxy', 'loopback');
      try {
        const r = await agent()
          .post('/login')
          .set('X-Forwarded-Proto', 'https')
          .type('form')
          .send({ token: buyer.token });
        const set = String(r.headers['set-cookie']);
        expect(set).toMatch(/^__Host-mp_session=v1\./);
        expect(set).toMatch(/; Secure/);
        expect(set).toMatch(/Path=\//);
        expect(set).not.toMatch(/Domain=/);
      } finally {
        h.server.app.set('trust proxy', false);
      }
    });
  });
}
