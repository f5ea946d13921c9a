/**
 * The payloads of PROTOCOL.md sections 3, 4, 5, 7 and 8: their types, and
 * strict field validation shared by every party. A parser returns a typed
 * object or throws `malformed_payment` naming the field; unknown fields are
 * kept out of the typed result but remain covered by the signature.
 */
import { malformed } from './codec.js';
import { isAmount, isB64urlChars, isCurrency, isId, isOid, isPrice, isTime } from './ids.js';

/** Longest credential lifetime: `exp - nbf <= 172800` (two days). */
export const MAX_CREDENTIAL_LIFETIME = 172_800;
/** Longest resource string in an order. */
export const MAX_RESOURCE_LENGTH = 2048;

/** A credential (`mp-cert`), signed by the issuing billing server. */
export interface Credential {
  typ: 'mp-cert';
  v: 1;
  iss: string;
  kid: string;
  sub: string;
  /** The buyer's Ed25519 public key, base64url of 32 bytes. */
  key: string;
  cur: string;
  /** Offline limit in micro-units. */
  lim: number;
  nbf: number;
  exp: number;
}

/** A payment order (`mp-order`), signed by the buyer. */
export interface Order {
  typ: 'mp-order';
  v: 1;
  /** `tid` of the credential it is paid under. */
  cid: string;
  mer: string;
  res: string;
  amt: number;
  cur: string;
  iat: number;
  oid: string;
}

/** An offer (`mp-offer`), carried unsigned in the 402 answer. */
export interface Offer {
  typ: 'mp-offer';
  v: 1;
  mer: string;
  /** The merchant's own billing server. */
  acq: string;
  /** Issuers whose credentials the merchant takes. */
  accepts: string[];
  res: string;
  amt: number;
  cur: string;
  /** Seconds a receipt lets the buyer fetch the resource again. */
  dur: number;
  /** Until when the quoted price holds. */
  exp: number;
  title?: string;
  name?: string;
}

/** A receipt (`mp-receipt`), signed by the merchant's receipt key. */
export interface Receipt {
  typ: 'mp-receipt';
  v: 1;
  mer: string;
  kid: string;
  res: string;
  oid: string;
  amt: number;
  cur: string;
  sub: string;
  iat: number;
  exp: number;
}

/** An online authorization (`mp-auth`), signed by the billing server. */
export interface Authorization {
  typ: 'mp-auth';
  v: 1;
  iss: string;
  kid: string;
  oid: string;
  mer: string;
  amt: number;
  exp: number;
  /** Buyer account, when the server includes it. */
  sub?: string;
}

type Check = (v: unknown) => boolean;
type Field = readonly [name: string, check: Check, what: string];

const ID: [Check, string] = [isId, 'an identifier of 1 to 128 characters [A-Za-z0-9._:-]'];
const AMT: [Check, string] = [isAmount, 'an integer amount of micro-units in [0, 2^53-1]'];
const PRICE: [Check, string] = [isPrice, 'an integer amount of at least 1 micro-unit'];
const CUR: [Check, string] = [isCurrency, 'a currency of 3 to 8 characters [A-Z0-9]'];
const TIME: [Check, string] = [isTime, 'a time in integer Unix seconds'];
const KEY: [Check, string] = [
  (v) => isB64urlChars(v) && (v as string).length === 43,
  'a base64url Ed25519 public key',
];
const TID: [Check, string] = [
  (v) => isB64urlChars(v) && (v as string).length === 43,
  'a base64url SHA-256 token id',
];
const OID: [Check, string] = [isOid, '16 to 64 characters [A-Za-z0-9_-]'];
const RES: [Check, string] = [
  (v) => typeof v === 'string' && v.length > 0 && v.length <= MAX_RESOURCE_LENGTH,
  `a resource string of at most ${MAX_RESOURCE_LENGTH} characters`,
];
const TEXT: [Check, string] = [
  (v) => typeof v === 'string' && v.length <= 512,
  'a string of at most 512 characters',
];

const f = (name: string, [check, what]: [Check, string]): Field => [name, check, what];

function validate<T>(
  typ: string,
  p: Record<string, unknown>,
  fields: readonly Field[],
  optional: readonly Field[] = [],
): T {
  const out: Record<string, unknown> = { typ: p.typ, v: p.v };
  for (const [name, check, what] of fields) {
    const v = p[name];
    if (v === undefined) throw malformed(`The ${typ} payload has no \`${name}\` field.`);
    if (!check(v)) throw malformed(`The ${typ} field \`${name}\` must be ${what}.`);
    out[name] = v;
  }
  for (const [name, check, what] of optional) {
    const v = p[name];
    if (v === undefined) continue;
    if (!check(v)) throw malformed(`The ${typ} field \`${name}\` must be ${what}.`);
    out[name] = v;
  }
  return out as T;
}

const CERT_FIELDS = [
  f('iss', ID),
  f('kid', ID),
  f('sub', ID),
  f('key', KEY),
  f('cur', CUR),
  f('lim', AMT),
  f('nbf', TIME),
  f('exp', TIME),
];

/** Validates an `mp-cert` payload (typ and v already checked by `decodeToken`). */
export function parseCredential(p: Record<string, unknown>): Credential {
  const c = validate<Credential>('mp-cert', p, CERT_FIELDS);
  if (c.exp < c.nbf || c.exp - c.nbf > MAX_CREDENTIAL_LIFETIME) {
    throw malformed('The credential must satisfy nbf <= exp and exp - nbf <= 172800 seconds.');
  }
  return c;
}

const ORDER_FIELDS = [
  f('cid', TID),
  f('mer', ID),
  f('res', RES),
  f('amt', PRICE),
  f('cur', CUR),
  f('iat', TIME),
  f('oid', OID),
];

/** Validates an `mp-order` payload. */
export function parseOrder(p: Record<string, unknown>): Order {
  return validate<Order>('mp-order', p, ORDER_FIELDS);
}

const RECEIPT_FIELDS = [
  f('mer', ID),
  f('kid', ID),
  f('res', RES),
  f('oid', OID),
  f('amt', AMT),
  f('cur', CUR),
  f('sub', ID),
  f('iat', TIME),
  f('exp', TIME),
];

/** Validates an `mp-receipt` payload. */
export function parseReceipt(p: Record<string, unknown>): Receipt {
  return validate<Receipt>('mp-receipt', p, RECEIPT_FIELDS);
}

const AUTH_FIELDS = [f('iss', ID), f('kid', ID), f('oid', OID), f('mer', ID), f('amt', AMT), f('exp', TIME)];

/** Validates an `mp-auth` payload. */
export function parseAuthorization(p: Record<string, unknown>): Authorization {
  return validate<Authorization>('mp-auth', p, AUTH_FIELDS, [f('sub', ID)]);
}

const OFFER_FIELDS = [
  f('mer', ID),
  f('acq', ID),
  [
    'accepts',
    (v: unknown) => Array.isArray(v) && v.length <= 64 && v.every(isId),
    'a list of issuer ids',
  ] as Field,
  f('res', RES),
  f('amt', PRICE),
  f('cur', CUR),
  f('dur', TIME),
  f('exp', TIME),
];

/** Validates an `mp-offer` object (wallets read offers from 402 answers). */
export function parseOffer(p: unknown): Offer {
  if (typeof p !== 'object' || p === null || Array.isArray(p))
    throw malformed('The offer is not a JSON object.');
  const o = p as Record<string, unknown>;
  if (o.typ !== 'mp-offer' || o.v !== 1) throw malformed('The offer must have typ "mp-offer" and v 1.');
  return validate<Offer>('mp-offer', o, OFFER_FIELDS, [f('title', TEXT), f('name', TEXT)]);
}

/** One order's fate in the answer to a deposit (or an interbank claim), PROTOCOL.md section 8. */
export interface DepositResult {
  /** The order's `oid`; `null` when the order token could not be read. */
  oid: string | null;
  status: 'credited' | 'duplicate' | 'rejected';
  /** With `rejected`: the code (section 6 codes, or `over_limit`). */
  reason?: string;
  /** A sentence for people, with a rejection. */
  message?: string;
  /** Credited: the order amount. */
  amt?: number;
  /** Credited: the commission kept. */
  fee?: number;
}

/** The answer to `POST /v1/deposits` and `POST /v1/interbank/claims`. */
export interface DepositAnswer {
  batch: string;
  results: DepositResult[];
  /** Total credited by this batch, after fees. */
  credited: number;
}
