/**
 * The proxy example in one command: `npx tsx examples/proxy/run.ts` starts a
 * billing server (SQLite in memory) with a merchant and a buyer, the small
 * site of `site.ts`, and micropay-proxy in front of it from `micropay.yaml`;
 * then a wallet buys an article through the proxy, reads it again with the
 * receipt, and the deposit reaches the merchant's balance. With `--once` it
 * stops there; otherwise it keeps running until Ctrl-C so you can try it
 * with curl or `micropay wallet`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pino from 'pino';
import { createBillingClient } from '../../src/billing-client/index.js';
import { createBillingServer } from '../../src/billing-server/index.js';
import { createProxy, loadProxyConfig } from '../../src/proxy/index.js';
import { createWallet, memoryKeyStore } from '../../src/wallet/index.js';
import { startSite } from './site.js';

export const CONFIG = fileURLToPath(new URL('./micropay.yaml', import.meta.url));

/** What the walk-through saw. */
export interface ExampleRun {
  proxyUrl: string;
  /** Status of the article without paying (402). */
  unpaid: number;
  /** How the wallet got the article the first and second time (`paid`, then `receipt`), and the free one. */
  first: string;
  second: string;
  free: string;
  /** Balances after the deposit, micro-units. */
  merchant: number;
  buyer: number;
  /** Stops everything (the proxy drains and deposits first). */
  stop(): Promise<void>;
}

/** Runs the example; `log` receives what it has to say. */
export async function runExample(
  o: { log?: (line: string) => void; proxyPort?: number; logLevel?: string } = {},
): Promise<ExampleRun> {
  const log = o.log ?? ((l: string) => process.stdout.write(`${l}\n`));
  const tmp = mkdtempSync(join(tmpdir(), 'micropay-proxy-example-'));

  // 1. A billing server with a merchant (5% commission) and a buyer.
  const billing = await createBillingServer({ issuer: 'bank-a', db: ':memory:', logger: false });
  const billingUrl = await billing.listen(0, '127.0.0.1');
  const admin = createBillingClient({ url: billingUrl, token: billing.adminToken }).admin;
  const merchant = await admin.createAccount({
    id: 'news-site',
    role: 'merchant',
    currency: 'USD',
    commissionBps: 500,
  });
  const buyer = await admin.createAccount({
    id: 'alice',
    role: 'buyer',
    currency: 'USD',
    creditLimit: 10_000_000,
    dailyLimit: 5_000_000,
  });
  log(`billing server  ${billingUrl}`);

  // 2. The site, which knows nothing of payments.
  const site = await startSite();
  log(`site            ${site.url}`);

  // 3. The proxy in front of it, configured by micropay.yaml (${...} from this environment).
  const config = loadProxyConfig(CONFIG, {
    ...process.env,
    MERCHANT_TOKEN: merchant.token,
    BILLING_URL: billingUrl,
    SITE_URL: site.url,
    PROXY_PORT: String(o.proxyPort ?? process.env.PROXY_PORT ?? 8080),
    RECEIPT_KEY_FILE: process.env.RECEIPT_KEY_FILE ?? join(tmp, 'receipt.key'),
    LOG_LEVEL: o.logLevel ?? process.env.LOG_LEVEL ?? 'warn',
  });
  const proxy = createProxy(config, { logger: pino({ level: config.logLevel }) });
  const proxyUrl = await proxy.listen();
  log(`proxy           ${proxyUrl}  (paywall in front of the site)`);

  // 4. Without paying: 402 and the offer.
  const unpaid = await fetch(`${proxyUrl}/articles/42`);
  const offer = ((await unpaid.json()) as { offer: { amt: number; cur: string; res: string } }).offer;
  log(
    `GET /articles/42 without paying -> ${unpaid.status}, offer ${offer.amt} micro-${offer.cur} for "${offer.res}"`,
  );

  // 5. A wallet pays, then reads again with the receipt; the free article costs nothing.
  const wallet = createWallet({
    billingUrl,
    token: buyer.token,
    keyStore: memoryKeyStore(),
    policy: { maxPerPayment: '0.05 USD', maxPerDay: '1 USD' },
  });
  const first = await wallet.request(`${proxyUrl}/articles/42`);
  log(
    `wallet GET /articles/42 -> ${first.response.status} via ${first.via}: ${(await first.response.text()).match(/Thank you, \w+/)?.[0]}`,
  );
  const second = await wallet.request(`${proxyUrl}/articles/42`);
  await second.response.arrayBuffer();
  log(`wallet GET /articles/42 again -> ${second.response.status} via ${second.via} (no charge)`);
  const free = await wallet.request(`${proxyUrl}/articles/free-intro`);
  await free.response.arrayBuffer();
  log(`wallet GET /articles/free-intro -> ${free.response.status} via ${free.via}`);

  // 6. The deposit: the proxy batches charged orders to the billing server.
  let m = 0;
  for (let i = 0; i < 100 && m === 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    m = (await admin.getAccount('news-site')).balance;
  }
  const b = (await admin.getAccount('alice')).balance;
  log(`balances: news-site ${m}, alice ${b} (micro-USD; 5% commission to the billing server)`);

  const stop = async () => {
    await proxy.close();
    await site.close();
    await billing.close();
    rmSync(tmp, { recursive: true, force: true });
  };
  return {
    proxyUrl,
    unpaid: unpaid.status,
    first: first.via,
    second: second.via,
    free: free.via,
    merchant: m,
    buyer: b,
    stop,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const once = process.argv.includes('--once');
  const run = await runExample();
  if (once) await run.stop();
  else {
    process.stdout.write(
      `\nTry it: curl -i ${run.proxyUrl}/articles/43   (402 with the offer)\n` +
        `        curl ${run.proxyUrl}/_micropay/metrics\nCtrl-C stops (the proxy drains first).\n`,
    );
    const stop = () => run.stop().then(() => process.exit(0));
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  }
}
