/**
 * The claims outbox of PROTOCOL.md section 9, acquirer side: an order under a
 * peer's credential, credited to one of our merchants, is queued here in the
 * same transaction as the merchant's credit, so a crash can neither lose the
 * claim nor leave a credit without one. `claimer.ts` sends the queue to the
 * issuing peer in batches. Also the lazy creation of the system accounts that
 * peering books against (`clearing:`, `peer:`, `losses:`), whose currency is
 * only known when the first order arrives.
 */
import type { Queryable } from './db/types.js';

/** One order to claim from the peer that issued its credential. */
export interface ClaimOrder {
  /** The issuing peer. */
  peer: string;
  cur: string;
  sub: string;
  mer: string;
  oid: string;
  /** The credential and order tokens exactly as deposited: the peer re-verifies them. */
  cert: string;
  token: string;
  amt: number;
}

const COLUMNS = ['peer', 'cur', 'claim', 'sub', 'mer', 'oid', 'cert', 'token', 'amt', 'status', 'created'];

/** Queues orders to claim (inside the deposit's transaction). */
export function queueClaims(tx: Queryable, rows: readonly ClaimOrder[], now: number): Promise<void> {
  if (rows.length === 0) return Promise.resolve();
  return tx.insertMany(
    'claim_orders',
    COLUMNS,
    rows.map((r) => [r.peer, r.cur, null, r.sub, r.mer, r.oid, r.cert, r.token, r.amt, 'pending', now]),
  );
}

/** Creates system accounts of `currency` that do not exist yet (zero balance). */
export async function ensureSystemAccounts(
  tx: Queryable,
  ids: readonly string[],
  currency: string,
  now: number,
): Promise<void> {
  for (const id of new Set(ids)) {
    await tx.run(
      `INSERT INTO accounts (id, role, status, currency, balance, credit_limit, daily_limit, commission_bps, name, created, updated)
       VALUES (?, 'system', 'active', ?, 0, 0, NULL, 0, NULL, ?, ?) ON CONFLICT (id) DO NOTHING`,
      [id, currency, now, now],
    );
  }
}
