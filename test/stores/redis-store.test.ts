/**
 * RedisPaymentStore against a real Redis, with two store instances on two
 * ioredis clients standing for two instances of one merchant: exactly one
 * accepts an order, a tally never passes its limit, release, TTLs, key layout.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { RedisPaymentStore, redisStore } from '../../src/stores/index.js';
import type { AcceptRequest } from '../../src/stores/types.js';
import { redisUrl } from '../helpers/services.js';
import { deleteKeys, testPrefix } from './redis-helpers.js';

const prefix = testPrefix('store');
let seq = 0;
/** A fresh buyer per test, so tests share no marks or tallies. */
const buyer = () => `buyer-${++seq}`;

function order(sub: string, oid: string, tally: AcceptRequest['tally'] = null): AcceptRequest {
  return { iss: 'bank-a', sub, oid, iat: 1_764_000_000, replayTtl: 360, tally };
}

function charge(cid: string, amt: number, limit: number, ttl = 86_400) {
  return { cid, mer: 'news:site', amt, limit, ttl };
}

describe.skipIf(!redisUrl)('RedisPaymentStore', () => {
  let a: RedisPaymentStore;
  let b: RedisPaymentStore;
  let client: Redis;
  beforeAll(() => {
    a = redisStore({ url: redisUrl!, prefix });
    b = redisStore({ url: redisUrl!, prefix });
    client = new Redis(redisUrl!);
  });
  afterAll(async () => {
    await Promise.all([a.close(), b.close()]);
    await client.quit();
    await deleteKeys(redisUrl!, prefix);
  });

  it('lets exactly one of 1,000 concurrent attempts on one order through, across two instances', async () => {
    const sub = buyer();
    const req = order(sub, 'oid-race-000000000001', charge('cid-race', 5, 1_000_000));
    const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => (i % 2 ? a : b).accept(req)));
    expect(results.filter((r) => r === 'accepted')).toHaveLength(1);
    expect(results.filter((r) => r === 'replayed')).toHaveLength(999);
    expect(await a.spent('cid-race', 'news:site')).toBe(5);
  });

  it('never lets concurrent spending pass a tally limit', async () => {
    const sub = buyer();
    const results = await Promise.all(
      Array.from({ length: 500 }, (_, i) =>
        (i % 2 ? a : b).accept(
          order(sub, `oid-spend-${String(i).padStart(10, '0')}`, charge('cid-spend', 7, 1000)),
        ),
      ),
    );
    const accepted = results.filter((r) => r === 'accepted').length;
    expect(accepted).toBe(Math.floor(1000 / 7));
    expect(results.filter((r) => r === 'over_limit')).toHaveLength(500 - accepted);
    expect(await a.spent('cid-spend', 'news:site')).toBe(accepted * 7);
    expect(await b.spent('cid-spend', 'news:site')).toBe(accepted * 7);
  });

  it('changes nothing when it answers replayed or over_limit', async () => {
    const sub = buyer();
    expect(await a.accept(order(sub, 'oid-nochange-0000001', charge('cid-nc', 600, 1000)))).toBe('accepted');
    expect(await b.accept(order(sub, 'oid-nochange-0000001', charge('cid-nc', 1, 1000)))).toBe('replayed');
    expect(await b.accept(order(sub, 'oid-nochange-0000002', charge('cid-nc', 401, 1000)))).toBe(
      'over_limit',
    );
    expect(await a.spent('cid-nc', 'news:site')).toBe(600);
    expect(await client.exists(`${prefix}{bank-a/${sub}}:seen:oid-nochange-0000002`)).toBe(0);
    // Without a tally (online authorization) only the mark is set.
    expect(await b.accept(order(sub, 'oid-nochange-0000002'))).toBe('accepted');
    expect(await a.spent('cid-nc', 'news:site')).toBe(600);
  });

  it('keeps one replay mark per buyer and order id, whatever the credential', async () => {
    const sub = buyer();
    expect(await a.accept(order(sub, 'oid-mark-00000000001', charge('cid-m1', 1, 100)))).toBe('accepted');
    expect(await b.accept(order(sub, 'oid-mark-00000000001', charge('cid-m2', 1, 100)))).toBe('replayed');
    expect(await b.accept(order(buyer(), 'oid-mark-00000000001', charge('cid-m3', 1, 100)))).toBe('accepted');
  });

  it('releases off the tally from any instance, never below 0, and the mark stays', async () => {
    const sub = buyer();
    await a.accept(order(sub, 'oid-release-00000001', charge('cid-rel', 300, 1000)));
    await a.accept(order(sub, 'oid-release-00000002', charge('cid-rel', 200, 1000)));
    await a.release('cid-rel', 'news:site', 300);
    expect(await b.spent('cid-rel', 'news:site')).toBe(200);
    // A fresh instance knows nothing in memory and finds the tally through Redis.
    const c = redisStore({ url: redisUrl!, prefix });
    await c.release('cid-rel', 'news:site', 150);
    expect(await c.spent('cid-rel', 'news:site')).toBe(50);
    await c.release('cid-rel', 'news:site', 1_000_000);
    expect(await a.spent('cid-rel', 'news:site')).toBe(0);
    await b.release('cid-rel', 'news:site', 10);
    expect(await a.spent('cid-rel', 'news:site')).toBe(0);
    await c.release('cid-unknown', 'news:site', 10);
    expect(await c.spent('cid-unknown', 'news:site')).toBe(0);
    await c.close();
    expect(await b.accept(order(sub, 'oid-release-00000001', charge('cid-rel', 1, 1000)))).toBe('replayed');
  });

  it('puts both keys under the buyer hash tag and sets their TTLs, never shortening a tally', async () => {
    const sub = buyer();
    await a.accept(order(sub, 'oid-ttl-000000000001', charge('cid-ttl', 10, 100, 5000)));
    const seen = `${prefix}{bank-a/${sub}}:seen:oid-ttl-000000000001`;
    const tally = `${prefix}{bank-a/${sub}}:tally:cid-ttl:news:site`;
    expect(await client.get(tally)).toBe('10');
    const seenTtl = await client.ttl(seen);
    expect(seenTtl).toBeGreaterThan(350);
    expect(seenTtl).toBeLessThanOrEqual(360);
    expect(await client.ttl(tally)).toBeGreaterThan(4990);
    await b.accept(order(sub, 'oid-ttl-000000000002', charge('cid-ttl', 10, 100, 60)));
    expect(await client.ttl(tally)).toBeGreaterThan(4990);
    expect(await client.ttl(`${prefix}owner:{cid-ttl}`)).toBeGreaterThan(4990);
  });

  it('records the owner of a credential once per process, not per order', async () => {
    const own = new Redis(redisUrl!);
    const store = new RedisPaymentStore({ client: own, prefix });
    const scripts = own as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const spy = vi.spyOn(scripts, 'micropayOwnerV1');
    const sub = buyer();
    for (let i = 0; i < 3; i++) {
      const ttl = 100 - i; // as time passes, the credential has less left to live
      await store.accept(
        order(sub, `oid-owner-${String(i).padStart(10, '0')}`, charge('cid-owner', 1, 100, ttl)),
      );
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(spy).toHaveBeenCalledTimes(1);
    expect(await client.ttl(`${prefix}owner:{cid-owner}`)).toBeGreaterThan(100);
    await store.accept(order(sub, 'oid-owner-longer-0001', charge('cid-owner', 1, 100, 500)));
    expect(spy).toHaveBeenCalledTimes(2); // the tally's life grew: the owner key follows
    expect(await client.ttl(`${prefix}owner:{cid-owner}`)).toBeGreaterThan(500);
    await store.close();
    await own.quit();
  });

  it('leaves a client it was given open, and refuses a prefix that would break the hash tags', async () => {
    const store = new RedisPaymentStore({ client, prefix });
    expect(await store.accept(order(buyer(), 'oid-client-000000001'))).toBe('accepted');
    await store.close();
    expect(await client.ping()).toBe('PONG');
    expect(() => new RedisPaymentStore({ client, prefix: 'bad{' })).toThrow(/prefix/);
  });
});
