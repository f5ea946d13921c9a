/**
 * The wallet's edges: a merchant that answers 402 forever (no loop), offers
 * that do not match the request or are missing, the offer read from the
 * header of an HTML paywall, and credential renewal across expiry on a fake
 * clock, both ahead of time and when a merchant calls the credential expired.
 */
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { peekPayload } from '../../src/protocol/codec.js';
import { parsePaymentHeader } from '../../src/protocol/header.js';
import { buildOffer, challengeBody, encodeOfferHeader } from '../../src/protocol/offer.js';
import {
  createWallet,
  memoryKeyStore,
  memoryWalletStore,
  type WalletError,
  type WalletStore,
} from '../../src/wallet/index.js';
import { type Clock, closeServer, listen, startWorld, type World } from './helpers.js';

function counting(prefix: string) {
  const sent: Request[] = [];
  const f: typeof fetch = (input, init) => {
    const r = new Request(input, init);
    if (r.url.startsWith(prefix)) sent.push(r.clone());
    return fetch(r);
  };
  return { sent, fetch: f };
}

async function error(p: Promise<unknown>): Promise<WalletError> {
  return p.then(
    () => {
      throw new Error('expected the wallet to refuse');
    },
    (e: WalletError) => e,
  );
}

/** The order token a request carried. */
function orderOf(r: Request): { cert: string; order: Record<string, unknown> } {
  const h = parsePaymentHeader(r.headers.get('micropay-payment') ?? undefined);
  if (h.kind !== 'order') throw new Error('not an order');
  return { cert: h.cert, order: peekPayload(h.order, 'mp-order') };
}

describe('merchants that misbehave', () => {
  let w: World;
  let url: string;
  let server: import('node:http').Server;
  let hits = 0;
  beforeAll(async () => {
    w = await startWorld();
    // Answers 402 with a valid offer to everything, paid or not; `/other` offers another resource.
    const app = express();
    app.use((req, res) => {
      hits++;
      if (req.path === '/bare') {
        res.status(402).json({ error: 'payment_required', message: 'Pay somehow.' });
        return;
      }
      const offer = buildOffer({
        mer: 'forever',
        acq: 'bank-a',
        accepts: ['bank-a'],
        res: req.path === '/other' ? 'GET /something-else' : `${req.method} ${req.originalUrl}`,
        amt: 1000,
        cur: 'USD',
        dur: 60,
        exp: Math.floor(Date.now() / 1000) + 300,
      });
      res.status(402).set('Micropay-Offer', encodeOfferHeader(offer)).json(challengeBody(offer));
    });
    ({ url, server } = await listen(app));
  });
  afterAll(async () => {
    await closeServer(server);
    await w.close();
  });

  async function setup() {
    const b = await w.buyer();
    const c = counting(url);
    return {
      c,
      wallet: createWallet({
        billingUrl: w.billingUrl,
        token: b.token,
        keyStore: memoryKeyStore(),
        fetch: c.fetch,
      }),
    };
  }

  it('a merchant that answers 402 forever gets exactly 2 requests, then an error with its code', async () => {
    const { c, wallet } = await setup();
    const before = hits;
    const e = await error(wallet.fetch(`${url}/articles/1?x=1`));
    expect(e.code).toBe('payment_required');
    expect(e.merchantCode).toBe('payment_required');
    expect(e.message).toBe('forever refused the payment: This resource costs 0.001 USD.');
    expect(hits - before).toBe(2);
    expect(c.sent.map((r) => r.headers.has('micropay-payment'))).toEqual([false, true]);
    expect(orderOf(c.sent[1]!).order).toMatchObject({
      mer: 'forever',
      res: 'GET /articles/1?x=1',
      amt: 1000,
    });
    expect(await wallet.history()).toEqual([]);
  });

  it('an offer for another resource is not paid', async () => {
    const { c, wallet } = await setup();
    const e = await error(wallet.fetch(`${url}/other`));
    expect(e.code).toBe('offer_mismatch');
    expect(e.message).toMatch(/offered "GET \/something-else" for the request "GET \/other"/);
    expect(c.sent).toHaveLength(1);
  });

  it('a 402 without an offer: no_offer', async () => {
    const { wallet } = await setup();
    const e = await error(wallet.fetch(`${url}/bare`));
    expect(e.code).toBe('no_offer');
    expect(e.message).toMatch(/without a micropay offer/);
  });

  it('reads the offer from the Micropay-Offer header of an HTML paywall page', async () => {
    const b = await w.buyer();
    const wallet = createWallet({ billingUrl: w.billingUrl, token: b.token, keyStore: memoryKeyStore() });
    const r = await wallet.request(`${w.shopUrl}/articles/42`, { headers: { accept: 'text/html' } });
    expect(r.via).toBe('paid');
    expect(r.response.status).toBe(200);
  });
});

describe('credential renewal across expiry (fake clock)', () => {
  const t0 = Math.floor(Date.now() / 1000);
  const day = 86_400;

  it('renews ahead of expiry (less than 1 h left) and after it, without extra merchant requests', async () => {
    const clock: Clock = { t: t0 };
    const w = await startWorld({ clock });
    try {
      const b = await w.buyer();
      const c = counting(w.shopUrl);
      const wallet = createWallet({
        billingUrl: w.billingUrl,
        token: b.token,
        keyStore: memoryKeyStore(),
        fetch: c.fetch,
        clock: () => clock.t,
      });
      await wallet.fetch(`${w.shopUrl}/articles/42`);
      const first = await wallet.credential();
      expect(first.exp).toBe(t0 + day);

      clock.t = t0 + day - 3700; // more than an hour left: kept
      expect((await wallet.status()).renewDue).toBe(false);
      await wallet.fetch(`${w.shopUrl}/articles/43`);
      expect(orderOf(c.sent.at(-1)!).cert).toBe(first.cert);

      clock.t = t0 + day - 3000; // less than an hour left: renewed before paying
      expect((await wallet.status()).renewDue).toBe(true);
      const r = await wallet.request(`${w.shopUrl}/articles/42`); // the receipt has expired: pays again
      expect(r.via).toBe('paid');
      const second = await wallet.credential();
      expect(second.exp).toBe(clock.t + day);
      expect(orderOf(c.sent.at(-1)!).cert).toBe(second.cert);

      clock.t = second.exp + 10; // past expiry
      const r2 = await wallet.request(`${w.shopUrl}/articles/43`);
      expect(r2.via).toBe('paid');
      expect((await wallet.credential()).exp).toBe(clock.t + day);
      expect(c.sent).toHaveLength(8); // two requests per purchase, never a third
      expect(w.charged.filter((p) => p.buyer === b.id)).toHaveLength(4);
    } finally {
      await w.close();
    }
  });

  /** A wallet whose stored credential says it is fresh for a year while its token has expired. */
  async function stale(store: WalletStore): Promise<void> {
    const st = (await store.load())!;
    st.credential = { ...st.credential!, exp: st.credential!.exp + 365 * day };
    await store.save(st);
  }

  it('renews once when the merchant says expired_credential, then pays', async () => {
    const clock: Clock = { t: t0 };
    const w = await startWorld({ clock });
    try {
      const b = await w.buyer();
      const keyStore = memoryKeyStore();
      const store = memoryWalletStore();
      const opts = { billingUrl: w.billingUrl, token: b.token, keyStore, store, clock: () => clock.t };
      await createWallet(opts).fetch(`${w.shopUrl}/articles/42`);
      await stale(store);
      clock.t = t0 + day + 120;
      const c = counting(w.shopUrl);
      const wallet = createWallet({ ...opts, fetch: c.fetch });
      const r = await wallet.request(`${w.shopUrl}/articles/43`);
      expect(r.via).toBe('paid');
      expect(r.response.status).toBe(200);
      expect(c.sent).toHaveLength(3);
      const [expired, renewed] = c.sent.slice(1).map(orderOf);
      expect(expired!.cert).not.toBe(renewed!.cert);
      expect((await wallet.credential()).exp).toBe(clock.t + day);
    } finally {
      await w.close();
    }
  });

  it('a credential still expired after renewing is an error, not a loop', async () => {
    const billingClock: Clock = { t: t0 };
    const merchantClock: Clock = { t: t0 };
    const w = await startWorld({ clock: billingClock, merchantClock });
    try {
      const b = await w.buyer();
      const keyStore = memoryKeyStore();
      const store = memoryWalletStore();
      const opts = {
        billingUrl: w.billingUrl,
        token: b.token,
        keyStore,
        store,
        clock: () => merchantClock.t,
      };
      await createWallet(opts).fetch(`${w.shopUrl}/articles/42`);
      await stale(store);
      // The billing server's clock stays behind: its credentials, and the key that signs them, have
      // expired for the merchant, which answers unknown_issuer (the key) or expired_credential.
      merchantClock.t = t0 + day + 120;
      const c = counting(w.shopUrl);
      const e = await error(createWallet({ ...opts, fetch: c.fetch }).fetch(`${w.shopUrl}/articles/43`));
      expect(['unknown_issuer', 'expired_credential']).toContain(e.code);
      expect(c.sent).toHaveLength(3);
      // Two signed attempts (the billing server's frozen clock makes the renewed credential identical).
      const [first, second] = c.sent.slice(1).map(orderOf);
      expect(first!.order.oid).not.toBe(second!.order.oid);
    } finally {
      await w.close();
    }
  });
});

describe('receipts the merchant no longer honours', () => {
  it('an expired receipt (402 expired_receipt) is dropped and the article paid from that answer', async () => {
    const clock: Clock = { t: Math.floor(Date.now() / 1000) };
    const w = await startWorld({ clock });
    try {
      const b = await w.buyer();
      const store = memoryWalletStore();
      const opts = {
        billingUrl: w.billingUrl,
        token: b.token,
        keyStore: memoryKeyStore(),
        store,
        clock: () => clock.t,
      };
      await createWallet(opts).fetch(`${w.shopUrl}/articles/42`);
      const st = (await store.load())!;
      st.receipts = st.receipts.map((r) => ({ ...r, exp: r.exp + 365 * 86_400 })); // the wallet thinks it still holds
      await store.save(st);
      clock.t += 7200;
      const c = counting(w.shopUrl);
      const r = await createWallet({ ...opts, fetch: c.fetch }).request(`${w.shopUrl}/articles/42`);
      expect(r.via).toBe('paid');
      expect(c.sent.map((s) => s.headers.get('micropay-payment')?.slice(0, 8))).toEqual([
        'receipt=',
        'cert="ey',
      ]);
      expect((await store.load())!.receipts).toHaveLength(1);
      expect(w.charged.filter((p) => p.buyer === b.id)).toHaveLength(2);
    } finally {
      await w.close();
    }
  });

  it('a receipt the merchant cannot read (400) is dropped, and the article asked for and paid again', async () => {
    const w = await startWorld();
    try {
      const b = await w.buyer();
      const store = memoryWalletStore();
      const opts = { billingUrl: w.billingUrl, token: b.token, keyStore: memoryKeyStore(), store };
      await createWallet(opts).fetch(`${w.shopUrl}/articles/42`);
      const st = (await store.load())!;
      st.receipts = st.receipts.map((r) => ({ ...r, token: 'not.a-receipt' }));
      await store.save(st);
      const c = counting(w.shopUrl);
      const r = await createWallet({ ...opts, fetch: c.fetch }).request(`${w.shopUrl}/articles/42`);
      expect(r.via).toBe('paid');
      expect(c.sent.map((s) => s.headers.get('micropay-payment')?.slice(0, 8) ?? null)).toEqual([
        'receipt=',
        null,
        'cert="ey',
      ]);
    } finally {
      await w.close();
    }
  });
});
