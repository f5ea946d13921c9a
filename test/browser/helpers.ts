/**
 * The world of the browser tests: a site compiled with `micropay compile`
 * (examples/compile) served by an Express merchant with the micropay
 * middleware, a real billing server that lets the site's origin in by CORS,
 * and Debian's Chromium driven by playwright-core with a fresh profile.
 * Screenshots go to `test-artifacts/browser/` (gitignored).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import express from 'express';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { type BillingClient, createBillingClient } from '../../src/billing-client/index.js';
import { type BillingServer, createBillingServer } from '../../src/billing-server/index.js';
import { main } from '../../src/cli/micropay.js';
import { type MicropayExpressMiddleware, micropay } from '../../src/middleware/express.js';

const ROOT = resolve(__dirname, '../..');
/** Where screenshots are kept. */
export const ARTIFACTS = join(ROOT, 'test-artifacts', 'browser');

/** Chromium's flags for a quiet, headless, sandbox-free run on a shared machine. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-quic',
  '--no-first-run',
  '--disable-sync',
];

export interface BrowserWorld {
  billing: BillingServer;
  billingUrl: string;
  admin: BillingClient;
  shopUrl: string;
  merchant: { id: string; token: string };
  buyer: { id: string; token: string };
  shop: MicropayExpressMiddleware;
  /** A fresh Chromium profile: nothing stored, no wallet. */
  context: BrowserContext;
  page: Page;
  /** Saves a full-page screenshot as `test-artifacts/browser/<name>.png`. */
  shot(name: string, p?: Page): Promise<void>;
  close(): Promise<void>;
}

class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _enc: BufferEncoding, cb: () => void): void {
    this.text += String(chunk);
    cb();
  }
}

const silent = { info() {}, warn() {}, error() {} };

/** Runs `micropay compile` in process over examples/compile's site and rules, for `merchant`. */
async function compileSite(out: string, merchant: string): Promise<void> {
  const stdout = new Sink();
  const stderr = new Sink();
  const code = await main(
    [
      'compile',
      join(ROOT, 'examples/compile/site'),
      '-o',
      out,
      '--rules',
      join(ROOT, 'examples/compile/prices.yaml'),
      '--merchant',
      merchant,
    ],
    { stdout, stderr, env: {}, cwd: ROOT },
  );
  if (code !== 0) throw new Error(`micropay compile failed (${code}): ${stderr.text}`);
}

function listen(server: Server): Promise<string> {
  return new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => res(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
  });
}

/** Starts everything; `executablePath` is Chromium's. */
export async function startBrowserWorld(executablePath: string): Promise<BrowserWorld> {
  const tmp = mkdtempSync(join(tmpdir(), 'micropay-browser-'));
  const out = join(tmp, 'site');
  const profile = join(tmp, 'profile');
  mkdirSync(ARTIFACTS, { recursive: true });

  // The shop's socket first: the billing server must know its origin (CORS) before the shop knows the bank.
  const server = http.createServer();
  const shopUrl = await listen(server);
  const billing = await createBillingServer({
    issuer: 'bank-a',
    db: ':memory:',
    logger: false,
    adminToken: `admin-${randomBytes(12).toString('hex')}`,
    corsOrigins: [shopUrl],
  });
  const billingUrl = await billing.listen(0, '127.0.0.1');
  const admin = createBillingClient({ url: billingUrl, token: billing.adminToken });
  const m = await admin.admin.createAccount({
    id: 'news-site',
    role: 'merchant',
    currency: 'USD',
    commissionBps: 500,
    name: 'News Site',
  });
  const b = await admin.admin.createAccount({
    id: 'reader-1',
    role: 'buyer',
    currency: 'USD',
    creditLimit: 10_000_000,
    dailyLimit: 5_000_000,
    name: 'A Reader',
  });

  await compileSite(out, 'news-site');
  const shop = micropay({
    merchant: 'news-site',
    name: 'News Site',
    billing: { url: billingUrl, token: m.token },
    manifest: join(out, 'micropay-manifest.json'),
    dynamicPrices: { livePrice: () => '0.025 USD' },
    deposits: { maxDelayMs: 30, retryBaseMs: 30 },
    logger: silent,
  });
  const app = express();
  app.disable('x-powered-by');
  app.use(shop);
  app.use(express.static(out));
  server.on('request', app);

  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1000, height: 800 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    billing,
    billingUrl,
    admin,
    shopUrl,
    merchant: { id: 'news-site', token: m.token },
    buyer: { id: 'reader-1', token: b.token },
    shop,
    context,
    page,
    async shot(name, p = page) {
      await p.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
    },
    async close() {
      await context.close().catch(() => {});
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
      await shop.close();
      await billing.close();
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

/** Waits (up to 10 s) until `fn` resolves true. */
export async function until(fn: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
