/**
 * The behaviour every DepositQueue must have, run against the memory queue
 * and the Redis queue: ordered claims, stable batch ids, release, recovery
 * from a consumer that crashed, and no loss or double delivery after ack.
 */
import { describe, expect, it } from 'vitest';
import type { DepositBatch, DepositItem, DepositQueue } from '../../src/stores/types.js';

/** One queue under test: `open()` gives a consumer on it (another instance, where the kind allows). */
export interface QueueUnderTest {
  open(): DepositQueue;
  /** Closes every consumer opened and removes what the queue left behind. */
  dispose(): Promise<void>;
}

/** The claim timeout `fresh()` must give its queues, in ms. */
export const CLAIM_TIMEOUT_MS = 150;

function item(i: number, auth = false): DepositItem {
  return auth
    ? { cert: `cert-${i}`, order: `order-${i}`, auth: `auth-${i}` }
    : { cert: `cert-${i}`, order: `order-${i}` };
}

const orders = (b: DepositBatch | null) => b?.items.map((x) => x.order) ?? [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function describeQueueContract(name: string, fresh: () => QueueUnderTest, skip = false): void {
  async function withQueue(fn: (q: QueueUnderTest) => Promise<void>): Promise<void> {
    const q = fresh();
    try {
      await fn(q);
    } finally {
      await q.dispose();
    }
  }

  describe.skipIf(skip)(`${name}: DepositQueue contract`, () => {
    it('claims nothing from an empty queue', () =>
      withQueue(async (q) => {
        const c = q.open();
        expect(await c.claim(10)).toBeNull();
        expect(await c.size()).toBe(0);
      }));

    it('hands out entries oldest first in batches of at most max, and ack removes them', () =>
      withQueue(async (q) => {
        const c = q.open();
        for (let i = 0; i < 5; i++) await c.append(item(i));
        expect(await c.size()).toBe(5);
        const a = await c.claim(3);
        expect(orders(a)).toEqual(['order-0', 'order-1', 'order-2']);
        const b = await c.claim(10);
        expect(orders(b)).toEqual(['order-3', 'order-4']);
        expect(b!.id).not.toBe(a!.id);
        expect(a!.id).toMatch(/^[A-Za-z0-9_-]{43}$/);
        expect(await c.claim(10)).toBeNull();
        expect(await c.size()).toBe(5); // claimed is not acked
        await c.ack(a!.id);
        expect(await c.size()).toBe(2);
        await c.ack(b!.id);
        expect(await c.size()).toBe(0);
        expect(await c.claim(10)).toBeNull();
      }));

    it('keeps auth when given and leaves it out when not', () =>
      withQueue(async (q) => {
        const c = q.open();
        await c.append(item(1, true));
        await c.append(item(2));
        const batch = await c.claim(10);
        expect(batch!.items).toEqual([item(1, true), item(2)]);
        expect('auth' in batch!.items[1]!).toBe(false);
      }));

    it('release makes a batch claimable again under the same id', () =>
      withQueue(async (q) => {
        const c = q.open();
        for (let i = 0; i < 3; i++) await c.append(item(i));
        const first = await c.claim(10);
        await c.append(item(3));
        await c.release(first!.id);
        const again = await c.claim(10);
        expect(again!.id).toBe(first!.id);
        expect(again!.items).toEqual(first!.items);
        await c.ack(again!.id);
        expect(orders(await c.claim(10))).toEqual(['order-3']);
        expect(await c.size()).toBe(1);
      }));

    it('ack and release of an unknown or already acked batch change nothing', () =>
      withQueue(async (q) => {
        const c = q.open();
        await c.append(item(0));
        await c.ack('no-such-batch');
        await c.release('no-such-batch');
        const b = await c.claim(10);
        await c.ack(b!.id);
        await c.ack(b!.id);
        await c.release(b!.id);
        expect(await c.claim(10)).toBeNull();
        expect(await c.size()).toBe(0);
      }));

    it("leaves a crashed consumer's batch to another one after the claim timeout, under the same id", () =>
      withQueue(async (q) => {
        const crashed = q.open();
        const other = q.open();
        for (let i = 0; i < 5; i++) await crashed.append(item(i));
        const lost = await crashed.claim(3); // ...and never acks nor releases
        const fresh = await other.claim(10);
        expect(orders(fresh)).toEqual(['order-3', 'order-4']); // not the crashed consumer's entries
        await other.ack(fresh!.id);
        expect(await other.claim(10)).toBeNull(); // not before the timeout
        await sleep(CLAIM_TIMEOUT_MS + 50);
        const recovered = await other.claim(10);
        expect(recovered!.id).toBe(lost!.id);
        expect(recovered!.items).toEqual(lost!.items);
        await other.ack(recovered!.id);
        await crashed.ack(lost!.id); // a late ack from the first consumer is harmless
        expect(await other.size()).toBe(0);
        await sleep(CLAIM_TIMEOUT_MS + 50);
        expect(await other.claim(10)).toBeNull(); // acked entries never come back
      }));

    it('loses nothing and delivers nothing again after ack, with two consumers working at once', () =>
      withQueue(async (q) => {
        const producers = [q.open(), q.open()];
        const consumers = [q.open(), q.open()];
        const total = 200;
        await Promise.all(Array.from({ length: total }, (_, i) => producers[i % 2]!.append(item(i))));
        expect(await consumers[0]!.size()).toBe(total);

        const acked = new Map<string, number>();
        let seq = 0;
        const work = async (c: DepositQueue) => {
          let empty = 0;
          while (empty < 3) {
            const b = await c.claim(1 + (seq++ % 17));
            if (b === null) {
              empty++;
              continue;
            }
            empty = 0;
            for (const x of b.items) expect(acked.has(x.order), `${x.order} came back after ack`).toBe(false);
            // Every third batch "fails to deliver" and goes back to the queue.
            if (seq % 3 === 0) {
              await c.release(b.id);
              continue;
            }
            await c.ack(b.id);
            for (const x of b.items) acked.set(x.order, (acked.get(x.order) ?? 0) + 1);
          }
        };
        await Promise.all(consumers.map(work));
        expect(acked.size).toBe(total);
        expect([...acked.values()].every((n) => n === 1)).toBe(true);
        expect(await consumers[1]!.size()).toBe(0);
      }));
  });
}
