/**
 * The end-to-end demo (`npm run demo`, `micropay demo`): an embedded billing
 * server on SQLite in a temporary folder, a buyer and a merchant account,
 * the example Express merchant (examples/express-basic) on a free port, and
 * a wallet that buys an article, reads it again with the receipt, and waits
 * for the merchant's deposit to be credited. It prints each step and the
 * final balances, and leaves nothing behind: servers closed, folder removed.
 *
 * The merchant app comes from the repository's examples/ folder, which is
 * not part of the published package, so it is loaded at run time (or passed
 * in as `merchantApp`).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createBillingClient } from '../billing-client/index.js';
import { createBillingServer } from '../billing-server/index.js';
import type { MicropayOptions } from '../middleware/core.js';
import { MicropayError } from '../protocol/errors.js';
import { formatMoney } from '../protocol/money.js';
import { createWallet, memoryKeyStore } from '../wallet/index.js';

/** What the demo needs of a merchant app: an Express-like app with its micropay middleware attached. */
export interface DemoMerchantApp {
  listen(port: number, host: string): Server;
  readonly micropay: { close(): Promise<void> };
}

/** Builds the merchant app; examples/express-basic's `createApp` is one. */
export type DemoMerchantFactory = (
  options: Omit<MicropayOptions, 'prices' | 'manifest' | 'dynamicPrices'>,
) => DemoMerchantApp;

/** Options of `runDemo`. */
export interface DemoOptions {
  /** Where the steps are printed. */
  stdout: { write(text: string): unknown };
  /** The merchant app. Default: `createApp` of examples/express-basic, found from `cwd`. */
  merchantApp?: DemoMerchantFactory;
  /** Where to look for examples/express-basic (this folder and its parents). Default: the process's. */
  cwd?: string;
}

/** What the demo ended with. */
export interface DemoResult {
  /** Final balances in micro-units: the buyer's (negative: it owes), the merchant's, and the fee account's. */
  balances: { buyer: number; merchant: number; fees: number };
  /** Account ids, for people reading along. */
  accounts: { buyer: string; merchant: string; fees: string };
  /** How long it took, milliseconds. */
  ms: number;
}

const ISSUER = 'demo-bank';
const BUYER = 'alice';
const MERCHANT = 'news-site';
const CURRENCY = 'USD';
const COMMISSION_BPS = 500;
const silent = { info() {}, warn() {}, error() {} };

/** Finds examples/express-basic/app.ts from `cwd` up, and loads its `createApp`. */
async function loadExample(cwd: string): Promise<DemoMerchantFactory> {
  let dir = cwd;
  for (;;) {
    const file = join(dir, 'examples', 'express-basic', 'app.ts');
    if (existsSync(file)) {
      try {
        const mod = (await import(pathToFileURL(file).href)) as { createApp?: DemoMerchantFactory };
        if (typeof mod.createApp === 'function') return mod.createApp;
      } catch (e) {
        throw new MicropayError(
          'demo_unavailable',
          `Could not load ${file} (${(e as Error).message}); run the demo with "npm run demo", which runs TypeScript.`,
          { cause: e },
        );
      }
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new MicropayError(
    'demo_unavailable',
    'The demo runs the example merchant of the micropay repository (examples/express-basic): run "npm run demo" in a clone of it.',
  );
}

function listen(app: DemoMerchantApp): Promise<{ server: Server; url: string }> {
  return new Promise((resolve, reject) => {
    const server = app.listen(0, '127.0.0.1');
    server.once('error', reject);
    server.once('listening', () => {
      resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
    });
  });
}

/**
 * Runs the demo and resolves the final balances (the buyer's is -2000, the merchant's 2000 less the fee).
 * @example
 * const { balances } = await runDemo({ stdout: process.stdout });
 */
export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const t0 = performance.now();
  const out = (line: string) => options.stdout.write(`${line}\n`);
  const money = (amt: number) => formatMoney(amt, CURRENCY);
  const factory = options.merchantApp ?? (await loadExample(options.cwd ?? process.cwd()));
  const dir = mkdtempSync(join(tmpdir(), 'micropay-demo-'));
  const cleanup: (() => Promise<void>)[] = [];
  try {
    out('micropay demo: a buyer pays a merchant 0.002 USD for an article, over HTTP 402.\n');

    const billing = await createBillingServer({
      issuer: ISSUER,
      db: join(dir, 'billing.db'),
      keyDir: join(dir, 'keys'),
      logger: false,
    });
    cleanup.push(() => billing.close());
    const billingUrl = await billing.listen(0, '127.0.0.1');
    out(`1. Billing server "${ISSUER}" on ${billingUrl} (SQLite in ${dir})`);

    const admin = createBillingClient({ url: billingUrl, token: billing.adminToken }).admin;
    const buyer = await admin.createAccount({
      id: BUYER,
      role: 'buyer',
      currency: CURRENCY,
      name: 'Alice',
      creditLimit: 10_000_000,
      dailyLimit: 5_000_000,
    });
    const merchant = await admin.createAccount({
      id: MERCHANT,
      role: 'merchant',
      currency: CURRENCY,
      name: 'News Site',
      commissionBps: COMMISSION_BPS,
    });
    out(
      `2. Accounts: buyer "${BUYER}" (credit ${money(10_000_000)}, ${money(5_000_000)} a day), merchant "${MERCHANT}" (${COMMISSION_BPS / 100}% commission)`,
    );

    const app = factory({
      merchant: MERCHANT,
      billing: { url: billingUrl, token: merchant.token },
      deposits: { maxDelayMs: 50, retryBaseMs: 50 },
      logger: silent,
    });
    cleanup.push(() => app.micropay.close());
    const shop = await listen(app);
    cleanup.push(
      () =>
        new Promise<void>((resolve) => {
          shop.server.close(() => resolve());
          shop.server.closeAllConnections();
        }),
    );
    out(
      `3. Merchant: examples/express-basic on ${shop.url} (articles at 0.002 USD, deposits batched every 50 ms)`,
    );

    const article = `${shop.url}/articles/42`;
    const unpaid = await fetch(article, { headers: { accept: 'application/json' } });
    const challenge = (await unpaid.json()) as { message?: string };
    out(`4. GET /articles/42 without paying: ${unpaid.status} Payment Required, "${challenge.message}"`);

    const wallet = createWallet({
      billingUrl,
      token: buyer.token,
      keyStore: memoryKeyStore(),
      policy: { maxPerPayment: '0.01 USD', maxPerDay: '1 USD' },
    });
    const first = await wallet.request(article);
    const body = (await first.response.json()) as { title?: string };
    const p = first.payment;
    if (first.via !== 'paid' || !p)
      throw new MicropayError('demo_failed', 'The wallet did not pay for the article.');
    out(
      `5. The wallet paid ${money(p.amt)} to ${p.name ?? p.mer} (order ${p.oid}) and got ${first.response.status} "${body.title}"`,
    );

    const again = await wallet.request(article);
    await again.response.arrayBuffer();
    if (again.via !== 'receipt')
      throw new MicropayError('demo_failed', 'The second read was not opened by the receipt.');
    out(`6. Read again with the merchant's receipt: ${again.response.status}, no second charge`);

    const expected = p.amt - Math.floor((p.amt * COMMISSION_BPS) / 10_000);
    const t1 = performance.now();
    let merchantBalance = 0;
    for (;;) {
      merchantBalance = (await admin.getAccount(MERCHANT)).balance;
      if (merchantBalance >= expected) break;
      if (performance.now() - t1 > 5000) {
        throw new MicropayError('demo_failed', 'The deposit was not credited within 5 seconds.');
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    out(`7. The merchant's deposit was credited ${Math.round(performance.now() - t1)} ms later`);

    const feesId = `fees:${CURRENCY}`;
    const [b, m, f] = await Promise.all([
      admin.getAccount(BUYER),
      admin.getAccount(MERCHANT),
      admin.getAccount(feesId),
    ]);
    const balances = { buyer: b.balance, merchant: m.balance, fees: f.balance };
    const w = Math.max(BUYER.length, MERCHANT.length, feesId.length);
    out('8. Balances:');
    out(`     buyer     ${BUYER.padEnd(w)}  ${money(balances.buyer).padStart(12)}`);
    out(`     merchant  ${MERCHANT.padEnd(w)}  ${money(balances.merchant).padStart(12)}`);
    out(`     fees      ${feesId.padEnd(w)}  ${money(balances.fees).padStart(12)}`);
    const ms = Math.round(performance.now() - t0);
    out(`\nDone in ${(ms / 1000).toFixed(1)} s. Try it yourself: examples/express-basic/README.md`);
    return { balances, accounts: { buyer: BUYER, merchant: MERCHANT, fees: feesId }, ms };
  } finally {
    for (const close of cleanup.reverse()) await close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}
