/**
 * RedisDepositQueue against a real Redis: the shared DepositQueue contract,
 * with every consumer its own instance and ioredis client, plus what only a
 * durable shared queue can do (ack from another process, recovery).
 */
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { RedisDepositQueue, redisQueue } from '../../src/stores/index.js';
import { redisUrl } from '../helpers/services.js';
import { eventually } from '../helpers/world.js';
import { CLAIM_TIMEOUT_MS, describeQueueContract } from './queue-contract.js';
import { deleteKeys, testPrefix } from './redis-helpers.js';

const prefixes: string[] = [];
afterAll(async () => {
  if (redisUrl !== null) for (const p of prefixes) await deleteKeys(redisUrl, p);
});

function freshPrefix(): string {
  const p = testPrefix('queue');
  prefixes.push(p);
  return p;
}

describeQueueContract(
  'RedisDepositQueue',
  () => {
    const prefix = freshPrefix();
    const opened: RedisDepositQueue[] = [];
    return {
      open: () => {
        const q = redisQueue({ url: redisUrl!, prefix, claimTimeoutMs: CLAIM_TIMEOUT_MS });
        opened.push(q);
        return q;
      },
      dispose: async () => {
        await Promise.all(opened.map((q) => q.close()));
      },
    };
  },
  !redisUrl,
);

describe.skipIf(!redisUrl)('RedisDepositQueue', () => {
  const client = redisUrl ? new Redis(redisUrl) : null;
  afterAll(async () => {
    await client?.quit();
  });

  it('writes entries to a stream with cert, order and auth fields; size is its length', async () => {
    const prefix = freshPrefix();
    const q = new RedisDepositQueue({ client: client!, prefix });
    await q.append({ cert: 'c1', order: 'o1', auth: 'a1' });
    await q.append({ cert: 'c2', order: 'o2' });
    const entries = await client!.xrange(`${prefix}{deposits}`, '-', '+');
    expect(entries.map(([, f]) => f)).toEqual([
      ['cert', 'c1', 'order', 'o1', 'auth', 'a1'],
      ['cert', 'c2', 'order', 'o2'],
    ]);
    expect(await q.size()).toBe(2);
    await q.close();
    expect(await client!.ping()).toBe('PONG'); // a client it was given stays open
  });

  it('acks a batch from another instance (or after a restart) through the stored batch', async () => {
    const prefix = freshPrefix();
    const first = new RedisDepositQueue({ url: redisUrl!, prefix, claimTimeoutMs: CLAIM_TIMEOUT_MS });
    await first.append({ cert: 'c', order: 'o1' });
    await first.append({ cert: 'c', order: 'o2' });
    const batch = await first.claim(10);
    const ttl = await client!.ttl(`${prefix}{deposits}:batch:${batch!.id}`);
    expect(ttl).toBeGreaterThan(3600);
    await first.close(); // "restart": the in-memory batch map is gone
    const second = new RedisDepositQueue({ url: redisUrl!, prefix, claimTimeoutMs: CLAIM_TIMEOUT_MS });
    await second.ack(batch!.id);
    expect(await second.size()).toBe(0);
    expect(await client!.exists(`${prefix}{deposits}:batch:${batch!.id}`)).toBe(0);
    const pending = (await client!.xpending(`${prefix}{deposits}`, 'depositors')) as [number, ...unknown[]];
    expect(pending[0]).toBe(0);
    await second.close();
  });

  it('names the same entries alike in every instance, and differently in another queue', async () => {
    const prefix = freshPrefix();
    const a = new RedisDepositQueue({ client: client!, prefix, consumer: 'a' });
    const b = new RedisDepositQueue({ client: client!, prefix, consumer: 'b' });
    await a.append({ cert: 'c', order: 'o' });
    const batch = await a.claim(1);
    await a.release(batch!.id);
    const again = await b.claim(1);
    expect(again!.id).toBe(batch!.id);
    // Same stream ids in another queue (another Redis, another prefix) must not give the same batch id.
    const otherPrefix = freshPrefix();
    const other = new RedisDepositQueue({ client: client!, prefix: otherPrefix });
    const id = (await client!.xrange(`${prefix}{deposits}`, '-', '+'))[0]![0];
    await client!.xadd(`${otherPrefix}{deposits}`, id, 'cert', 'c', 'order', 'o');
    expect((await other.claim(1))!.id).not.toBe(batch!.id);
    await Promise.all([a.close(), b.close(), other.close()]);
  });

  it('leaves the consumer group on close when it holds nothing, and stays in it while it does', async () => {
    const prefix = freshPrefix();
    const holding = new RedisDepositQueue({ client: client!, prefix, consumer: 'holding' });
    const done = new RedisDepositQueue({ client: client!, prefix, consumer: 'done' });
    await done.append({ cert: 'c', order: 'o1' });
    await done.append({ cert: 'c', order: 'o2' });
    expect(await holding.claim(1)).not.toBeNull(); // never acked
    const b = await done.claim(1);
    await done.ack(b!.id);
    const names = async () =>
      ((await client!.xinfo('CONSUMERS', `${prefix}{deposits}`, 'depositors')) as unknown[][]).map(
        (c) => c[1],
      );
    expect((await names()).sort()).toEqual(['done', 'holding']);
    await done.close();
    expect(await names()).toEqual(['holding']);
    await holding.close(); // its entry must stay pending under its name, to be recovered
    expect(await names()).toEqual(['holding']);
  });

  it('forgets consumers killed without close() once nothing is pending under their names', async () => {
    const prefix = freshPrefix();
    const opts = { client: client!, prefix, claimTimeoutMs: 100, forgetConsumersAfterMs: 300 };
    const names = async () =>
      ((await client!.xinfo('CONSUMERS', `${prefix}{deposits}`, 'depositors')) as unknown[][])
        .map((c) => c[1])
        .sort();
    // Two processes die without close(): one holding an entry, one with nothing pending.
    const crashed = new RedisDepositQueue({ ...opts, consumer: 'crashed' });
    await crashed.append({ cert: 'c', order: 'o1' });
    expect(await crashed.claim(1)).not.toBeNull();
    const idle = new RedisDepositQueue({ ...opts, consumer: 'idle' });
    await idle.append({ cert: 'c', order: 'o2' });
    await idle.ack((await idle.claim(1))!.id);
    expect(await names()).toEqual(['crashed', 'idle']);
    const survivor = new RedisDepositQueue({ ...opts, consumer: 'survivor' });
    expect(await survivor.forgetIdleConsumers()).toBe(0); // neither has been idle long enough
    await new Promise((r) => setTimeout(r, 400));
    // 'crashed' still holds o1: forgetting it would drop the entry from every pending list.
    expect(await survivor.forgetIdleConsumers()).toBe(1);
    expect(await names()).toEqual(['crashed']);
    // A claim takes o1 over, and (its first claim) forgets 'crashed', which now holds nothing.
    const b = await survivor.claim(10);
    expect(b!.items.map((x) => x.order)).toEqual(['o1']);
    await eventually(async () => (await names()).join() === 'survivor');
    await survivor.ack(b!.id);
    expect(await survivor.size()).toBe(0);
    await survivor.close();
  });

  it('recovers when the stream and its group were deleted under it', async () => {
    const prefix = freshPrefix();
    const q = new RedisDepositQueue({ client: client!, prefix });
    await q.append({ cert: 'c', order: 'o1' });
    expect(await q.claim(10)).not.toBeNull();
    await client!.del(`${prefix}{deposits}`);
    await q.append({ cert: 'c', order: 'o2' });
    const b = await q.claim(10);
    expect(b!.items.map((x) => x.order)).toEqual(['o2']);
    await q.ack(b!.id);
    expect(await q.size()).toBe(0);
    await q.close();
  });
});
