/**
 * Test harness of the billing server: a server on SQLite (temp file) or on
 * PostgreSQL (a fresh random schema, dropped at the end), a settable clock,
 * and helpers to create accounts, fetch credentials and sign orders.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import request from 'supertest';
import { PostgresDb } from '../../src/billing-server/db/postgres.js';
import { SqliteDb } from '../../src/billing-server/db/sqlite.js';
import {
  type BillingServer,
  type BillingServerOptions,
  createBillingServer,
} from '../../src/billing-server/index.js';
import { Store } from '../../src/billing-server/store.js';
import { generateSigningKey, type Order, type SigningKey, signToken, tid } from '../../src/protocol/index.js';
import { pgUrl } from '../helpers/services.js';

export type BackendName = 'sqlite' | 'postgres';
/** The backends every suite runs on; PostgreSQL only when the service is there. */
export const backends: { name: BackendName; skip: boolean }[] = [
  { name: 'sqlite', skip: false },
  { name: 'postgres', skip: !pgUrl },
];

/** A mutable Unix-seconds clock. */
export interface Clock {
  t: number;
}

export interface Buyer {
  id: string;
  token: string;
  key: SigningKey;
  cert: string;
  cid: string;
  lim: number;
}

export interface Harness {
  server: BillingServer;
  backend: BackendName;
  clock: Clock;
  dir: string;
  /** Options to open the same database and key directory again. */
  opts: BillingServerOptions;
  admin: string;
  call(
    method: 'get' | 'post' | 'patch' | 'delete' | 'put',
    url: string,
    token?: string | null,
    body?: unknown,
  ): request.Test;
  account(body: Record<string, unknown>): Promise<{ id: string; token: string; tokenId: string }>;
  buyer(id: string, fields?: Record<string, unknown>): Promise<Buyer>;
  merchant(id: string, fields?: Record<string, unknown>): Promise<{ id: string; token: string }>;
  /** A fresh credential for a buyer (same key). */
  recert(b: Buyer): Promise<Buyer>;
  order(b: Buyer, o: Partial<Order> & { mer: string }): string;
  /** Reopens the server on the same storage (after `close`). */
  reopen(extra?: Partial<BillingServerOptions>): Promise<BillingServer>;
  close(): Promise<void>;
}

let counter = 0;
/** A random order id. */
export const oid = (): string => `o${randomBytes(12).toString('base64url')}${(counter++).toString(36)}`;

async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: pgUrl! });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await c.end();
  }
}

/** Starts a billing server on `backend` with a settable clock. */
export async function startServer(
  backend: BackendName,
  extra: Partial<BillingServerOptions> = {},
): Promise<Harness> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'micropay-billing-'));
  const clock: Clock = { t: Math.floor(Date.now() / 1000) };
  const schema = `mpb_${randomBytes(6).toString('hex')}`;
  const opts: BillingServerOptions = {
    issuer: 'bank-a',
    keyDir: path.join(dir, 'keys'),
    logger: false,
    adminToken: `admin-${randomBytes(12).toString('hex')}`,
    now: () => clock.t,
    ...(backend === 'postgres' ? { db: pgUrl!, pgSchema: schema } : { db: path.join(dir, 'billing.db') }),
    ...extra,
  };
  let server = await createBillingServer(opts);
  // One real listening socket per server: cheaper than supertest starting a server per request.
  let url = await server.listen(0, '127.0.0.1');
  const h: Harness = {
    get server() {
      return server;
    },
    backend,
    clock,
    dir,
    opts,
    admin: opts.adminToken!,
    call(method, path, token, body) {
      let r = request(url)[method](path);
      if (token) r = r.set('Authorization', `Bearer ${token}`);
      if (body !== undefined) r = r.send(body as object);
      return r;
    },
    async account(body) {
      const r = await h.call('post', '/v1/admin/accounts', h.admin, body);
      if (r.status !== 201) throw new Error(`account: ${r.status} ${JSON.stringify(r.body)}`);
      return { id: r.body.account.id, token: r.body.token, tokenId: r.body.tokenId };
    },
    async buyer(id, fields = {}) {
      const a = await h.account({ id, role: 'buyer', currency: 'USD', creditLimit: 10_000_000, ...fields });
      return h.recert({ id, token: a.token, key: generateSigningKey(), cert: '', cid: '', lim: 0 });
    },
    async merchant(id, fields = {}) {
      const a = await h.account({ id, role: 'merchant', currency: 'USD', ...fields });
      return { id, token: a.token };
    },
    async recert(b) {
      const r = await h.call('post', '/v1/certificates', b.token, { key: b.key.x });
      if (r.status !== 201) throw new Error(`certificate: ${r.status} ${JSON.stringify(r.body)}`);
      return { ...b, cert: r.body.cert, cid: tid(r.body.cert), lim: r.body.lim };
    },
    order(b, o) {
      const payload: Order = {
        typ: 'mp-order',
        v: 1,
        cid: b.cid,
        res: 'GET /articles/1',
        amt: 1000,
        cur: 'USD',
        iat: clock.t,
        oid: oid(),
        ...o,
      };
      return signToken(payload, b.key);
    },
    async reopen(more = {}) {
      server = await createBillingServer({ ...opts, ...more });
      url = await server.listen(0, '127.0.0.1');
      return server;
    },
    async close() {
      await server.close();
      if (backend === 'postgres') await dropSchema(schema);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}

/**
 * The ledger check, read straight from the storage through a second
 * connection: per currency, the sum of balances and of entries (both must be
 * zero), and accounts whose balance differs from the sum of their entries.
 */
export async function audit(
  h: Harness,
): Promise<{ balances: Record<string, number>; entries: Record<string, number>; mismatched: string[] }> {
  const db =
    h.backend === 'postgres'
      ? new PostgresDb({ url: h.opts.db!, schema: h.opts.pgSchema!, max: 1 })
      : new SqliteDb(h.opts.db!);
  try {
    return await new Store(db).audit();
  } finally {
    await db.close();
  }
}

/** Every currency sums to zero, in balances and in entries, and every balance equals its entries. */
export async function expectBalanced(h: Harness): Promise<void> {
  const a = await audit(h);
  for (const [cur, sum] of Object.entries(a.balances))
    if (sum !== 0) throw new Error(`${cur} balances sum to ${sum}`);
  for (const [cur, sum] of Object.entries(a.entries))
    if (sum !== 0) throw new Error(`${cur} entries sum to ${sum}`);
  if (a.mismatched.length > 0) throw new Error(`balances differ from entries for ${a.mismatched.join(', ')}`);
}
