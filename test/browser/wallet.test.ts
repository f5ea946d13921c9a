/**
 * The browser part in a real browser: Debian's Chromium (playwright-core)
 * against a site compiled with `micropay compile`, served with the micropay
 * middleware, and a real billing server. In order, in one fresh profile:
 * the paywall page to a browser without a wallet explains how to pay; the
 * buyer connects the wallet and a click on a priced link pays and shows the
 * article with the price (asking first above the threshold; a refusal pays
 * nothing); back and forward reopen it with the receipt, no new charge; the
 * buyer's account page shows the entry, the merchant's the credit; the
 * operator disables the buyer through the page. Screenshots in
 * test-artifacts/browser/.
 *
 * Without Chromium these tests skip (global-setup says so loudly); with
 * CI=true a missing Chromium fails the run.
 */
import type { Dialog, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type BrowserWorld, startBrowserWorld, until } from './helpers.js';

const chromiumPath = inject('chromium');
/** `expect.poll` with room for a busy 2-core machine running the whole suite. */
const poll = <T>(fn: () => T | Promise<T>) => expect.poll(fn, { timeout: 10_000, interval: 50 });

describe.skipIf(!chromiumPath)('the browser wallet and the account pages, in Chromium', () => {
  let w: BrowserWorld;
  let page: Page;
  /** Confirm dialogs the page opened, and what to answer to the next ones. */
  const dialogs: string[] = [];
  let answer: 'accept' | 'dismiss' = 'accept';

  beforeAll(async () => {
    w = await startBrowserWorld(chromiumPath!);
    page = w.page;
    page.setDefaultTimeout(10_000);
    page.on('dialog', (d: Dialog) => {
      dialogs.push(d.message());
      void (answer === 'accept' ? d.accept() : d.dismiss());
    });
  }, 60_000);
  afterAll(async () => {
    await w?.close();
  });

  const panel = () => page.locator('[data-micropay-widget]');

  it('the paywall page shown to a browser without a wallet explains how to pay', async () => {
    const r = await page.goto(`${w.shopUrl}/articles/42.html`);
    expect(r?.status()).toBe(402);
    await poll(() => page.title()).toBe('Payment required: The answer');
    const main = page.locator('main');
    await poll(() => main.locator('h1').textContent()).toBe('The answer');
    const text = (await main.textContent()) ?? '';
    expect(text).toContain('News Site charges for this page.');
    expect(text).toContain('0.02 USD');
    expect(text).toContain('How to pay');
    expect(text).toMatch(/Get a micropay wallet from a billing server that News Site accepts: bank-a/);
    // The wallet script runs and says it is not connected; Pay asks to connect first.
    await poll(() => panel().getByText('micropay wallet: not connected.').count()).toBe(1);
    await page.getByRole('button', { name: 'Pay 0.02 USD' }).click();
    const dialog = page.getByRole('dialog', { name: 'Connect your micropay wallet' });
    await poll(() => dialog.isVisible()).toBe(true);
    expect(await dialog.getByRole('alert').textContent()).toBe('Connect your wallet to pay.');
    await w.shot('1-paywall-without-wallet');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    expect(dialogs).toEqual([]);
  });

  it('a click on a priced link of the compiled page pays and shows the article with the price', async () => {
    await page.goto(`${w.shopUrl}/index.html`);
    const link = page.getByRole('link', { name: 'The answer, at last' });
    expect(await link.getAttribute('data-micropay-price')).toBe('0.02 USD');
    // Connect once: billing URL, buyer token, and ask from 0.015 USD on.
    await panel().getByRole('button', { name: 'Connect wallet' }).click();
    const dialog = page.getByRole('dialog', { name: 'Connect your micropay wallet' });
    await dialog.getByLabel('Billing server URL').fill(w.billingUrl);
    await dialog.getByLabel('Buyer token').fill(w.buyer.token);
    await dialog.getByLabel('Ask before paying this much or more').fill('0.015');
    await dialog.getByRole('button', { name: 'Connect' }).click();
    await poll(() => panel().getByRole('status').textContent()).toBe(
      'Connected as reader-1. Priced links are paid from now on.',
    );
    expect(page.url()).toBe(`${w.shopUrl}/index.html`); // the token went nowhere near a URL

    // 0.02 USD is at the threshold: the wallet asks, the buyer agrees, the article shows with the price.
    await link.click();
    await poll(() => page.locator('article h1').textContent()).toBe('The answer, at last');
    expect(page.url()).toBe(`${w.shopUrl}/articles/42.html`);
    expect(dialogs).toHaveLength(1);
    expect(dialogs[0]).toMatch(/^Pay 0\.02 USD to News Site \(news-site\) for “The answer”\?/);
    await poll(() => panel().getByRole('status').textContent()).toBe(
      'Paid 0.02 USD to News Site for “The answer”.',
    );
    await w.shot('2-paid-article');

    // The next article costs 0.01 USD, below the threshold: paid without asking.
    await page.getByRole('link', { name: 'the next article' }).click();
    await poll(() => page.url()).toBe(`${w.shopUrl}/articles/43.html`);
    await poll(() => panel().getByRole('status').textContent()).toBe('Paid 0.01 USD to News Site.'); // its manifest route has no title
    expect(dialogs).toHaveLength(1);
    expect(await page.locator('h1').first().textContent()).toBe('Forty-three, and why it matters');
  });

  it('going back: the paid page opens again with the receipt, without a new charge', async () => {
    await page.goBack();
    await poll(() => page.url()).toBe(`${w.shopUrl}/articles/42.html`);
    await poll(() => panel().getByRole('status').textContent()).toBe(
      'Opened with your receipt: no new charge.',
    );
    expect(await page.locator('article h1').textContent()).toBe('The answer, at last');
    expect(dialogs).toHaveLength(1);
  });

  it('refusing the confirm dialog pays nothing and stays on the page', async () => {
    await page.goto(`${w.shopUrl}/index.html`);
    answer = 'dismiss';
    await page.getByRole('link', { name: 'Live scores' }).click();
    await poll(() => panel().getByRole('status').textContent()).toBe('Not paid.');
    expect(dialogs).toHaveLength(2);
    expect(dialogs[1]).toMatch(/^Pay 0\.025 USD to News Site \(news-site\) for “Live scores”\?/);
    expect(page.url()).toBe(`${w.shopUrl}/index.html`);
    answer = 'accept';
  });

  it("the buyer's account page shows the new entries", async () => {
    // The merchant deposits within tens of milliseconds: 0.02 + 0.01 USD.
    let balance = 0;
    await until(async () => {
      balance = (await w.admin.admin.getAccount('reader-1')).balance;
      return balance === -30_000;
    }, 'the deposit').catch((e: Error) => {
      throw new Error(`${e.message}: the buyer's balance is ${balance}`);
    });
    await page.goto(`${w.billingUrl}/`);
    await page.getByLabel('API token').fill(w.buyer.token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await poll(() => page.locator('h1').textContent()).toBe('Buyer account A Reader (reader-1)');
    expect(page.url()).toBe(`${w.billingUrl}/`);
    const facts = (await page.locator('dl.facts').textContent()) ?? '';
    expect(facts).toContain('Balance-0.03 USD');
    expect(facts).toContain('Available to spend9.97 USD');
    const rows = page.getByRole('table', { name: 'Ledger entries' }).locator('tbody tr');
    expect(await rows.count()).toBe(2);
    const newest = (await rows.nth(0).textContent()) ?? '';
    expect(newest).toContain('to news-site');
    expect(newest).toContain('GET /articles/43.html');
    expect(newest).toContain('-0.01 USD');
    expect((await rows.nth(1).textContent()) ?? '').toContain('GET /articles/42.html');
    expect(await page.locator('figure.chart svg[role="img"]').count()).toBe(1);
    await page.getByRole('button', { name: 'Show what a credential issued now allows' }).click();
    await poll(() => page.locator('#credential').textContent()).toContain('Offline limit per merchant5 USD');
    await w.shot('3-buyer-account');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await poll(() => page.getByRole('button', { name: 'Sign in' }).count()).toBe(1);
  });

  it("the merchant's account page shows the credit", async () => {
    await page.getByLabel('API token').fill(w.merchant.token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await poll(() => page.locator('h1').textContent()).toBe('Merchant account News Site (news-site)');
    // 0.03 USD less 5% commission.
    expect((await page.locator('dl.facts').textContent()) ?? '').toContain('Balance0.0285 USD');
    const credited = await page
      .getByRole('table', { name: 'Ledger entries' })
      .locator('tbody tr')
      .allTextContents();
    expect(credited.join('\n')).toMatch(/deposit/);
    expect(credited.join('\n')).toMatch(/0\.0285 USD|0\.019 USD/);
    await w.shot('4-merchant-account');
    await page.getByRole('button', { name: 'Sign out' }).click();
  });

  it('the operator disables the buyer through the page', async () => {
    await page.getByLabel('API token').fill(w.billing.adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await poll(() => page.locator('h1').textContent()).toBe('Accounts');
    const row = page.locator('tr[data-account="reader-1"]');
    expect(await row.locator('td').nth(2).textContent()).toBe('active');
    await row.getByRole('button', { name: 'Disable reader-1' }).click();
    await poll(() => page.getByRole('status').textContent()).toBe('Saved: reader-1 is now disabled.');
    expect(dialogs.at(-1)).toMatch(/^Disable reader-1\?/);
    expect((await w.admin.admin.getAccount('reader-1')).status).toBe('disabled');
    await w.shot('5-admin-disabled-buyer');
  });
});
