/**
 * Versioned schema migrations, one list per dialect, applied in order and
 * recorded in `schema_migrations`. Append new versions; never edit one that
 * has shipped. Orders and authorizations are unique by (iss, sub, mer, oid);
 * their keys lead with (mer, oid), which is how a deposit looks them up.
 * (Measured: clustering them in SQLite, WITHOUT ROWID, made deposits slower:
 * random oids then dirty a whole row page per insert.) Entries are never
 * deleted, so their SQLite rowid needs no AUTOINCREMENT. Amounts are BIGINT
 * in PostgreSQL (parsed back to safe numbers) and INTEGER (64-bit) in SQLite;
 * booleans are 0/1 integers in both.
 */

/** One migration: its version and the statements that take the schema there. */
export interface Migration {
  version: number;
  name: string;
  statements: string[];
}

const tables = (big: string, serial: string): string[] => [
  `CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    status TEXT NOT NULL,
    currency TEXT NOT NULL,
    balance ${big} NOT NULL DEFAULT 0,
    credit_limit ${big} NOT NULL DEFAULT 0,
    daily_limit ${big},
    commission_bps INTEGER NOT NULL DEFAULT 0,
    name TEXT,
    created ${big} NOT NULL,
    updated ${big} NOT NULL
  )`,
  `CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    subject TEXT NOT NULL,
    created ${big} NOT NULL,
    revoked ${big}
  )`,
  'CREATE INDEX tokens_subject ON tokens (subject)',
  `CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    x TEXT NOT NULL UNIQUE,
    seq INTEGER NOT NULL UNIQUE,
    nbf ${big} NOT NULL,
    retired ${big},
    exp ${big},
    last_cert_exp ${big}
  )`,
  `CREATE TABLE orders (
    iss TEXT NOT NULL,
    sub TEXT NOT NULL,
    mer TEXT NOT NULL,
    oid TEXT NOT NULL,
    cid TEXT NOT NULL,
    amt ${big} NOT NULL,
    fee ${big} NOT NULL,
    cur TEXT NOT NULL,
    authorized INTEGER NOT NULL,
    batch TEXT NOT NULL,
    credited ${big} NOT NULL,
    PRIMARY KEY (mer, oid, sub, iss)
  )`,
  // What orders credited without an auth add up to, per (merchant, credential): the promise's running sum.
  `CREATE TABLE tallies (
    mer TEXT NOT NULL,
    cid TEXT NOT NULL,
    spent ${big} NOT NULL,
    PRIMARY KEY (mer, cid)
  )`,
  `CREATE TABLE entries (
    id ${serial},
    account TEXT NOT NULL,
    time ${big} NOT NULL,
    amount ${big} NOT NULL,
    balance ${big} NOT NULL,
    kind TEXT NOT NULL,
    counterparty TEXT,
    res TEXT,
    oid TEXT,
    memo TEXT,
    ref TEXT
  )`,
  'CREATE INDEX entries_account ON entries (account, id)',
  `CREATE TABLE batches (
    mer TEXT NOT NULL,
    id TEXT NOT NULL,
    answer TEXT NOT NULL,
    created ${big} NOT NULL,
    PRIMARY KEY (mer, id)
  )`,
  `CREATE TABLE authorizations (
    iss TEXT NOT NULL,
    sub TEXT NOT NULL,
    mer TEXT NOT NULL,
    oid TEXT NOT NULL,
    amt ${big} NOT NULL,
    exp ${big} NOT NULL,
    token TEXT NOT NULL,
    consumed INTEGER NOT NULL DEFAULT 0,
    created ${big} NOT NULL,
    PRIMARY KEY (mer, oid, sub, iss)
  )`,
  'CREATE INDEX authorizations_live ON authorizations (sub, exp)',
  `CREATE TABLE peers (
    issuer TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    token TEXT,
    token_id TEXT,
    created ${big} NOT NULL,
    updated ${big} NOT NULL
  )`,
];

// Section 9 (peers): the interchange fee and the tombstone of a removed peer; on the issuer's side,
// which peer claimed an order (NULL: deposited by a local merchant); the keys fetched from each peer
// (kept per key, so a key the peer withdrew early stops verifying while one that expired still
// verifies a late deposit); and on the acquirer's side the claims outbox, written in the same
// transaction as the merchant's credit and sent in batches whose ids never change once assigned.
const peering = (big: string, serial: string): string[] => [
  'ALTER TABLE peers ADD COLUMN fee_bps INTEGER NOT NULL DEFAULT 0',
  `ALTER TABLE peers ADD COLUMN removed ${big}`,
  `ALTER TABLE peers ADD COLUMN keys_fetched ${big}`,
  `ALTER TABLE peers ADD COLUMN keys_fresh_until ${big}`,
  'ALTER TABLE orders ADD COLUMN acq TEXT',
  `CREATE TABLE peer_keys (
    issuer TEXT NOT NULL,
    kid TEXT NOT NULL,
    x TEXT NOT NULL,
    nbf ${big} NOT NULL,
    exp ${big} NOT NULL,
    seen ${big} NOT NULL,
    PRIMARY KEY (issuer, kid)
  )`,
  `CREATE TABLE claim_orders (
    seq ${serial},
    peer TEXT NOT NULL,
    cur TEXT NOT NULL,
    claim TEXT,
    sub TEXT NOT NULL,
    mer TEXT NOT NULL,
    oid TEXT NOT NULL,
    cert TEXT NOT NULL,
    token TEXT NOT NULL,
    amt ${big} NOT NULL,
    status TEXT NOT NULL,
    fee ${big},
    reason TEXT,
    created ${big} NOT NULL
  )`,
  'CREATE UNIQUE INDEX claim_orders_order ON claim_orders (peer, mer, oid, sub)',
  'CREATE INDEX claim_orders_claim ON claim_orders (claim, peer, cur)',
  `CREATE TABLE claims (
    id TEXT PRIMARY KEY,
    peer TEXT NOT NULL,
    cur TEXT NOT NULL,
    orders INTEGER NOT NULL,
    amt ${big} NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at ${big} NOT NULL,
    lease_until ${big} NOT NULL DEFAULT 0,
    last_error TEXT,
    created ${big} NOT NULL,
    done ${big}
  )`,
  'CREATE INDEX claims_due ON claims (status, next_at)',
];

// Statements and webhooks (issue 10): a merchant's deposit entry carries the commission its batch kept
// (backfilled from the batch's fee entry), so a statement line shows amount and fee without a join;
// the webhook endpoints; the outbox of events, written in the transaction of the ledger change each
// reports; one delivery per (event, endpoint), claimed by pushing next_at past a lease; and the log of
// every delivery attempt.
const webhooks = (big: string, serial: string): string[] => [
  `ALTER TABLE entries ADD COLUMN fee ${big} NOT NULL DEFAULT 0`,
  "CREATE INDEX entries_fee_backfill ON entries (ref) WHERE kind = 'fee'",
  `UPDATE entries SET fee = COALESCE((SELECT f.amount FROM entries f
     WHERE f.kind = 'fee' AND f.ref = entries.ref AND f.counterparty = entries.account), 0)
   WHERE kind = 'deposit'`,
  'DROP INDEX entries_fee_backfill',
  `CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    created ${big} NOT NULL
  )`,
  `CREATE TABLE outbox_events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    created ${big} NOT NULL,
    body TEXT NOT NULL
  )`,
  `CREATE TABLE webhook_deliveries (
    id ${serial},
    webhook TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created ${big} NOT NULL,
    next_at ${big} NOT NULL,
    lease TEXT,
    last_status INTEGER,
    last_error TEXT,
    done_at ${big}
  )`,
  "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE status = 'pending'",
  'CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook, id)',
  `CREATE TABLE webhook_attempts (
    delivery ${big} NOT NULL,
    attempt INTEGER NOT NULL,
    time ${big} NOT NULL,
    status INTEGER,
    error TEXT,
    ms INTEGER NOT NULL,
    PRIMARY KEY (delivery, attempt)
  )`,
];

// Retention (the dispatcher's prune): finished deliveries by completion time, deliveries by event (is
// an event still referred to?), events by age.
const retention: string[] = [
  "CREATE INDEX webhook_deliveries_done ON webhook_deliveries (done_at) WHERE status <> 'pending'",
  'CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event)',
  'CREATE INDEX outbox_events_created ON outbox_events (created)',
];

/** SQLite migrations. */
export const sqliteMigrations: Migration[] = [
  {
    version: 1,
    name: 'accounts, tokens, keys, ledger, authorizations, peers',
    statements: tables('INTEGER', 'INTEGER PRIMARY KEY'),
  },
  {
    version: 2,
    name: 'peering: peer keys, interchange fee, claims outbox',
    statements: peering('INTEGER', 'INTEGER PRIMARY KEY'),
  },
  {
    version: 3,
    name: 'statements and webhooks: deposit fee on entries, webhooks, events outbox, deliveries',
    statements: webhooks('INTEGER', 'INTEGER PRIMARY KEY'),
  },
  {
    version: 4,
    name: 'webhook retention: indexes to remove old deliveries and events',
    statements: retention,
  },
];

/** PostgreSQL migrations. */
export const postgresMigrations: Migration[] = [
  {
    version: 1,
    name: 'accounts, tokens, keys, ledger, authorizations, peers',
    statements: tables('BIGINT', 'BIGSERIAL PRIMARY KEY'),
  },
  {
    version: 2,
    name: 'peering: peer keys, interchange fee, claims outbox',
    statements: peering('BIGINT', 'BIGSERIAL PRIMARY KEY'),
  },
  {
    version: 3,
    name: 'statements and webhooks: deposit fee on entries, webhooks, events outbox, deliveries',
    statements: webhooks('BIGINT', 'BIGSERIAL PRIMARY KEY'),
  },
  {
    version: 4,
    name: 'webhook retention: indexes to remove old deliveries and events',
    statements: retention,
  },
];
