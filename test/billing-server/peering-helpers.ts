/**
 * Two (or more) real billing servers that are peers (PROTOCOL.md section 9):
 * bank-a on SQLite, bank-b on PostgreSQL when the service is there (else on
 * SQLite too), each on its own port with its own data, restartable on the
 * same port and data; a merchant behind the real Express middleware at a
 * bank; buyers that pay offers; the ledger audit and the settlement report.
 * Timers are tuned down so claims and key refreshes happen within tens of ms.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import express from 'express';
import pg from 'pg';
import pino from 'pino';
import request from 'supertest';
import { type BillingClient, createBillingClient } from '../../src/billing-client/index.js';
import { PostgresDb } from '../../src/billing-server/db/postgres.js';
import { SqliteDb } from '../../src/billing-server/db/sqlite.js';
import type { Db } from '../../src/billing-server/db/types.js';
import {
  type BillingServer,
  type BillingServerOptions,
  createBillingServer,
} from '../../src/billing-server/index.js';
import { Store } from '../../src/billing-server/store.js';
import { micropay } from '../../src/middleware/express.js';
import { b64urlEncode } from '../../src/protocol/base64url.js';
import { generateSigningKey, type SigningKey, signToken, tid } from '../../src/protocol/crypto.js';
import { formatPaymentHeader } from '../../src/protocol/header.js';
import type { Offer } from '../../src/protocol/messages.js';
import { pgUrl } from '../helpers/services.js';

export type Backend = 'sqlite' | 'postgres';
/** bank-b's backend: PostgreSQL when it runs here, else SQLite (both banks then on SQLite). */
export const secondBackend: Backend = pgUrl ? 'postgres' : 'sqlite';

/** Fast timers for tests: key refetch and claim retries within tens of milliseconds. */
export const FAST: Partial<BillingServerOptions> = {
  peerKeys: { tickMs: 100, minRefetchMs: 100, backoffBaseMs: 50, backoffMaxMs: 300, timeoutMs: 2000 },
  claims: { intervalMs: 100, backoffBaseMs: 50, backoffMaxMs: 400, timeoutMs: 3000, leaseMs: 5000 },
};

export interface Bank {
  issuer: string;
  backend: Backend;
  server: BillingServer;
  url: string;
  port: number;
  admin: BillingClient;
  adminToken: string;
  opts: BillingServerOptions;
  /** Creates an account; answers its token. */
  account(body: Record<string, unknown>): Promise<string>;
  /** A read-only connection to this bank's database (closed by `close`). */
  db(): Db;
  /** Stops the server (the data stays). */
  stop(): Promise<void>;
  /** Starts it again on the same port and data. */
  restart(): Promise<void>;
  /** Stops it and deletes its data. */
  close(): Promise<void>;
}

async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: pgUrl! });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await c.end();
  }
}

/** Starts a billing server for `issuer` on `backend`. */
export async function startBank(
  issuer: string,
  backend: Backend,
  extra: Partial<BillingServerOptions> = {},
): Promise<Bank> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `micropay-${issuer}-`));
  const schema = `mpp_${randomBytes(6).toString('hex')}`;
  const adminToken = `admin-${randomBytes(12).toString('hex')}`;
  const opts: BillingServerOptions = {
    issuer,
    keyDir: path.join(dir, 'keys'),
    logger: false,
    adminToken,
    ...(backend === 'postgres' ? { db: pgUrl!, pgSchema: schema } : { db: path.join(dir, 'billing.db') }),
    ...FAST,
    ...extra,
  };
  let server = await createBillingServer(opts);
  const url = await server.listen(0, '127.0.0.1');
  const port = Number(new URL(url).port);
  let reader: Db | null = null;
  let running = true;
  const bank: Bank = {
    issuer,
    backend,
    get server() {
      return server;
    },
    url,
    port,
    admin: createBillingClient({ url, token: adminToken, retries: 0 }),
    adminToken,
    opts,
    async account(body) {
      const r = await request(url)
        .post('/v1/admin/accounts')
        .set('Authorization', `Bearer ${adminToken}`)
        .send(body);
      if (r.status !== 201) throw new Error(`account: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body.token as string;
    },
    db() {
      reader ??=
        backend === 'postgres' ? new PostgresDb({ url: pgUrl!, schema, max: 1 }) : new SqliteDb(opts.db!);
      return reader;
    },
    async stop() {
      if (!running) return;
      running = false;
      await server.close();
    },
    async restart() {
      server = await createBillingServer(opts);
      await server.listen(port, '127.0.0.1');
      running = true;
    },
    async close() {
      await bank.stop();
      await reader?.close();
      reader = null;
      if (backend === 'postgres') await dropSchema(schema);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return bank;
}

/**
 * Registers `a` and `b` with each other, both ways, with tokens; `fee` is what each keeps as issuer.
 * Answers the tokens: `aAtB` is what `a` presents at `b`, `bAtA` what `b` presents at `a`.
 */
export async function link(
  a: Bank,
  b: Bank,
  fee: { a?: number; b?: number } = {},
): Promise<{ aAtB: string; bAtA: string }> {
  const atA = await a.admin.admin.addPeer({ issuer: b.issuer, url: b.url, feeBps: fee.a ?? 0 });
  const atB = await b.admin.admin.addPeer({
    issuer: a.issuer,
    url: a.url,
    token: atA.token,
    feeBps: fee.b ?? 0,
  });
  await a.admin.admin.updatePeer(b.issuer, { token: atB.token });
  return { aAtB: atB.token, bAtA: atA.token };
}

/** The peers' keys `bank` publishes, by issuer. */
export async function publishedPeers(bank: Bank): Promise<Map<string, string[]>> {
  const r = await request(bank.url).get('/.well-known/micropay/keys').expect(200);
  return new Map(
    (r.body.peers as { issuer: string; keys: { kid: string }[] }[]).map((p) => [
      p.issuer,
      p.keys.map((k) => k.kid),
    ]),
  );
}

/** A merchant account at `bank` behind the real Express middleware. */
export interface Shop {
  id: string;
  token: string;
  app: express.Express;
  billing: BillingClient;
  close(): Promise<void>;
}

/** Creates merchant `id` at `bank` (5% commission) and an Express app: 0.002 USD an article, 1.50 USD a big one (over the online threshold). */
export async function shop(bank: Bank, id: string): Promise<Shop> {
  const token = await bank.account({ id, role: 'merchant', currency: 'USD', commissionBps: 500 });
  const billing = createBillingClient({ url: bank.url, token });
  // The shared resolver, created first with a short refetch interval: a kid it has never seen is looked up at once.
  billing.keyResolver({ minRefetchMs: 100 });
  const mw = micropay({
    merchant: id,
    billing,
    prices: { 'GET /articles/:id': '0.002 USD', 'GET /big/:id': '1.50 USD' },
    deposits: { maxBatch: 50, maxDelayMs: 20 },
    logger: pino({ level: 'silent' }),
  });
  const app = express();
  app.use(mw);
  app.get(['/articles/:id', '/big/:id'], (_req, res) => {
    res.json({ ok: true });
  });
  return { id, token, app, billing, close: () => mw.close() };
}

/** A buyer account at a bank, with a key and a credential. */
export interface Payer {
  id: string;
  bank: Bank;
  token: string;
  key: SigningKey;
  cert: string;
  /** A fresh credential (after a key rotation at its bank, signed by the new key). */
  renew(): Promise<void>;
  /** The Micropay-Payment header paying `offer`. */
  pay(offer: Offer, over?: Partial<{ oid: string; amt: number }>): string;
  /** An order for `offer` as a token. */
  order(
    offer: Pick<Offer, 'mer' | 'res' | 'amt' | 'cur'>,
    over?: Partial<{ oid: string; iat: number }>,
  ): string;
}

/** Creates buyer `id` at `bank` (credit 10 USD; daily limit, so `cert.lim`, `lim` micro-units). */
export async function payer(bank: Bank, id: string, lim = 5_000_000): Promise<Payer> {
  const token = await bank.account({
    id,
    role: 'buyer',
    currency: 'USD',
    creditLimit: 10_000_000,
    dailyLimit: lim,
  });
  const client = createBillingClient({ url: bank.url, token });
  const key = generateSigningKey();
  const p: Payer = {
    id,
    bank,
    token,
    key,
    cert: '',
    async renew() {
      p.cert = (await client.createCertificate(key.x)).cert;
    },
    order(offer, over = {}) {
      return signToken(
        {
          typ: 'mp-order',
          v: 1,
          cid: tid(p.cert),
          mer: offer.mer,
          res: offer.res,
          amt: offer.amt,
          cur: offer.cur,
          iat: over.iat ?? Math.floor(Date.now() / 1000),
          oid: over.oid ?? b64urlEncode(randomBytes(16)),
        },
        key,
      );
    },
    pay(offer, over = {}) {
      const amt = over.amt ?? offer.amt;
      return formatPaymentHeader({ kind: 'order', cert: p.cert, order: p.order({ ...offer, amt }, over) });
    },
  };
  await p.renew();
  return p;
}

/** Fetches `path` at the shop unpaid (402), pays the offer, and answers the paid response. */
export async function buy(s: Shop, who: Payer, pathname: string): Promise<request.Response> {
  const offer = (await request(s.app).get(pathname).expect(402)).body.offer as Offer;
  return request(s.app).get(pathname).set('Micropay-Payment', who.pay(offer));
}

/** The ledger check of one bank, from its database: every currency sums to zero, every balance equals its entries. */
export async function expectBalanced(bank: Bank): Promise<void> {
  const a = await new Store(bank.db()).audit();
  for (const [cur, sum] of Object.entries(a.balances))
    if (sum !== 0) throw new Error(`${bank.issuer}: ${cur} balances sum to ${sum}`);
  for (const [cur, sum] of Object.entries(a.entries))
    if (sum !== 0) throw new Error(`${bank.issuer}: ${cur} entries sum to ${sum}`);
  if (a.mismatched.length > 0)
    throw new Error(`${bank.issuer}: balances differ from entries for ${a.mismatched.join(', ')}`);
}

/** One bank's settlement line with `peer` in USD (zeros when there is none). */
export async function position(bank: Bank, peer: string): Promise<{ net: number; pending: number }> {
  const r = await request(bank.url)
    .get('/v1/admin/settlement')
    .set('Authorization', `Bearer ${bank.adminToken}`)
    .expect(200);
  const p = (r.body.positions as { peer: string; currency: string; net: number; pending: number }[]).find(
    (x) => x.peer === peer && x.currency === 'USD',
  );
  return { net: p?.net ?? 0, pending: p?.pending ?? 0 };
}

/** An account's balance at a bank. */
export async function balance(bank: Bank, id: string): Promise<number> {
  return (await bank.admin.admin.getAccount(id)).balance;
}

/** An http server for an app on an ephemeral port (closed with the returned function). */
export async function serve(app: express.Express): Promise<{ url: string; close(): Promise<void> }> {
  const s: Server = app.listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const { port } = s.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((r) => s.close(() => r())),
  };
}
