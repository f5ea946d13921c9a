/**
 * Token framing of PROTOCOL.md section 1, with no crypto: `PAYLOAD "." SIGNATURE`,
 * the domain-separated signing input `"micropay-v1:" TYP ":" PAYLOAD`, and the
 * strict decoding every verifier must do before it checks a signature.
 * Environment-neutral (Node and browsers); the signature backends live beside it.
 */
import { b64urlDecode, b64urlEncode, fromUtf8, utf8 } from './base64url.js';
import { MicropayError } from './errors.js';

/** Longest token a verifier accepts, in characters. */
export const MAX_TOKEN_LENGTH = 4096;

/** The `typ` values of protocol version 1. */
export type TokenType = 'mp-cert' | 'mp-order' | 'mp-receipt' | 'mp-auth' | 'mp-offer';

/** A token split and checked, signature not yet verified. */
export interface DecodedToken {
  /** The payload segment exactly as received. */
  payloadSegment: string;
  /** The parsed payload object (typ and v already checked). */
  payload: Record<string, unknown>;
  /** The 64 signature bytes. */
  signature: Uint8Array;
  /** The ASCII bytes that were signed: `micropay-v1:<typ>:<payload segment>`. */
  signingInput: Uint8Array;
}

/** The error every malformed token gets; the code is the merchant's check 1. */
export function malformed(message: string): MicropayError {
  return new MicropayError('malformed_payment', message, { status: 400 });
}

/** The bytes a signature covers: `"micropay-v1:" TYP ":" PAYLOAD`. */
export function signingInput(typ: string, payloadSegment: string): Uint8Array {
  return utf8(`micropay-v1:${typ}:${payloadSegment}`);
}

/** base64url of the UTF-8 JSON of a payload object. */
export function encodePayload(payload: object): string {
  return b64urlEncode(utf8(JSON.stringify(payload)));
}

/** Joins a payload segment and a signature into a token. */
export function joinToken(payloadSegment: string, signature: Uint8Array): string {
  return `${payloadSegment}.${b64urlEncode(signature)}`;
}

/**
 * Splits and checks a token before any signature check: length, two canonical
 * base64url segments, a 64-byte signature, a JSON object payload whose `typ`
 * is `expectedTyp` and whose `v` is 1. Throws `malformed_payment` otherwise.
 */
export function decodeToken(token: unknown, expectedTyp: TokenType): DecodedToken {
  if (typeof token !== 'string' || token.length === 0)
    throw malformed(`The ${expectedTyp} token is missing.`);
  if (token.length > MAX_TOKEN_LENGTH) {
    throw malformed(`The ${expectedTyp} token is longer than ${MAX_TOKEN_LENGTH} characters.`);
  }
  const dot = token.indexOf('.');
  if (dot <= 0 || dot !== token.lastIndexOf('.')) {
    throw malformed(`The ${expectedTyp} token must be two base64url segments joined by one ".".`);
  }
  const payloadSegment = token.slice(0, dot);
  const signature = b64urlDecode(token.slice(dot + 1));
  if (signature === null || signature.length !== 64) {
    throw malformed(`The ${expectedTyp} token's signature is not 64 bytes of canonical base64url.`);
  }
  const raw = b64urlDecode(payloadSegment);
  const text = raw && fromUtf8(raw);
  if (text === null || text === undefined) {
    throw malformed(`The ${expectedTyp} token's payload is not canonical base64url of UTF-8 text.`);
  }
  let payload: unknown;
  try {
    payload = JSON.parse(text);
  } catch {
    throw malformed(`The ${expectedTyp} token's payload is not JSON.`);
  }
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw malformed(`The ${expectedTyp} token's payload is not a JSON object.`);
  }
  const p = payload as Record<string, unknown>;
  if (p.typ !== expectedTyp) {
    throw malformed(`Expected a token of typ "${expectedTyp}", got ${describeTyp(p.typ)}.`);
  }
  if (p.v !== 1)
    throw malformed(`The ${expectedTyp} token has version ${String(p.v)}; this verifier speaks v 1.`);
  return { payloadSegment, payload: p, signature, signingInput: signingInput(expectedTyp, payloadSegment) };
}

function describeTyp(typ: unknown): string {
  return typeof typ === 'string' ? JSON.stringify(typ.slice(0, 32)) : 'no typ';
}

/** Reads the payload of a token without checking its signature (for display and for wallets reading their own credential). */
export function peekPayload(token: string, expectedTyp: TokenType): Record<string, unknown> {
  return decodeToken(token, expectedTyp).payload;
}
