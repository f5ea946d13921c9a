/**
 * The merchant's deposit batcher: drains the durable deposit queue into
 * `POST /v1/deposits` batches. A batch flushes at `maxBatch` orders or after
 * `maxDelayMs`; its id comes from the queue and is stable, so resending after
 * a crash or a timeout is idempotent at the billing server. Entries are
 * acknowledged only once the billing server has answered; while it is down
 * the batch goes back to the queue and is retried with exponential backoff
 * and full jitter. Per-order rejections are reported (event, counter, a
 * bounded dead-letter list), never retried.
 */
import { EventEmitter } from 'node:events';
import { peekPayload } from '../protocol/codec.js';
import { isMicropayError } from '../protocol/errors.js';
import type { DepositAnswer } from '../protocol/messages.js';
import type { DepositItem, DepositQueue } from '../stores/types.js';

export type { DepositAnswer, DepositResult } from '../protocol/messages.js';

/** What the batcher needs of the billing client. `deposit` throws when the server cannot be reached. */
export interface Depositor {
  deposit(req: { batch: string; orders: DepositItem[] }): Promise<DepositAnswer>;
}

/** A rejected order kept for people to look at. */
export interface DeadLetter {
  item: DepositItem;
  oid: string | undefined;
  reason: string;
  batch: string;
  at: number;
}

/** Minimal logger (pino-compatible). */
export interface BatcherLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Options of `DepositBatcher`. */
export interface DepositBatcherOptions {
  queue: DepositQueue;
  billing: Depositor;
  /** Orders per batch; a batch flushes as soon as this many are queued. Default 100 (at most 1000). */
  maxBatch?: number;
  /** Longest an order waits before its batch flushes. Default 1000 ms. */
  maxDelayMs?: number;
  /** First retry delay while the billing server is down. Default 250 ms. */
  retryBaseMs?: number;
  /** Longest retry delay. Default 30,000 ms. */
  retryMaxMs?: number;
  /** How long `close()` keeps trying to deliver what is queued. Default 10,000 ms. */
  drainTimeoutMs?: number;
  /** Most dead letters kept in memory. Default 1000. */
  maxDeadLetters?: number;
  logger?: BatcherLogger;
}

/** Events: `deposited` (answer), `rejected` (DeadLetter), `retry` ({ attempt, delayMs, code }). */
export class DepositBatcher extends EventEmitter {
  private readonly queue: DepositQueue;
  private readonly billing: Depositor;
  readonly maxBatch: number;
  readonly maxDelayMs: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly drainTimeoutMs: number;
  private readonly maxDeadLetters: number;
  /** How often to look again while the queue holds entries claimed elsewhere. */
  private readonly pollMs: number;
  private readonly logger: BatcherLogger | undefined;
  private timer: NodeJS.Timeout | null = null;
  private retryAt = 0;
  private attempt = 0;
  private queuedSinceFlush = 0;
  private running: Promise<void> | null = null;
  private closed = false;
  /** Orders rejected by the billing server, newest last. */
  readonly deadLetters: DeadLetter[] = [];
  /** Counters since start. */
  readonly stats = { batches: 0, credited: 0, duplicate: 0, rejected: 0, retries: 0 };

  constructor(o: DepositBatcherOptions) {
    super();
    this.queue = o.queue;
    this.billing = o.billing;
    this.maxBatch = Math.min(1000, Math.max(1, o.maxBatch ?? 100));
    this.maxDelayMs = Math.max(0, o.maxDelayMs ?? 1000);
    this.retryBaseMs = o.retryBaseMs ?? 250;
    this.retryMaxMs = o.retryMaxMs ?? 30_000;
    this.drainTimeoutMs = o.drainTimeoutMs ?? 10_000;
    this.maxDeadLetters = o.maxDeadLetters ?? 1000;
    this.pollMs = Math.max(this.maxDelayMs, 1000);
    this.logger = o.logger;
  }

  /** Delivers whatever an earlier process left in the queue. */
  start(): void {
    this.schedule(0);
  }

  /** Tells the batcher one more order was appended. */
  notify(): void {
    if (this.closed) return;
    this.queuedSinceFlush++;
    if (this.queuedSinceFlush >= this.maxBatch && Date.now() >= this.retryAt) this.schedule(0);
    else if (!this.timer) this.schedule(Math.max(this.maxDelayMs, this.retryAt - Date.now()));
  }

  private schedule(ms: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, ms);
    this.timer.unref();
  }

  /** Sends every queued order now (one flush at a time). Resolves when the queue is empty or the server is down. */
  flush(): Promise<void> {
    if (!this.running) {
      this.running = this.drainOnce().finally(() => {
        this.running = null;
      });
    }
    return this.running;
  }

  private async drainOnce(): Promise<void> {
    this.queuedSinceFlush = 0;
    for (;;) {
      let batch: Awaited<ReturnType<DepositQueue['claim']>>;
      try {
        batch = await this.queue.claim(this.maxBatch);
      } catch (e) {
        this.logger?.error({ err: (e as Error).message }, 'micropay: could not read the deposit queue');
        this.backoff('queue_unavailable');
        return;
      }
      if (!batch) {
        this.attempt = 0;
        // Entries left are claimed by another consumer, perhaps a process that died: they become
        // claimable after the queue's claim timeout. Look again then, without waiting for a new order.
        if (!this.closed && !this.timer && (await this.queue.size().catch(() => 0)) > 0)
          this.schedule(this.pollMs);
        return;
      }
      let answer: DepositAnswer;
      try {
        answer = await this.billing.deposit({ batch: batch.id, orders: batch.items });
      } catch (e) {
        await this.queue.release(batch.id).catch(() => {});
        const code = isMicropayError(e) ? e.code : 'billing_unavailable';
        this.logger?.warn(
          { batch: batch.id, code, orders: batch.items.length },
          'micropay: deposit failed, will retry',
        );
        this.backoff(code);
        return;
      }
      this.stats.batches++;
      answer.results.forEach((r, i) => {
        if (r.status === 'credited') this.stats.credited++;
        else if (r.status === 'duplicate') this.stats.duplicate++;
        else {
          this.stats.rejected++;
          const item = batch.items[i]!;
          let oid: string | undefined;
          try {
            oid = String(peekPayload(item.order, 'mp-order').oid);
          } catch {
            oid = undefined;
          }
          const dl: DeadLetter = {
            item,
            oid,
            reason: r.reason ?? 'rejected',
            batch: batch.id,
            at: Date.now(),
          };
          this.deadLetters.push(dl);
          if (this.deadLetters.length > this.maxDeadLetters) this.deadLetters.shift();
          this.logger?.warn(
            { batch: batch.id, oid, reason: dl.reason },
            'micropay: order rejected by the billing server',
          );
          this.emit('rejected', dl);
        }
      });
      try {
        await this.queue.ack(batch.id);
      } catch (e) {
        // The billing server has the batch; its entries stay pending and go out again under the
        // same batch id, which the server answers with its first answer and changes nothing.
        this.logger?.error(
          { batch: batch.id, err: (e as Error).message },
          'micropay: could not acknowledge a deposited batch',
        );
        this.backoff('queue_unavailable');
        return;
      }
      this.emit('deposited', answer);
    }
  }

  private backoff(code: string): void {
    this.attempt++;
    this.stats.retries++;
    const cap = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** Math.min(this.attempt - 1, 20));
    const delayMs = Math.round(Math.random() * cap) + 1;
    this.retryAt = Date.now() + delayMs;
    this.emit('retry', { attempt: this.attempt, delayMs, code });
    if (!this.closed) this.schedule(delayMs);
  }

  /** Stops the timers and delivers what is queued, trying for at most `drainTimeoutMs`. Returns what is left. */
  async close(): Promise<number> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const deadline = Date.now() + this.drainTimeoutMs;
    for (;;) {
      await this.flush();
      const left = await this.queue.size().catch(() => -1);
      if (left <= 0 || Date.now() >= deadline) return Math.max(0, left);
      await new Promise((r) =>
        setTimeout(r, Math.min(Math.max(0, this.retryAt - Date.now()), deadline - Date.now(), 1000)),
      );
    }
  }
}
