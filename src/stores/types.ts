/**
 * The two small store interfaces the merchant side needs: replay marks with
 * spend tallies (checks 8 and 9 of PROTOCOL.md section 6, written atomically
 * with acceptance), and the durable deposit queue the batcher drains.
 */

export type { AcceptRequest, AcceptResult, PaymentStore } from '../protocol/store.js';

/** One charged order waiting to be deposited (PROTOCOL.md section 8, `POST /v1/deposits`). */
export interface DepositItem {
  cert: string;
  order: string;
  /** The `mp-auth` token, when the order was approved online. */
  auth?: string;
}

/** A batch claimed from the queue. `id` is stable: the same entries claimed again give the same id. */
export interface DepositBatch {
  id: string;
  items: DepositItem[];
}

/** The durable queue between acceptance and deposit. Implementations: `MemoryDepositQueue`, `RedisDepositQueue`. */
export interface DepositQueue {
  /**
   * `false` when an appended order does not outlive the process anyway (the memory queue). Otherwise
   * (the default, and Redis) the merchant holds a charged response's bytes until `append` has
   * resolved, so no content goes out for an order a crash could still lose; when `append` rejects,
   * the connection is closed with nothing sent and the order released.
   */
  readonly durable?: boolean;
  /** Adds a charged order. Resolves once it is durable (for Redis: written to the stream). */
  append(item: DepositItem): Promise<void>;
  /**
   * Claims up to `max` entries not claimed by anyone else: first entries a crashed consumer left
   * pending longer than the queue's claim timeout, then new ones. `null` when there is nothing.
   */
  claim(max: number): Promise<DepositBatch | null>;
  /** The billing server answered for this batch: remove its entries for good. */
  ack(batchId: string): Promise<void>;
  /** The batch could not be delivered: make its entries claimable again (same id). */
  release(batchId: string): Promise<void>;
  /** Entries appended and not yet acknowledged (claimed or not). */
  size(): Promise<number>;
  /** What an operator should fix in this queue's setup, one sentence each (see `PaymentStore.warnings`). */
  warnings?(): Promise<string[]>;
  /** Stops timers and closes connections this queue opened itself. */
  close(): Promise<void>;
}
