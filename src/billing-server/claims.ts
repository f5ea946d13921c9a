/**
 * `POST /v1/interbank/claims`, the issuer's side of PROTOCOL.md section 9: a
 * peer (the acquirer) claims orders its merchants accepted under our
 * credentials. Same body and answer shape as a deposit; the peer stands where
 * a merchant would.
 *
 * - Every order is verified here again: our own credential (a third issuer's
 *   is `unknown_issuer`, trust is not transitive), our buyer's signature,
 *   `mer` any merchant id (it names the acquirer's merchant; the claim comes
 *   from the peer, whose token says which peer it is).
 * - The same promise as to our merchants: per (credential, acquirer's
 *   merchant), orders are honoured within `cert.lim` even if the buyer was
 *   disabled since; past it only while the buyer has credit (the acquirer
 *   should never claim such an order: it credits foreign orders within the
 *   limit only), else `over_limit`.
 * - Idempotent: a batch id answers its first answer again (per peer), and an
 *   order is unique by (iss, sub, mer, oid) here whoever brings it: claimed
 *   again by the same peer it is `duplicate` (with the amount and fee it was
 *   credited with, so the peer's books match ours), brought by anyone else it
 *   is `replayed_order`.
 * - Books: the buyer is debited `amt`; the peer's account `peer:<acq>:<cur>`
 *   is credited `amt - fee` (we owe the peer), and the interchange fee
 *   (`floor(amt * feeBps / 10000)`, the peer's `feeBps` here) goes to our fee
 *   account: the issuer keeps it. The answer's `fee` per order tells the peer.
 * - A removed peer's token still claims orders signed before the removal (we
 *   owe them); later ones are `unknown_issuer`.
 * - One currency per claim batch (the first valid order's), as one deposit
 *   is in its merchant's currency.
 */
import { MicropayError } from '../protocol/index.js';
import { ensureSystemAccounts } from './claim-queue.js';
import type { Db, Queryable } from './db/types.js';
import { inList } from './db/types.js';
import type { KeyRing } from './keyring.js';
import {
  type DepositAnswer,
  type DepositItem,
  type DepositReason,
  type DepositResult,
  type EntryRow,
  feeOf,
  insertEntries,
  reservedBy,
} from './ledger.js';
import { enqueueEvent } from './outbox.js';
import { feeAccountId, peerAccountId, readAccounts, type StoredAccount } from './store.js';
import { type CheckedOrder, type FailedCheck, OrderChecker, timeSlices } from './verify.js';

/** What the claim desk needs. */
export interface ClaimsContext {
  db: Db;
  issuer: string;
  keys: KeyRing;
  skew: number;
  freshness: number;
  now: () => number;
}

/** The key of a peer's claim batches in the `batches` table (a prefix no merchant id can take). */
export const claimBatchKey = (acq: string): string => `peer:${acq}`;

/** The tally key of the acquirer's merchant: `acq/mer` (`/` is not an id character, so no local merchant collides). */
const tallyKey = (acq: string, mer: string): string => `${acq}/${mer}`;

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
  'acq',
];

interface ClaimedRow {
  sub: string;
  mer: string;
  oid: string;
  cid: string;
  amt: number;
  fee: number;
  cur: string;
}

/** Interbank claims at the issuer. */
export class InterbankClaims {
  // Our own credentials only: no peer keys, so a third issuer's credential is `unknown_issuer`.
  private readonly checker: OrderChecker;

  constructor(private readonly o: ClaimsContext) {
    this.checker = new OrderChecker({ issuer: o.issuer, keys: o.keys, skew: o.skew, freshness: o.freshness });
  }

  private async prior(q: Queryable, acq: string, batch: string): Promise<string | undefined> {
    const r = await q.get<{ answer: string }>('SELECT answer FROM batches WHERE mer = ? AND id = ?', [
      claimBatchKey(acq),
      batch,
    ]);
    return r?.answer;
  }

  /** Processes one claim batch of peer `acq`; resolves the answer as JSON text (and the object when this call did the work). */
  async claim(
    acq: string,
    batch: string,
    items: readonly DepositItem[],
  ): Promise<{ json: string; answer: DepositAnswer | null }> {
    const { db, issuer } = this.o;
    const peer = await db.get<{ removed: number | null; fee_bps: number }>(
      'SELECT removed, fee_bps FROM peers WHERE issuer = ?',
      [acq],
    );
    if (!peer) {
      throw new MicropayError('forbidden', `"${acq}" is not a peer of this billing server.`, { status: 403 });
    }
    const prior = await this.prior(db, acq, batch);
    if (prior) return { json: prior, answer: null };

    const checked: (CheckedOrder | FailedCheck)[] = [];
    const slice = timeSlices();
    for (const it of items) {
      const pause = slice();
      if (pause) await pause;
      const r = this.checker.check(it.cert, it.order, null);
      let c = r instanceof Promise ? await r : r;
      if (c.ok && peer.removed !== null && c.order.iat > peer.removed + this.o.skew) {
        c = {
          ok: false,
          reason: 'unknown_issuer',
          message: `"${issuer}" ended its relationship with "${acq}"; orders signed since are not honoured.`,
        };
      }
      checked.push(c);
    }
    const first = checked.find((c): c is CheckedOrder => c.ok);
    const cur = first?.order.cur ?? '';
    const subs = [...new Set(checked.flatMap((c) => (c.ok && c.order.cur === cur ? [c.cert.sub] : [])))];
    const peerAcc = peerAccountId(acq, cur);
    const fees = feeAccountId(cur);

    return db.transaction(async (tx) => {
      const now = this.o.now();
      if (first) await ensureSystemAccounts(tx, [peerAcc, fees], cur, now);
      await tx.lockAccounts(first ? [peerAcc, fees, ...subs] : []);
      const again = await this.prior(tx, acq, batch);
      if (again) return { json: again, answer: null };
      const accounts = await readAccounts(tx, first ? [peerAcc, fees, ...subs] : []);

      // Orders already here (by anyone), and the running sums of the promise, per merchant id.
      const byMer = new Map<string, CheckedOrder[]>();
      for (const c of checked) if (c.ok) byMer.set(c.order.mer, [...(byMer.get(c.order.mer) ?? []), c]);
      const existing = new Map<string, { acq: string | null; amt: number; fee: number }>();
      const sums = new Map<string, number>();
      for (const [mer, list] of byMer) {
        const oids = [...new Set(list.map((c) => c.order.oid))];
        for (let i = 0; i < oids.length; i += 500) {
          const chunk = oids.slice(i, i + 500);
          const rows = await tx.all<{
            sub: string;
            oid: string;
            acq: string | null;
            amt: number;
            fee: number;
          }>(
            `SELECT sub, oid, acq, amt, fee FROM orders WHERE mer = ? AND iss = ? AND oid IN (${inList(chunk.length)})`,
            [mer, issuer, ...chunk],
          );
          for (const r of rows) existing.set(`${r.sub}\u0000${mer}\u0000${r.oid}`, r);
        }
        const cids = [...new Set(list.map((c) => c.cid))];
        for (let i = 0; i < cids.length; i += 500) {
          const chunk = cids.slice(i, i + 500);
          const rows = await tx.all<{ cid: string; spent: number }>(
            `SELECT cid, spent FROM tallies WHERE mer = ? AND cid IN (${inList(chunk.length)})`,
            [tallyKey(acq, mer), ...chunk],
          );
          for (const r of rows) sums.set(`${mer}\u0000${r.cid}`, r.spent);
        }
      }
      const reserved = await reservedBy(tx, issuer, subs, now);

      const results: DepositResult[] = [];
      const rows: ClaimedRow[] = [];
      const entries: EntryRow[] = [];
      const touched = new Set<string>();
      const sumsChanged = new Set<string>();
      let credited = 0;
      let feeTotal = 0;
      const bal = (id: string, delta: number): number => {
        const a = accounts.get(id)!;
        a.balance += delta;
        touched.add(id);
        return a.balance;
      };
      for (let i = 0; i < checked.length; i++) {
        const c = checked[i]!;
        if (!c.ok) {
          results.push({
            oid: peekOid(items[i]!.order),
            status: 'rejected',
            reason: c.reason,
            message: c.message,
          });
          continue;
        }
        const { cert, order, cid } = c;
        const reject = (reason: DepositReason, message: string) =>
          results.push({ oid: order.oid, status: 'rejected', reason, message });
        const key = `${cert.sub}\u0000${order.mer}\u0000${order.oid}`;
        const seen = existing.get(key);
        if (seen) {
          if (seen.acq === acq)
            results.push({ oid: order.oid, status: 'duplicate', amt: seen.amt, fee: seen.fee });
          else reject('replayed_order', 'This order was already paid to another merchant of the same id.');
          continue;
        }
        if (order.cur !== cur) {
          reject(
            'insufficient_amount',
            `A claim batch holds one currency; this one is in ${cur}, the order in ${order.cur}.`,
          );
          continue;
        }
        const buyer: StoredAccount | undefined = accounts.get(cert.sub);
        if (!buyer || buyer.status === 'deleted' || buyer.role !== 'buyer') {
          reject('bad_credential', `The buyer account "${cert.sub}" of this credential does not exist.`);
          continue;
        }
        if (buyer.currency !== cur) {
          reject(
            'insufficient_amount',
            `The order is in ${cur}; the buyer's account is in ${buyer.currency}.`,
          );
          continue;
        }
        const sumKey = `${order.mer}\u0000${cid}`;
        const spent = sums.get(sumKey) ?? 0;
        if (spent + order.amt > cert.lim) {
          const available = buyer.creditLimit + buyer.balance - (reserved.get(cert.sub) ?? 0);
          if (buyer.status !== 'active' || available < order.amt) {
            reject(
              'over_limit',
              `Past the credential's offline limit of ${cert.lim} for this merchant, and the buyer has not enough available credit.`,
            );
            continue;
          }
        }
        const fee = feeOf(order.amt, peer.fee_bps);
        const peerBal = accounts.get(peerAcc)!.balance;
        if (
          !Number.isSafeInteger(buyer.balance - order.amt) ||
          !Number.isSafeInteger(peerBal + credited + order.amt - fee) ||
          !Number.isSafeInteger(accounts.get(fees)!.balance + feeTotal + fee)
        ) {
          reject('over_limit', 'Crediting this order would take a balance past 2^53-1 micro-units.');
          continue;
        }
        existing.set(key, { acq, amt: order.amt, fee });
        sums.set(sumKey, spent + order.amt);
        sumsChanged.add(sumKey);
        rows.push({ sub: cert.sub, mer: order.mer, oid: order.oid, cid, amt: order.amt, fee, cur });
        entries.push({
          account: cert.sub,
          amount: -order.amt,
          balance: bal(cert.sub, -order.amt),
          kind: 'order',
          counterparty: order.mer,
          res: order.res,
          oid: order.oid,
          memo: `at ${acq}`,
          ref: batch,
        });
        credited += order.amt - fee;
        feeTotal += fee;
        results.push({ oid: order.oid, status: 'credited', amt: order.amt, fee });
      }

      if (rows.length > 0) {
        entries.push({
          account: peerAcc,
          amount: credited,
          balance: bal(peerAcc, credited),
          kind: 'claim',
          counterparty: null,
          res: null,
          oid: null,
          memo: `claim of ${rows.length} order${rows.length === 1 ? '' : 's'}, ${feeTotal} interchange`,
          ref: batch,
        });
      }
      if (feeTotal > 0) {
        entries.push({
          account: fees,
          amount: feeTotal,
          balance: bal(fees, feeTotal),
          kind: 'fee',
          counterparty: peerAcc,
          res: null,
          oid: null,
          memo: null,
          ref: batch,
        });
      }
      await tx.insertMany(
        'orders',
        ORDER_COLUMNS,
        rows.map((r) => [issuer, r.sub, r.mer, r.oid, r.cid, r.amt, r.fee, r.cur, 0, batch, now, acq]),
      );
      for (const k of sumsChanged) {
        const [mer, cid] = k.split('\u0000') as [string, string];
        await tx.run(
          'INSERT INTO tallies (mer, cid, spent) VALUES (?, ?, ?) ON CONFLICT (mer, cid) DO UPDATE SET spent = excluded.spent',
          [tallyKey(acq, mer), cid, sums.get(k)!],
        );
      }
      await insertEntries(tx, entries, now);
      for (const id of touched) {
        await tx.run('UPDATE accounts SET balance = ?, updated = ? WHERE id = ?', [
          accounts.get(id)!.balance,
          now,
          id,
        ]);
      }
      if (rows.length > 0) {
        // The position with the peer moved: webhook subscribers hear it from this same transaction.
        const net = -accounts.get(peerAcc)!.balance || 0;
        await enqueueEvent(tx, 'settlement.updated', { peer: acq, currency: cur, net, batch }, now);
      }
      const answer: DepositAnswer = { batch, results, credited };
      const json = JSON.stringify(answer);
      await tx.run('INSERT INTO batches (mer, id, answer, created) VALUES (?, ?, ?, ?)', [
        claimBatchKey(acq),
        batch,
        json,
        now,
      ]);
      return { json, answer };
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
