/**
 * Token framing of PROTOCOL.md section 1, with no crypto: `PAYLOAD "." SIGNATURE`,
 * the domain-separated signing input `"micropay-v1:" TYP ":" PAYLOAD`, and the
 * strict decoding every verifier must do before it checks a signature.
 * Environment-neutral (Node and browsers); the signature backends live beside it.
 */
import { b64urlDecode, b64urlEncode, fromUtf8, isB64urlOf, utf8 } from './base64url.js';
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
  /** The signature segment exactly as received (canonical base64url of 64 bytes). */
  signatureSegment: string;
  /** The text that was signed: `micropay-v1:<typ>:<payload segment>` (ASCII). */
  signingText: string;
  /** The 64 signature bytes (decoded when first read). */
  readonly signature: Uint8Array;
  /** The ASCII bytes that were signed, `signingText`'s (encoded when first read). */
  readonly signingInput: Uint8Array;
}

/**
 * `DecodedToken` with its bytes made when first read: the crypto thread takes a token's two texts
 * as they are (`CryptoThread.verifyText`), so on the merchant's hot path they are never made.
 */
class Decoded implements DecodedToken {
  private sig: Uint8Array | undefined;
  private input: Uint8Array | undefined;
  constructor(
    readonly payloadSegment: string,
    readonly payload: Record<string, unknown>,
    readonly signatureSegment: string,
    readonly signingText: string,
  ) {}
  get signature(): Uint8Array {
    this.sig ??= b64urlDecode(this.signatureSegment)!;
    return this.sig;
  }
  get signingInput(): Uint8Array {
    this.input ??= utf8(this.signingText);
    return this.input;
  }
}

/** The error every malformed token gets; the code is the merchant's check 1. */
export function malformed(message: string): MicropayError {
  return new MicropayError('malformed_payment', message, { status: 400 });
}

/** The text a signature covers: `"micropay-v1:" TYP ":" PAYLOAD` (ASCII: the payload is base64url). */
export function signingText(typ: string, payloadSegment: string): string {
  return `micropay-v1:${typ}:${payloadSegment}`;
}

/** The bytes a signature covers: `signingText`'s. */
export function signingInput(typ: string, payloadSegment: string): Uint8Array {
  return utf8(signingText(typ, payloadSegment));
}

/** base64url of the UTF-8 JSON of a payload object. */
export function encodePayload(payload: object): string {
  return b64urlEncode(utf8(JSON.stringify(payload)));
}

/** Joins a payload segment and a signature (bytes, or their base64url) into a token. */
export function joinToken(payloadSegment: string, signature: Uint8Array | string): string {
  return `${payloadSegment}.${typeof signature === 'string' ? signature : b64urlEncode(signature)}`;
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
  const signatureSegment = token.slice(dot + 1);
  if (!isB64urlOf(signatureSegment, 64)) {
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
  return new Decoded(payloadSegment, p, signatureSegment, signingText(expectedTyp, payloadSegment));
}

function describeTyp(typ: unknown): string {
  return typeof typ === 'string' ? JSON.stringify(typ.slice(0, 32)) : 'no typ';
}

/** Reads the payload of a token without checking its signature (for display and for wallets reading their own credential). */
export function peekPayload(token: string, expectedTyp: TokenType): Record<string, unknown> {
  return decodeToken(token, expectedTyp).payload;
}
