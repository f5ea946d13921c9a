/**
 * The browser backend: Ed25519 through `@noble/ed25519` and SHA-256 through
 * WebCrypto. Imports nothing Node-only. Async, and about 14x slower than
 * OpenSSL, so Node code uses `crypto.ts`; both pass the same test vectors.
 */
import * as ed from '@noble/ed25519';
import { b64urlDecode, b64urlEncode } from './base64url.js';
import {
  type DecodedToken,
  decodeToken,
  encodePayload,
  joinToken,
  signingInput,
  type TokenType,
} from './codec.js';
import { MicropayError } from './errors.js';

function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  if (!s)
    throw new MicropayError(
      'no_webcrypto',
      'This environment has no WebCrypto (crypto.subtle); use a secure context (https or localhost).',
    );
  return s;
}

/** A fresh random 32-byte seed. */
export function randomSeed(): Uint8Array {
  return ed.utils.randomPrivateKey();
}

/** The base64url public key of a 32-byte seed. */
export async function publicKeyOf(seed: Uint8Array): Promise<string> {
  return b64urlEncode(await ed.getPublicKeyAsync(seed));
}

/** Signs a payload object into a token with a 32-byte seed. */
export async function signTokenAsync<T extends { typ: TokenType }>(
  payload: T,
  seed: Uint8Array,
): Promise<string> {
  const seg = encodePayload(payload);
  return joinToken(seg, await ed.signAsync(signingInput(payload.typ, seg), seed));
}

/** Checks a decoded token's signature under a base64url public key (strict RFC 8032, like OpenSSL). */
export async function verifySignatureAsync(decoded: DecodedToken, x: string): Promise<boolean> {
  const pub = b64urlDecode(x);
  if (pub?.length !== 32) return false;
  try {
    return await ed.verifyAsync(decoded.signature, decoded.signingInput, pub, { zip215: false });
  } catch {
    return false;
  }
}

/** Decodes and verifies a token; returns its payload or throws (`malformed_payment`, `bad_signature`). */
export async function verifyTokenAsync(
  token: string,
  typ: TokenType,
  x: string,
): Promise<Record<string, unknown>> {
  const d = decodeToken(token, typ);
  if (!(await verifySignatureAsync(d, x))) {
    throw new MicropayError('bad_signature', `The ${typ} token's signature does not verify.`, {
      status: 402,
    });
  }
  return d.payload;
}

/** `tid(token)` with WebCrypto. */
export async function tidAsync(token: string): Promise<string> {
  const bytes = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) bytes[i] = token.charCodeAt(i) & 0xff;
  return b64urlEncode(new Uint8Array(await subtle().digest('SHA-256', bytes)));
}
