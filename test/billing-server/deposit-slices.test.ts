/**
 * A deposit's checks (over 100 ms of Ed25519 for 1,000 orders) run in slices
 * of 5 ms, between which the billing server's event loop serves other
 * requests; the codes are those of the one-order path, and a credential whose
 * signature fails is never cached.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeToken, importPublicKey, type Order, tid, verifySignature } from '../../src/protocol/index.js';
import { type Buyer, type Harness, startServer } from './helpers.js';

describe('deposit checks in slices', () => {
  let h: Harness;
  let mer: { id: string; token: string };
  let alice: Buyer;
  beforeAll(async () => {
    h = await startServer('sqlite');
    mer = await h.merchant('news');
    alice = await h.buyer('alice', { creditLimit: 1e12 });
  });
  afterAll(async () => {
    await h.close();
  });

  const deposit = (batch: string, orders: unknown[]) =>
    h.call('post', '/v1/deposits', mer.token, { batch, orders });
  const orders = (b: Buyer, n: number, o: Partial<Order> = {}) =>
    Array.from({ length: n }, () => ({ cert: b.cert, order: h.order(b, { mer: 'news', amt: 10, ...o }) }));
  it('answers with the codes of the one-order path, and never caches a credential whose signature failed', async () => {
    const carol = await h.buyer('carol');
    // One character of the credential's signature changed: it parses, and its signature fails.
    const i = carol.cert.length - 10;
    const cert = carol.cert.slice(0, i) + (carol.cert[i] === 'A' ? 'B' : 'A') + carol.cert.slice(i + 1);
    const forged: Buyer = { ...carol, cert, cid: tid(cert) };
    const other = await h.buyer('dave');
    const items = [
      ...orders(forged, 3),
      ...orders(carol, 2),
      { cert: carol.cert, order: h.order({ ...carol, key: other.key }, { mer: 'news' }) },
      { cert: carol.cert, order: h.order(carol, { mer: 'elsewhere' }) },
      { cert: carol.cert, order: h.order({ ...carol, cid: other.cid }, { mer: 'news' }) },
      { cert: carol.cert, order: 'not a token' },
    ];
    const expected = [
      'bad_credential',
      'bad_credential',
      'bad_credential',
      'credited',
      'credited',
      'bad_signature',
      'wrong_merchant',
      'bad_signature',
      'malformed_payment',
    ];
    const r = await deposit('mixed', items);
    const codes = r.body.results.map((x: { status: string; reason?: string }) =>
      x.status === 'credited' ? 'credited' : x.reason,
    );
    expect(codes).toEqual(expected);
    // One at a time through the online authorization path: the same codes.
    for (const [i, it] of items.entries()) {
      if (expected[i] === 'credited') continue;
      const a = await h.call('post', '/v1/authorizations', mer.token, it);
      expect(a.status).toBe(200);
      expect(a.body).toMatchObject({ status: 'declined', reason: expected[i] });
    }
    // The forged credential was not remembered as verified.
    const again = await deposit('forged-again', orders(forged, 1));
    expect(again.body.results[0].reason).toBe('bad_credential');
  });

  it('keeps the event loop answering while a batch of 1,000 orders is checked', async () => {
    const batch = orders(alice, 1000);
    // What the same signatures cost on this thread, measured now (the machine is shared and noisy).
    const decoded = batch.map((b) => decodeToken(b.order, 'mp-order'));
    const key = importPublicKey(alice.key.x);
    const t0 = performance.now();
    for (const d of decoded) verifySignature(d, key);
    const syncMs = performance.now() - t0;

    let longest = 0;
    let last = performance.now();
    const beat = setInterval(() => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
    }, 1);
    try {
      const r = await deposit('full', batch);
      expect(r.body.results.filter((x: { status: string }) => x.status === 'credited')).toHaveLength(1000);
    } finally {
      clearInterval(beat);
    }
    // Done in one go, the checks would hold it at least `syncMs` in one stretch.
    expect(longest).toBeLessThan(syncMs / 2);
  });
});
