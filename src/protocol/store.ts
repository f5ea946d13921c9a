/**
 * The store contract the verifier needs for checks 8 and 9 of PROTOCOL.md
 * section 6 (replay marks and spend tallies, written atomically together with
 * acceptance). Declared here so `protocol` imports nothing of ours;
 * `src/stores/` implements it in memory and in Redis.
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
  /**
   * What an operator should fix in this store's setup (say, a Redis that evicts keys), one sentence
   * each; none when all is well. The merchant logs them as warnings once connected.
   */
  warnings?(): Promise<string[]>;
  /** Stops timers and closes connections this store opened itself. */
  close(): Promise<void>;
}
