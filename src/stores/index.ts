/**
 * The stores a merchant needs: replay marks with spend tallies, and the
 * deposit queue. Memory implementations for one process and development,
 * Redis ones for several instances. Factories here are the documented way in.
 */
import {
  MemoryDepositQueue,
  type MemoryDepositQueueOptions,
  MemoryPaymentStore,
  type MemoryPaymentStoreOptions,
} from './memory.js';
import {
  RedisDepositQueue,
  type RedisDepositQueueOptions,
  RedisPaymentStore,
  type RedisStoreOptions,
} from './redis.js';

export {
  MemoryDepositQueue,
  type MemoryDepositQueueOptions,
  MemoryPaymentStore,
  type MemoryPaymentStoreOptions,
  type MemoryPaymentStoreStats,
} from './memory.js';
export {
  RedisDepositQueue,
  type RedisDepositQueueOptions,
  RedisPaymentStore,
  type RedisStoreOptions,
} from './redis.js';
export type {
  AcceptRequest,
  AcceptResult,
  DepositBatch,
  DepositItem,
  DepositQueue,
  PaymentStore,
} from './types.js';

/**
 * Replay marks and spend tallies in this process's memory: bounded, failing
 * closed when full. Right for a single merchant process.
 *
 * @example
 * import { memoryStore } from 'micropay';
 * const store = memoryStore({ maxEntries: 200_000 });
 */
export function memoryStore(options: MemoryPaymentStoreOptions = {}): MemoryPaymentStore {
  return new MemoryPaymentStore(options);
}

/**
 * Replay marks and spend tallies in Redis, shared by every instance of a merchant.
 *
 * @example
 * import { Redis } from 'ioredis';
 * import { redisStore } from 'micropay';
 * const store = redisStore({ client: new Redis(process.env.REDIS_URL!), prefix: 'news-site:' });
 */
export function redisStore(options: RedisStoreOptions = {}): RedisPaymentStore {
  return new RedisPaymentStore(options);
}

/**
 * A deposit queue in memory, for development and tests only: charged orders
 * still in it are lost when the process exits.
 *
 * @example
 * import { memoryQueue } from 'micropay';
 * const queue = memoryQueue();
 */
export function memoryQueue(options: MemoryDepositQueueOptions = {}): MemoryDepositQueue {
  return new MemoryDepositQueue(options);
}

/**
 * A durable deposit queue on a Redis Stream: what a merchant collecting real money uses.
 *
 * @example
 * import { redisQueue } from 'micropay';
 * const queue = redisQueue({ url: 'redis://127.0.0.1:6379', prefix: 'news-site:', claimTimeoutMs: 60_000 });
 */
export function redisQueue(options: RedisDepositQueueOptions = {}): RedisDepositQueue {
  return new RedisDepositQueue(options);
}
