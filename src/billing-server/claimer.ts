/**
 * The acquirer's side of PROTOCOL.md section 9: sends the claims outbox
 * (`claim-queue.ts`) to the issuing peers with `POST /v1/interbank/claims`,
 * and books their answers. One claimer runs per server instance, on a timer
 * that does not keep the process alive; `close()` stops it.
 *
 * Nothing lost, nothing twice:
 * - Outbox rows are written with the merchant's credit (same transaction).
 * - Rows are grouped into a claim batch (one peer, one currency, at most
 *   1000 orders and ~1.5 MB) and the batch id is stored with them before the
 *   first send, so every retry sends the same id with the same orders; the
 *   issuer answers a known id with its first answer, and an order it already
 *   holds from us as `duplicate`.
 * - A batch is sent by one instance at a time: an instance takes a lease on it
 *   with a conditional UPDATE (atomic on SQLite and PostgreSQL); one that dies
 *   mid-send loses the lease after `leaseMs` and another sends the batch again,
 *   harmlessly. Assigning rows to batches uses `FOR UPDATE SKIP LOCKED` on
 *   PostgreSQL. An answer is booked once: the batch row is re-read as still
 *   open inside the booking transaction.
 * - A failed send (peer down, 5xx, 401 from a wrong token, an answer that does
 *   not match the batch) is retried with exponential backoff and jitter; one
 *   success with a peer makes its other waiting batches due at once. While a
 *   peer has `maxOpen` batches open per currency, new orders wait unassigned,
 *   so an outage builds a few big batches rather than many small ones.
 *
 * Books at the acquirer: a foreign order credited to a merchant debited the
 * peer's clearing account (`clearing:<peer>:<cur>`, claims in transit). The
 * peer's answer moves each order out of it: credited (or duplicate) into the
 * position with the peer (`peer:<peer>:<cur>`, debited `amt`, credited back the
 * interchange `fee` the issuer kept, which our fee account pays), refused into
 * `losses:<cur>` (the merchant keeps its credit: that is our promise; the loss
 * is ours). So `net` of the settlement report holds exactly what the peer has
 * acknowledged, and equals the peer's own figure with the sign flipped.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { ensureSystemAccounts } from './claim-queue.js';
import type { Db, Row } from './db/types.js';
import { inList } from './db/types.js';
import { type EntryRow, insertEntries } from './ledger.js';
import { enqueueEvent } from './outbox.js';
import { backoffMs } from './peering.js';
import { clearingAccountId, feeAccountId, lossesAccountId, peerAccountId, readAccounts } from './store.js';

/** Tuning of the claimer (all optional). */
export interface ClaimerOptions {
  /** How often this instance looks for claims to send, ms. Default 1000. */
  intervalMs?: number;
  /** Most orders per claim batch (the issuer takes at most 1000). Default 1000. */
  batchSize?: number;
  /** Most batches open (sent, not yet answered) per peer and currency. Default 4. */
  maxOpen?: number;
  /** First and longest pause after a failed send, ms (doubling, with jitter). Default 1000 and 300 000. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Timeout of one claim request, ms. Default 30 000. */
  timeoutMs?: number;
  /** How long an instance holds a batch it is sending before another may send it, ms. Default 60 000. */
  leaseMs?: number;
}

/** What the claimer needs from the server. */
export interface ClaimerContext {
  db: Db;
  /** Unix seconds (the server's clock, for ledger times). */
  now: () => number;
  logger: Logger;
}

/** One line of `GET /v1/admin/settlement`. */
export interface SettlementPosition {
  peer: string;
  currency: string;
  /** What the peer owes us (negative: what we owe it), as both sides have booked it. */
  net: number;
  /** Orders under the peer's credentials credited here and not yet acknowledged by it (claims in transit). */
  pending: number;
}

/** The longest body a claim batch may reach (the issuer takes 2 MB). */
const MAX_BATCH_BYTES = 1_500_000;
const RESULT_STATUSES = new Set(['credited', 'duplicate', 'rejected']);

type ClaimRow = Row & { id: string; peer: string; cur: string; attempts: number };
type OutboxRow = Row & {
  seq: number;
  sub: string;
  mer: string;
  oid: string;
  cert: string;
  token: string;
  amt: number;
};

interface Result {
  oid: string | null;
  status: 'credited' | 'duplicate' | 'rejected';
  reason?: string;
  amt?: number;
  fee?: number;
}

/** A claim batch id: time-ordered, random, an identifier. */
function newClaimId(): string {
  return `c${Date.now().toString(36)}.${randomBytes(9).toString('hex')}`;
}

/** A failed send, with a reason safe to log and store (never a token or a URL). */
class SendError extends Error {}

function reasonOf(e: unknown): string {
  if (e instanceof SendError) return e.message;
  const err = e as { name?: string; code?: string; cause?: { code?: string } } | null;
  if (err?.name === 'TimeoutError') return 'timed out';
  if (err?.name === 'AbortError') return 'stopped';
  return `unreachable (${err?.cause?.code ?? err?.code ?? 'network error'})`;
}

/** Checks the peer's answer against the batch sent; the results, or a SendError. */
function readAnswer(body: unknown, id: string, orders: readonly OutboxRow[]): Result[] {
  const b = body as { batch?: unknown; results?: unknown } | null;
  if (typeof b !== 'object' || b === null || b.batch !== id || !Array.isArray(b.results)) {
    throw new SendError('the peer answered something other than a claim answer for this batch');
  }
  if (b.results.length !== orders.length) {
    throw new SendError(`the peer answered ${b.results.length} results for ${orders.length} orders`);
  }
  return b.results.map((x: unknown, i: number) => {
    const r = x as Result;
    const o = orders[i]!;
    const intOk = (v: unknown, max: number) =>
      v === undefined || (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max);
    if (
      typeof r !== 'object' ||
      r === null ||
      !RESULT_STATUSES.has(r.status) ||
      (r.oid !== o.oid && !(r.oid === null && r.status === 'rejected')) ||
      !intOk(r.fee, o.amt) ||
      (r.amt !== undefined && r.amt !== o.amt)
    ) {
      throw new SendError(`the peer's result ${i} does not match order ${o.oid} of the batch`);
    }
    return r;
  });
}

/** Sends the claims of one server instance. */
export class Claimer {
  private readonly intervalMs: number;
  private readonly batchSize: number;
  private readonly maxOpen: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly timeoutMs: number;
  private readonly leaseMs: number;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private readonly stop = new AbortController();

  constructor(
    private readonly ctx: ClaimerContext,
    o: ClaimerOptions = {},
  ) {
    this.intervalMs = o.intervalMs ?? 1000;
    this.batchSize = Math.min(1000, Math.max(1, o.batchSize ?? 1000));
    this.maxOpen = Math.max(1, o.maxOpen ?? 4);
    this.backoffBaseMs = o.backoffBaseMs ?? 1000;
    this.backoffMaxMs = o.backoffMaxMs ?? 300_000;
    this.timeoutMs = o.timeoutMs ?? 30_000;
    this.leaseMs = o.leaseMs ?? 60_000;
  }

  /** Starts the timer (unref'd). */
  start(): void {
    if (this.timer || this.stop.signal.aborted) return;
    this.timer = setInterval(() => {
      void this.run();
    }, this.intervalMs);
    this.timer.unref();
  }

  /** Stops the timer, aborts a send under way, and waits for the current round to finish its booking. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.stop.abort();
    await this.running?.catch(() => {});
  }

  /** One round now (shared with a round under way): assign, then send what is due. */
  run(): Promise<void> {
    if (this.stop.signal.aborted) return Promise.resolve();
    if (!this.running) {
      this.running = this.round()
        .catch((e: unknown) => {
          this.ctx.logger.warn({ err: reasonOf(e) }, 'claimer: round failed; it runs again shortly');
        })
        .finally(() => {
          this.running = null;
        });
    }
    return this.running;
  }

  private async round(): Promise<void> {
    await this.assign();
    const t = Date.now();
    const due = await this.ctx.db.all<ClaimRow>(
      "SELECT id, peer, cur, attempts FROM claims WHERE status = 'open' AND next_at <= ? AND lease_until <= ? ORDER BY next_at LIMIT 50",
      [t, t],
    );
    // Peers in parallel (one that hangs until its timeout holds up no other), a peer's batches in turn.
    const byPeer = new Map<string, ClaimRow[]>();
    for (const c of due) byPeer.set(c.peer, [...(byPeer.get(c.peer) ?? []), c]);
    await Promise.all(
      [...byPeer.values()].map(async (list) => {
        for (const c of list) {
          if (this.stop.signal.aborted) return;
          const now = Date.now();
          // The lease: only the instance whose conditional UPDATE changed the row sends it.
          const mine = await this.ctx.db.run(
            "UPDATE claims SET lease_until = ? WHERE id = ? AND status = 'open' AND lease_until <= ?",
            [now + this.leaseMs, c.id, now],
          );
          if (mine === 1) await this.send(c);
        }
      }),
    );
  }

  /** Groups unassigned outbox rows into claim batches. */
  private async assign(): Promise<void> {
    const { db } = this.ctx;
    const groups = await db.all<{ peer: string; cur: string }>(
      'SELECT DISTINCT peer, cur FROM claim_orders WHERE claim IS NULL',
    );
    const lock = db.dialect === 'postgres' ? ' FOR UPDATE SKIP LOCKED' : '';
    for (const g of groups) {
      for (;;) {
        const made = await db.transaction(async (tx) => {
          const open = await tx.get<{ n: number }>(
            "SELECT COUNT(*) AS n FROM claims WHERE peer = ? AND cur = ? AND status = 'open'",
            [g.peer, g.cur],
          );
          if (Number(open?.n ?? 0) >= this.maxOpen) return 0;
          const rows = await tx.all<{ seq: number; amt: number; size: number }>(
            `SELECT seq, amt, LENGTH(cert) + LENGTH(token) AS size FROM claim_orders
             WHERE claim IS NULL AND peer = ? AND cur = ? ORDER BY seq LIMIT ?${lock}`,
            [g.peer, g.cur, this.batchSize],
          );
          let bytes = 0;
          let n = 0;
          while (n < rows.length && (n === 0 || bytes + Number(rows[n]!.size) + 32 <= MAX_BATCH_BYTES)) {
            bytes += Number(rows[n]!.size) + 32;
            n++;
          }
          if (n === 0) return 0;
          const take = rows.slice(0, n);
          const id = newClaimId();
          for (let i = 0; i < take.length; i += 500) {
            const chunk = take.slice(i, i + 500).map((r) => r.seq);
            await tx.run(
              `UPDATE claim_orders SET claim = ? WHERE claim IS NULL AND seq IN (${inList(chunk.length)})`,
              [id, ...chunk],
            );
          }
          const amt = take.reduce((s, r) => s + r.amt, 0);
          await tx.run(
            `INSERT INTO claims (id, peer, cur, orders, amt, status, attempts, next_at, lease_until, created)
             VALUES (?, ?, ?, ?, ?, 'open', 0, ?, 0, ?)`,
            [id, g.peer, g.cur, take.length, amt, Date.now(), this.ctx.now()],
          );
          return take.length;
        });
        if (made < this.batchSize) break;
      }
    }
  }

  /** Sends one leased batch and books the answer, or schedules the retry. */
  private async send(c: ClaimRow): Promise<void> {
    const { db, logger } = this.ctx;
    // Aborted by the timeout or by close() (AbortSignal.any is newer than the Node 20.0 we support).
    const abort = new AbortController();
    const timer = setTimeout(
      () => abort.abort(new DOMException('timed out', 'TimeoutError')),
      this.timeoutMs,
    );
    const onStop = () => abort.abort();
    this.stop.signal.addEventListener('abort', onStop, { once: true });
    try {
      const peer = await db.get<{ url: string; token: string | null }>(
        'SELECT url, token FROM peers WHERE issuer = ?',
        [c.peer],
      );
      if (!peer) throw new SendError(`"${c.peer}" is not a registered peer`);
      if (peer.token === null) {
        throw new SendError(
          `no token to present at "${c.peer}": set it with PATCH /v1/admin/peers/${c.peer} (micropay billing peers token)`,
        );
      }
      const orders = await db.all<OutboxRow>(
        'SELECT seq, sub, mer, oid, cert, token, amt FROM claim_orders WHERE claim = ? ORDER BY seq',
        [c.id],
      );
      const body = JSON.stringify({
        batch: c.id,
        orders: orders.map((o) => ({ cert: o.cert, order: o.token })),
      });
      const res = await fetch(new URL('/v1/interbank/claims', peer.url), {
        method: 'POST',
        headers: {
          authorization: `Bearer ${peer.token}`,
          'content-type': 'application/json',
          accept: 'application/json',
        },
        body,
        // A redirect could carry the token elsewhere: the peer's URL must be the final one.
        redirect: 'error',
        signal: abort.signal,
      });
      const json: unknown = await res.json().catch(() => null);
      if (res.status !== 200) {
        const code = (json as { error?: unknown } | null)?.error;
        throw new SendError(
          `the peer answered HTTP ${res.status}${typeof code === 'string' ? ` ${code.slice(0, 64)}` : ''}`,
        );
      }
      const results = readAnswer(json, c.id, orders);
      await this.book(c, orders, results);
      // The peer answers again: its other waiting batches need not sit out their backoff.
      await db.run("UPDATE claims SET next_at = ? WHERE peer = ? AND status = 'open' AND next_at > ?", [
        Date.now(),
        c.peer,
        Date.now(),
      ]);
    } catch (e) {
      const reason = reasonOf(e).slice(0, 300);
      const attempts = c.attempts + 1;
      const next = Date.now() + backoffMs(attempts, this.backoffBaseMs, this.backoffMaxMs);
      await db
        .run(
          "UPDATE claims SET attempts = ?, next_at = ?, lease_until = 0, last_error = ? WHERE id = ? AND status = 'open'",
          [attempts, next, reason, c.id],
        )
        .catch(() => {});
      logger.warn(
        { peer: c.peer, claim: c.id, attempts, err: reason },
        'claim not settled yet; it is retried with backoff',
      );
    } finally {
      clearTimeout(timer);
      this.stop.signal.removeEventListener('abort', onStop);
    }
  }

  /** Books a peer's answer to a batch, once. */
  private async book(c: ClaimRow, orders: readonly OutboxRow[], results: readonly Result[]): Promise<void> {
    const cur = c.cur;
    const clearing = clearingAccountId(c.peer, cur);
    const position = peerAccountId(c.peer, cur);
    const fees = feeAccountId(cur);
    const losses = lossesAccountId(cur);
    const ids = [clearing, position, fees, losses];
    let refused = 0;
    await this.ctx.db.transaction(async (tx) => {
      const now = this.ctx.now();
      const open = await tx.get<{ status: string }>('SELECT status FROM claims WHERE id = ?', [c.id]);
      if (open?.status !== 'open') return; // booked by another instance meanwhile
      await ensureSystemAccounts(tx, ids, cur, now);
      await tx.lockAccounts(ids);
      const accounts = await readAccounts(tx, ids);
      let settledAmt = 0;
      let feeSum = 0;
      let lostAmt = 0;
      let settled = 0;
      for (let i = 0; i < orders.length; i++) {
        const o = orders[i]!;
        const r = results[i]!;
        if (r.status === 'rejected') {
          lostAmt += o.amt;
          refused++;
          await tx.run("UPDATE claim_orders SET status = 'rejected', reason = ? WHERE seq = ?", [
            (r.reason ?? 'rejected').slice(0, 64),
            o.seq,
          ]);
        } else {
          const fee = r.fee ?? 0;
          settledAmt += o.amt;
          feeSum += fee;
          settled++;
          await tx.run("UPDATE claim_orders SET status = 'settled', fee = ? WHERE seq = ?", [fee, o.seq]);
        }
      }
      const entries: EntryRow[] = [];
      const move = (account: string, amount: number, counterparty: string | null, memo: string) => {
        if (amount === 0) return;
        const a = accounts.get(account)!;
        a.balance += amount;
        entries.push({
          account,
          amount,
          balance: a.balance,
          kind: 'claim',
          counterparty,
          res: null,
          oid: null,
          memo,
          ref: c.id,
        });
      };
      const memo = `claim ${c.id}: ${settled} settled, ${refused} refused by ${c.peer}`;
      move(clearing, settledAmt + lostAmt, position, memo);
      move(position, -(settledAmt - feeSum), clearing, memo);
      move(fees, -feeSum, position, `interchange kept by ${c.peer}`);
      move(losses, -lostAmt, clearing, `${refused} order${refused === 1 ? '' : 's'} refused by ${c.peer}`);
      for (const x of [clearing, position, fees, losses]) {
        if (!Number.isSafeInteger(accounts.get(x)!.balance)) {
          throw new SendError('booking this answer would take a balance past 2^53-1 micro-units');
        }
      }
      await insertEntries(tx, entries, now);
      for (const id of new Set(entries.map((e) => e.account))) {
        await tx.run('UPDATE accounts SET balance = ?, updated = ? WHERE id = ?', [
          accounts.get(id)!.balance,
          now,
          id,
        ]);
      }
      await tx.run(
        "UPDATE claims SET status = 'done', done = ?, lease_until = 0, last_error = NULL WHERE id = ?",
        [now, c.id],
      );
      await enqueueEvent(
        tx,
        'settlement.updated',
        {
          peer: c.peer,
          currency: cur,
          net: -accounts.get(position)!.balance || 0,
          pending: -accounts.get(clearing)!.balance || 0,
          batch: c.id,
        },
        now,
      );
    });
    if (refused > 0) {
      this.ctx.logger.warn(
        { peer: c.peer, claim: c.id, refused },
        'the peer refused claimed orders; their amounts are booked as losses',
      );
    }
  }

  /** The settlement report: per peer and currency, the acknowledged position and the claims in transit. */
  async settlement(): Promise<SettlementPosition[]> {
    const rows = await this.ctx.db.all<{ id: string; currency: string; balance: number }>(
      "SELECT id, currency, balance FROM accounts WHERE role = 'system' AND (id LIKE 'peer:%' OR id LIKE 'clearing:%')",
    );
    const out = new Map<string, SettlementPosition>();
    for (const r of rows) {
      const kind = r.id.startsWith('peer:') ? 'peer' : 'clearing';
      const rest = r.id.slice(kind.length + 1);
      const cut = rest.lastIndexOf(':');
      if (cut <= 0) continue;
      const peer = rest.slice(0, cut);
      const currency = rest.slice(cut + 1);
      const key = `${peer}\u0000${currency}`;
      const p = out.get(key) ?? { peer, currency, net: 0, pending: 0 };
      // Balances are what we owe the account holder: a negative one is owed to us.
      if (kind === 'peer') p.net = -r.balance || 0;
      else p.pending = -r.balance || 0;
      out.set(key, p);
    }
    return [...out.values()].sort((a, b) =>
      a.peer === b.peer ? (a.currency < b.currency ? -1 : 1) : a.peer < b.peer ? -1 : 1,
    );
  }
}
