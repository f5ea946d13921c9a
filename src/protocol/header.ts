/**
 * The `Micropay-Payment` request header (PROTOCOL.md sections 5 and 7): an
 * RFC 8941 dictionary whose members are strings. Parsing is strict and
 * bounded: only `key="string"` members, no parameters, no duplicate keys,
 * at most 16 members and 10,000 characters; unknown keys are ignored.
 */
import { malformed } from './codec.js';

/** Longest `Micropay-Payment` header accepted, in characters. */
export const MAX_PAYMENT_HEADER = 10_000;
const MAX_MEMBERS = 16;

/** What a buyer presented: a credential with an order, or a receipt. */
export type PaymentHeader =
  | { kind: 'order'; cert: string; order: string }
  | { kind: 'receipt'; receipt: string };

function isLcalpha(c: number): boolean {
  return c >= 0x61 && c <= 0x7a;
}
function isKeyChar(c: number): boolean {
  return isLcalpha(c) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x2d || c === 0x2e || c === 0x2a;
}

/** Parses an RFC 8941 dictionary of strings; throws `malformed_payment`. */
export function parseStringDictionary(input: string): Map<string, string> {
  if (input.length > MAX_PAYMENT_HEADER)
    throw malformed(`The Micropay-Payment header is longer than ${MAX_PAYMENT_HEADER} characters.`);
  const s = input;
  let i = 0;
  const n = s.length;
  const out = new Map<string, string>();
  // (Loops written out, not helper closures: this runs on every paid request.)
  while (i < n && s.charCodeAt(i) === 0x20) i++;
  if (i >= n) throw malformed('The Micropay-Payment header is empty.');
  for (;;) {
    const c0 = s.charCodeAt(i);
    if (!(isLcalpha(c0) || c0 === 0x2a))
      throw malformed(`The Micropay-Payment header has an invalid key at character ${i + 1}.`);
    const k0 = i;
    while (i < n && isKeyChar(s.charCodeAt(i))) i++;
    const key = s.slice(k0, i);
    if (s.charCodeAt(i) !== 0x3d) {
      throw malformed(`The Micropay-Payment member "${key.slice(0, 16)}" must be key="value".`);
    }
    i++;
    if (s.charCodeAt(i) !== 0x22)
      throw malformed(`The Micropay-Payment member "${key.slice(0, 16)}" must be a quoted string.`);
    i++;
    let value = '';
    let closed = false;
    let run = i;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c === 0x5c) {
        const e = s.charCodeAt(i + 1);
        if (e !== 0x22 && e !== 0x5c)
          throw malformed('The Micropay-Payment header has an invalid escape in a string.');
        value += s.slice(run, i) + s[i + 1];
        i += 2;
        run = i;
      } else if (c === 0x22) {
        value += s.slice(run, i);
        i++;
        closed = true;
        break;
      } else if (c < 0x20 || c > 0x7e) {
        throw malformed(
          'The Micropay-Payment header has a character that is not printable ASCII in a string.',
        );
      } else i++;
    }
    if (!closed) throw malformed('The Micropay-Payment header has an unterminated string.');
    if (s.charCodeAt(i) === 0x3b) throw malformed('The Micropay-Payment header takes no parameters (";").');
    if (out.has(key)) throw malformed(`The Micropay-Payment header has "${key.slice(0, 16)}" twice.`);
    out.set(key, value);
    if (out.size > MAX_MEMBERS) throw malformed('The Micropay-Payment header has too many members.');
    while (i < n && (s.charCodeAt(i) === 0x20 || s.charCodeAt(i) === 0x09)) i++;
    if (i >= n) return out;
    if (s.charCodeAt(i) !== 0x2c)
      throw malformed(`The Micropay-Payment header expected "," at character ${i + 1}.`);
    i++;
    while (i < n && (s.charCodeAt(i) === 0x20 || s.charCodeAt(i) === 0x09)) i++;
    if (i >= n) throw malformed('The Micropay-Payment header ends with a trailing ",".');
  }
}

/**
 * The header exactly as wallets send an order (`formatPaymentHeader`) with token characters in
 * both strings: what the dictionary parser makes of it is these two strings, found here by one
 * native match rather than a loop over its 1,000 or so characters.
 */
const WALLET_ORDER = /^cert="([A-Za-z0-9_.-]*)", order="([A-Za-z0-9_.-]*)"$/;

/** Parses a `Micropay-Payment` header value into a credential and order, or a receipt. */
export function parsePaymentHeader(value: string | string[] | undefined): PaymentHeader {
  if (value === undefined) throw malformed('There is no Micropay-Payment header.');
  if (typeof value === 'string' && value.length <= MAX_PAYMENT_HEADER) {
    const m = WALLET_ORDER.exec(value);
    if (m !== null) return { kind: 'order', cert: m[1]!, order: m[2]! };
  }
  // Node joins repeated headers with ", ", which is also how RFC 8941 combines them.
  const text = Array.isArray(value) ? value.join(', ') : value;
  const d = parseStringDictionary(text);
  const cert = d.get('cert');
  const order = d.get('order');
  const receipt = d.get('receipt');
  if (receipt !== undefined) {
    if (cert !== undefined || order !== undefined) {
      throw malformed('The Micropay-Payment header carries either cert and order, or a receipt, not both.');
    }
    return { kind: 'receipt', receipt };
  }
  if (cert === undefined || order === undefined) {
    throw malformed(
      `The Micropay-Payment header needs both cert="..." and order="..." (${cert === undefined ? 'cert' : 'order'} is missing).`,
    );
  }
  return { kind: 'order', cert, order };
}

function quote(v: string): string {
  return `"${v.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** Formats the header a wallet sends: `cert="...", order="..."` or `receipt="..."`. */
export function formatPaymentHeader(p: PaymentHeader): string {
  return p.kind === 'receipt'
    ? `receipt=${quote(p.receipt)}`
    : `cert=${quote(p.cert)}, order=${quote(p.order)}`;
}
