/**
 * Ed25519 and SHA-256 on Node through `node:crypto` (OpenSSL). Public keys are
 * imported once into `KeyObject`s and kept in an LRU: importing a raw key per
 * request would halve throughput. The browser backend is `noble.ts`.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  randomBytes,
  sign,
  verify,
} from 'node:crypto';
import { b64urlDecode, b64urlEncode, utf8 } from './base64url.js';
import {
  type DecodedToken,
  decodeToken,
  encodePayload,
  joinToken,
  signingInput,
  signingText,
  type TokenType,
} from './codec.js';
import { cryptoThread } from './crypto-thread.js';
import { MicropayError } from './errors.js';
import { Lru } from './lru.js';

/** An Ed25519 key pair ready to sign, with the public key as it travels (`x`, base64url). */
export interface SigningKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** base64url of the 32-byte public key. */
  readonly x: string;
}

function fromPrivate(privateKey: KeyObject): SigningKey {
  const publicKey = createPublicKey(privateKey);
  const x = publicKey.export({ format: 'jwk' }).x as string;
  return { privateKey, publicKey, x };
}

/**
 * A fresh random Ed25519 key: 32 bytes from the CSPRNG, which is all an Ed25519 private key is.
 * Not `generateKeyPairSync`: on Node 20, exporting a key it made can deadlock the process for
 * good (the export holds the key's lock while it allocates; the collection that allocation
 * starts destroys the finished key-generation job, which takes the same lock). 20,000 keys made
 * that way hung 3 runs in 6 here.
 */
export function generateSigningKey(): SigningKey {
  return signingKeyFromSeed(randomBytes(32));
}

/** The key of a 32-byte seed, given as bytes, hex (64 characters) or base64url (43 characters). */
export function signingKeyFromSeed(seed: Uint8Array | string): SigningKey {
  let bytes: Uint8Array | null;
  if (typeof seed === 'string') {
    const s = seed.trim();
    bytes = /^[0-9a-fA-F]{64}$/.test(s) ? Buffer.from(s, 'hex') : b64urlDecode(s);
  } else bytes = seed;
  if (bytes?.length !== 32) {
    throw new MicropayError(
      'invalid_key',
      'An Ed25519 seed must be 32 bytes, written as 64 hex characters or 43 base64url characters.',
    );
  }
  // As a JWK: Node reads only `d` of a private OKP key (`x` must be a string; the public half is
  // derived in fromPrivate). The PKCS#8 DER import goes through OpenSSL 3's decoders: 540 µs a
  // key here, against 40 µs.
  const d = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
  return fromPrivate(createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d, x: '' }, format: 'jwk' }));
}

/** The 32-byte seed of a signing key (what a key file stores). */
export function exportSeed(key: SigningKey): Uint8Array {
  const d = key.privateKey.export({ format: 'jwk' }).d as string;
  return b64urlDecode(d)!;
}

/** Imports a base64url public key without caching; throws `invalid_key` if it is not 32 bytes. */
export function importPublicKey(x: string): KeyObject {
  const raw = b64urlDecode(x);
  if (raw?.length !== 32)
    throw new MicropayError('invalid_key', 'An Ed25519 public key must be 32 bytes of base64url.');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
}

/** An LRU of imported public keys by their base64url text. */
export class PublicKeyCache {
  private readonly lru: Lru<string, KeyObject>;
  constructor(max = 10_000) {
    this.lru = new Lru(max);
  }
  /** The `KeyObject` of `x`, imported once. Throws `invalid_key` for a malformed key. */
  get(x: string): KeyObject {
    let k = this.lru.get(x);
    if (!k) {
      k = importPublicKey(x);
      this.lru.set(x, k);
    }
    return k;
  }
  get size(): number {
    return this.lru.size;
  }
}

/** Signs a payload object (its `typ` names the domain) into a token. */
export function signToken<T extends { typ: TokenType }>(payload: T, key: SigningKey): string {
  const seg = encodePayload(payload);
  return joinToken(seg, sign(null, signingInput(payload.typ, seg), key.privateKey));
}

/** Checks a decoded token's signature over the payload segment exactly as received. */
export function verifySignature(decoded: DecodedToken, publicKey: KeyObject): boolean {
  return verify(null, decoded.signingInput, publicKey, decoded.signature);
}

/**
 * Checks a signature on the crypto thread (`crypto-thread.ts`), so the event loop serves other
 * requests meanwhile: on a server this is the hot path's one expensive step, and moving it off
 * the main thread lets a second core take it.
 */
export function verifySignatureOffThread(decoded: DecodedToken, publicKey: KeyObject): Promise<boolean> {
  return cryptoThread().verifyText(decoded.signingText, decoded.signatureSegment, publicKey);
}

/** Signs a payload into a token on the crypto thread (see `verifySignatureOffThread`). */
export function signTokenOffThread<T extends { typ: TokenType }>(
  payload: T,
  key: SigningKey,
): Promise<string> {
  return signJsonOffThread(payload.typ, JSON.stringify(payload), key);
}

/**
 * `signTokenOffThread` of a payload already written as JSON, its `typ` given beside it: for a
 * payload made on every request, which a template writes for less than `JSON.stringify`.
 */
export async function signJsonOffThread(typ: TokenType, json: string, key: SigningKey): Promise<string> {
  const seg = b64urlEncode(utf8(json));
  return joinToken(seg, await cryptoThread().signText(signingText(typ, seg), key.privateKey));
}

/**
 * Decodes a token and checks its signature; returns the payload or throws
 * (`malformed_payment` for framing, `bad_signature` for the signature).
 */
export function verifyToken(token: string, typ: TokenType, publicKey: KeyObject): Record<string, unknown> {
  const d = decodeToken(token, typ);
  if (!verifySignature(d, publicKey)) {
    throw new MicropayError('bad_signature', `The ${typ} token's signature does not verify.`, {
      status: 402,
    });
  }
  return d.payload;
}

/** `tid(token) = base64url(SHA-256(ASCII bytes of the whole token))`. */
export function tid(token: string): string {
  return b64urlEncode(createHash('sha256').update(token, 'latin1').digest());
}
