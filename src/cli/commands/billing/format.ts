/**
 * What `micropay billing` prints and what it reads from people: aligned
 * tables, the account card, amounts ("12.50 USD", signed "-3 USD") and
 * commission rates ("2.5%", "250bps"), each wrong input a usage error with
 * a sentence saying how to write it.
 */
import type { Account } from '../../../billing-client/types.js';
import { MicropayError } from '../../../protocol/errors.js';
import { formatMoney, type Money, parseMoney } from '../../../protocol/money.js';

/** A usage error (exit 2): what was wrong, and where to look. */
export function usage(message: string, command = 'billing'): MicropayError {
  return new MicropayError('usage', `${message} Run "micropay ${command} --help" for the options.`);
}

/** Columns padded to their widest cell; `right` lists the columns aligned right (amounts). */
export function table(headers: string[], rows: string[][], right: ReadonlySet<number> = new Set()): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/** `label  value` lines, labels padded. */
export function card(pairs: [string, string][]): string {
  const w = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${k.padEnd(w)}  ${v}`.trimEnd()).join('\n') + '\n';
}

/** 250 -> "2.5%". */
export function formatBps(bps: number): string {
  const whole = Math.trunc(bps / 100);
  const frac = String(bps % 100)
    .padStart(2, '0')
    .replace(/0+$/, '');
  return `${whole}${frac ? `.${frac}` : ''}%`;
}

/** Unix seconds -> ISO 8601 without milliseconds. */
export function formatTime(t: number | undefined): string {
  return t === undefined ? '' : new Date(t * 1000).toISOString().replace('.000Z', 'Z');
}

const dailyLimit = (a: Account) => (a.dailyLimit === null ? 'none' : formatMoney(a.dailyLimit, a.currency));

/** The table of `accounts list`. */
export function accountsTable(accounts: Account[]): string {
  return table(
    ['ID', 'ROLE', 'STATUS', 'BALANCE', 'CREDIT LIMIT', 'DAILY LIMIT', 'COMMISSION', 'NAME'],
    accounts.map((a) => [
      a.id,
      a.role,
      a.status,
      formatMoney(a.balance, a.currency),
      formatMoney(a.creditLimit, a.currency),
      dailyLimit(a),
      formatBps(a.commissionBps),
      a.name ?? '',
    ]),
    new Set([3, 4, 5, 6]),
  );
}

/** The card of `accounts show` and of every command that changes an account. */
export function accountCard(a: Account): string {
  const pairs: [string, string][] = [
    ['id', a.id],
    ['role', a.role],
    ['status', a.status],
    ['currency', a.currency],
    ['balance', formatMoney(a.balance, a.currency)],
  ];
  if (a.available !== undefined) pairs.push(['available', formatMoney(a.available, a.currency)]);
  pairs.push(
    ['credit limit', formatMoney(a.creditLimit, a.currency)],
    ['daily limit', dailyLimit(a)],
    ['commission', `${formatBps(a.commissionBps)} (${a.commissionBps} bps)`],
    ['name', a.name ?? ''],
  );
  if (a.created !== undefined) pairs.push(['created', formatTime(a.created)]);
  if (a.updated !== undefined) pairs.push(['updated', formatTime(a.updated)]);
  return card(pairs);
}

/** An unsigned amount like "50 USD" for option `flag`; a usage error names the flag and shows the form. */
export function parseAmount(text: string, flag: string, command: string): Money {
  try {
    return parseMoney(text);
  } catch {
    throw usage(
      `${flag} ${JSON.stringify(text.slice(0, 64))} is not an amount: write it like "12.50 USD" (a number with at most 6 decimals, then the currency).`,
      command,
    );
  }
}

/** A signed amount like "12.50 USD" or "-3 USD" (never zero). */
export function parseSignedAmount(text: string, what: string, command: string): Money {
  const m = /^\s*([+-])\s*(.*)$/s.exec(text);
  const sign = m?.[1] === '-' ? -1 : 1;
  const money = parseAmount(m ? m[2]! : text, what, command);
  if (money.amt === 0)
    throw usage(`${what} ${JSON.stringify(text)} is zero; an adjustment must change the balance.`, command);
  return { amt: sign * money.amt, cur: money.cur };
}

/** A commission rate, "2.5%" or "250bps", into basis points (0 to 10000). */
export function parseCommission(text: string, command: string): number {
  const s = text.trim();
  let bps: number | undefined;
  const pct = /^(\d{1,3})(?:\.(\d{1,2}))?\s*%$/.exec(s);
  const bp = /^(\d{1,5})\s*bps?$/i.exec(s);
  if (pct) bps = Number(pct[1]) * 100 + Number((pct[2] ?? '').padEnd(2, '0'));
  else if (bp) bps = Number(bp[1]);
  if (bps === undefined || bps > 10_000) {
    throw usage(
      `${JSON.stringify(s.slice(0, 32))} is not a commission rate: write it as a percentage with at most 2 decimals ("2.5%") or in basis points ("250bps"), from 0 to 100%.`,
      command,
    );
  }
  return bps;
}

/** Checks that an amount is in the account's currency. */
export function sameCurrency(money: Money, currency: string, what: string, accountId: string): void {
  if (money.cur !== currency) {
    throw new MicropayError(
      'currency_mismatch',
      `Account "${accountId}" keeps ${currency}; ${what} is in ${money.cur}. Give it in ${currency}.`,
    );
  }
}
