/**
 * base64url (RFC 4648 section 5) without padding, canonical only: a segment
 * decodes only if re-encoding its bytes gives back exactly the same text, so
 * padding, the standard alphabet and non-zero trailing bits are all refused.
 * Works in Node and browsers: in Node the bytes are decoded by Buffer once the
 * text is known to be canonical, elsewhere by the loop below.
 */

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const LOOKUP = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) LOOKUP[ALPHABET.charCodeAt(i)] = i;

/** The 6-bit value of the character at `k`, or -1. */
function val(text: string, k: number): number {
  const c = text.charCodeAt(k);
  return c < 128 ? LOOKUP[c]! : -1;
}

/** Encodes bytes as unpadded base64url. */
export function b64urlEncode(bytes: Uint8Array): string {
  if (typeof Buffer !== 'undefined') {
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
  }
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]! + ALPHABET[(n >> 6) & 63]! + ALPHABET[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]!;
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]! + ALPHABET[(n >> 6) & 63]!;
  }
  return out;
}

const CANONICAL = /^[A-Za-z0-9_-]*$/;
const hasBuffer = typeof Buffer !== 'undefined';

/**
 * Whether `text` is canonical unpadded base64url of `bytes` bytes (what `b64urlDecode` would
 * decode to that many bytes), without decoding it.
 */
export function isB64urlOf(text: string, bytes: number): boolean {
  return text.length === Math.ceil((bytes * 4) / 3) && isCanonical(text);
}

/**
 * Whether `text`, of a length not 1 mod 4, is canonical base64url: only alphabet characters (one
 * native match), and a last character whose bits past the final byte are zero.
 */
function isCanonical(text: string): boolean {
  if (!CANONICAL.test(text)) return false;
  const rest = text.length & 3;
  const last = rest === 0 ? 0 : LOOKUP[text.charCodeAt(text.length - 1)]!;
  return !((rest === 2 && (last & 15) !== 0) || (rest === 3 && (last & 3) !== 0));
}

/**
 * Decodes canonical unpadded base64url, or returns `null` for anything else
 * (a character outside the alphabet, a length of 1 mod 4, non-zero trailing bits).
 * The bytes are a Uint8Array of their own (not a view of a shared pool).
 */
export function b64urlDecode(text: string): Uint8Array | null {
  const len = text.length;
  if (len % 4 === 1) return null;
  const out = new Uint8Array(Math.floor((len * 3) / 4));
  if (hasBuffer) {
    // Every order's payload and signature pass here: the alphabet check and Buffer's decoder are
    // native, where the loop below costs about 60 instructions a character (callgrind).
    if (!isCanonical(text)) return null;
    Buffer.from(out.buffer, 0, out.length).write(text, 'base64url');
    return out;
  }
  let o = 0;
  let i = 0;
  for (; i + 3 < len; i += 4) {
    const a = val(text, i);
    const b = val(text, i + 1);
    const c = val(text, i + 2);
    const d = val(text, i + 3);
    if ((a | b | c | d) < 0) return null;
    const n = (a << 18) | (b << 12) | (c << 6) | d;
    out[o++] = n >> 16;
    out[o++] = (n >> 8) & 255;
    out[o++] = n & 255;
  }
  const rest = len - i;
  if (rest === 2) {
    const a = val(text, i);
    const b = val(text, i + 1);
    if ((a | b) < 0 || (b & 15) !== 0) return null;
    out[o++] = (a << 2) | (b >> 4);
  } else if (rest === 3) {
    const a = val(text, i);
    const b = val(text, i + 1);
    const c = val(text, i + 2);
    if ((a | b | c) < 0 || (c & 3) !== 0) return null;
    const n = (a << 18) | (b << 12) | (c << 6);
    out[o++] = n >> 16;
    out[o++] = (n >> 8) & 255;
  }
  return out;
}

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

/** UTF-8 bytes of a string. */
export function utf8(s: string): Uint8Array {
  return enc.encode(s);
}

/** Strict UTF-8 decoding; `null` for invalid UTF-8. */
export function fromUtf8(bytes: Uint8Array): string | null {
  try {
    return dec.decode(bytes);
  } catch {
    return null;
  }
}
