/**
 * The companion billing server of PROTOCOL.md sections 2, 3, 8 and 10:
 * credentials, deposits with the promise to merchants, online
 * authorizations, accounts and the admin API, on SQLite (embedded default)
 * or PostgreSQL. `createBillingServer` is the one factory; options and their
 * defaults are resolved here, once.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Express } from 'express';
import pino from 'pino';
import { isId, MicropayError } from '../protocol/index.js';
import { Claimer, type ClaimerOptions } from './claimer.js';
import { InterbankClaims } from './claims.js';
import { PostgresDb } from './db/postgres.js';
import { SqliteDb } from './db/sqlite.js';
import type { Db } from './db/types.js';
import { WebhookDispatcher, type WebhookDispatchOptions } from './dispatcher.js';
import { createApp } from './http.js';
import { KeyRing } from './keyring.js';
import { Ledger } from './ledger.js';
import { createMetrics } from './metrics.js';
import { PeerKeys, type PeerKeysOptions } from './peering.js';
import { hashToken, newToken, Store } from './store.js';
import { OrderChecker } from './verify.js';

export type { ClaimerOptions, SettlementPosition } from './claimer.js';
export type { WebhookDispatchOptions } from './dispatcher.js';
export type { AuthorizationResult, DepositAnswer, DepositResult } from './ledger.js';
export { EVENT_TYPES, type EventType } from './outbox.js';
export type { PeerKeysOptions } from './peering.js';
export type { Account, Entry, Peer } from './store.js';
export type { Delivery, DeliveryAttempt, Webhook } from './webhooks.js';

/** Options of `createBillingServer`. */
export interface BillingServerOptions {
  /** This server's issuer id (`iss` of its credentials), e.g. `'bank-a'`. */
  issuer: string;
  /** SQLite file path (default `'./billing.db'`), `':memory:'`, or a `postgres://...` URL. */
  db?: string;
  /**
   * PostgreSQL schema to use (created if missing), e.g. one per tenant or per test.
   * Default: the connection's `search_path` (usually `public`). Ignored for SQLite.
   */
  pgSchema?: string;
  /**
   * Where signing key seeds (and a generated admin token) are written, as 0600 files.
   * Default: `<dir of db>/keys`; for PostgreSQL `./.micropay/keys`; in memory for `':memory:'`.
   * Instances sharing one PostgreSQL database should share this directory (or `MICROPAY_SIGNING_KEY`).
   */
  keyDir?: string;
  /**
   * The admin API token. Else `MICROPAY_ADMIN_TOKEN`, else the one generated on first start into
   * `<keyDir>/admin-token` (0600), whose path (never the token) is logged.
   */
  adminToken?: string;
  /** Seconds a credential lives. Default 86400; at most 172800. */
  credentialLifetime?: number;
  /** Seconds an `mp-auth` reservation lives unused. Default 300. */
  authorizationLifetime?: number;
  /** Clock skew allowed on time checks, seconds. Default 60. */
  skew?: number;
  /** Freshness window of an order being authorized, seconds. Default 300. */
  freshness?: number;
  /** A pino logger, or `false` for none. Default: pino at `info` to stdout. Tokens and keys are never logged. */
  logger?: pino.Logger | false;
  /** Browser origins allowed by CORS (the browser wallet). Default: none. */
  corsOrigins?: string[];
  /** Unix seconds clock, for tests. Default: the system clock. */
  now?: () => number;
  /**
   * Webhook delivery from this instance (docs/webhooks.md): poll interval, timeout, retry
   * window and backoff. Default: on, every second, 10 s timeout, retried for 24 hours.
   */
  webhooks?: WebhookDispatchOptions;
  /**
   * Peers' key sets (PROTOCOL.md section 9): refetch on demand at most every 10 s per peer, the last
   * good set published for an hour while a peer is unreachable, 5 s fetch timeout. See `PeerKeysOptions`.
   */
  peerKeys?: PeerKeysOptions;
  /**
   * The claimer sending interbank claims from this instance: every second, up to 1000 orders a batch,
   * retried with backoff from 1 s to 5 min, 30 s timeout. See `ClaimerOptions`.
   */
  claims?: ClaimerOptions;
}

/** A running (or ready to listen) billing server. */
export interface BillingServer {
  /** The Express 5 app (supertest-able). */
  readonly app: Express;
  readonly issuer: string;
  /** The admin token, for in-process callers (demo, tests). Never logged. */
  readonly adminToken: string;
  /** Starts listening (default port 4000, host 127.0.0.1); resolves the base URL, e.g. `'http://127.0.0.1:4000'`. */
  listen(port?: number, host?: string): Promise<string>;
  /** Graceful: stops accepting, lets requests in flight finish, closes the database. */
  close(): Promise<void>;
}

function invalidConfig(message: string): MicropayError {
  return new MicropayError('invalid_config', message);
}

function seconds(name: string, v: number | undefined, dflt: number, max: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 0 || v > max)
    throw invalidConfig(`\`${name}\` must be an integer number of seconds from 0 to ${max}.`);
  return v;
}

function openDb(db: string, schema: string | undefined): Db {
  if (/^postgres(ql)?:\/\//.test(db)) {
    const o: { url: string; schema?: string } = { url: db };
    if (schema !== undefined) o.schema = schema;
    return new PostgresDb(o);
  }
  if (db !== ':memory:') mkdirSync(path.dirname(path.resolve(db)), { recursive: true });
  return new SqliteDb(db);
}

/** The admin token: option, environment, or the 0600 file (created on first start). */
function resolveAdminToken(opt: string | undefined, keyDir: string | null, log: pino.Logger): string {
  const given = opt ?? process.env.MICROPAY_ADMIN_TOKEN;
  if (given !== undefined) {
    if (given.length < 16 || !/^[\x21-\x7e]+$/.test(given)) {
      throw invalidConfig('The admin token must be at least 16 printable characters without spaces.');
    }
    return given;
  }
  if (!keyDir) {
    log.info(
      'generated an admin token in memory (BillingServer.adminToken); pass adminToken or MICROPAY_ADMIN_TOKEN to fix one',
    );
    return newToken().token;
  }
  const file = path.join(keyDir, 'admin-token');
  if (existsSync(file)) {
    const t = readFileSync(file, 'utf8').trim();
    if (t.length >= 16) return t;
  }
  const t = newToken().token;
  mkdirSync(keyDir, { recursive: true, mode: 0o700 });
  writeFileSync(file, `${t}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  log.info({ file }, 'generated the admin token into this file (mode 0600)');
  return t;
}

/**
 * Creates a billing server: opens and migrates the database, loads or creates
 * the signing keys and the admin token, and builds the HTTP app.
 * @example
 * const server = await createBillingServer({ issuer: 'bank-a', db: './billing.db' });
 * const url = await server.listen(4000);
 * // ... later
 * await server.close();
 */
export async function createBillingServer(opts: BillingServerOptions): Promise<BillingServer> {
  if (!isId(opts.issuer))
    throw invalidConfig(
      '`issuer` must be an identifier of 1 to 128 characters [A-Za-z0-9._:-], like "bank-a".',
    );
  const dbSpec = opts.db ?? './billing.db';
  const isPg = /^postgres(ql)?:\/\//.test(dbSpec);
  const credentialLifetime = seconds('credentialLifetime', opts.credentialLifetime, 86_400, 172_800);
  if (credentialLifetime < 60) throw invalidConfig('`credentialLifetime` must be at least 60 seconds.');
  const authorizationLifetime = seconds('authorizationLifetime', opts.authorizationLifetime, 300, 86_400);
  const skew = seconds('skew', opts.skew, 60, 3600);
  const freshness = seconds('freshness', opts.freshness, 300, 86_400);
  const now = opts.now ?? (() => Math.floor(Date.now() / 1000));
  const corsOrigins = opts.corsOrigins ?? [];
  const logger =
    opts.logger === false
      ? pino({ enabled: false })
      : (opts.logger ??
        pino({
          name: 'micropay-billing',
          redact: {
            paths: [
              'req.headers.authorization',
              'headers.authorization',
              'token',
              '*.token',
              'adminToken',
              'seed',
            ],
            censor: '[redacted]',
          },
        }));
  const keyDir =
    opts.keyDir !== undefined
      ? path.resolve(opts.keyDir)
      : dbSpec === ':memory:'
        ? null
        : isPg
          ? path.resolve('.micropay/keys')
          : path.join(path.dirname(path.resolve(dbSpec)), 'keys');

  const db = openDb(dbSpec, opts.pgSchema);
  try {
    await db.migrate();
    const store = new Store(db);
    const keys = new KeyRing({
      db,
      keyDir,
      envSeed: process.env.MICROPAY_SIGNING_KEY,
      credentialLifetime,
      authorizationLifetime,
      skew,
      now,
    });
    await keys.init();
    const adminToken = resolveAdminToken(opts.adminToken, keyDir, logger);
    const metrics = createMetrics(opts.issuer);
    // Peers' keys are loaded before serving, so a restart publishes and verifies the last good sets at once.
    const peerKeys = new PeerKeys({ db, issuer: opts.issuer, skew, now, logger }, opts.peerKeys);
    await peerKeys.init();
    const checker = new OrderChecker({ issuer: opts.issuer, keys, skew, freshness, peers: peerKeys });
    const claims = new InterbankClaims({ db, issuer: opts.issuer, keys, skew, freshness, now });
    const claimer = new Claimer({ db, now, logger }, opts.claims);
    const ledger = new Ledger({
      issuer: opts.issuer,
      store,
      keys,
      checker,
      credentialLifetime,
      authorizationLifetime,
      now,
    });
    const app = createApp({
      peering: { keys: peerKeys, claims, claimer },
      issuer: opts.issuer,
      adminTokenHash: hashToken(adminToken),
      store,
      ledger,
      keys,
      metrics,
      logger,
      corsOrigins,
      now,
    });
    // Delivers the outbox; its timer never holds the process open, and close() stops it first.
    const dispatcher = new WebhookDispatcher(db, logger, opts.webhooks, Date.now, now);
    dispatcher.start();
    // Peer keys and claims run on unref'd timers too; close() stops them before the database closes.
    peerKeys.start();
    claimer.start();
    let server: Server | null = null;
    let closing: Promise<void> | null = null;
    return {
      app,
      issuer: opts.issuer,
      adminToken,
      listen(port = 4000, host = '127.0.0.1') {
        if (server)
          return Promise.reject(
            new MicropayError('already_listening', 'This billing server is already listening.'),
          );
        return new Promise((resolve, reject) => {
          const s = app.listen(port, host);
          server = s;
          s.once('error', reject);
          s.once('listening', () => {
            const a = s.address() as AddressInfo;
            const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
            const url = `http://${h}:${a.port}`;
            logger.info({ url, issuer: opts.issuer }, 'billing server listening');
            resolve(url);
          });
        });
      },
      close() {
        if (!closing) {
          closing = (async () => {
            const s = server;
            if (s) {
              await new Promise<void>((resolve) => {
                s.close(() => resolve());
                s.closeIdleConnections();
              });
            }
            await claimer.close();
            await peerKeys.close();
            await dispatcher.stop();
            await db.close();
            logger.info('billing server closed');
          })();
        }
        return closing;
      },
    };
  } catch (e) {
    await db.close().catch(() => {});
    throw e;
  }
}
