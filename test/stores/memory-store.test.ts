/**
 * MemoryPaymentStore: the accept/replay/limit/release semantics, expiry on the
 * one sweep timer (fake timers), and staying bounded while failing closed.
 */
import { randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { isMicropayError } from '../../src/protocol/errors.js';
import { MemoryPaymentStore, memoryStore } from '../../src/stores/index.js';
import type { AcceptRequest } from '../../src/stores/types.js';

const NOW_S = 1_764_000_000;

function order(oid: string, tally: AcceptRequest['tally'] = null, iat = NOW_S): AcceptRequest {
  return { iss: 'bank-a', sub: 'alice', oid, iat, replayTtl: 360, tally };
}

function charge(amt: number, limit = 10_000, cid = 'cid-1', mer = 'news-site', ttl = 86_400) {
  return { cid, mer, amt, limit, ttl };
}

describe('MemoryPaymentStore semantics', () => {
  let store: MemoryPaymentStore;
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(NOW_S * 1000);
    store = memoryStore();
  });
  afterEach(async () => {
    await store.close();
    vi.useRealTimers();
  });

  it('accepts an order once and answers replayed after, whatever the credential', async () => {
    expect(await store.accept(order('oid-000000000001', charge(100)))).toBe('accepted');
    expect(await store.accept(order('oid-000000000001', charge(100)))).toBe('replayed');
    expect(await store.accept(order('oid-000000000001', charge(100, 10_000, 'cid-2')))).toBe('replayed');
    expect(await store.accept(order('oid-000000000001'))).toBe('replayed');
    expect(await store.spent('cid-1', 'news-site')).toBe(100);
    expect(await store.spent('cid-2', 'news-site')).toBe(0);
  });

  it('keeps replay marks per (iss, sub, oid)', async () => {
    const base = order('oid-000000000002');
    expect(await store.accept(base)).toBe('accepted');
    expect(await store.accept({ ...base, sub: 'bob' })).toBe('accepted');
    expect(await store.accept({ ...base, iss: 'bank-b' })).toBe('accepted');
    expect(await store.accept(base)).toBe('replayed');
  });

  it('charges the tally up to its limit and refuses past it without changing anything', async () => {
    expect(await store.accept(order('oid-a-0000000001', charge(600, 1000)))).toBe('accepted');
    expect(await store.accept(order('oid-a-0000000002', charge(400, 1000)))).toBe('accepted');
    expect(await store.spent('cid-1', 'news-site')).toBe(1000);
    expect(await store.accept(order('oid-a-0000000003', charge(1, 1000)))).toBe('over_limit');
    expect(await store.spent('cid-1', 'news-site')).toBe(1000);
    // over_limit set no mark: the same order can go through once there is room (or online, with no tally).
    expect(await store.accept(order('oid-a-0000000003'))).toBe('accepted');
    expect(await store.accept(order('oid-a-0000000004', charge(1001, 5000, 'cid-2')))).toBe('accepted');
    // Tallies are per (cid, mer).
    expect(await store.accept(order('oid-a-0000000005', charge(1000, 1000, 'cid-1', 'other-site')))).toBe(
      'accepted',
    );
    expect(await store.accept(order('oid-a-0000000006', charge(1001, 1000, 'cid-3')))).toBe('over_limit');
    expect(store.stats().tallies).toBe(3);
  });

  it('sets only the mark when the order has no tally', async () => {
    expect(await store.accept(order('oid-b-0000000001'))).toBe('accepted');
    expect(store.stats()).toEqual({ marks: 1, tallies: 0, floorIat: null });
  });

  it('releases off the tally, never below 0, and the mark stays', async () => {
    await store.accept(order('oid-c-0000000001', charge(300)));
    await store.accept(order('oid-c-0000000002', charge(200)));
    await store.release('cid-1', 'news-site', 300);
    expect(await store.spent('cid-1', 'news-site')).toBe(200);
    await store.release('cid-1', 'news-site', 1_000_000);
    expect(await store.spent('cid-1', 'news-site')).toBe(0);
    await store.release('cid-1', 'news-site', 5);
    await store.release('unknown', 'news-site', 5);
    expect(await store.spent('cid-1', 'news-site')).toBe(0);
    expect(await store.spent('unknown', 'news-site')).toBe(0);
    expect(await store.accept(order('oid-c-0000000001', charge(300)))).toBe('replayed');
    // Released room can be spent again.
    expect(await store.accept(order('oid-c-0000000003', charge(10_000)))).toBe('accepted');
  });

  it('expires marks and tallies on one unref()ed sweep timer', async () => {
    expect(vi.getTimerCount()).toBe(1);
    await store.accept(order('oid-d-0000000001', { ...charge(500), ttl: 1000 }));
    for (let i = 0; i < 50; i++) await store.accept(order(`oid-d-many-${String(i).padStart(6, '0')}`));
    expect(vi.getTimerCount()).toBe(1); // no timer per entry
    expect(store.stats().marks).toBe(51);

    vi.advanceTimersByTime(359_000);
    expect(await store.accept(order('oid-d-0000000001'))).toBe('replayed');
    vi.advanceTimersByTime(2_000); // past replayTtl: an expired mark no longer counts
    expect(await store.accept(order('oid-d-0000000001', null, NOW_S + 361))).toBe('accepted');
    expect(await store.spent('cid-1', 'news-site')).toBe(500);
    vi.advanceTimersByTime(60_000); // the next sweep drops the expired marks
    expect(store.stats().marks).toBe(1);
    vi.advanceTimersByTime(600_000); // tally ttl 1000 s has passed
    expect(await store.spent('cid-1', 'news-site')).toBe(0);
    expect(store.stats()).toEqual({ marks: 0, tallies: 0, floorIat: null });

    await store.close();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('never shortens a tally: a later, shorter ttl keeps the longer life', async () => {
    await store.accept(order('oid-e-0000000001', { ...charge(100), ttl: 1000 }));
    await store.accept(order('oid-e-0000000002', { ...charge(100), ttl: 10 }));
    vi.advanceTimersByTime(500_000);
    expect(await store.spent('cid-1', 'news-site')).toBe(200);
  });

  it('refuses bad arguments and options with coded errors', async () => {
    await expect(store.accept(order('oid-f-0000000001', charge(1.5)))).rejects.toSatisfy(
      (e) => isMicropayError(e) && e.code === 'invalid_store_argument',
    );
    await expect(store.accept(order('oid-f-0000000001', charge(-1)))).rejects.toThrow(/micro-units/);
    await expect(store.release('cid-1', 'news-site', Number.NaN)).rejects.toThrow(/micro-units/);
    await expect(store.accept({ ...order('oid-f-0000000001'), replayTtl: 0 })).rejects.toThrow(/seconds/);
    expect(() => new MemoryPaymentStore({ maxEntries: 0 })).toThrow(/maxEntries/);
    expect(() => new MemoryPaymentStore({ maxTallies: 1.5 })).toThrow(/maxTallies/);
  });
});

describe('MemoryPaymentStore when full', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('evicts the oldest marks and refuses every order not after the newest evicted one', async () => {
    const store = new MemoryPaymentStore({ maxEntries: 3 });
    for (let i = 0; i < 3; i++) await store.accept(order(`oid-g-${i}-000000000`, null, NOW_S + i));
    expect(store.stats().floorIat).toBeNull();
    expect(await store.accept(order('oid-g-3-000000000', null, NOW_S + 3))).toBe('accepted');
    expect(store.stats()).toEqual({ marks: 3, tallies: 0, floorIat: NOW_S });
    // The evicted order cannot come back...
    expect(await store.accept(order('oid-g-0-000000000', null, NOW_S))).toBe('replayed');
    // ...and neither can a fresh order as old as it (failing closed).
    expect(await store.accept(order('oid-g-new-0000000', null, NOW_S))).toBe('replayed');
    expect(await store.accept(order('oid-g-new-0000000', null, NOW_S + 1))).toBe('accepted');
    expect(store.stats().floorIat).toBe(NOW_S + 1);
    await store.close();
  });

  it('drops expired marks before evicting live ones, and an expired mark raises no floor', async () => {
    vi.useFakeTimers();
    vi.setSystemTime(NOW_S * 1000);
    const store = new MemoryPaymentStore({ maxEntries: 2 });
    await store.accept({ ...order('oid-h-0-000000000', null, NOW_S), replayTtl: 10 });
    await store.accept({ ...order('oid-h-1-000000000', null, NOW_S), replayTtl: 1000 });
    vi.advanceTimersByTime(11_000);
    expect(await store.accept(order('oid-h-2-000000000', null, NOW_S + 11))).toBe('accepted');
    expect(store.stats()).toEqual({ marks: 2, tallies: 0, floorIat: null });
    expect(await store.accept(order('oid-h-1-000000000', null, NOW_S))).toBe('replayed');
    await store.close();
  });

  it('answers over_limit for a new tally when the tally table is full, never evicting a live one', async () => {
    vi.useFakeTimers();
    vi.setSystemTime(NOW_S * 1000);
    const store = new MemoryPaymentStore({ maxTallies: 2 });
    expect(await store.accept(order('oid-i-0-000000000', { ...charge(5, 100, 'c0'), ttl: 100 }))).toBe(
      'accepted',
    );
    expect(await store.accept(order('oid-i-1-000000000', charge(5, 100, 'c1')))).toBe('accepted');
    expect(await store.accept(order('oid-i-2-000000000', charge(5, 100, 'c2')))).toBe('over_limit');
    // over_limit set no mark, and the existing tallies keep working.
    expect(await store.accept(order('oid-i-2-000000000', charge(5, 100, 'c1')))).toBe('accepted');
    expect(await store.spent('c0', 'news-site')).toBe(5);
    expect(await store.spent('c1', 'news-site')).toBe(10);
    // Once a tally expires its room can be used.
    vi.advanceTimersByTime(101_000);
    expect(await store.accept(order('oid-i-3-000000000', charge(5, 100, 'c2')))).toBe('accepted');
    expect(await store.spent('c1', 'news-site')).toBe(10);
    expect(store.stats().tallies).toBe(2);
    await store.close();
  });

  it('stays bounded fed 1,000,000 distinct orders, and still refuses a replay of an early one', async () => {
    const maxEntries = 100_000;
    const maxTallies = 100_000;
    const store = new MemoryPaymentStore({ maxEntries, maxTallies });
    const oid = (i: number) => `oid-${i.toString(36).padStart(12, '0')}`;
    const counts = { accepted: 0, replayed: 0, over_limit: 0 };
    let maxMarks = 0;
    let maxTalliesSeen = 0;
    for (let i = 0; i < 1_000_000; i++) {
      // A second of iat every 5,000 orders; every other order opens a new (cid, mer) tally.
      const tally = i % 2 === 0 ? charge(7, 1_000, `cid-${i}`) : null;
      const r = await store.accept(order(oid(i), tally, NOW_S + Math.floor(i / 5_000)));
      counts[r]++;
      if (i % 10_000 === 0) {
        const s = store.stats();
        maxMarks = Math.max(maxMarks, s.marks);
        maxTalliesSeen = Math.max(maxTalliesSeen, s.tallies);
      }
    }
    const s = store.stats();
    expect(Math.max(maxMarks, s.marks)).toBeLessThanOrEqual(maxEntries);
    expect(Math.max(maxTalliesSeen, s.tallies)).toBe(maxTallies);
    // The first 100,000 tallied orders fit; later ones needing a new tally were refused, not evicting.
    expect(counts.over_limit).toBe(500_000 - maxTallies);
    expect(counts.accepted).toBe(1_000_000 - counts.over_limit - counts.replayed);
    expect(await store.spent('cid-0', 'news-site')).toBe(7);
    // Early orders' marks were evicted, yet their replays are refused.
    expect(await store.accept(order(oid(0), null, NOW_S))).toBe('replayed');
    expect(await store.accept(order(oid(1), null, NOW_S))).toBe('replayed');
    expect(await store.accept(order(oid(1), charge(7, 1_000, 'cid-0'), NOW_S))).toBe('replayed');
    expect(s.floorIat).not.toBeNull();
    // A new order signed after the floor still goes through.
    expect(await store.accept(order('oid-fresh-000000001', null, s.floorIat! + 1))).toBe('accepted');
    await store.close();
  }, 60_000);

  it('holds a full table of 100,000 marks and 100,000 tallies in under 40 MB of heap', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const store = new MemoryPaymentStore({ maxEntries: 100_000, maxTallies: 100_000 });
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 100_000; i++) {
      // Parts of the sizes a real order's have, each its own string as they come out of a token.
      const tally = {
        cid: randomBytes(32).toString('base64url'),
        mer: 'news-site',
        amt: 2000,
        limit: 5_000_000,
        ttl: 86_400,
      };
      const oid = randomBytes(16).toString('base64url');
      const r = await store.accept({
        iss: 'bank-a',
        sub: `buyer-${i}`,
        oid,
        iat: NOW_S + i,
        replayTtl: 420,
        tally,
      });
      expect(r).toBe('accepted');
    }
    gc();
    const grown = (process.memoryUsage().heapUsed - before) / 1024 / 1024;
    expect(store.stats()).toMatchObject({ marks: 100_000, tallies: 100_000 });
    // Flat keys: about 34 MB. Keys built as ropes (V8 ConsStrings) that keep their parts: about 52 MB.
    expect(grown).toBeLessThan(40);
    await store.close();
  }, 60_000);
});
