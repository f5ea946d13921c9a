/**
 * The account pages at `/` of the billing server: server-rendered HTML, one
 * stylesheet and a few lines of script. A buyer or a merchant signs in with
 * its API token and sees its balance, limits, a credential's expiry and
 * offline limit on request, a chart of spending (buyer) or revenue
 * (merchant) per day, and its ledger entries page by page. The operator
 * signs in with the admin token, lists accounts, disables and enables them
 * and sets their limits.
 *
 * No secret is ever in a URL: the token is posted once and exchanged for a
 * session cookie (see `session.ts`). Reading pages are GET; everything that
 * changes something is a POST carrying the session's CSRF token, from this
 * origin. Every page is sent with a strict Content-Security-Policy and
 * `Cache-Control: no-store`.
 */
import express, { type Request, type Response, type Router } from 'express';
import { generateSigningKey } from '../../protocol/crypto.js';
import { isMicropayError, MicropayError } from '../../protocol/errors.js';
import { isId } from '../../protocol/ids.js';
import { formatAmount, parseDecimal } from '../../protocol/money.js';
import type { AppContext } from '../http.js';
import { type Account, type Entry, hashToken, type StoredAccount } from '../store.js';
import { ACCOUNT_CSS, ACCOUNT_JS } from './assets.js';
import { csrfField, type DayAmount, dayChart, esc, type Frame, facts, money, page, time } from './html.js';
import { clearCookie, type Session, SessionKeys, sameOrigin } from './session.js';

/** Ledger entries per page. */
export const ENTRIES_PER_PAGE = 20;
/** Accounts per page of the admin list. */
export const ACCOUNTS_PER_PAGE = 50;
/** Days in the chart. */
export const CHART_DAYS = 30;

const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy':
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'X-Frame-Options': 'DENY',
  'X-Content-Type-Options': 'nosniff',
  // Not no-referrer: with it, browsers send `Origin: null` on form POSTs, which the same-origin check refuses.
  'Referrer-Policy': 'same-origin',
  'Cache-Control': 'no-store',
};

/** A signed-in user: the session, and the account for buyers and merchants. */
interface Who {
  session: Session;
  account: StoredAccount | null;
  csrf: string;
}

function httpError(status: number, code: string, message: string): MicropayError {
  return new MicropayError(code, message, { status });
}

/** A fresh Ed25519 public key whose private half is thrown away: a credential for it can show limits, never pay. */
function throwawayKey(): string {
  return generateSigningKey().x; // not generateKeyPairSync: see generateSigningKey
}

/** Parses an amount typed into a form ("10", "2.50") into micro-units. */
function amountInput(v: unknown, label: string): number {
  const s = typeof v === 'string' ? v.trim() : '';
  try {
    return parseDecimal(s);
  } catch {
    throw httpError(
      400,
      'invalid_request',
      `${label} must be an amount like 10 or 2.50 (at most 6 decimals), without the currency.`,
    );
  }
}

/** A `before` / `after` query parameter, checked. */
function cursorParam(req: Request, name: string, check: (s: string) => boolean): string | undefined {
  const v = req.query[name];
  if (v === undefined || v === '') return undefined;
  if (typeof v !== 'string' || !check(v)) {
    throw httpError(400, 'invalid_request', `The \`${name}\` of this address is not one these pages made.`);
  }
  return v;
}

const label = (a: Pick<Account, 'id' | 'name'>) => (a.name ? `${a.name} (${a.id})` : a.id);

/** Builds the router of the account pages. */
export function accountPages(ctx: AppContext): Router {
  const { store, ledger } = ctx;
  const keys = new SessionKeys(ctx.adminTokenHash);
  const router = express.Router();
  const form = express.urlencoded({ extended: false, limit: '8kb', parameterLimit: 20 });

  const send = (res: Response, status: number, html: string) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    res.status(status).type('html').send(html);
  };
  const frame = (title: string, who: Who | null, extra: Partial<Frame> = {}): Frame => {
    const f: Frame = { title, issuer: ctx.issuer, ...extra };
    if (who) {
      const l = who.account ? label(who.account) : 'the operator (admin)';
      f.user = { label: l, csrf: who.csrf };
    }
    return f;
  };

  /** The signed-in user, if the session cookie is valid and its token still works. */
  async function current(req: Request, res: Response): Promise<Who | null> {
    const s = keys.fromRequest(req, ctx.now());
    if (!s) return null;
    let account: StoredAccount | null = null;
    if (s.role !== 'admin') {
      const t = await store.db.get<{ subject: string; role: string }>(
        'SELECT subject, role FROM tokens WHERE id = ? AND revoked IS NULL',
        [s.tokenId],
      );
      account =
        t && t.subject === s.subject && t.role === s.role ? ((await store.account(s.subject)) ?? null) : null;
      if (!account) {
        clearCookie(req, res);
        return null;
      }
    }
    return { session: s, account, csrf: keys.csrf(s) };
  }

  /** The signed-in user for a POST: same origin, valid session, right CSRF token; else an error. */
  async function poster(req: Request, res: Response, role?: Session['role']): Promise<Who> {
    if (!sameOrigin(req))
      throw httpError(403, 'cross_site', 'This form was sent from another site, so it was ignored.');
    const who = await current(req, res);
    if (!who) throw httpError(401, 'signed_out', 'Your session has ended. Sign in again.');
    if (!keys.checkCsrf(who.session, (req.body as Record<string, unknown> | undefined)?.csrf)) {
      throw httpError(403, 'bad_csrf', 'This form is out of date. Reload the page and try again.');
    }
    if (role && who.session.role !== role) throw httpError(403, 'forbidden', 'This is not for your account.');
    return who;
  }

  /** Runs a handler; errors become an HTML page with the error's status and sentence. */
  const route =
    (fn: (req: Request, res: Response) => Promise<void>) =>
    async (req: Request, res: Response): Promise<void> => {
      try {
        await fn(req, res);
      } catch (e) {
        let status = 500;
        let message = 'Something went wrong on the billing server; it was logged. Try again.';
        if (isMicropayError(e) && e.status !== undefined && e.status < 500) {
          status = e.status;
          message = e.message;
        } else {
          ctx.logger.error(
            { err: (e as Error)?.message?.slice(0, 300), path: req.path.slice(0, 200) },
            'account pages: internal error',
          );
        }
        if (res.headersSent) {
          res.end();
          return;
        }
        const who = await current(req, res).catch(() => null);
        const back = '<p><a href="/">Back to the start page</a></p>';
        send(res, status, page(frame('Error', who, { error: message }), `<h1>That did not work</h1>${back}`));
      }
    };

  router.get('/assets/account.css', (_req, res) => {
    res.setHeader('Cache-Control', 'public, max-age=300');
    res.type('text/css').send(ACCOUNT_CSS);
  });
  router.get('/assets/account.js', (_req, res) => {
    res.setHeader('Cache-Control', 'public, max-age=300');
    res.type('application/javascript').send(ACCOUNT_JS);
  });

  function signInPage(error?: string): string {
    const extra: Partial<Frame> = error === undefined ? {} : { error };
    return page(
      frame('Sign in', null, extra),
      `<h1>Sign in</h1>
<p>See your balance, limits and ledger. Buyers, merchants and the operator sign in with the API token the operator gave them.</p>
<form method="post" action="/login">
<label for="token">API token</label>
<input type="password" id="token" name="token" required autocomplete="off" spellcheck="false" aria-describedby="token-hint">
<p class="hint" id="token-hint">Sent once over this connection to start a session; it is never shown or put in an address.</p>
<p><button type="submit">Sign in</button></p>
</form>`,
    );
  }

  router.get(
    '/',
    route(async (req, res) => {
      const who = await current(req, res);
      if (!who) return send(res, 200, signInPage());
      if (who.session.role === 'admin') return send(res, 200, await adminHome(req, who));
      return send(res, 200, await accountHome(req, who, who.account!));
    }),
  );

  router.post(
    '/login',
    form,
    route(async (req, res) => {
      if (!sameOrigin(req))
        throw httpError(403, 'cross_site', 'This form was sent from another site, so it was ignored.');
      const token = (req.body as Record<string, unknown> | undefined)?.token;
      if (typeof token !== 'string' || !/^[\x21-\x7e]{1,512}$/.test(token.trim())) {
        return send(res, 400, signInPage('Paste your API token (one line, no spaces).'));
      }
      const hash = hashToken(token.trim());
      const now = ctx.now();
      let s: Session;
      if (hash === ctx.adminTokenHash) {
        s = keys.create('admin', 'admin', 'admin', now);
      } else {
        const t = await store.db.get<{ id: string; role: string; subject: string }>(
          'SELECT id, role, subject FROM tokens WHERE hash = ? AND revoked IS NULL',
          [hash],
        );
        if (!t || !(await store.account(t.subject))) {
          return send(
            res,
            401,
            signInPage('That token is not known or was revoked. Ask the operator for a new one.'),
          );
        }
        if (t.role !== 'buyer' && t.role !== 'merchant') {
          return send(
            res,
            403,
            signInPage('These pages are for buyers, merchants and the operator; that is a peer token.'),
          );
        }
        s = keys.create(t.role, t.subject, t.id, now);
      }
      keys.setCookie(req, res, s, now);
      res.setHeader('Cache-Control', 'no-store');
      res.redirect(303, '/');
    }),
  );

  router.post(
    '/logout',
    form,
    route(async (req, res) => {
      await poster(req, res);
      clearCookie(req, res);
      res.setHeader('Cache-Control', 'no-store');
      res.redirect(303, '/');
    }),
  );

  /** Sums per UTC day over the chart's days: buyers' spending (orders), merchants' revenue (deposits, after fees). */
  async function perDay(a: StoredAccount): Promise<DayAmount[]> {
    const today = Math.floor(ctx.now() / 86_400);
    const from = today - CHART_DAYS + 1;
    const kind = a.role === 'buyer' ? 'order' : 'deposit';
    const rows = await store.db.all<{ day: number; total: number }>(
      'SELECT CAST(time / 86400 AS INTEGER) AS day, SUM(amount) AS total FROM entries WHERE account = ? AND kind = ? AND time >= ? GROUP BY 1',
      [a.id, kind, from * 86_400],
    );
    const by = new Map(rows.map((r) => [Number(r.day), Math.abs(Number(r.total))]));
    const days: DayAmount[] = [];
    for (let d = from; d <= today; d++) {
      days.push({ day: new Date(d * 86_400_000).toISOString().slice(0, 10), amount: by.get(d) ?? 0 });
    }
    return days;
  }

  function entriesTable(a: StoredAccount, entries: Entry[]): string {
    if (entries.length === 0) return '<p>No entries yet.</p>';
    const rows = entries.map((e) => {
      const what: string[] = [];
      if (e.counterparty)
        what.push(e.kind === 'order' ? `to <strong>${esc(e.counterparty)}</strong>` : esc(e.counterparty));
      if (e.res) what.push(`<code>${esc(e.res)}</code>`);
      if (e.memo) what.push(esc(e.memo));
      const ref = e.oid ? `order ${esc(e.oid)}` : e.batch ? `batch ${esc(e.batch)}` : '';
      return `<tr><td>${time(e.time)}</td><td>${esc(e.kind)}</td><td>${what.join(' · ')}${ref ? `<br><small>${ref}</small>` : ''}</td><td class="num${e.amount < 0 ? ' neg' : ''}">${money(e.amount, a.currency)}</td><td class="num">${money(e.balance, a.currency)}</td></tr>`;
    });
    return `<table aria-labelledby="ledger"><caption class="hint">Newest first; amounts in ${esc(a.currency)}.</caption><thead><tr><th scope="col">When</th><th scope="col">Kind</th><th scope="col">Details</th><th scope="col" class="num">Amount</th><th scope="col" class="num">Balance after</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
  }

  /** The ledger section of an account, one page from `before` (an entry id). */
  async function ledgerSection(req: Request, a: StoredAccount, base: string): Promise<string> {
    const before = cursorParam(req, 'before', (s) => /^\d{1,15}$/.test(s));
    const rows = await store.entries(
      a.id,
      before === undefined ? undefined : Number(before),
      ENTRIES_PER_PAGE + 1,
    );
    const more = rows.length > ENTRIES_PER_PAGE;
    const list = rows.slice(0, ENTRIES_PER_PAGE);
    const sep = base.includes('?') ? '&' : '?';
    const links = [
      before !== undefined ? `<a href="${esc(base)}#ledger">Newest entries</a>` : '',
      more
        ? `<a href="${esc(`${base}${sep}before=${list[list.length - 1]!.id}`)}#ledger" rel="next">Older entries</a>`
        : '',
    ].filter(Boolean);
    return `<h2 id="ledger">Ledger entries</h2>
${entriesTable(a, list)}
${links.length ? `<nav class="pager" aria-label="Ledger pages">${links.join('')}</nav>` : ''}`;
  }

  function accountFacts(a: StoredAccount, available: number | null): string {
    const rows: [string, string][] = [['Balance', money(a.balance, a.currency)]];
    if (a.role === 'buyer') {
      rows.push(['Available to spend', money(available ?? 0, a.currency)]);
      rows.push(['Credit limit', money(a.creditLimit, a.currency)]);
      rows.push(['Daily limit', a.dailyLimit === null ? 'none' : money(a.dailyLimit, a.currency)]);
    } else if (a.role === 'merchant') {
      rows.push(['Commission', `${esc(formatAmount(a.commissionBps * 10_000))}%`]);
    }
    rows.push(['Status', `<span class="status-${esc(a.status)}">${esc(a.status)}</span>`]);
    rows.push(['Currency', esc(a.currency)]);
    return facts(rows);
  }

  async function accountHome(
    req: Request,
    who: Who,
    a: StoredAccount,
    extra: { credential?: string; error?: string } = {},
  ): Promise<string> {
    const available = a.role === 'buyer' ? await ledger.available(a) : null;
    const chart =
      a.role === 'buyer'
        ? dayChart('spending', `Spending per day, last ${CHART_DAYS} days (UTC)`, await perDay(a), a.currency)
        : dayChart(
            'revenue',
            `Revenue per day after commission, last ${CHART_DAYS} days (UTC)`,
            await perDay(a),
            a.currency,
          );
    const credential =
      a.role === 'buyer'
        ? `<h2>Today's credential</h2>
<p>Your wallet gets a credential from this server every day: merchants accept payments under it offline, up to its offline limit each.</p>
${extra.credential ?? ''}<form method="post" action="/credential">${csrfField(who.csrf)}<button type="submit" class="plain">Show what a credential issued now allows</button></form>`
        : '';
    const f = frame(label(a), who, extra.error === undefined ? {} : { error: extra.error });
    return page(
      f,
      `<h1>${esc(a.role === 'buyer' ? 'Buyer' : 'Merchant')} account ${esc(label(a))}</h1>
<h2>Balance and limits</h2>
${accountFacts(a, available)}
${credential}
<h2>${a.role === 'buyer' ? 'Spending' : 'Revenue'}</h2>
${chart}
${await ledgerSection(req, a, '/')}`,
    );
  }

  router.post(
    '/credential',
    form,
    route(async (req, res) => {
      const who = await poster(req, res, 'buyer');
      const a = who.account!;
      if (a.status !== 'active') {
        return send(
          res,
          403,
          await accountHome(req, who, a, {
            error: 'This account is disabled, so no credential is issued. Ask the operator.',
          }),
        );
      }
      const c = await ledger.certificate(a, throwawayKey());
      const box = `<div class="notice" role="status" id="credential">${facts([
        ['Valid until', time(c.exp)],
        ['Offline limit per merchant', money(c.lim, a.currency)],
      ])}<p class="hint">This one was issued for a key nobody holds, so it can show its limits but never pay.</p></div>`;
      send(res, 200, await accountHome(req, who, a, { credential: box }));
    }),
  );

  // ---- The operator's pages ----

  async function adminHome(req: Request, who: Who): Promise<string> {
    const role = cursorParam(req, 'role', (s) => ['buyer', 'merchant', 'system'].includes(s));
    const status = cursorParam(req, 'status', (s) => s === 'active' || s === 'disabled');
    const after = cursorParam(req, 'after', isId);
    const f: Parameters<typeof store.listAccounts>[0] = { limit: ACCOUNTS_PER_PAGE + 1 };
    if (role) f.role = role as Account['role'];
    if (status) f.status = status as Account['status'];
    if (after) f.after = after;
    const rows = await store.listAccounts(f);
    const list = rows.slice(0, ACCOUNTS_PER_PAGE);
    const option = (v: string, cur: string | undefined, text: string) =>
      `<option value="${esc(v)}"${v === (cur ?? '') ? ' selected' : ''}>${esc(text)}</option>`;
    const body = list.map((a) => {
      const act =
        a.role === 'system'
          ? ''
          : `<form method="post" action="/admin/accounts/${esc(encodeURIComponent(a.id))}/status" class="inline"${a.status === 'active' ? ` data-confirm="${esc(`Disable ${a.id}? It gets no new credential until enabled again.`)}"` : ''}>${csrfField(who.csrf)}<input type="hidden" name="status" value="${a.status === 'active' ? 'disabled' : 'active'}"><button type="submit" class="${a.status === 'active' ? 'danger' : ''}" aria-label="${esc(`${a.status === 'active' ? 'Disable' : 'Enable'} ${a.id}`)}">${a.status === 'active' ? 'Disable' : 'Enable'}</button></form>`;
      return `<tr data-account="${esc(a.id)}"><td><a href="/admin/accounts/${esc(encodeURIComponent(a.id))}">${esc(a.id)}</a>${a.name ? `<br><small>${esc(a.name)}</small>` : ''}</td><td>${esc(a.role)}</td><td class="status-${esc(a.status)}">${esc(a.status)}</td><td class="num">${money(a.balance, a.currency)}</td><td class="num">${a.role === 'buyer' ? money(a.creditLimit, a.currency) : '–'}</td><td class="num">${a.role === 'buyer' ? (a.dailyLimit === null ? 'none' : money(a.dailyLimit, a.currency)) : '–'}</td><td>${act}</td></tr>`;
    });
    const q = new URLSearchParams();
    if (role) q.set('role', role);
    if (status) q.set('status', status);
    const next =
      rows.length > ACCOUNTS_PER_PAGE
        ? `<a rel="next" href="/?${esc(new URLSearchParams([...q, ['after', list[list.length - 1]!.id]]).toString())}">Next accounts</a>`
        : '';
    const first = after ? `<a href="/?${esc(q.toString())}">First accounts</a>` : '';
    return page(
      frame('Accounts', who),
      `<h1>Accounts</h1>
<form method="get" action="/" class="filters" aria-label="Filter accounts">
<div><label for="role">Role</label><select id="role" name="role">${option('', role, 'buyers and merchants')}${option('buyer', role, 'buyers')}${option('merchant', role, 'merchants')}${option('system', role, 'system')}</select></div>
<div><label for="status">Status</label><select id="status" name="status">${option('', status, 'any')}${option('active', status, 'active')}${option('disabled', status, 'disabled')}</select></div>
<div><button type="submit" class="plain">Show</button></div>
</form>
${list.length === 0 ? '<p>No accounts match.</p>' : `<table><thead><tr><th scope="col">Account</th><th scope="col">Role</th><th scope="col">Status</th><th scope="col" class="num">Balance</th><th scope="col" class="num">Credit limit</th><th scope="col" class="num">Daily limit</th><th scope="col">Action</th></tr></thead><tbody>${body.join('')}</tbody></table>`}
${first || next ? `<nav class="pager" aria-label="Account pages">${first}${next}</nav>` : ''}`,
    );
  }

  async function adminAccount(
    req: Request,
    who: Who,
    id: string,
    extra: Partial<Frame> = {},
  ): Promise<string> {
    const a = await store.mustAccount(id);
    const available = a.role === 'buyer' ? await ledger.available(a) : null;
    const path = `/admin/accounts/${encodeURIComponent(a.id)}`;
    const saved = req.query.saved;
    if (
      extra.notice === undefined &&
      extra.error === undefined &&
      (saved === 'status' || saved === 'limits')
    ) {
      extra.notice =
        saved === 'status' ? `Saved: ${a.id} is now ${a.status}.` : `Saved: new limits for ${a.id}.`;
    }
    const amountValue = (v: number | null) => (v === null ? '' : formatAmount(v));
    const forms =
      a.role === 'system'
        ? "<p>This is one of the server's own accounts; it moves only with orders and adjustments.</p>"
        : `<h2>Status</h2>
<form method="post" action="${esc(path)}/status"${a.status === 'active' ? ` data-confirm="${esc(`Disable ${a.id}? It gets no new credential until enabled again.`)}"` : ''}>${csrfField(who.csrf)}<input type="hidden" name="status" value="${a.status === 'active' ? 'disabled' : 'active'}">
<p>This account is <strong class="status-${esc(a.status)}">${esc(a.status)}</strong>. ${a.status === 'active' ? (a.role === 'buyer' ? 'Disabled, it gets no new credential, so it stops paying within a day.' : 'Disabled, it can neither deposit nor ask for authorizations.') : ''}</p>
<p><button type="submit" class="${a.status === 'active' ? 'danger' : ''}">${a.status === 'active' ? 'Disable' : 'Enable'} ${esc(a.id)}</button></p></form>
${
  a.role === 'buyer'
    ? `<h2>Limits</h2>
<form method="post" action="${esc(path)}/limits">${csrfField(who.csrf)}
<label for="creditLimit">Credit limit (${esc(a.currency)})</label>
<input type="text" inputmode="decimal" id="creditLimit" name="creditLimit" value="${esc(amountValue(a.creditLimit))}" required aria-describedby="credit-hint">
<p class="hint" id="credit-hint">How far below zero the balance may go.</p>
<label for="dailyLimit">Daily limit (${esc(a.currency)})</label>
<input type="text" inputmode="decimal" id="dailyLimit" name="dailyLimit" value="${esc(amountValue(a.dailyLimit))}" aria-describedby="daily-hint">
<p class="hint" id="daily-hint">The most one day's credential allows at each merchant offline. Empty: no daily limit.</p>
<p><button type="submit">Save limits</button></p></form>`
    : ''
}`;
    return page(
      frame(a.id, who, extra),
      `<p><a href="/">All accounts</a></p>
<h1>Account ${esc(label(a))}</h1>
<p>${esc(a.role)} account</p>
${accountFacts(a, available)}
${forms}
${await ledgerSection(req, a, path)}`,
    );
  }

  router.get(
    '/admin/accounts/:id',
    route(async (req, res) => {
      const who = await current(req, res);
      if (!who) return send(res, 401, signInPage('Sign in as the operator to see accounts.'));
      if (who.session.role !== 'admin')
        throw httpError(403, 'forbidden', 'Only the operator sees other accounts.');
      send(res, 200, await adminAccount(req, who, String(req.params.id)));
    }),
  );

  router.post(
    '/admin/accounts/:id/status',
    form,
    route(async (req, res) => {
      await poster(req, res, 'admin');
      const id = String(req.params.id);
      const status = (req.body as Record<string, unknown>).status;
      if (status !== 'active' && status !== 'disabled') {
        throw httpError(400, 'invalid_request', 'The status must be active or disabled.');
      }
      await store.patchAccount(id, { status }, ctx.now());
      ctx.logger.info({ account: id, status }, 'account pages: status changed by the operator');
      res.redirect(303, `/admin/accounts/${encodeURIComponent(id)}?saved=status`);
    }),
  );

  router.post(
    '/admin/accounts/:id/limits',
    form,
    route(async (req, res) => {
      const who = await poster(req, res, 'admin');
      const id = String(req.params.id);
      const b = req.body as Record<string, unknown>;
      let creditLimit: number;
      let dailyLimit: number | null;
      try {
        creditLimit = amountInput(b.creditLimit, 'The credit limit');
        dailyLimit =
          typeof b.dailyLimit === 'string' && b.dailyLimit.trim() === ''
            ? null
            : amountInput(b.dailyLimit, 'The daily limit');
      } catch (e) {
        return send(res, 400, await adminAccount(req, who, id, { error: (e as Error).message }));
      }
      await store.patchAccount(id, { creditLimit, dailyLimit }, ctx.now());
      ctx.logger.info({ account: id, creditLimit, dailyLimit }, 'account pages: limits set by the operator');
      res.redirect(303, `/admin/accounts/${encodeURIComponent(id)}?saved=limits`);
    }),
  );

  return router;
}
