/**
 * The browser wallet script (`/_micropay/wallet.js`), the entry esbuild
 * bundles into one small IIFE file with no framework. Pages compiled by
 * `micropay compile` and the paywall page load it. It:
 *
 * - keeps the buyer's key and the wallet's state (credential, receipts,
 *   history) in this site's IndexedDB, through the browser wallet;
 * - connects once: a small dialog asks for the billing server's URL, the
 *   buyer token and the amount from which to ask before paying; the token
 *   stays in IndexedDB and goes only to the billing server, in a header
 *   (never in a URL), which must allow this origin (`--cors-origin`);
 * - turns a click on a priced link (`a[data-micropay-price]`,
 *   `a[data-micropay-dynamic]`) into a paid fetch, asking first (a confirm
 *   dialog) from the auto-pay threshold on, and shows what came back in
 *   place of the page (at the link's URL), with the price paid;
 * - on a paywall page (`#micropay-offer`) makes the Pay button pay, and opens
 *   the page at once when a receipt for it is held (no new charge).
 *
 * Without a connected wallet it leaves links alone: they lead to the paywall
 * page, which explains how to pay. Only real clicks count (`isTrusted`), so
 * a page's script cannot spend by clicking for the buyer.
 */
import type { Offer } from '../protocol/messages.js';
import { formatMoney, parseDecimal } from '../protocol/money.js';
import { createWallet, indexedDbWalletStore, type Wallet, type WalletResponse } from './browser.js';

/** What "connect wallet" stores in IndexedDB. */
interface Connection {
  v: 1;
  billingUrl: string;
  token: string;
  /** The account's currency, learnt from the first credential. */
  cur: string;
  /** Payments below this many micro-units go without asking. */
  autoPayBelow: number;
}

const DB = 'micropay';
const KV = 'kv';
const CONNECTION = 'connection';
const LAST_PAID = 'micropay:paid';
const PRICED = 'a[data-micropay-price],a[data-micropay-dynamic]';
const DEFAULT_ASK_FROM = '0.05';

type Win = Window & { __micropayGen?: number; __micropayReplaced?: boolean };
const win = window as Win;

// ---- IndexedDB: the connection, beside the key and state the wallet keeps there ----

function idb<T>(mode: IDBTransactionMode, op: (s: IDBObjectStore) => IDBRequest): Promise<T> {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(DB, 1);
    open.onupgradeneeded = () => {
      if (!open.result.objectStoreNames.contains(KV)) open.result.createObjectStore(KV);
    };
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction(KV, mode);
      const req = op(tx.objectStore(KV));
      tx.oncomplete = () => {
        db.close();
        resolve(req.result as T);
      };
      tx.onerror = tx.onabort = () => {
        db.close();
        reject(tx.error);
      };
    };
  });
}

async function loadConnection(): Promise<Connection | null> {
  try {
    const v = await idb<unknown>('readonly', (s) => s.get(CONNECTION));
    const c = typeof v === 'string' ? (JSON.parse(v) as Connection) : null;
    return c && c.v === 1 && typeof c.token === 'string' ? c : null;
  } catch {
    return null;
  }
}

// ---- The little panel, in a shadow root so the page's styles and ours stay apart ----

const CSS = `:host{all:initial}
.p{position:fixed;right:12px;bottom:12px;z-index:2147483647;max-width:24rem;font:14px/1.4 system-ui,sans-serif;color:#1a1a1a;background:#fff;border:1px solid #767676;border-radius:8px;box-shadow:0 2px 10px #0003;padding:8px 12px}
p{margin:4px 0}
button{font:inherit;margin:4px 4px 0 0;padding:3px 10px;border-radius:4px;border:1px solid #0b3f8f;background:#0b4fb3;color:#fff;cursor:pointer}
button.s{background:#fff;color:#0b3f8f}
button:focus,input:focus{outline:3px solid #1a5fd0;outline-offset:1px}
.paid{color:#14532d;font-weight:600}
.err{color:#8a1116}
dialog{font:14px/1.4 system-ui,sans-serif;border:1px solid #767676;border-radius:8px;max-width:26rem}
label{display:block;font-weight:600;margin-top:8px}
input{font:inherit;width:100%;box-sizing:border-box;padding:4px;border:1px solid #767676;border-radius:4px}
.h{font-size:12px;color:#4a4a4a}`;

interface Panel {
  status: HTMLElement;
  note: HTMLElement;
  error: HTMLElement;
  action: HTMLButtonElement;
  dialog: HTMLDialogElement;
  form: HTMLFormElement;
  formError: HTMLElement;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]> = {},
  ...kids: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...kids);
  return e;
}

function field(label: string, input: HTMLInputElement, hint?: string): HTMLElement {
  const id = `mp-${input.name}`;
  input.id = id;
  const l = el('label', { htmlFor: id }, label);
  const parts: Node[] = [l, input];
  if (hint) {
    const h = el('p', { className: 'h', id: `${id}-h` }, hint);
    input.setAttribute('aria-describedby', h.id);
    parts.push(h);
  }
  return el('div', {}, ...parts);
}

function buildPanel(): Panel {
  document.querySelector('[data-micropay-widget]')?.remove();
  const host = el('div');
  host.setAttribute('data-micropay-widget', '');
  const root = host.attachShadow({ mode: 'open' });
  const status = el('p');
  const note = el('p', { className: 'paid' });
  note.setAttribute('role', 'status');
  const error = el('p', { className: 'err' });
  error.setAttribute('role', 'alert');
  const action = el('button', { type: 'button', className: 's' });
  const panel = el('section', { className: 'p' }, status, note, error, action);
  panel.setAttribute('aria-label', 'micropay wallet');
  const formError = el('p', { className: 'err' });
  formError.setAttribute('role', 'alert');
  const cancel = el('button', { type: 'button', className: 's' }, 'Cancel');
  const form = el(
    'form',
    { method: 'dialog' },
    el('h2', {}, 'Connect your micropay wallet'),
    el(
      'p',
      { className: 'h' },
      'Your billing server gave you a buyer token. It is kept in this browser for this site only and sent only to your billing server.',
    ),
    field(
      'Billing server URL',
      el('input', { name: 'billingUrl', type: 'url', required: true, placeholder: 'https://bank.example' }),
    ),
    field(
      'Buyer token',
      el('input', { name: 'token', type: 'password', required: true, autocomplete: 'off' }),
    ),
    field(
      'Ask before paying this much or more',
      el('input', { name: 'askFrom', type: 'text', inputMode: 'decimal', value: DEFAULT_ASK_FROM }),
      'In your account currency. Cheaper clicks are paid without asking.',
    ),
    formError,
    el('p', {}, el('button', { type: 'submit' }, 'Connect'), cancel),
  );
  const dialog = el('dialog', {}, form);
  dialog.setAttribute('aria-label', 'Connect your micropay wallet');
  cancel.onclick = () => dialog.close();
  root.append(el('style', {}, CSS), panel, dialog);
  document.body.append(host);
  return { status, note, error, action, dialog, form, formError };
}

// ---- The wallet ----

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));
// Window's fetch, bound: called as a method of another object, browsers throw "Illegal invocation".
const boundFetch: typeof fetch = (input, init) => fetch(input, init);

function walletFor(c: Connection, ask: (offer: Offer, spent: number) => boolean): Wallet {
  return createWallet({
    billingUrl: c.billingUrl,
    token: c.token,
    store: indexedDbWalletStore(),
    fetch: boundFetch,
    policy: {
      autoPayBelow: { amt: c.autoPayBelow, cur: c.cur },
      confirm: (offer, ctx) => ask(offer, ctx.spentToday),
    },
  });
}

function confirmPayment(offer: Offer, spent: number): boolean {
  const who = offer.name ? `${offer.name} (${offer.mer})` : offer.mer;
  const what = offer.title ? ` for “${offer.title}”` : '';
  return window.confirm(
    `Pay ${formatMoney(offer.amt, offer.cur)} to ${who}${what}?\n\nSpent today: ${formatMoney(spent, offer.cur)}.`,
  );
}

/** Replaces this document with the answer (HTML) at its URL, or opens it (anything else). */
async function show(r: WalletResponse, url: string): Promise<void> {
  const res = r.response;
  const p = r.payment;
  if (r.via === 'paid' && p) {
    const to = p.name ?? p.mer;
    sessionStorage.setItem(
      LAST_PAID,
      `Paid ${formatMoney(p.amt, p.cur)} to ${to}${p.title ? ` for “${p.title}”` : ''}.`,
    );
  } else if (r.via === 'receipt') {
    sessionStorage.setItem(LAST_PAID, 'Opened with your receipt: no new charge.');
  }
  const type = res.headers.get('content-type') ?? '';
  const target = res.url || url;
  if (!/^(text\/html|application\/xhtml\+xml)/i.test(type)) {
    location.assign(URL.createObjectURL(await res.blob()));
    return;
  }
  const html = await res.text();
  if (target !== location.href) history.pushState({ micropay: 1 }, '', target);
  win.__micropayReplaced = true;
  document.open();
  document.write(html);
  document.close();
  // A page without the wallet script gets the panel (and the paid note) all the same.
  if (!document.querySelector('script[data-micropay-wallet]')) start();
}

// ---- Start: one run per document; a newer run makes older listeners quiet ----

function start(): void {
  const gen = (win.__micropayGen ?? 0) + 1;
  win.__micropayGen = gen;
  const live = () => win.__micropayGen === gen;
  const ui = buildPanel();
  let conn: Connection | null = null;
  let wallet: Wallet | null = null;
  let busy = false;
  let afterConnect: (() => void) | null = null;
  const offerEl = document.getElementById('micropay-offer');
  let offer: Offer | null = null;
  try {
    offer = offerEl ? (JSON.parse(offerEl.textContent ?? '') as Offer) : null;
  } catch {
    offer = null;
  }

  const say = (note: string, error = '') => {
    ui.note.textContent = note;
    ui.error.textContent = error;
  };

  async function refresh(): Promise<void> {
    if (!wallet || !conn) {
      ui.status.textContent = 'micropay wallet: not connected.';
      ui.action.textContent = 'Connect wallet';
      return;
    }
    const spent = await wallet.spentToday(conn.cur).catch(() => 0);
    ui.status.textContent = `micropay wallet connected to ${new URL(conn.billingUrl).host}; spent today ${formatMoney(spent, conn.cur)}.`;
    ui.action.textContent = 'Disconnect';
  }

  /** Fetches `url` paying as the policy says; with `receiptOnly`, never pays (a held receipt or nothing). */
  async function pay(url: string, label: string, receiptOnly = false): Promise<void> {
    if (!wallet || !conn || busy) return;
    busy = true;
    say(receiptOnly ? `Opening ${label}…` : `Paying for ${label}…`);
    try {
      const r = await wallet.request(
        url,
        { headers: { accept: 'text/html,application/xhtml+xml;q=0.9,*/*;q=0.5' } },
        receiptOnly ? { maxPrice: { amt: 0, cur: conn.cur } } : {},
      );
      if (live()) await show(r, url);
    } catch (e) {
      if (!live()) return;
      if ((e as { code?: string }).code === 'payment_not_confirmed') say('Not paid.');
      else if (receiptOnly) say('');
      else say('', errorText(e));
    } finally {
      busy = false;
    }
  }

  ui.action.onclick = async () => {
    if (!conn) {
      ui.formError.textContent = '';
      ui.dialog.showModal();
      return;
    }
    await idb('readwrite', (s) => s.delete(CONNECTION)).catch(() => {});
    conn = null;
    wallet = null;
    say('Disconnected. Your key stays in this browser.');
    await refresh();
  };

  ui.form.onsubmit = async (ev) => {
    ev.preventDefault();
    const data = new FormData(ui.form);
    const billingUrl = String(data.get('billingUrl') ?? '').trim();
    const token = String(data.get('token') ?? '').trim();
    ui.formError.textContent = 'Connecting…';
    try {
      const autoPayBelow = parseDecimal(String(data.get('askFrom') ?? '').trim() || '0');
      // A first wallet without a policy learns the account's currency from a fresh credential.
      const probe = createWallet({ billingUrl, token, store: indexedDbWalletStore(), fetch: boundFetch });
      const cred = await probe.credential({ renew: true });
      const c: Connection = { v: 1, billingUrl, token, cur: cred.cur, autoPayBelow };
      await idb('readwrite', (s) => s.put(JSON.stringify(c), CONNECTION));
      conn = c;
      wallet = walletFor(c, confirmPayment);
      ui.form.reset();
      ui.dialog.close();
      say(`Connected as ${cred.sub}. Priced links are paid from now on.`);
      await refresh();
      const next = afterConnect;
      afterConnect = null;
      next?.();
    } catch (e) {
      const why = errorText(e);
      ui.formError.textContent = /fetch|network|reached|unavailable/i.test(why)
        ? `${why} Check the URL; the billing server must also allow this site (${location.origin}).`
        : why;
    }
  };

  document.addEventListener('click', (e) => {
    if (!live() || !wallet || e.defaultPrevented || !e.isTrusted) return;
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = (e.target as Element | null)?.closest?.(PRICED) as HTMLAnchorElement | null;
    if (!a?.href || (a.target && a.target !== '_self') || a.hasAttribute('download')) return;
    const url = new URL(a.href, location.href);
    // Priced links of other sites are theirs to charge: the browser follows them to their paywall.
    if (url.origin !== location.origin) return;
    e.preventDefault();
    void pay(url.href, a.getAttribute('data-micropay-title') ?? a.textContent?.trim() ?? url.pathname);
  });

  const payButton = document.querySelector<HTMLButtonElement>('[data-micropay-pay]');
  if (payButton && offer) {
    const o = offer;
    payButton.addEventListener('click', (e) => {
      if (!live() || !e.isTrusted) return;
      e.preventDefault();
      const go = () => void pay(location.href, o.title ?? o.res);
      if (wallet) go();
      else {
        afterConnect = go;
        ui.formError.textContent = 'Connect your wallet to pay.';
        ui.dialog.showModal();
      }
    });
  }

  window.addEventListener('popstate', () => {
    // This document was written in place: the entry we go back or forward to must be loaded for real.
    if (live() && win.__micropayReplaced) location.reload();
  });

  const last = sessionStorage.getItem(LAST_PAID);
  if (last) {
    sessionStorage.removeItem(LAST_PAID);
    say(last);
  }

  void (async () => {
    conn = await loadConnection();
    if (!live()) return;
    if (conn) {
      try {
        wallet = walletFor(conn, confirmPayment);
      } catch (e) {
        say('', errorText(e));
      }
    }
    await refresh();
    // On a paywall page for something already paid: open it with the receipt (no charge).
    if (wallet && offer && (await heldReceipt(offer)))
      void pay(location.href, offer.title ?? offer.res, true);
  })();
}

/** Whether the wallet holds an unexpired receipt for this page's resource. */
async function heldReceipt(offer: Offer): Promise<boolean> {
  const st = await indexedDbWalletStore()
    .load()
    .catch(() => null);
  const key = `${location.origin} ${offer.res}`;
  const now = Date.now() / 1000;
  return !!st?.receipts.some((r) => r.key === key && r.exp > now);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start, { once: true });
else start();
