/**
 * The wallet against the real billing server and the real example merchant:
 * auto-pay, receipt reuse, each policy refusal, merchant refusals, and
 * concurrency against the daily budget.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createWallet,
  memoryKeyStore,
  type Wallet,
  WalletError,
  type WalletPolicy,
} from '../../src/wallet/index.js';
import { startWorld, type World } from './helpers.js';

let w: World;
beforeAll(async () => {
  w = await startWorld();
});
afterAll(async () => {
  await w.close();
});

/** A wallet for a new buyer of `w`, counting the requests it sends. */
async function newWallet(policy?: WalletPolicy, fields?: Parameters<World['buyer']>[0]) {
  const b = await w.buyer(fields);
  const sent: Request[] = [];
  const wallet: Wallet = createWallet({
    billingUrl: w.billingUrl,
    token: b.token,
    keyStore: memoryKeyStore(),
    ...(policy ? { policy } : {}),
    fetch: (input, init) => {
      const r = new Request(input, init);
      if (r.url.startsWith(w.shopUrl)) sent.push(r);
      return fetch(r);
    },
  });
  const charged = () => w.charged.filter((c) => c.buyer === b.id);
  return { wallet, buyer: b, sent, charged };
}

async function refusal(p: Promise<unknown>): Promise<WalletError> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(WalletError);
  return e as WalletError;
}

describe('auto-pay', () => {
  it('pays a 402 once, gets the article and a receipt, and records the payment', async () => {
    const { wallet, buyer, sent, charged } = await newWallet();
    const r = await wallet.request(`${w.shopUrl}/articles/42`);
    expect(r.response.status).toBe(200);
    expect(r.via).toBe('paid');
    const body = await r.response.json();
    expect(body).toMatchObject({ id: '42', paidBy: buyer.id, via: 'order' });
    expect(sent.map((s) => s.headers.has('micropay-payment'))).toEqual([false, true]);
    expect(r.payment).toMatchObject({
      mer: w.merchant.id,
      name: 'News Site',
      title: 'The answer, explained',
      res: 'GET /articles/42',
      amt: 2000,
      cur: 'USD',
      sub: buyer.id,
      status: 200,
    });
    expect(r.payment!.oid).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(r.payment!.receiptExp).toBeGreaterThan(w.clock.t);
    expect(charged()).toHaveLength(1);
    expect(await wallet.spentToday()).toBe(2000);
    expect(await wallet.history()).toEqual([r.payment]);
    const st = await wallet.status();
    expect(st.credential).toMatchObject({ iss: 'bank-a', sub: buyer.id, cur: 'USD', lim: 5_000_000 });
    expect(st.spentToday).toEqual({ USD: 2000 });
    expect(st.receipts).toBe(1);
  });

  it('fetches free pages without paying', async () => {
    const { wallet, sent } = await newWallet();
    const r = await wallet.request(`${w.shopUrl}/`);
    expect(r.via).toBe('free');
    expect(r.response.status).toBe(200);
    expect(sent).toHaveLength(1);
    expect(await wallet.history()).toEqual([]);
  });

  it('reads an article again with the receipt: one request, no second charge', async () => {
    const { wallet, sent, charged, buyer } = await newWallet();
    await (await wallet.fetch(`${w.shopUrl}/articles/43`)).text();
    const again = await wallet.request(`${w.shopUrl}/articles/43`);
    expect(again.via).toBe('receipt');
    expect(again.payment).toBeNull();
    expect(await again.response.json()).toMatchObject({ id: '43', via: 'receipt', paidBy: buyer.id });
    expect(sent).toHaveLength(3);
    expect(sent[2]!.headers.get('micropay-payment')).toMatch(/^receipt="/);
    expect(charged()).toHaveLength(1);
    expect(await wallet.history()).toHaveLength(1);
    expect(await wallet.spentToday()).toBe(2000);
    // The billing server debits the buyer exactly once.
    expect(await w.balance(buyer.id, -2000)).toBe(-2000);
  });

  it('pays under the policy when within every limit, matching merchants by host', async () => {
    const host = new URL(w.shopUrl).host;
    const { wallet } = await newWallet({
      maxPerPayment: '0.002 USD',
      maxPerDay: '0.004 USD',
      allowMerchants: [host],
      currency: 'USD',
    });
    expect((await wallet.request(`${w.shopUrl}/articles/42`)).via).toBe('paid');
    expect((await wallet.request(`${w.shopUrl}/articles/43`)).via).toBe('paid');
    expect(await wallet.spentToday()).toBe(4000);
  });

  it('asks confirm from autoPayBelow on, and pays when it agrees', async () => {
    const asked: string[] = [];
    const { wallet } = await newWallet({
      autoPayBelow: '0.002 USD',
      confirm: (offer, ctx) => {
        asked.push(`${offer.mer} ${offer.amt} ${ctx.url} ${ctx.spentToday}`);
        return true;
      },
    });
    expect((await wallet.request(`${w.shopUrl}/articles/42`)).via).toBe('paid');
    expect(asked).toEqual([`${w.merchant.id} 2000 ${w.shopUrl}/articles/42 0`]);
  });
});

describe('policy refusals: nothing is signed, nothing is charged', () => {
  const cases: [string, WalletPolicy, string, RegExp][] = [
    [
      'per-payment cap',
      { maxPerPayment: '0.001 USD' },
      'over_payment_limit',
      /more than your limit per payment \(0\.001 USD\)/,
    ],
    ['denied merchant', { denyMerchants: ['MER'] }, 'merchant_denied', /on your list of denied merchants/],
    [
      'merchant not allowed',
      { allowMerchants: ['someone-else'] },
      'merchant_denied',
      /not on your list of allowed merchants/,
    ],
    ['currency', { currency: 'EUR' }, 'currency_not_allowed', /pays only in EUR/],
    ['confirm declined', { confirm: () => false }, 'payment_not_confirmed', /You declined to pay 0\.002 USD/],
    [
      'no confirm above autoPayBelow',
      { autoPayBelow: '0.001 USD' },
      'payment_not_confirmed',
      /no confirm callback was given/,
    ],
  ];
  for (const [name, policy, code, message] of cases) {
    it(name, async () => {
      const p = JSON.parse(
        JSON.stringify(policy).replace('"MER"', JSON.stringify(w.merchant.id)),
      ) as WalletPolicy;
      if (policy.confirm) p.confirm = policy.confirm;
      const { wallet, sent, charged } = await newWallet(p);
      const e = await refusal(wallet.fetch(`${w.shopUrl}/articles/42`));
      expect(e.code).toBe(code);
      expect(e.message).toMatch(message);
      expect(e.offer?.res).toBe('GET /articles/42');
      expect(sent).toHaveLength(1);
      expect(charged()).toHaveLength(0);
      expect(await wallet.history()).toEqual([]);
    });
  }

  it('daily budget: the second article would pass it', async () => {
    const { wallet, sent, charged } = await newWallet({ maxPerDay: '0.003 USD' });
    await wallet.fetch(`${w.shopUrl}/articles/42`);
    const e = await refusal(wallet.fetch(`${w.shopUrl}/articles/43`));
    expect(e.code).toBe('over_daily_budget');
    expect(e.message).toBe(
      `Paying 0.002 USD to News Site (${w.merchant.id}) would bring today's spending to 0.004 USD, over your daily budget of 0.003 USD (days are UTC).`,
    );
    expect(sent).toHaveLength(3);
    expect(charged()).toHaveLength(1);
    expect(await wallet.spentToday()).toBe(2000);
  });

  it('per-request maxPrice', async () => {
    const { wallet, charged } = await newWallet();
    const e = await refusal(
      wallet.request(`${w.shopUrl}/articles/42`, undefined, { maxPrice: '0.0015 USD' }),
    );
    expect(e.code).toBe('over_payment_limit');
    expect(e.message).toMatch(/the most you allowed for this request \(0\.0015 USD\)/);
    expect(charged()).toHaveLength(0);
  });

  it('concurrent payments cannot both pass the daily budget', async () => {
    const { wallet, charged } = await newWallet({ maxPerDay: '0.003 USD' });
    const results = await Promise.allSettled([
      wallet.fetch(`${w.shopUrl}/articles/42`),
      wallet.fetch(`${w.shopUrl}/articles/43`),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect((rejected.reason as WalletError).code).toBe('over_daily_budget');
    expect(charged()).toHaveLength(1);
  });

  it('an invalid policy is refused when the wallet is made', () => {
    const make = (policy: WalletPolicy) => () =>
      createWallet({ billingUrl: w.billingUrl, token: 't', keyStore: memoryKeyStore(), policy });
    expect(make({ maxPerDay: 'lots' })).toThrow(/policy\.maxPerDay: "lots" is not a valid price/);
    expect(make({ maxPerDay: '1 USD', maxPerPayment: '0.1 EUR' })).toThrow(
      /write every limit in one currency/,
    );
    expect(make({ allowMerchants: 'news' as unknown as string[] })).toThrow(/allowMerchants must be a list/);
  });
});

describe('merchant and billing refusals', () => {
  it('a merchant decline surfaces with its code and message, after exactly one paid attempt', async () => {
    // A credit limit below the price: the credential's offline limit is too small, the merchant asks
    // the billing server online, and the billing server declines.
    const { wallet, sent, charged } = await newWallet(undefined, { creditLimit: 1000 });
    const e = await refusal(wallet.fetch(`${w.shopUrl}/articles/42`));
    expect(e.code).toBe('declined');
    expect(e.merchantCode).toBe('declined');
    expect(e.status).toBe(402);
    expect(e.message).toMatch(/^News Site \(news-[^)]+\) refused the payment: /);
    expect(sent).toHaveLength(2);
    expect(charged()).toHaveLength(0);
    expect(await wallet.history()).toEqual([]);
    expect(await wallet.spentToday()).toBe(0);
  });

  it('a wrong token: no_credential, and the token is in no message', async () => {
    const token = 'mpt_definitely-not-a-real-token-1234567890';
    const wallet = createWallet({ billingUrl: w.billingUrl, token, keyStore: memoryKeyStore() });
    const e = await refusal(wallet.fetch(`${w.shopUrl}/articles/42`));
    expect(e.code).toBe('no_credential');
    expect(e.status).toBe(401);
    expect(e.message).toMatch(/did not accept the buyer token/);
    expect(JSON.stringify({ m: e.message, s: e.stack })).not.toContain(token);
  });

  it('a disabled buyer gets no credential', async () => {
    const { wallet, buyer } = await newWallet();
    await w.admin.admin.updateAccount(buyer.id, { status: 'disabled' });
    const e = await refusal(wallet.fetch(`${w.shopUrl}/articles/42`));
    expect(e.code).toBe('no_credential');
    expect(e.billingCode).toBe('account_disabled');
  });
});
