/**
 * The two small store interfaces the merchant side needs: replay marks with
 * spend tallies (checks 8 and 9 of PROTOCOL.md section 6, written atomically
 * with acceptance), and the durable deposit queue the batcher drains.
 */

/** What the verifier asks the store to do, in one atomic step, when it accepts an order. */
export interface AcceptRequest {
  /** Issuer, buyer and order id: the replay mark is `(iss, sub, oid)`. */
  iss: string;
  sub: string;
  oid: string;
  /** The order's `iat` (Unix seconds); stores may use it to stay bounded while failing closed. */
  iat: number;
  /** Seconds the replay mark must live (freshness window plus skew, or more). */
  replayTtl: number;
  /**
   * The spend tally to charge, `(cid, mer)`, or `null` to set the replay mark only
   * (an order going to online authorization does not count against the offline limit).
   */
  tally: null | {
    cid: string;
    mer: string;
    amt: number;
    /** The credential's offline limit: the tally may not pass it. */
    limit: number;
    /** Seconds the tally must live (until the credential has expired, plus skew). */
    ttl: number;
  };
}

/**
 * `accepted`: the mark is set and the tally (if any) charged.
 * `replayed`: the mark was already set; nothing changed.
 * `over_limit`: the tally would pass its limit (or the store cannot track a new tally); nothing changed.
 */
export type AcceptResult = 'accepted' | 'replayed' | 'over_limit';

/** Replay marks and spend tallies. Implementations: `MemoryPaymentStore`, `RedisPaymentStore`. */
export interface PaymentStore {
  /** Atomically: if `(iss, sub, oid)` is unmarked and the tally stays within its limit, mark and charge. */
  accept(req: AcceptRequest): Promise<AcceptResult>;
  /** Takes `amt` back off the tally of `(cid, mer)` (a response that was not charged), never below 0. The mark stays. */
  release(cid: string, mer: string, amt: number): Promise<void>;
  /** The current tally of `(cid, mer)`, 0 when unknown. */
  spent(cid: string, mer: string): Promise<number>;
  /** Stops timers and closes connections this store opened itself. */
  close(): Promise<void>;
}

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
  /** Stops timers and closes connections this queue opened itself. */
  close(): Promise<void>;
}
