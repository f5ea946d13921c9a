/**
 * The LRU under the verifier's caches, and what those caches keep alive: a
 * token cached from a header must not hold the rest of the header (V8 keeps a
 * whole string alive for a slice of it).
 */
import { randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { b64urlEncode } from '../../src/protocol/base64url.js';
import { generateSigningKey } from '../../src/protocol/crypto.js';
import { formatPaymentHeader, parsePaymentHeader } from '../../src/protocol/header.js';
import { Lru, ownString } from '../../src/protocol/lru.js';
import { createVerifier } from '../../src/protocol/verifier.js';
import { MemoryPaymentStore } from '../../src/stores/memory.js';
import { startBank } from '../proxy/helpers.js';

describe('Lru', () => {
  it('keeps at most max entries and drops the least recently used first', () => {
    const lru = new Lru<string, number>(2);
    lru.set('a', 1);
    lru.set('b', 2);
    expect(lru.get('a')).toBe(1); // 'b' is now the least recently used
    lru.set('c', 3);
    expect(lru.size).toBe(2);
    expect(lru.peek('b')).toBeUndefined();
    expect(lru.peek('a')).toBe(1);
    expect(lru.peek('c')).toBe(3);
  });

  it('refuses a size that is not a positive integer', () => {
    expect(() => new Lru(0)).toThrow(/positive integer/);
    expect(() => new Lru(1.5)).toThrow(/positive integer/);
  });

  it('keeps the key an entry was set under: an equal key given to get is not stored', () => {
    const lru = new Lru<string, number>(3);
    const stored = 'a'.repeat(20);
    lru.set(stored, 1);
    lru.set('b', 2);
    const equal = `${'a'.repeat(10)}${'a'.repeat(10)}`; // a rope, not the same string
    expect(lru.get(equal)).toBe(1);
    expect([...lru.keys()]).toEqual(['b', stored]);
    expect([...lru.keys()][1]).toBe(stored);
  });

  it('behaves as a reference LRU over 20,000 random gets, peeks, sets and deletes, evictions included', () => {
    // The reference: an array from the least to the most recently used.
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return Math.floor(seed / 65_536) % n; // the high bits: the low ones of this generator cycle fast
    };
    let evictions = 0;
    for (const max of [1, 2, 3, 8]) {
      const evicted: [number, number][] = [];
      const lru = new Lru<number, number>(max, (k, v) => evicted.push([k, v]));
      let ref: [number, number][] = [];
      const dropped: [number, number][] = [];
      for (let i = 0; i < 5000; i++) {
        const k = rand(12);
        const at = ref.findIndex(([x]) => x === k);
        switch (rand(4)) {
          case 0: {
            expect(lru.get(k)).toBe(at < 0 ? undefined : ref[at]![1]);
            if (at >= 0) ref.push(...ref.splice(at, 1));
            break;
          }
          case 1:
            expect(lru.peek(k)).toBe(at < 0 ? undefined : ref[at]![1]);
            break;
          case 2: {
            lru.set(k, i);
            if (at >= 0) ref.splice(at, 1);
            else if (ref.length >= max) dropped.push(ref.shift()!);
            ref.push([k, i]);
            break;
          }
          default:
            expect(lru.delete(k)).toBe(at >= 0);
            ref = ref.filter(([x]) => x !== k);
        }
        expect(lru.size).toBe(ref.length);
        expect([...lru.keys()]).toEqual(ref.map(([x]) => x));
      }
      // Dropped to make room, and only those (a delete is not an eviction).
      expect(evicted).toEqual(dropped);
      evictions += evicted.length;
      lru.clear();
      expect(lru.size).toBe(0);
      expect([...lru.keys()]).toEqual([]);
      lru.set(1, 1);
      expect([...lru.keys()]).toEqual([1]);
    }
    expect(evictions).toBeGreaterThan(100);
  });

  it('ownString copies a token exactly', () => {
    const token = `${b64urlEncode(randomBytes(300))}.${b64urlEncode(randomBytes(64))}`;
    const header = `cert="${token}", order="x"`;
    const slice = header.slice(6, 6 + token.length);
    expect(ownString(slice)).toBe(token);
    expect(ownString('')).toBe('');
  });
});

describe('verifier caches', () => {
  it('keep credentials, receipts and accepted orders without the headers they came in', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const bank = startBank('bank-a', 'news-site');
    const receiptKey = generateSigningKey();
    const store = new MemoryPaymentStore();
    const verifier = createVerifier({
      merchant: 'news-site',
      accepts: ['bank-a'],
      keys: bank.billing.keyResolver(),
      store,
      receiptSigner: { kid: 'r1', key: receiptKey },
      receiptKeys: new Map([['r1', receiptKey.publicKey]]),
    });
    const price = { amt: 2000, cur: 'USD' };
    // An unknown member is ignored (section 5), so each header can carry 8,000 characters more.
    const pad = () => `, pad="${randomBytes(6000).toString('base64url')}"`;
    const N = 1000;
    const buyers = Array.from({ length: N }, (_, i) => bank.buyer(`buyer-${i}`));
    const receipts: string[] = [];
    const held: string[] = [];
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < N; i++) {
      const paid = buyers[i]!.pay('GET /paid');
      const p = parsePaymentHeader(paid);
      if (p.kind !== 'order') throw new Error('not an order');
      const header = paid + pad();
      const v = await verifier.verify({ res: 'GET /paid', price, header, receiptDuration: 600 });
      if (!v.ok || v.kind !== 'order') throw new Error(`order ${i} refused: ${JSON.stringify(v)}`);
      receipts.push(v.receipt!);
      held.push(v.certToken, v.orderToken); // as the deposit queue holds them
      expect(v.certToken).toBe(p.cert);
      expect(v.orderToken).toBe(p.order);
    }
    // Each receipt twice: a miss that caches it, then a hit that refreshes its place.
    for (let round = 0; round < 2; round++) {
      for (const receipt of receipts) {
        const header = formatPaymentHeader({ kind: 'receipt', receipt }) + pad();
        const v = await verifier.verify({ res: 'GET /paid', price, header });
        expect(v.ok).toBe(true);
      }
    }
    gc();
    const grown = (process.memoryUsage().heapUsed - before) / 1024 / 1024;
    // 1,000 credentials, receipts and orders, with their keys and marks: about 4 MB. Holding
    // each one's header (8 KB) would be 24 MB more.
    expect(grown).toBeLessThan(8);
    expect(held.length).toBe(2 * N);
    await store.close();
  }, 60_000);
});
