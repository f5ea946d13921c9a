/**
 * The money-moving operations of the billing server, each one transaction:
 * deposits (PROTOCOL.md section 8, with the promise to merchants),
 * authorizations (credit reservations), credentials, and admin adjustments.
 * Double entry throughout: every transaction writes entries that sum to zero
 * per currency, and account balances move only together with their entries.
 * A deposit writes one entry per credited order for its buyer (a buyer's
 * statement lists every purchase), and for the whole batch one `deposit`
 * entry crediting the merchant the net amount and one commission entry (the
 * per-order amounts and fees are in the deposit answer and on the order rows).
 *
 * The promise: per (credential tid, merchant), orders credited without an
 * `auth` are credited while their sum stays within `cert.lim`, whatever the
 * buyer's state now. Past that, an order is credited with a live `auth` of
 * this server (consuming its reservation), or while the active buyer still
 * has available credit (credit limit + balance, minus live reservations),
 * else rejected `over_limit`. Authorized orders do not count against
 * `cert.lim`, as a merchant's offline tally does not count them either.
 *
 * An order under a peer's credential (section 9) is credited under the same
 * promise, but this server can see neither the buyer's credit nor reserve it
 * (the protocol has no interbank authorization), so it is credited within
 * `cert.lim` only, and past it rejected `over_limit` whatever `auth` comes with
 * it; `authorize` declines such orders for the same reason. The peer's
 * clearing account (`clearing:<iss>:<cur>`) stands where the buyer would, and
 * the order is queued in the claims outbox in the same transaction.
 */
import { type Authorization, type Credential, MicropayError, signToken } from '../protocol/index.js';
import type {
  DepositAnswer as WireDepositAnswer,
  DepositResult as WireDepositResult,
} from '../protocol/messages.js';
import { type ClaimOrder, ensureSystemAccounts, queueClaims } from './claim-queue.js';
import type { Queryable, Tx } from './db/types.js';
import { inList } from './db/types.js';
import type { KeyRing } from './keyring.js';
import { depositEvents, enqueueEvents } from './outbox.js';
import {
  type Account,
  clearingAccountId,
  externalAccountId,
  feeAccountId,
  publicAccount,
  readAccounts,
  type Store,
  type StoredAccount,
} from './store.js';
import {
  type CheckCode,
  type CheckedOrder,
  type FailedCheck,
  type OrderChecker,
  timeSlices,
} from './verify.js';

/** Rejection reasons of a deposited order. */
export type DepositReason = CheckCode | 'over_limit' | 'replayed_order';

/** One order of a deposit answer. */
/** A deposit result whose rejection reason is one the ledger gives. */
export interface DepositResult extends WireDepositResult {
  reason?: DepositReason;
}

/** `POST /v1/deposits` answer (the wire shape of `protocol/messages.ts`). */
export interface DepositAnswer extends WireDepositAnswer {
  results: DepositResult[];
}

/** One order as deposited. */
export interface DepositItem {
  cert: unknown;
  order: unknown;
  auth?: unknown;
}

/** `POST /v1/authorizations` answer. */
export type AuthorizationResult =
  | { status: 'approved'; auth: string }
  | { status: 'declined'; reason: string; message: string };

/** Most orders one deposit may hold. */
export const MAX_DEPOSIT_ORDERS = 1000;

/** `floor(amt * bps / 10000)`, exact past 2^53. */
export function feeOf(amt: number, bps: number): number {
  const p = amt * bps;
  if (Number.isSafeInteger(p)) return Math.floor(p / 10_000);
  return Number((BigInt(amt) * BigInt(bps)) / 10_000n);
}

/** One ledger entry to write (`insertEntries`). */
export interface EntryRow {
  account: string;
  amount: number;
  balance: number;
  kind: 'order' | 'deposit' | 'fee' | 'adjustment' | 'claim';
  counterparty: string | null;
  res: string | null;
  oid: string | null;
  memo: string | null;
  ref: string | null;
  /** On a merchant's deposit entry: the commission the batch kept (statements show it). */
  fee?: number;
}

const ENTRY_COLUMNS = [
  'account',
  'time',
  'amount',
  'balance',
  'kind',
  'counterparty',
  'res',
  'oid',
  'memo',
  'ref',
  'fee',
];
/** Writes ledger entries (the callers have moved the balances with them). */
export function insertEntries(tx: Queryable, rows: EntryRow[], time: number): Promise<void> {
  return tx.insertMany(
    'entries',
    ENTRY_COLUMNS,
    rows.map((e) => [
      e.account,
      time,
      e.amount,
      e.balance,
      e.kind,
      e.counterparty,
      e.res,
      e.oid,
      e.memo,
      e.ref,
      e.fee ?? 0,
    ]),
  );
}

interface OrderRow {
  iss: string;
  sub: string;
  oid: string;
  cid: string;
  amt: number;
  fee: number;
  cur: string;
  authorized: 0 | 1;
}

const ORDER_COLUMNS = [
  'iss',
  'sub',
  'mer',
  'oid',
  'cid',
  'amt',
  'fee',
  'cur',
  'authorized',
  'batch',
  'credited',
];
function insertOrders(
  tx: Queryable,
  mer: string,
  batch: string,
  rows: OrderRow[],
  time: number,
): Promise<void> {
  return tx.insertMany(
    'orders',
    ORDER_COLUMNS,
    rows.map((o) => [o.iss, o.sub, mer, o.oid, o.cid, o.amt, o.fee, o.cur, o.authorized, batch, time]),
  );
}

/** Runs `query` over `values` in chunks that fit an IN list. */
async function inChunks<T>(
  values: readonly string[],
  size: number,
  query: (chunk: string[]) => Promise<T[]>,
): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < values.length; i += size) out.push(...(await query(values.slice(i, i + size))));
  return out;
}

/** Sum of live (unconsumed, unexpired) reservations per buyer. */
export async function reservedBy(
  q: Queryable,
  iss: string,
  subs: readonly string[],
  now: number,
): Promise<Map<string, number>> {
  const rows = await inChunks([...new Set(subs)], 500, (c) =>
    q.all<{ sub: string; s: number }>(
      `SELECT sub, SUM(amt) AS s FROM authorizations WHERE iss = ? AND consumed = 0 AND exp > ? AND sub IN (${inList(c.length)}) GROUP BY sub`,
      [iss, now, ...c],
    ),
  );
  return new Map(rows.map((r) => [r.sub, Number(r.s)]));
}

function setBalance(balances: Map<string, StoredAccount>, id: string, delta: number): number {
  const a = balances.get(id)!;
  a.balance += delta;
  return a.balance;
}

/** Options of the ledger. */
export interface LedgerOptions {
  issuer: string;
  store: Store;
  keys: KeyRing;
  checker: OrderChecker;
  credentialLifetime: number;
  authorizationLifetime: number;
  now: () => number;
}

/** Deposits, authorizations, credentials and adjustments. */
export class Ledger {
  constructor(private readonly o: LedgerOptions) {}

  private get db() {
    return this.o.store.db;
  }

  /** A stored batch answer of this merchant, if the batch id was seen. */
  /** The stored answer (JSON text) of a batch id this merchant already posted. */
  private async priorBatch(q: Queryable, mer: string, batch: string): Promise<string | undefined> {
    const r = await q.get<{ answer: string }>('SELECT answer FROM batches WHERE mer = ? AND id = ?', [
      mer,
      batch,
    ]);
    return r?.answer;
  }

  /**
   * `POST /v1/deposits`: verifies every order, then credits the batch in one
   * transaction. Resolves the answer as JSON text (stored as such for
   * re-posts), and the answer object when this call did the work (`null` for
   * a re-posted batch id).
   */
  async deposit(
    merchant: StoredAccount,
    batch: string,
    items: readonly DepositItem[],
  ): Promise<{ json: string; answer: DepositAnswer | null }> {
    const mer = merchant.id;
    const iss = this.o.issuer;
    const prior = await this.priorBatch(this.db, mer, batch);
    if (prior) return { json: prior, answer: null };

    // CPU first, outside the transaction: checks 2-6 and mp-auth signatures, in slices of 5 ms
    // between which other requests are served.
    const checked: (CheckedOrder | FailedCheck)[] = [];
    const auths: (Authorization | null)[] = [];
    const slice = timeSlices();
    for (const it of items) {
      const pause = slice();
      if (pause) await pause;
      const r = this.o.checker.check(it.cert, it.order, mer);
      const c = r instanceof Promise ? await r : r;
      checked.push(c);
      auths.push(c.ok && it.auth !== undefined ? await this.o.checker.authorization(it.auth) : null);
    }
    const oidOf = (i: number): string | null => {
      const c = checked[i]!;
      if (c.ok) return c.order.oid;
      return peekOid(items[i]!.order);
    };
    const subs = [...new Set(checked.flatMap((c) => (c.ok && c.cert.iss === iss ? [c.cert.sub] : [])))];
    const fees = feeAccountId(merchant.currency);
    // Orders under peers' credentials (in the merchant's currency): their peers' clearing accounts.
    const clearing = [
      ...new Set(
        checked.flatMap((c) =>
          c.ok && c.cert.iss !== iss && c.order.cur === merchant.currency
            ? [clearingAccountId(c.cert.iss, c.order.cur)]
            : [],
        ),
      ),
    ];

    return this.db.transaction(async (tx) => {
      const now = this.o.now();
      if (clearing.length > 0) await ensureSystemAccounts(tx, clearing, merchant.currency, now);
      await tx.lockAccounts([mer, fees, ...subs, ...clearing]);
      const again = await this.priorBatch(tx, mer, batch);
      if (again) return { json: again, answer: null };
      const accounts = await readAccounts(tx, [mer, fees, ...subs, ...clearing]);
      const m = accounts.get(mer);
      if (!m || m.status === 'deleted')
        throw new MicropayError('no_such_account', `The merchant account "${mer}" no longer exists.`, {
          status: 404,
        });

      const okOids = checked.flatMap((c) => (c.ok ? [c.order.oid] : []));
      // Orders already here, by (iss, sub, oid), with the peer that claimed it (null: deposited here).
      const existing = new Map(
        (
          await inChunks([...new Set(okOids)], 500, (c) =>
            tx.all<{ iss: string; sub: string; oid: string; acq: string | null }>(
              `SELECT iss, sub, oid, acq FROM orders WHERE mer = ? AND oid IN (${inList(c.length)})`,
              [mer, ...c],
            ),
          )
        ).map((r) => [`${r.iss}\u0000${r.sub}\u0000${r.oid}`, r.acq]),
      );
      const cids = [...new Set(checked.flatMap((c) => (c.ok ? [c.cid] : [])))];
      const sums = new Map(
        (
          await inChunks(cids, 500, (c) =>
            tx.all<{ cid: string; spent: number }>(
              `SELECT cid, spent FROM tallies WHERE mer = ? AND cid IN (${inList(c.length)})`,
              [mer, ...c],
            ),
          )
        ).map((r) => [r.cid, r.spent]),
      );
      const sumsChanged = new Set<string>();
      const reserved = await reservedBy(tx, iss, subs, now);
      const authOids = checked.flatMap((c, i) => (c.ok && auths[i] ? [c.order.oid] : []));
      const reservations = new Map(
        (
          await inChunks([...new Set(authOids)], 500, (c) =>
            tx.all<{ sub: string; oid: string; amt: number; exp: number; consumed: number }>(
              `SELECT sub, oid, amt, exp, consumed FROM authorizations WHERE iss = ? AND mer = ? AND oid IN (${inList(c.length)})`,
              [iss, mer, ...c],
            ),
          )
        ).map((r) => [`${r.sub}\u0000${r.oid}`, r]),
      );

      const results: DepositResult[] = [];
      const orders: OrderRow[] = [];
      const claims: ClaimOrder[] = [];
      const entries: EntryRow[] = [];
      const consumed: [string, string][] = [];
      const touched = new Set<string>();
      let credited = 0;
      // Commission goes to the fee account as one entry per batch (the per-order fee is on each order row).
      let feeTotal = 0;
      for (let i = 0; i < checked.length; i++) {
        const c = checked[i]!;
        if (!c.ok) {
          results.push({ oid: oidOf(i), status: 'rejected', reason: c.reason, message: c.message });
          continue;
        }
        const { cert, order, cid } = c;
        const reject = (reason: DepositReason, message: string) =>
          results.push({ oid: order.oid, status: 'rejected', reason, message });
        const key = `${cert.iss}\u0000${cert.sub}\u0000${order.oid}`;
        const prior = existing.get(key);
        if (prior !== undefined) {
          // Claimed by a peer for its own merchant of the same name: this merchant was not paid for it.
          if (prior !== null)
            reject('replayed_order', 'This order was already paid to a merchant of a peer.');
          else results.push({ oid: order.oid, status: 'duplicate' });
          continue;
        }
        const foreign = cert.iss !== iss;
        // Who pays: the buyer, or for a peer's credential the peer's clearing account.
        const payerId = foreign ? clearingAccountId(cert.iss, order.cur) : cert.sub;
        const buyer = accounts.get(payerId);
        if (!buyer || buyer.status === 'deleted' || buyer.role !== (foreign ? 'system' : 'buyer')) {
          if (foreign)
            reject(
              'insufficient_amount',
              `The order is in ${order.cur}; the merchant's account is in ${m.currency}.`,
            );
          else reject('bad_credential', `The buyer account "${cert.sub}" of this credential does not exist.`);
          continue;
        }
        if (order.cur !== m.currency || order.cur !== buyer.currency) {
          reject(
            'insufficient_amount',
            `The order is in ${order.cur}; the merchant's account is in ${m.currency}.`,
          );
          continue;
        }
        // Which rule credits it: a live auth, the credential's offline limit, or the buyer's credit.
        let authorized = false;
        const a = foreign ? null : auths[i];
        const r = a ? reservations.get(`${cert.sub}\u0000${order.oid}`) : undefined;
        if (
          a &&
          r &&
          r.consumed === 0 &&
          r.exp > now &&
          a.oid === order.oid &&
          a.mer === mer &&
          a.amt === order.amt &&
          (a.sub === undefined || a.sub === cert.sub)
        ) {
          authorized = true;
        }
        const spent = sums.get(cid) ?? 0;
        const rsv = reserved.get(cert.sub) ?? 0;
        if (!authorized && spent + order.amt > cert.lim) {
          if (foreign) {
            reject(
              'over_limit',
              `Past the credential's offline limit of ${cert.lim} for this merchant; orders under a credential of "${cert.iss}" are credited only within it.`,
            );
            continue;
          }
          const available = buyer.creditLimit + buyer.balance - rsv;
          if (buyer.status !== 'active' || available < order.amt) {
            reject(
              'over_limit',
              `Past the credential's offline limit of ${cert.lim} for this merchant, with no valid authorization and not enough available credit.`,
            );
            continue;
          }
        }
        const fee = feeOf(order.amt, m.commissionBps);
        const buyerAfter = buyer.balance - order.amt;
        const merAfter = m.balance + credited + order.amt - fee;
        if (
          !Number.isSafeInteger(buyerAfter) ||
          !Number.isSafeInteger(merAfter) ||
          !Number.isSafeInteger(accounts.get(fees)!.balance + feeTotal + fee)
        ) {
          reject('over_limit', 'Crediting this order would take a balance past 2^53-1 micro-units.');
          continue;
        }
        existing.set(key, null);
        if (authorized) {
          consumed.push([cert.sub, order.oid]);
          reserved.set(cert.sub, rsv - r!.amt);
        } else {
          sums.set(cid, spent + order.amt);
          sumsChanged.add(cid);
        }
        orders.push({
          iss: cert.iss,
          sub: cert.sub,
          oid: order.oid,
          cid,
          amt: order.amt,
          fee,
          cur: order.cur,
          authorized: authorized ? 1 : 0,
        });
        if (foreign) {
          const it = items[i]!;
          claims.push({
            peer: cert.iss,
            cur: order.cur,
            sub: cert.sub,
            mer,
            oid: order.oid,
            cert: it.cert as string,
            token: it.order as string,
            amt: order.amt,
          });
        }
        const res = order.res;
        entries.push({
          account: payerId,
          amount: -order.amt,
          balance: setBalance(accounts, payerId, -order.amt),
          kind: 'order',
          counterparty: mer,
          res,
          oid: order.oid,
          memo: null,
          ref: batch,
        });
        feeTotal += fee;
        touched.add(payerId).add(mer).add(fees);
        credited += order.amt - fee;
        results.push({ oid: order.oid, status: 'credited', amt: order.amt, fee });
      }

      if (orders.length > 0) {
        const balance = setBalance(accounts, mer, credited);
        const memo = `${orders.length} order${orders.length === 1 ? '' : 's'}, ${feeTotal} commission`;
        entries.push({
          account: mer,
          amount: credited,
          balance,
          kind: 'deposit',
          counterparty: null,
          res: null,
          oid: null,
          memo,
          ref: batch,
          fee: feeTotal,
        });
      }
      if (feeTotal > 0) {
        const balance = setBalance(accounts, fees, feeTotal);
        entries.push({
          account: fees,
          amount: feeTotal,
          balance,
          kind: 'fee',
          counterparty: mer,
          res: null,
          oid: null,
          memo: null,
          ref: batch,
        });
      }
      await insertOrders(tx, mer, batch, orders, now);
      await queueClaims(tx, claims, now);
      for (const cid of sumsChanged) {
        await tx.run(
          'INSERT INTO tallies (mer, cid, spent) VALUES (?, ?, ?) ON CONFLICT (mer, cid) DO UPDATE SET spent = excluded.spent',
          [mer, cid, sums.get(cid)!],
        );
      }
      await insertEntries(tx, entries, now);
      for (const id of touched)
        await tx.run('UPDATE accounts SET balance = ?, updated = ? WHERE id = ?', [
          accounts.get(id)!.balance,
          now,
          id,
        ]);
      for (const [sub, oid] of consumed) {
        await tx.run(
          'UPDATE authorizations SET consumed = 1 WHERE iss = ? AND sub = ? AND mer = ? AND oid = ?',
          [iss, sub, mer, oid],
        );
      }
      const answer: DepositAnswer = { batch, results, credited };
      // Webhook events in this same transaction: none for a deposit that rolls back, no deposit without them.
      await enqueueEvents(
        tx,
        depositEvents({
          merchant: mer,
          currency: m.currency,
          answer,
          checked,
          fee: feeTotal,
          balance: accounts.get(mer)!.balance,
        }),
        now,
      );
      const json = JSON.stringify(answer);
      await tx.run('INSERT INTO batches (mer, id, answer, created) VALUES (?, ?, ?, ?)', [
        mer,
        batch,
        json,
        now,
      ]);
      return { json, answer };
    });
  }

  /** `POST /v1/authorizations`: verifies the pair and reserves the amount of the buyer's credit. */
  async authorize(
    merchant: StoredAccount,
    certToken: unknown,
    orderToken: unknown,
  ): Promise<AuthorizationResult> {
    const now0 = this.o.now();
    const c = await this.o.checker.check(certToken, orderToken, merchant.id, now0);
    if (!c.ok) return { status: 'declined', reason: c.reason, message: c.message };
    const { cert, order } = c;
    if (cert.iss !== this.o.issuer) {
      // Only the issuer could reserve its buyer's credit, and the protocol has no interbank call for it.
      return {
        status: 'declined',
        reason: 'over_limit',
        message: `An order under a credential of "${cert.iss}" is honoured offline within the credential's limit only; this billing server cannot approve it online.`,
      };
    }
    if (order.cur !== merchant.currency) {
      return {
        status: 'declined',
        reason: 'insufficient_amount',
        message: `The order is in ${order.cur}; the merchant's account is in ${merchant.currency}.`,
      };
    }
    const iss = this.o.issuer;
    const signer = await this.o.keys.signer();
    return this.db.transaction(async (tx: Tx) => {
      const now = this.o.now();
      await tx.lockAccounts([cert.sub]);
      const prior = await tx.get<{ token: string }>(
        'SELECT token FROM authorizations WHERE iss = ? AND sub = ? AND mer = ? AND oid = ?',
        [iss, cert.sub, merchant.id, order.oid],
      );
      if (prior) return { status: 'approved', auth: prior.token } as const;
      const decline = (reason: string, message: string) => ({ status: 'declined', reason, message }) as const;
      if (
        await tx.get('SELECT oid FROM orders WHERE iss = ? AND sub = ? AND mer = ? AND oid = ?', [
          iss,
          cert.sub,
          merchant.id,
          order.oid,
        ])
      ) {
        return decline('replayed_order', 'This order was already deposited.');
      }
      const buyer = (await readAccounts(tx, [cert.sub])).get(cert.sub);
      if (!buyer || buyer.status === 'deleted' || buyer.role !== 'buyer') {
        return decline(
          'bad_credential',
          `The buyer account "${cert.sub}" of this credential does not exist.`,
        );
      }
      if (buyer.status !== 'active') return decline('account_disabled', 'The buyer account is disabled.');
      const rsv = (await reservedBy(tx, iss, [cert.sub], now)).get(cert.sub) ?? 0;
      if (buyer.creditLimit + buyer.balance - rsv < order.amt) {
        return decline(
          'insufficient_credit',
          'The buyer does not have enough available credit for this order.',
        );
      }
      const exp = now + this.o.authorizationLifetime;
      const payload: Authorization = {
        typ: 'mp-auth',
        v: 1,
        iss,
        kid: signer.kid,
        oid: order.oid,
        mer: merchant.id,
        amt: order.amt,
        exp,
        sub: cert.sub,
      };
      const auth = signToken(payload, signer.key);
      await tx.run(
        'INSERT INTO authorizations (iss, sub, mer, oid, amt, exp, token, consumed, created) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)',
        [iss, cert.sub, merchant.id, order.oid, order.amt, exp, auth, now],
      );
      return { status: 'approved', auth } as const;
    });
  }

  /** What a buyer may still spend: credit limit plus balance, minus live reservations. */
  async available(buyer: StoredAccount): Promise<number> {
    const rsv = (await reservedBy(this.db, this.o.issuer, [buyer.id], this.o.now())).get(buyer.id) ?? 0;
    return buyer.creditLimit + buyer.balance - rsv;
  }

  /** `POST /v1/certificates`: a credential for `key`, `lim = min(dailyLimit, available credit)`. */
  async certificate(buyer: StoredAccount, key: string): Promise<{ cert: string; exp: number; lim: number }> {
    if (buyer.status !== 'active') {
      throw new MicropayError(
        'account_disabled',
        'This buyer account is disabled; ask the billing server operator.',
        { status: 403 },
      );
    }
    const now = this.o.now();
    const available = await this.available(buyer);
    const lim = Math.max(0, Math.min(buyer.dailyLimit ?? Number.MAX_SAFE_INTEGER, available));
    const exp = now + this.o.credentialLifetime;
    const signer = await this.o.keys.signer();
    const payload: Credential = {
      typ: 'mp-cert',
      v: 1,
      iss: this.o.issuer,
      kid: signer.kid,
      sub: buyer.id,
      key,
      cur: buyer.currency,
      lim,
      nbf: now,
      exp,
    };
    const cert = signToken(payload, signer.key);
    await this.o.keys.noteCredential(signer.kid, exp);
    return { cert, exp, lim };
  }

  /** An admin adjustment: `amt` (signed) into the account, balanced against `external:<cur>`. */
  async adjust(id: string, amt: number, memo: string | null): Promise<Account> {
    const a = await this.o.store.mustAccount(id);
    if (a.role === 'system') {
      throw new MicropayError(
        'system_account',
        `"${id}" is one of the server's own accounts and cannot be adjusted.`,
        { status: 409 },
      );
    }
    const ext = externalAccountId(a.currency);
    return this.db.transaction(async (tx) => {
      const now = this.o.now();
      await tx.lockAccounts([id, ext]);
      const accounts = await readAccounts(tx, [id, ext]);
      const acc = accounts.get(id);
      if (!acc || acc.status === 'deleted')
        throw new MicropayError('no_such_account', `There is no account "${id}".`, { status: 404 });
      if (!accounts.get(ext)) {
        throw new MicropayError('internal_error', `The system account ${ext} is missing.`, { status: 500 });
      }
      if (
        !Number.isSafeInteger(acc.balance + amt) ||
        !Number.isSafeInteger(accounts.get(ext)!.balance - amt)
      ) {
        throw new MicropayError('invalid_request', '`amt` would take a balance past 2^53-1 micro-units.', {
          status: 400,
        });
      }
      const entries: EntryRow[] = [
        {
          account: id,
          amount: amt,
          balance: setBalance(accounts, id, amt),
          kind: 'adjustment',
          counterparty: ext,
          res: null,
          oid: null,
          memo,
          ref: null,
        },
        {
          account: ext,
          amount: -amt,
          balance: setBalance(accounts, ext, -amt),
          kind: 'adjustment',
          counterparty: id,
          res: null,
          oid: null,
          memo,
          ref: null,
        },
      ];
      await insertEntries(tx, entries, now);
      for (const x of [id, ext])
        await tx.run('UPDATE accounts SET balance = ?, updated = ? WHERE id = ?', [
          accounts.get(x)!.balance,
          now,
          x,
        ]);
      return publicAccount(accounts.get(id)!);
    });
  }
}

/** The `oid` of an order token that failed its checks, when it can be read at all. */
function peekOid(token: unknown): string | null {
  if (typeof token !== 'string') return null;
  const dot = token.indexOf('.');
  if (dot <= 0 || dot > 4096) return null;
  try {
    const p = JSON.parse(Buffer.from(token.slice(0, dot), 'base64url').toString('utf8')) as { oid?: unknown };
    return typeof p.oid === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(p.oid) ? p.oid : null;
  } catch {
    return null;
  }
}
