/**
 * Request validation: every bad body or query gets `400 invalid_request`
 * with a sentence naming the field, never a 500. Small checkers rather than
 * a schema library: the bodies are few and flat.
 */
import { b64urlDecode, isAmount, isCurrency, isId, MicropayError } from '../protocol/index.js';

/** A `400 invalid_request` naming what to fix. */
export function invalid(message: string): MicropayError {
  return new MicropayError('invalid_request', message, { status: 400 });
}

/** The parsed JSON body as an object, or `400`. */
export function objectBody(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalid('The request body must be a JSON object, sent with Content-Type: application/json.');
  }
  return body as Record<string, unknown>;
}

/** Refuses fields other than `allowed` (a typo like `credit_limit` should not pass silently). */
export function onlyFields(b: Record<string, unknown>, allowed: readonly string[]): void {
  for (const k of Object.keys(b)) {
    if (!allowed.includes(k))
      throw invalid(
        `Unknown field \`${k.slice(0, 64)}\`; this call takes ${allowed.map((a) => `\`${a}\``).join(', ')}.`,
      );
  }
}

export function idField(b: Record<string, unknown>, name: string): string {
  const v = b[name];
  if (!isId(v)) throw invalid(`\`${name}\` must be an identifier of 1 to 128 characters [A-Za-z0-9._:-].`);
  // "." and ".." are valid protocol ids but URL dot-segments: /v1/admin/accounts/.. could never be addressed.
  if (v === '.' || v === '..')
    throw invalid(`\`${name}\` may not be "." or "..": it could not be used in a URL path.`);
  return v;
}

export function currencyField(b: Record<string, unknown>, name: string): string {
  const v = b[name];
  if (!isCurrency(v))
    throw invalid(`\`${name}\` must be a currency of 3 to 8 characters [A-Z0-9], like "USD".`);
  return v;
}

export function amountField(b: Record<string, unknown>, name: string): number {
  const v = b[name];
  if (!isAmount(v))
    throw invalid(`\`${name}\` must be an integer amount of micro-units in [0, 2^53-1] (1 USD = 1000000).`);
  return v;
}

export function nullableAmountField(b: Record<string, unknown>, name: string): number | null {
  return b[name] === null ? null : amountField(b, name);
}

export function bpsField(b: Record<string, unknown>, name: string): number {
  const v = b[name];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 10_000) {
    throw invalid(`\`${name}\` must be an integer number of basis points from 0 to 10000 (100 = 1%).`);
  }
  return v;
}

export function textField(b: Record<string, unknown>, name: string, max: number): string {
  const v = b[name];
  if (typeof v !== 'string' || v.length > max)
    throw invalid(`\`${name}\` must be a string of at most ${max} characters.`);
  return v;
}

export function nullableTextField(b: Record<string, unknown>, name: string, max: number): string | null {
  return b[name] === null ? null : textField(b, name, max);
}

/** A token-shaped string field (`cert`, `order`, `auth`): its content is checked by the protocol code. */
export function tokenField(b: Record<string, unknown>, name: string, where = name): string {
  const v = b[name];
  if (typeof v !== 'string' || v.length === 0) throw invalid(`\`${where}\` must be a token string.`);
  return v;
}

/** A buyer public key: base64url of 32 bytes. */
export function publicKeyField(b: Record<string, unknown>, name: string): string {
  const v = b[name];
  if (typeof v !== 'string' || b64urlDecode(v)?.length !== 32) {
    throw invalid(
      `\`${name}\` must be an Ed25519 public key: 43 characters of base64url (32 bytes, no padding).`,
    );
  }
  return v;
}

export function urlField(b: Record<string, unknown>, name: string): string {
  const v = b[name];
  let ok = false;
  if (typeof v === 'string' && v.length <= 2048) {
    try {
      const u = new URL(v);
      ok = u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      ok = false;
    }
  }
  if (!ok) throw invalid(`\`${name}\` must be an http(s) URL, like "https://bank-b.example".`);
  return v as string;
}

/** One query parameter as a string, or undefined; repeated parameters are refused. */
export function queryParam(q: unknown, name: string): string | undefined {
  const v = (q as Record<string, unknown> | undefined)?.[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw invalid(`The query parameter \`${name}\` must be given once, as text.`);
  return v;
}

/** `limit` query parameter: an integer in [1, max], default `dflt`. */
export function limitParam(q: unknown, dflt: number, max: number): number {
  const v = queryParam(q, 'limit');
  if (v === undefined || v === '') return dflt;
  if (!/^\d{1,7}$/.test(v) || Number(v) < 1 || Number(v) > max)
    throw invalid(`\`limit\` must be an integer from 1 to ${max}.`);
  return Number(v);
}
