/**
 * The deposit body written byte by byte (`depositBody`) is exactly the JSON
 * text `JSON.stringify` makes of the same request, with and without `auth`,
 * for an empty batch and a full one; anything that is not token characters
 * (or a batch id outside printable ASCII) falls back to `JSON.stringify`.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { depositBody } from '../../src/billing-client/client.js';
import type { DepositRequest } from '../../src/billing-client/types.js';

const token = (n: number) => [n, n * 2, 86].map((len) => randomBytes(len).toString('base64url')).join('.');
const text = (b: Uint8Array | null) => (b === null ? null : new TextDecoder().decode(b));

describe('depositBody', () => {
  it('writes what JSON.stringify would, byte for byte', () => {
    const cert = token(120);
    const reqs: DepositRequest[] = [
      { batch: 'b-1', orders: [] },
      { batch: 'b-2', orders: [{ cert, order: token(80) }] },
      {
        batch: randomBytes(32).toString('base64url'),
        orders: Array.from({ length: 1000 }, (_, i) =>
          i % 7 === 0 ? { cert, order: token(80), auth: token(60) } : { cert, order: token(80) },
        ),
      },
      { batch: 'quote " and \\ in the id', orders: [{ cert, order: token(80) }] },
      // Credentials that change from order to order (each is checked when it changes).
      {
        batch: 'b-3',
        orders: Array.from({ length: 9 }, (_, i) => ({
          cert: i % 3 ? cert : token(100 + i),
          order: token(80),
        })),
      },
    ];
    for (const req of reqs) {
      const body = text(depositBody(req));
      expect(body).toBe(JSON.stringify({ batch: req.batch, orders: req.orders }));
      expect(JSON.parse(body!)).toEqual(req);
    }
  });

  it('leaves to JSON.stringify what is not made of token characters', () => {
    const cert = token(120);
    for (const req of [
      { batch: 'b', orders: [{ cert: `${cert}"`, order: token(80) }] },
      { batch: 'b', orders: [{ cert, order: 'é' }] },
      { batch: 'b', orders: [{ cert, order: token(80), auth: 'a b' }] },
      { batch: 'b', orders: [{ cert, order: 42 as unknown as string }] },
      { batch: 'ünïcode', orders: [{ cert, order: token(80) }] },
      { batch: 'b', orders: 'not a list' as unknown as [] },
      // A bad credential after a good one, and a good one again after it.
      {
        batch: 'b',
        orders: [
          { cert, order: token(80) },
          { cert: `${cert} `, order: token(80) },
          { cert, order: token(80) },
        ],
      },
      {
        batch: 'b',
        orders: [
          { cert, order: token(80) },
          { cert: null as unknown as string, order: token(80) },
        ],
      },
    ] as DepositRequest[]) {
      expect(depositBody(req)).toBeNull();
    }
  });
});
