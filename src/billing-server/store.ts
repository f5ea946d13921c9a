/**
 * Persistence of the billing server's records over the `Db` interface:
 * accounts, API tokens, peers, ledger entries, and the checks the tests and
 * `/healthz` use. Money-moving transactions live in `ledger.ts`; this file
 * holds the plain reads and writes, written once for both dialects.
 */
import { createHash, randomBytes } from 'node:crypto';
import { MicropayError } from '../protocol/index.js';
import type { Db, Queryable, Row } from './db/types.js';
import { enqueueEvent } from './outbox.js';

/** Roles of API tokens (PROTOCOL.md section 8). */
export type Role = 'admin' | 'merchant' | 'buyer' | 'peer';

/** Account roles; `system` accounts are the server's own (fees, external money). */
export type AccountRole = 'buyer' | 'merchant' | 'system';

/** An account as the API shows it (PROTOCOL.md section 10). */
export interface Account {
  id: string;
  role: AccountRole;
  status: 'active' | 'disabled';
  currency: string;
  /** What the server owes the holder, micro-units (a buyer's falls below zero as it spends). */
  balance: number;
  creditLimit: number;
  /** Cap of a credential's offline limit; `null`: no daily cap. */
  dailyLimit: number | null;
  commissionBps: number;
  name: string | null;
  created: number;
  updated: number;
}

/** One ledger entry of an account, as `GET /v1/me/entries` shows it. */
export interface Entry {
  id: string;
  time: number;
  /** Signed: what this entry added to the balance. */
  amount: number;
  /** Balance after this entry. */
  balance: number;
  /**
   * `order`: a buyer's purchase; `deposit`: a merchant's net credit for one batch; `fee`: commission of a batch;
   * `adjustment`: by an admin; `claim`: interbank clearing, on the server's own peer accounts (section 9).
   */
  kind: 'order' | 'deposit' | 'fee' | 'adjustment' | 'claim';
  counterparty: string | null;
  res: string | null;
  oid: string | null;
  memo: string | null;
  /** The deposit batch id, for order and fee entries. */
  batch: string | null;
}

/** A peer billing server (PROTOCOL.md section 9). */
export interface Peer {
  issuer: string;
  url: string;
  /** Whether this server holds a token to present at the peer (never shown). */
  hasToken: boolean;
  /** Id of the token the peer presents here. */
  tokenId: string | null;
  /** Interchange fee this server keeps, as issuer, on each order the peer claims here: basis points. */
  feeBps: number;
  /** When the peer's key set was last fetched (Unix seconds), `null` before the first success. */
  keysFetched: number | null;
  created: number;
  updated: number;
}

/** The fee account of a currency: commission is credited there. */
export const feeAccountId = (cur: string): string => `fees:${cur}`;
/** The account that balances admin adjustments (money entering or leaving the system). */
export const externalAccountId = (cur: string): string => `external:${cur}`;
/** What this server and peer `iss` owe each other in `cur`, as both have booked it (`balance < 0`: the peer owes us). */
export const peerAccountId = (iss: string, cur: string): string => `peer:${iss}:${cur}`;
/** Orders under peer `iss`'s credentials credited here and not yet acknowledged by the peer (claims in transit). */
export const clearingAccountId = (iss: string, cur: string): string => `clearing:${iss}:${cur}`;
/** Claims a peer refused after this server credited its merchant: this server's loss. */
export const lossesAccountId = (cur: string): string => `losses:${cur}`;
/** Ids that belong to system accounts and cannot be created through the API. */
export const isSystemId = (id: string): boolean => /^(fees|external|peer|clearing|losses):/.test(id);

/** sha256 hex of an API token: only the hash is stored. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** A new API token and its id: `mpt_<43 base64url>`, `tok_<16 base64url>`. */
export function newToken(): { token: string; tokenId: string; hash: string } {
  const token = `mpt_${randomBytes(32).toString('base64url')}`;
  return { token, tokenId: `tok_${randomBytes(12).toString('base64url')}`, hash: hashToken(token) };
}

type AccountRow = Row & {
  id: string;
  role: string;
  status: string;
  currency: string;
  balance: number;
  credit_limit: number;
  daily_limit: number | null;
  commission_bps: number;
  name: string | null;
  created: number;
  updated: number;
};

/** Columns selected for an account. */
export const ACCOUNT_COLUMNS =
  'id, role, status, currency, balance, credit_limit, daily_limit, commission_bps, name, created, updated';

/** Internal view of a stored account: also the `deleted` status the API never shows. */
export interface StoredAccount extends Omit<Account, 'status'> {
  status: 'active' | 'disabled' | 'deleted';
}

export function toAccount(r: AccountRow): StoredAccount {
  return {
    id: r.id,
    role: r.role as AccountRole,
    status: r.status as StoredAccount['status'],
    currency: r.currency,
    balance: r.balance,
    creditLimit: r.credit_limit,
    dailyLimit: r.daily_limit,
    commissionBps: r.commission_bps,
    name: r.name,
    created: r.created,
    updated: r.updated,
  };
}

/** The API view of a stored account (never a deleted one). */
export function publicAccount(a: StoredAccount): Account {
  return { ...a, status: a.status === 'deleted' ? 'disabled' : a.status };
}

/** Reads accounts by id (deleted ones included; callers decide). */
export async function readAccounts(
  q: Queryable,
  ids: readonly string[],
): Promise<Map<string, StoredAccount>> {
  const out = new Map<string, StoredAccount>();
  const unique = [...new Set(ids)];
  for (let i = 0; i < unique.length; i += 500) {
    const chunk = unique.slice(i, i + 500);
    const rows = await q.all<AccountRow>(
      `SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE id IN (${chunk.map(() => '?').join(', ')})`,
      chunk,
    );
    for (const r of rows) out.set(r.id, toAccount(r));
  }
  return out;
}

/** Fields of a new account. */
export interface NewAccount {
  id: string;
  role: 'buyer' | 'merchant';
  currency: string;
  name: string | null;
  creditLimit: number;
  dailyLimit: number | null;
  commissionBps: number;
}

/** What `PATCH /v1/admin/accounts/:id` may change. */
export type AccountPatch = Partial<
  Pick<Account, 'status' | 'creditLimit' | 'dailyLimit' | 'commissionBps' | 'name'>
>;

const notFound = (id: string) =>
  new MicropayError(
    'no_such_account',
    `There is no account "${id}". List accounts with GET /v1/admin/accounts.`,
    { status: 404 },
  );

/** Plain reads and writes of the billing server's records. */
export class Store {
  constructor(readonly db: Db) {}

  /** The account, or undefined (also for a deleted one). */
  async account(id: string): Promise<StoredAccount | undefined> {
    const r = await this.db.get<AccountRow>(`SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE id = ?`, [id]);
    const a = r && toAccount(r);
    return a && a.status !== 'deleted' ? a : undefined;
  }

  /** The account or `404 no_such_account`. */
  async mustAccount(id: string): Promise<StoredAccount> {
    const a = await this.account(id);
    if (!a) throw notFound(id);
    return a;
  }

  /** Creates an account, its currency's system accounts if missing, and its first token. */
  async createAccount(
    a: NewAccount,
    now: number,
  ): Promise<{ account: Account; token: string; tokenId: string }> {
    const t = newToken();
    return this.db.transaction(async (tx) => {
      const existing = await tx.get('SELECT status FROM accounts WHERE id = ?', [a.id]);
      if (existing) {
        const why = existing.status === 'deleted' ? ' It was deleted; ids are never reused.' : '';
        throw new MicropayError(
          'account_exists',
          `An account "${a.id}" already exists.${why} Choose another id.`,
          { status: 409 },
        );
      }
      for (const sys of [feeAccountId(a.currency), externalAccountId(a.currency)]) {
        await tx.run(
          `INSERT INTO accounts (id, role, status, currency, balance, credit_limit, daily_limit, commission_bps, name, created, updated)
           VALUES (?, 'system', 'active', ?, 0, 0, NULL, 0, NULL, ?, ?) ON CONFLICT (id) DO NOTHING`,
          [sys, a.currency, now, now],
        );
      }
      await tx.run(
        `INSERT INTO accounts (id, role, status, currency, balance, credit_limit, daily_limit, commission_bps, name, created, updated)
         VALUES (?, ?, 'active', ?, 0, ?, ?, ?, ?, ?, ?)`,
        [a.id, a.role, a.currency, a.creditLimit, a.dailyLimit, a.commissionBps, a.name, now, now],
      );
      await tx.run('INSERT INTO tokens (id, hash, role, subject, created) VALUES (?, ?, ?, ?, ?)', [
        t.tokenId,
        t.hash,
        a.role,
        a.id,
        now,
      ]);
      const row = await tx.get<AccountRow>(`SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE id = ?`, [a.id]);
      return { account: publicAccount(toAccount(row!)), token: t.token, tokenId: t.tokenId };
    });
  }

  /** Accounts by id, `limit` at a time after `after` (exclusive), filtered; system accounts only when asked for. */
  async listAccounts(f: {
    role?: AccountRole;
    status?: 'active' | 'disabled';
    after?: string;
    limit: number;
  }): Promise<Account[]> {
    const where: string[] = ["status <> 'deleted'"];
    const params: (string | number)[] = [];
    if (f.role) {
      where.push('role = ?');
      params.push(f.role);
    } else where.push("role <> 'system'");
    if (f.status) {
      where.push('status = ?');
      params.push(f.status);
    }
    if (f.after !== undefined) {
      where.push('id > ?');
      params.push(f.after);
    }
    params.push(f.limit);
    const rows = await this.db.all<AccountRow>(
      `SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE ${where.join(' AND ')} ORDER BY id LIMIT ?`,
      params,
    );
    return rows.map((r) => publicAccount(toAccount(r)));
  }

  /** Applies a patch to a buyer or merchant account. */
  async patchAccount(id: string, p: AccountPatch, now: number): Promise<Account> {
    return this.db.transaction(async (tx) => {
      await tx.lockAccounts([id]);
      const r = await tx.get<AccountRow>(`SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE id = ?`, [id]);
      if (!r || r.status === 'deleted') throw notFound(id);
      if (r.role === 'system') throw systemAccount(id);
      const sets: string[] = [];
      const params: (string | number | null)[] = [];
      const set = (col: string, v: string | number | null) => {
        sets.push(`${col} = ?`);
        params.push(v);
      };
      if (p.status !== undefined) set('status', p.status);
      if (p.creditLimit !== undefined) set('credit_limit', p.creditLimit);
      if (p.dailyLimit !== undefined) set('daily_limit', p.dailyLimit);
      if (p.commissionBps !== undefined) set('commission_bps', p.commissionBps);
      if (p.name !== undefined) set('name', p.name);
      set('updated', now);
      await tx.run(`UPDATE accounts SET ${sets.join(', ')} WHERE id = ?`, [...params, id]);
      if (p.status === 'disabled' && r.status !== 'disabled') {
        // A webhook event in the same transaction as the change it reports.
        await enqueueEvent(tx, 'account.disabled', { account: id, role: r.role, currency: r.currency }, now);
      }
      const after = await tx.get<AccountRow>(`SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE id = ?`, [id]);
      return publicAccount(toAccount(after!));
    });
  }

  /** Deletes a settled account: its tokens stop at once; the row stays (status `deleted`) so the ledger keeps its history and the id is never reused. */
  async deleteAccount(id: string, now: number): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.lockAccounts([id]);
      const r = await tx.get<AccountRow>(`SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE id = ?`, [id]);
      if (!r || r.status === 'deleted') throw notFound(id);
      if (r.role === 'system') throw systemAccount(id);
      if (r.balance !== 0) {
        throw new MicropayError(
          'account_not_settled',
          `Account "${id}" has a balance of ${r.balance} micro-units; settle it to zero with an adjustment before deleting it.`,
          { status: 409 },
        );
      }
      await tx.run("UPDATE accounts SET status = 'deleted', updated = ? WHERE id = ?", [now, id]);
      await tx.run('UPDATE tokens SET revoked = ? WHERE subject = ? AND revoked IS NULL AND role <> ?', [
        now,
        id,
        'peer',
      ]);
    });
  }

  /** Issues another API token for an account. */
  async issueToken(id: string, now: number): Promise<{ token: string; tokenId: string }> {
    const a = await this.mustAccount(id);
    if (a.role === 'system') throw systemAccount(id);
    const t = newToken();
    await this.db.run('INSERT INTO tokens (id, hash, role, subject, created) VALUES (?, ?, ?, ?, ?)', [
      t.tokenId,
      t.hash,
      a.role,
      id,
      now,
    ]);
    return { token: t.token, tokenId: t.tokenId };
  }

  /** Revokes a token by id; `404 no_such_token` when unknown or already revoked. */
  async revokeToken(tokenId: string, now: number): Promise<void> {
    const n = await this.db.run('UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL', [
      now,
      tokenId,
    ]);
    if (n === 0) {
      throw new MicropayError(
        'no_such_token',
        `There is no live token "${tokenId}" (unknown or already revoked).`,
        { status: 404 },
      );
    }
  }

  /** Who holds a token: its role and subject (account id or peer issuer), or undefined when unknown or revoked. */
  async tokenOwner(hash: string): Promise<{ role: Role; subject: string } | undefined> {
    const r = await this.db.get<{ role: string; subject: string }>(
      'SELECT role, subject FROM tokens WHERE hash = ? AND revoked IS NULL',
      [hash],
    );
    return r && { role: r.role as Role, subject: r.subject };
  }

  /** Entries of an account, newest first, `limit` at a time before entry id `before`. */
  async entries(account: string, before: number | undefined, limit: number): Promise<Entry[]> {
    const params: (string | number)[] = [account];
    let cond = '';
    if (before !== undefined) {
      cond = ' AND id < ?';
      params.push(before);
    }
    params.push(limit);
    const rows = await this.db.all<
      Row & { id: number; time: number; amount: number; balance: number; kind: string }
    >(
      `SELECT id, time, amount, balance, kind, counterparty, res, oid, memo, ref FROM entries WHERE account = ?${cond} ORDER BY id DESC LIMIT ?`,
      params,
    );
    return rows.map((r) => ({
      id: String(r.id),
      time: r.time,
      amount: r.amount,
      balance: r.balance,
      kind: r.kind as Entry['kind'],
      counterparty: r.counterparty as string | null,
      res: r.res as string | null,
      oid: r.oid as string | null,
      memo: r.memo as string | null,
      batch: r.ref as string | null,
    }));
  }

  /**
   * The ledger check: per currency, the sum of account balances and the sum
   * of entry amounts (both must be zero), and accounts whose balance differs
   * from the sum of their entries.
   */
  async audit(): Promise<{
    balances: Record<string, number>;
    entries: Record<string, number>;
    mismatched: string[];
  }> {
    const balances: Record<string, number> = {};
    const entries: Record<string, number> = {};
    for (const r of await this.db.all<{ currency: string; s: number }>(
      'SELECT currency, SUM(balance) AS s FROM accounts GROUP BY currency',
    )) {
      balances[r.currency] = Number(r.s);
    }
    for (const r of await this.db.all<{ currency: string; s: number }>(
      'SELECT a.currency AS currency, SUM(e.amount) AS s FROM entries e JOIN accounts a ON a.id = e.account GROUP BY a.currency',
    )) {
      entries[r.currency] = Number(r.s);
    }
    const mismatched = (
      await this.db.all<{ id: string }>(
        `SELECT a.id AS id FROM accounts a LEFT JOIN (SELECT account, SUM(amount) AS s FROM entries GROUP BY account) e
         ON e.account = a.id WHERE a.balance <> COALESCE(e.s, 0)`,
      )
    ).map((r) => r.id);
    return { balances, entries, mismatched };
  }

  // Peers (section 9). A removed peer stays as a tombstone (`removed` set): its URL and the token we
  // present there keep our owed claims going out, and its token here keeps working for claims of
  // orders signed before the removal (src/billing-server/claims.ts); it is listed no more.

  /** Registers a peer, or registers again one removed earlier (its old token here is revoked). */
  async createPeer(
    issuer: string,
    url: string,
    outToken: string | null,
    feeBps: number,
    now: number,
  ): Promise<{ peer: Peer; token: string }> {
    const t = newToken();
    return this.db.transaction(async (tx) => {
      const prior = await tx.get<{ removed: number | null; token_id: string | null }>(
        'SELECT removed, token_id FROM peers WHERE issuer = ?',
        [issuer],
      );
      if (prior && prior.removed === null) {
        throw new MicropayError(
          'peer_exists',
          `A peer "${issuer}" is already registered. Change it with PATCH /v1/admin/peers/${issuer}.`,
          {
            status: 409,
          },
        );
      }
      await tx.run('INSERT INTO tokens (id, hash, role, subject, created) VALUES (?, ?, ?, ?, ?)', [
        t.tokenId,
        t.hash,
        'peer',
        issuer,
        now,
      ]);
      if (prior) {
        await tx.run('UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL', [now, prior.token_id]);
        await tx.run(
          `UPDATE peers SET url = ?, token = ?, token_id = ?, fee_bps = ?, removed = NULL, keys_fetched = NULL,
           keys_fresh_until = NULL, created = ?, updated = ? WHERE issuer = ?`,
          [url, outToken, t.tokenId, feeBps, now, now, issuer],
        );
      } else {
        await tx.run(
          'INSERT INTO peers (issuer, url, token, token_id, fee_bps, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?)',
          [issuer, url, outToken, t.tokenId, feeBps, now, now],
        );
      }
      const peer: Peer = {
        issuer,
        url,
        hasToken: outToken !== null,
        tokenId: t.tokenId,
        feeBps,
        keysFetched: null,
        created: now,
        updated: now,
      };
      return { peer, token: t.token };
    });
  }

  async patchPeer(
    issuer: string,
    p: { url?: string; token?: string | null; feeBps?: number },
    now: number,
  ): Promise<Peer> {
    const sets = ['updated = ?'];
    const params: (string | number | null)[] = [now];
    if (p.url !== undefined) {
      // Keys come from the URL: a new one is fetched afresh.
      sets.push('url = ?', 'keys_fresh_until = NULL');
      params.push(p.url);
    }
    if (p.token !== undefined) {
      sets.push('token = ?');
      params.push(p.token);
    }
    if (p.feeBps !== undefined) {
      sets.push('fee_bps = ?');
      params.push(p.feeBps);
    }
    const n = await this.db.run(`UPDATE peers SET ${sets.join(', ')} WHERE issuer = ? AND removed IS NULL`, [
      ...params,
      issuer,
    ]);
    if (n === 0) throw noPeer(issuer);
    return (await this.peers()).find((x) => x.issuer === issuer)!;
  }

  /** The registered peers (not removed ones). */
  async peers(): Promise<Peer[]> {
    const rows = await this.db.all<
      Row & {
        issuer: string;
        url: string;
        token: string | null;
        token_id: string | null;
        fee_bps: number;
        keys_fetched: number | null;
        created: number;
        updated: number;
      }
    >(
      'SELECT issuer, url, token, token_id, fee_bps, keys_fetched, created, updated FROM peers WHERE removed IS NULL ORDER BY issuer',
    );
    return rows.map((r) => ({
      issuer: r.issuer,
      url: r.url,
      hasToken: r.token !== null,
      tokenId: r.token_id,
      feeBps: r.fee_bps,
      keysFetched: r.keys_fetched === null ? null : Math.floor(r.keys_fetched / 1000),
      created: r.created,
      updated: r.updated,
    }));
  }

  /** Removes a peer: its keys are forgotten (its credentials stop verifying here); the row stays as a tombstone. */
  async deletePeer(issuer: string, now: number): Promise<void> {
    await this.db.transaction(async (tx) => {
      const n = await tx.run(
        'UPDATE peers SET removed = ?, updated = ? WHERE issuer = ? AND removed IS NULL',
        [now, now, issuer],
      );
      if (n === 0) throw noPeer(issuer);
      await tx.run('DELETE FROM peer_keys WHERE issuer = ?', [issuer]);
    });
  }
}

function systemAccount(id: string): MicropayError {
  return new MicropayError(
    'system_account',
    `"${id}" is one of the server's own accounts; it moves only with orders and adjustments.`,
    {
      status: 409,
    },
  );
}

function noPeer(issuer: string): MicropayError {
  return new MicropayError(
    'no_such_peer',
    `There is no peer "${issuer}". List peers with GET /v1/admin/peers.`,
    { status: 404 },
  );
}
