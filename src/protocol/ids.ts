/** Field shapes of PROTOCOL.md section 1: identifiers, amounts, currencies, times, order ids. */

/** Largest amount a JSON number carries exactly: 2^53 - 1. */
export const MAX_AMOUNT = Number.MAX_SAFE_INTEGER;

const ID = /^[A-Za-z0-9._:-]{1,128}$/;
const CURRENCY = /^[A-Z0-9]{3,8}$/;
const OID = /^[A-Za-z0-9_-]{16,64}$/;
const B64URL = /^[A-Za-z0-9_-]*$/;

/** An identifier (`iss`, `sub`, `mer`, `kid`, account ids): 1 to 128 of `[A-Za-z0-9._:-]`. */
export function isId(v: unknown): v is string {
  return typeof v === 'string' && ID.test(v);
}

/** A currency code: 3 to 8 of `[A-Z0-9]`. */
export function isCurrency(v: unknown): v is string {
  return typeof v === 'string' && CURRENCY.test(v);
}

/** An amount of micro-units: an integer in [0, 2^53-1]. */
export function isAmount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** A price: an amount of at least 1. */
export function isPrice(v: unknown): v is number {
  return isAmount(v) && v >= 1;
}

/** A time in Unix seconds (a non-negative integer). */
export function isTime(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** An order id: 16 to 64 of `[A-Za-z0-9_-]`. */
export function isOid(v: unknown): v is string {
  return typeof v === 'string' && OID.test(v);
}

/** Characters of the base64url alphabet only (canonical form is checked on decoding). */
export function isB64urlChars(v: unknown): v is string {
  return typeof v === 'string' && B64URL.test(v);
}
