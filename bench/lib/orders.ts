/**
 * Pre-signed payments for the benchmarks: `Micropay-Payment` headers paying
 * `news-site` 0.002 USD for `GET /paid`, each with a fresh oid, under one
 * credential (or, with `orderHeader`, any credential and key).
 */
import { randomBytes } from 'node:crypto';
import { b64urlEncode } from '../../src/protocol/base64url.js';
import { type SigningKey, signToken, tid } from '../../src/protocol/crypto.js';
import { formatPaymentHeader } from '../../src/protocol/header.js';

/** One header: an order for `GET /paid` at 2000 micro-USD under `cert`, signed by `key`. */
export function orderHeader(cert: string, key: SigningKey, iat: number, cid = tid(cert)): string {
  const order = signToken(
    {
      typ: 'mp-order',
      v: 1,
      cid,
      mer: 'news-site',
      res: 'GET /paid',
      amt: 2000,
      cur: 'USD',
      iat,
      oid: b64urlEncode(randomBytes(16)),
    },
    key,
  );
  return formatPaymentHeader({ kind: 'order', cert, order });
}

/** `n` headers under one credential, signed now. */
export function orderHeaders(cert: string, key: SigningKey, n: number): string[] {
  const iat = Math.floor(Date.now() / 1000);
  const cid = tid(cert);
  return Array.from({ length: n }, () => orderHeader(cert, key, iat, cid));
}
