/**
 * Statements: the ledger entries of a period, one line per entry (time,
 * counterparty, resource, amount, fee, running balance) and totals per
 * currency, as RFC 4180 CSV or as one JSON document. `GET /v1/me/statement`
 * serves the caller's own account; `GET /v1/admin/statements` every account
 * (what a billing run imports).
 *
 * Streamed: entries are read in pages by entry id (each page one short
 * indexed query, so SQLite's single connection is never held for a whole
 * export and no PostgreSQL transaction stays open), each page is written as
 * one chunk, and the next page is read only once the socket has taken the
 * previous one (`write` returning false waits for `drain`). An export of any
 * size runs in the memory of one page and starts sending at once.
 *
 * Entries are append-only, so a period that has ended reads exactly; a
 * period still open shows what had committed when each page was read (the
 * admin export stops at the last entry that existed when it began).
 */
import type { ServerResponse } from 'node:http';
import { formatAmount } from '../protocol/money.js';
import { type Db, inList, type Row } from './db/types.js';
import { invalid, queryParam } from './validate.js';

/** Entries read per page. */
export const STATEMENT_PAGE = 1000;

/** The two output formats. */
export type StatementFormat = 'csv' | 'json';

/** A statement's period: `[from, to)` in Unix seconds; `to` null: no end. */
export interface Period {
  from: number;
  to: number | null;
  /** The `period` parameter it came from (`2026-11`), if any. */
  label?: string;
}

/** Whose entries: one account, or every account. */
export type StatementScope = { account: string; currency: string; role: string } | { all: true };

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})$/;
const MONTH = /^(\d{4})-(\d{2})$/;

/** Midnight UTC of a real calendar date, in seconds, or undefined. */
function dayStart(y: number, m: number, d: number): number | undefined {
  const ms = Date.UTC(y, m - 1, d);
  const back = new Date(ms);
  if (back.getUTCFullYear() !== y || back.getUTCMonth() !== m - 1 || back.getUTCDate() !== d)
    return undefined;
  return ms / 1000;
}

/**
 * A time bound from the query: Unix seconds, a date (`2026-11-01`, midnight
 * UTC) or an ISO 8601 date and time with a zone. A date given as `to` counts
 * the whole day (the bound is the next midnight), so `from=2026-11-01&to=2026-11-30`
 * is November. Undefined when absent; `400 invalid_request` naming the field when unreadable.
 */
export function timeParam(q: unknown, name: 'from' | 'to'): number | undefined {
  const v = queryParam(q, name);
  if (v === undefined || v === '') return undefined;
  const bad = () =>
    invalid(
      `\`${name}\` must be a date (2026-11-01), a date and time with a zone (2026-11-01T00:00:00Z) or Unix seconds.`,
    );
  if (/^\d{1,12}$/.test(v)) return Number(v);
  const d = DATE.exec(v);
  if (d) {
    const t = dayStart(Number(d[1]), Number(d[2]), Number(d[3]));
    if (t === undefined || t < 0) throw bad();
    return name === 'to' ? t + 86_400 : t;
  }
  if (DATETIME.test(v)) {
    const ms = Date.parse(v);
    if (!Number.isFinite(ms) || ms < 0) throw bad();
    return Math.floor(ms / 1000);
  }
  throw bad();
}

/** `period=YYYY-MM`: that month in UTC. */
export function monthPeriod(v: string): Period {
  const m = MONTH.exec(v);
  const y = Number(m?.[1]);
  const mo = Number(m?.[2]);
  if (!m || y < 1970 || mo < 1 || mo > 12) {
    throw invalid('`period` must be a month written YYYY-MM, like 2026-11.');
  }
  return { from: Date.UTC(y, mo - 1, 1) / 1000, to: Date.UTC(y, mo, 1) / 1000, label: v };
}

/** `from`/`to` of the query (both optional), checked to be in order. */
export function rangePeriod(q: unknown): Period {
  const from = timeParam(q, 'from') ?? 0;
  const to = timeParam(q, 'to') ?? null;
  if (to !== null && to <= from) throw invalid('`to` must be later than `from`.');
  return { from, to };
}

/** The admin export's period: `period=YYYY-MM`, or `from`/`to`; one of them. */
export function adminPeriod(q: unknown): Period {
  const period = queryParam(q, 'period');
  const hasRange = !!queryParam(q, 'from') || !!queryParam(q, 'to');
  if (period !== undefined && period !== '') {
    if (hasRange) throw invalid('`period` and `from`/`to` do not mix: give a month, or a range.');
    return monthPeriod(period);
  }
  if (!hasRange) throw invalid('`period` is required (a month, like 2026-11), or give `from` and `to`.');
  return rangePeriod(q);
}

/** `format=json|csv` (default json). */
export function formatParam(q: unknown): StatementFormat {
  const v = queryParam(q, 'format');
  if (v === undefined || v === '' || v === 'json') return 'json';
  if (v === 'csv') return 'csv';
  throw invalid('`format` must be "json" or "csv".');
}

/** One entry as read for a statement. */
type EntryRow = Row & {
  id: number;
  time: number;
  account: string;
  currency: string;
  amount: number;
  balance: number;
  fee: number;
  kind: string;
  counterparty: string | null;
  res: string | null;
  oid: string | null;
  memo: string | null;
  ref: string | null;
};

/** A statement line (the JSON form; CSV adds decimal columns). */
export interface StatementLine {
  id: string;
  time: number;
  account: string;
  currency: string;
  kind: string;
  counterparty: string | null;
  /** The order's resource; for a merchant's deposit entry, `deposit batch <id>`. */
  resource: string | null;
  oid: string | null;
  batch: string | null;
  memo: string | null;
  /** Signed micro-units this entry added to the balance. */
  amount: number;
  /** Commission: on a merchant's deposit entry, what the batch kept (its `amount` is net of it). */
  fee: number;
  /** The account's balance after this entry. */
  balance: number;
}

function lineOf(r: EntryRow): StatementLine {
  const resource = r.res ?? (r.kind === 'deposit' && r.ref !== null ? `deposit batch ${r.ref}` : null);
  return {
    id: String(r.id),
    time: r.time,
    account: r.account,
    currency: r.currency,
    kind: r.kind,
    counterparty: r.counterparty,
    resource,
    oid: r.oid,
    batch: r.ref,
    memo: r.memo,
    amount: r.amount,
    fee: r.fee,
    balance: r.balance,
  };
}

/** Totals of one currency over the period. */
export interface StatementTotals {
  currency: string;
  entries: number;
  /** Sum of the positive amounts. */
  credits: bigint;
  /** Sum of the negative amounts (negative). */
  debits: bigint;
  /** credits + debits. */
  net: bigint;
  fees: bigint;
  /** One account's statement: its balance before the period and after it. */
  opening?: number;
  closing?: number;
}

function newTotals(currency: string): StatementTotals {
  return { currency, entries: 0, credits: 0n, debits: 0n, net: 0n, fees: 0n };
}

function addTo(t: StatementTotals, l: StatementLine): void {
  const a = BigInt(l.amount);
  t.entries++;
  if (a > 0n) t.credits += a;
  else t.debits += a;
  t.net += a;
  t.fees += BigInt(l.fee);
}

/** Micro-units as a decimal string; exact past 2^53 too (totals can get there). */
export function decimal(v: number | bigint): string {
  if (typeof v === 'number') return formatAmount(v);
  if (v >= BigInt(-Number.MAX_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER))
    return formatAmount(Number(v));
  const abs = v < 0n ? -v : v;
  const frac = (abs % 1_000_000n).toString().padStart(6, '0').replace(/0+$/, '');
  return `${v < 0n ? '-' : ''}${abs / 1_000_000n}${frac ? `.${frac}` : ''}`;
}

/** One CSV field per RFC 4180: quoted when it holds a quote, comma, CR or LF; inner quotes doubled. */
export function csvField(v: string): string {
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

const csvRow = (cells: readonly string[]) => `${cells.map(csvField).join(',')}\r\n`;

/**
 * A text cell a spreadsheet would run as a formula (it begins with `=`, `+`, `-`, `@`, a tab or a
 * CR: resource names, memos and ids come from buyers, merchants and admins) gets a leading
 * apostrophe, so it is shown as text (OWASP: CSV injection). Numeric columns are left alone, and
 * the JSON format carries every value exactly.
 */
export function csvText(v: string): string {
  return /^[=+\-@\t\r]/.test(v) ? `'${v}` : v;
}

/** The CSV header row. */
export const CSV_COLUMNS = [
  'record',
  'id',
  'time',
  'time_unix',
  'account',
  'currency',
  'kind',
  'counterparty',
  'resource',
  'order_id',
  'batch',
  'memo',
  'amount',
  'amount_micros',
  'fee',
  'fee_micros',
  'balance',
  'balance_micros',
] as const;

function iso(t: number): string {
  return Math.abs(t) < 8.64e12 ? new Date(t * 1000).toISOString().replace('.000Z', 'Z') : '';
}

function csvLine(l: StatementLine): string {
  return csvRow([
    'entry',
    l.id,
    iso(l.time),
    String(l.time),
    csvText(l.account),
    l.currency,
    l.kind,
    csvText(l.counterparty ?? ''),
    csvText(l.resource ?? ''),
    csvText(l.oid ?? ''),
    csvText(l.batch ?? ''),
    csvText(l.memo ?? ''),
    formatAmount(l.amount),
    String(l.amount),
    formatAmount(l.fee),
    String(l.fee),
    formatAmount(l.balance),
    String(l.balance),
  ]);
}

/** A `total` row: amount is the net, fee the fees, balance the closing balance (one account). */
function csvTotal(t: StatementTotals, account: string): string {
  const memo = [
    `${t.entries} entries`,
    `credits ${decimal(t.credits)}`,
    `debits ${decimal(t.debits)}`,
    ...(t.opening === undefined ? [] : [`opening balance ${decimal(t.opening)}`]),
  ].join('; ');
  return csvRow([
    'total',
    '',
    '',
    '',
    csvText(account),
    t.currency,
    '',
    '',
    '',
    '',
    '',
    memo,
    decimal(t.net),
    t.net.toString(),
    decimal(t.fees),
    t.fees.toString(),
    t.closing === undefined ? '' : decimal(t.closing),
    t.closing === undefined ? '' : String(t.closing),
  ]);
}

function jsonTotal(t: StatementTotals): string {
  // BigInt sums go out as exact JSON integers.
  const parts = [
    `"currency":${JSON.stringify(t.currency)}`,
    `"entries":${t.entries}`,
    `"credits":${t.credits}`,
    `"debits":${t.debits}`,
    `"net":${t.net}`,
    `"fees":${t.fees}`,
  ];
  if (t.opening !== undefined) parts.push(`"opening":${t.opening}`, `"closing":${t.closing}`);
  return `{${parts.join(',')}}`;
}

/** Thrown when the client went away mid-export. */
class Gone extends Error {}

/** Writes a chunk, waiting for `drain` when the socket's buffer is full. */
function write(res: ServerResponse, chunk: string): Promise<void> {
  if (res.destroyed || res.writableEnded) return Promise.reject(new Gone());
  if (res.write(chunk)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      res.off('close', onClose);
      resolve();
    };
    const onClose = () => {
      res.off('drain', onDrain);
      reject(new Gone());
    };
    res.once('drain', onDrain);
    res.once('close', onClose);
  });
}

const COLUMNS =
  'e.id AS id, e.time AS time, e.account AS account, e.amount AS amount, e.balance AS balance, e.fee AS fee, e.kind AS kind, e.counterparty AS counterparty, e.res AS res, e.oid AS oid, e.memo AS memo, e.ref AS ref';

/** Most accounts whose currency an export remembers (bounded, so memory stays flat whatever the ledger). */
const CURRENCY_CACHE = 10_000;

/**
 * The entries of a statement, page after page, by entry id.
 *
 * One account: keyset pages on its `(account, id)` index. Every account: id
 * windows `(after, after + page]` up to the largest id when the export
 * began, each a bounded range of the primary key. (Measured on PostgreSQL
 * with fresh, unanalyzed statistics: `id > ? ... ORDER BY id LIMIT ?` was
 * planned as a scan and sort of the whole table for every page, 100 times
 * slower over 100,000 entries; a bounded range never is.) Currencies come
 * from a small cache of accounts rather than a join, for the same reason.
 */
async function* pages(
  db: Db,
  scope: StatementScope,
  period: Period,
  pageSize: number,
): AsyncGenerator<EntryRow[]> {
  const to = period.to ?? Number.MAX_SAFE_INTEGER;
  if (!('all' in scope)) {
    let after = 0;
    for (;;) {
      const rows = await db.all<EntryRow>(
        `SELECT ${COLUMNS} FROM entries e WHERE e.account = ? AND e.id > ? AND e.time >= ? AND e.time < ? ORDER BY e.id LIMIT ?`,
        [scope.account, after, period.from, to, pageSize],
      );
      if (rows.length > 0) yield rows.map((r) => ({ ...r, currency: scope.currency }));
      if (rows.length < pageSize) return;
      after = rows[rows.length - 1]!.id;
    }
  }
  const top = Number((await db.get<{ m: number | null }>('SELECT MAX(id) AS m FROM entries'))?.m ?? 0);
  const currencies = new Map<string, string>();
  for (let after = 0; after < top; after += pageSize) {
    const rows = await db.all<EntryRow>(
      `SELECT ${COLUMNS} FROM entries e WHERE e.id > ? AND e.id <= ? AND e.time >= ? AND e.time < ? ORDER BY e.id`,
      [after, Math.min(after + pageSize, top), period.from, to],
    );
    if (rows.length === 0) continue;
    const missing = [...new Set(rows.map((r) => r.account).filter((a) => !currencies.has(a)))];
    if (currencies.size + missing.length > CURRENCY_CACHE) currencies.clear();
    for (let i = 0; i < missing.length; i += 500) {
      const chunk = missing.slice(i, i + 500);
      const found = await db.all<{ id: string; currency: string }>(
        `SELECT id, currency FROM accounts WHERE id IN (${inList(chunk.length)})`,
        chunk,
      );
      for (const a of found) currencies.set(a.id, a.currency);
    }
    yield rows.map((r) => ({ ...r, currency: currencies.get(r.account) ?? '' }));
  }
}

/** The balance of an account at `t` (after every entry before it). */
async function balanceAt(db: Db, account: string, t: number): Promise<number> {
  const r = await db.get<{ balance: number }>(
    'SELECT balance FROM entries WHERE account = ? AND time < ? ORDER BY id DESC LIMIT 1',
    [account, t],
  );
  return r?.balance ?? 0;
}

/** What a statement is of, for its metadata and file name. */
export interface StatementRequest {
  scope: StatementScope;
  period: Period;
  format: StatementFormat;
  /** Unix seconds, stamped as `generated`. */
  now: number;
  /** Entries per page. Default `STATEMENT_PAGE`. */
  pageSize?: number;
}

function fileName(r: StatementRequest): string {
  const who = 'all' in r.scope ? 'all' : r.scope.account.replace(/[^A-Za-z0-9._-]/g, '_');
  const when = r.period.label ?? `${r.period.from}-${r.period.to ?? 'now'}`;
  return `statement-${who}-${when}.${r.format}`;
}

/**
 * Streams a statement into `res` (headers included). Resolves when it is
 * sent, or quietly when the client went away; a database failure midway
 * destroys the response (the client sees a cut transfer, never a partial
 * statement passing as whole) and is rethrown for logging.
 */
export async function streamStatement(db: Db, res: ServerResponse, r: StatementRequest): Promise<void> {
  const pageSize = r.pageSize ?? STATEMENT_PAGE;
  const one = 'all' in r.scope ? null : r.scope;
  res.statusCode = 200;
  res.setHeader(
    'Content-Type',
    r.format === 'csv' ? 'text/csv; charset=utf-8; header=present' : 'application/json; charset=utf-8',
  );
  res.setHeader('Content-Disposition', `attachment; filename="${fileName(r)}"`);
  res.setHeader('Cache-Control', 'no-store');
  if (res.req?.method === 'HEAD') {
    res.end();
    return;
  }
  const totals = new Map<string, StatementTotals>();
  let first: StatementLine | undefined;
  let last: StatementLine | undefined;
  try {
    if (r.format === 'csv') await write(res, csvRow(CSV_COLUMNS));
    else {
      const meta: Record<string, unknown> = one
        ? { account: one.account, role: one.role, currency: one.currency }
        : { accounts: 'all' };
      if (r.period.label) meta.period = r.period.label;
      Object.assign(meta, { from: r.period.from, to: r.period.to, generated: r.now });
      await write(res, `{"statement":${JSON.stringify(meta)},"entries":[`);
    }
    let n = 0;
    for await (const rows of pages(db, r.scope, r.period, pageSize)) {
      let chunk = '';
      for (const row of rows) {
        const l = lineOf(row);
        first ??= l;
        last = l;
        let t = totals.get(l.currency);
        if (!t) {
          t = newTotals(l.currency);
          totals.set(l.currency, t);
        }
        addTo(t, l);
        chunk += r.format === 'csv' ? csvLine(l) : `${n++ === 0 ? '\n' : ',\n'}${JSON.stringify(l)}`;
      }
      await write(res, chunk);
    }
    if (one) {
      // One account, one currency: a totals line even for an empty period, with its balances.
      const t = totals.get(one.currency) ?? newTotals(one.currency);
      t.opening = first ? first.balance - first.amount : await balanceAt(db, one.account, r.period.from);
      t.closing = last ? last.balance : t.opening;
      totals.set(one.currency, t);
    }
    const list = [...totals.values()].sort((a, b) => (a.currency < b.currency ? -1 : 1));
    if (r.format === 'csv') await write(res, list.map((t) => csvTotal(t, one?.account ?? '')).join(''));
    else await write(res, `\n],"totals":[${list.map(jsonTotal).join(',')}]}\n`);
    res.end();
  } catch (e) {
    if (e instanceof Gone) return;
    res.destroy();
    throw e;
  }
}

/** `GET /v1/admin/statements/summary`: entries and totals per currency of a period, without the lines. */
export async function statementSummary(
  db: Db,
  period: Period,
): Promise<{ from: number; to: number | null; entries: number; totals: Record<string, unknown>[] }> {
  const rows = await db.all<
    Row & { currency: string; n: number; credits: number; debits: number; fees: number }
  >(
    `SELECT a.currency AS currency, COUNT(*) AS n,
            SUM(CASE WHEN e.amount > 0 THEN e.amount ELSE 0 END) AS credits,
            SUM(CASE WHEN e.amount < 0 THEN e.amount ELSE 0 END) AS debits,
            SUM(e.fee) AS fees
     FROM entries e JOIN accounts a ON a.id = e.account
     WHERE e.time >= ? AND e.time < ? GROUP BY a.currency ORDER BY a.currency`,
    [period.from, period.to ?? Number.MAX_SAFE_INTEGER],
  );
  const totals = rows.map((t) => ({
    currency: t.currency,
    entries: Number(t.n),
    credits: Number(t.credits),
    debits: Number(t.debits),
    net: Number(t.credits) + Number(t.debits),
    fees: Number(t.fees),
  }));
  return {
    from: period.from,
    to: period.to,
    entries: totals.reduce((s, t) => s + t.entries, 0),
    totals,
  };
}
