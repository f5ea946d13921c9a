/**
 * Money: prices as people write them ("0.002 USD", "$0.002", { amt, cur })
 * into integer micro-units and back. Never a float on the way: the decimal
 * string is split and scaled as integers, so "0.1" is exactly 100000.
 */
import { MicropayError } from './errors.js';
import { isAmount, isCurrency, MAX_AMOUNT } from './ids.js';

/** An amount of integer micro-units (10^-6 of the currency unit) in a currency. */
export interface Money {
  amt: number;
  cur: string;
}

const SYMBOLS: Record<string, string> = { $: 'USD', '€': 'EUR', '£': 'GBP' };
const DECIMAL = /^(\d{1,16})(?:\.(\d{1,6}))?$/;
const DECIMAL_ANY = /^(\d+)(?:\.(\d+))?$/;

function bad(input: unknown, why: string): MicropayError {
  const shown = typeof input === 'string' ? JSON.stringify(input.slice(0, 64)) : typeof input;
  return new MicropayError(
    'invalid_price',
    `${shown} is not a valid price: ${why}. Write it like "0.002 USD", "$0.002" or { amt: 2000, cur: "USD" } (amt in micro-units).`,
  );
}

/** Scales a decimal string ("0.002") into micro-units (2000), or throws `invalid_price`. */
export function parseDecimal(text: string, original: unknown = text): number {
  const m = DECIMAL.exec(text);
  if (!m) {
    if (DECIMAL_ANY.test(text)) throw bad(original, 'it has more than 6 decimal places or is too large');
    throw bad(original, 'the amount is not a plain non-negative decimal number');
  }
  const whole = BigInt(m[1]!);
  const frac = BigInt((m[2] ?? '').padEnd(6, '0'));
  const micro = whole * 1_000_000n + frac;
  if (micro > BigInt(MAX_AMOUNT)) throw bad(original, 'it is larger than 2^53-1 micro-units');
  return Number(micro);
}

/**
 * Parses money as people write it into integer micro-units.
 * Accepts `"0.002 USD"`, `"USD 0.002"`, `"$0.002"`, `"€1"`, `"£1.50"`, or `{ amt, cur }` with `amt` in micro-units.
 * Throws `MicropayError` `invalid_price` for floats that do not fit six decimals, negatives and unknown formats.
 * @example parseMoney('0.002 USD') // { amt: 2000, cur: 'USD' }
 */
export function parseMoney(input: unknown): Money {
  if (typeof input === 'object' && input !== null) {
    const { amt, cur } = input as { amt?: unknown; cur?: unknown };
    if (!isAmount(amt)) throw bad(input, '`amt` must be an integer number of micro-units in [0, 2^53-1]');
    if (!isCurrency(cur)) throw bad(input, '`cur` must be 3 to 8 characters A-Z or 0-9, like "USD"');
    return { amt, cur };
  }
  if (typeof input !== 'string') throw bad(input, 'expected a string or { amt, cur }');
  const s = input.trim();
  if (s.length === 0 || s.length > 64) throw bad(input, 'expected something like "0.002 USD"');
  if (s.startsWith('-') || /^[$€£]-/.test(s)) throw bad(input, 'a price cannot be negative');
  const sym = SYMBOLS[s[0]!];
  if (sym) return { amt: parseDecimal(s.slice(1).trim(), input), cur: sym };
  const parts = s.split(/\s+/);
  if (parts.length === 2) {
    const [a, b] = parts as [string, string];
    if (isCurrency(b)) return { amt: parseDecimal(a, input), cur: b };
    if (isCurrency(a)) return { amt: parseDecimal(b, input), cur: a };
    throw bad(input, 'the currency must be 3 to 8 characters A-Z or 0-9, like "USD"');
  }
  throw bad(input, 'expected an amount and a currency, like "0.002 USD"');
}

/** Like `parseMoney`, and the amount must be at least 1 micro-unit (a price, PROTOCOL.md section 1). */
export function parsePrice(input: unknown): Money {
  const m = parseMoney(input);
  if (m.amt < 1) throw bad(input, 'a price must be at least 1 micro-unit (0.000001)');
  return m;
}

/** Formats micro-units as a decimal string without trailing zeros: 2000 -> "0.002". */
export function formatAmount(amt: number): string {
  const neg = amt < 0;
  const abs = BigInt(Math.abs(amt));
  const whole = abs / 1_000_000n;
  const frac = (abs % 1_000_000n).toString().padStart(6, '0').replace(/0+$/, '');
  return `${neg ? '-' : ''}${whole}${frac ? `.${frac}` : ''}`;
}

/**
 * Formats money for people: `formatMoney(2000, 'USD') === '0.002 USD'`.
 * Signed amounts (ledger entries) keep their sign.
 */
export function formatMoney(amt: number, cur: string): string {
  return `${formatAmount(amt)} ${cur}`;
}
