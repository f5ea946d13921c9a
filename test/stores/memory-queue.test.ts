/**
 * MemoryDepositQueue: the shared DepositQueue contract (one queue object plays
 * every consumer, since memory is not shared between processes), plus what is
 * particular to it.
 */
import { describe, expect, it } from 'vitest';
import { isMicropayError } from '../../src/protocol/errors.js';
import { MemoryDepositQueue, memoryQueue } from '../../src/stores/index.js';
import { CLAIM_TIMEOUT_MS, describeQueueContract } from './queue-contract.js';

describeQueueContract('MemoryDepositQueue', () => {
  const queue = new MemoryDepositQueue({ claimTimeoutMs: CLAIM_TIMEOUT_MS });
  return { open: () => queue, dispose: () => queue.close() };
});

describe('MemoryDepositQueue', () => {
  it('names batches differently in two queues (a restarted process must not reuse batch ids)', async () => {
    const a = memoryQueue();
    const b = memoryQueue();
    await a.append({ cert: 'c', order: 'o' });
    await b.append({ cert: 'c', order: 'o' });
    expect((await a.claim(1))!.id).not.toBe((await b.claim(1))!.id);
  });

  it('keeps its own copy of an appended item', async () => {
    const q = memoryQueue();
    const item = { cert: 'c', order: 'o' };
    await q.append(item);
    item.order = 'changed';
    expect((await q.claim(1))!.items).toEqual([{ cert: 'c', order: 'o' }]);
  });

  it('refuses a bad max and a bad claim timeout with coded errors', async () => {
    await expect(memoryQueue().claim(0)).rejects.toSatisfy(
      (e) => isMicropayError(e) && e.code === 'invalid_store_argument',
    );
    expect(() => memoryQueue({ claimTimeoutMs: -1 })).toThrow(/claimTimeoutMs/);
  });
});
