/**
 * The webhook dispatcher: delivers the outbox (`outbox.ts`) over HTTP, at
 * least once. Each tick claims due deliveries by pushing their `next_at`
 * past the attempt's timeout (a lease, tagged with a random owner), so
 * several server instances on one PostgreSQL database share the work:
 * PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, SQLite has one writer.
 * An instance that dies mid-attempt leaves the lease to lapse, and another
 * instance retries. Failures back off exponentially with jitter until the
 * retry window (24 hours by default) has passed; then the delivery is
 * `failed`. Every attempt is logged (`webhook_attempts`).
 *
 * Deliveries are POSTs with a timeout; only http(s) URLs; a redirect is
 * never followed (it counts as a failed attempt), so an endpoint cannot send
 * signed events on to another host.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Logger } from 'pino';
import { EVENT_ID_HEADER, SIGNATURE_HEADER, signWebhook } from '../billing-client/webhooks.js';
import { MicropayError } from '../protocol/index.js';
import type { Db } from './db/types.js';
import { inList } from './db/types.js';

/** Options of webhook delivery (`BillingServerOptions.webhooks`). */
export interface WebhookDispatchOptions {
  /** Deliver from this instance. Default true; instances sharing a database may leave it to others. */
  enabled?: boolean;
  /** How often to look for due deliveries, milliseconds. Default 1000. */
  intervalMs?: number;
  /** Timeout of one attempt, from connecting to the answer's status line, milliseconds. Default 10,000. */
  timeoutMs?: number;
  /** Attempts in flight at once. Default 8. */
  concurrency?: number;
  /** How long a delivery is retried after its event, seconds. Default 86,400 (24 hours); then it is `failed`. */
  retryWindowSeconds?: number;
  /** Delay before the first retry, milliseconds; it doubles per attempt (with jitter). Default 10,000. */
  retryBaseMs?: number;
  /** Longest delay between two attempts, milliseconds. Default 3,600,000 (1 hour). */
  retryMaxDelayMs?: number;
  /**
   * Days a finished delivery (delivered or failed) and its attempt log are kept, and an event once no
   * delivery of it is left; then the dispatcher removes them (at start, then hourly). Default 30;
   * 0 keeps everything.
   */
  retentionDays?: number;
}

/** The settled options. */
interface Settled {
  enabled: boolean;
  intervalMs: number;
  timeoutMs: number;
  concurrency: number;
  windowMs: number;
  baseMs: number;
  maxDelayMs: number;
  /** 0: keep everything. */
  retentionMs: number;
}

/** How often an instance removes what is past retention. */
const PRUNE_EVERY_MS = 3_600_000;
/** Rows removed per statement, so that no pruning transaction holds the database for long. */
const PRUNE_CHUNK = 1000;

/** Extra time a lease lasts past the attempt's timeout, for the bookkeeping after it. */
const LEASE_MARGIN_MS = 30_000;
/** Sent as `User-Agent`. */
export const WEBHOOK_USER_AGENT = 'micropay-webhooks/1';

/** Resolves and checks the options; `invalid_config` names a bad one. */
export function settleDispatchOptions(o: WebhookDispatchOptions = {}): Settled {
  const int = (name: string, v: number | undefined, dflt: number, min: number, max: number) => {
    if (v === undefined) return dflt;
    if (!Number.isSafeInteger(v) || v < min || v > max)
      throw new MicropayError(
        'invalid_config',
        `\`webhooks.${name}\` must be an integer from ${min} to ${max}.`,
      );
    return v;
  };
  return {
    enabled: o.enabled ?? true,
    intervalMs: int('intervalMs', o.intervalMs, 1000, 10, 3_600_000),
    timeoutMs: int('timeoutMs', o.timeoutMs, 10_000, 100, 120_000),
    concurrency: int('concurrency', o.concurrency, 8, 1, 256),
    windowMs: int('retryWindowSeconds', o.retryWindowSeconds, 86_400, 0, 30 * 86_400) * 1000,
    baseMs: int('retryBaseMs', o.retryBaseMs, 10_000, 1, 86_400_000),
    maxDelayMs: int('retryMaxDelayMs', o.retryMaxDelayMs, 3_600_000, 1, 86_400_000),
    retentionMs: int('retentionDays', o.retentionDays, 30, 0, 36_500) * 86_400_000,
  };
}

/**
 * Delay before the next attempt after `failures` failed ones: the exponential
 * step `min(max, base * 2^(failures-1))`, of which a random half (equal
 * jitter), so endpoints coming back up are not hit by every retry at once.
 */
export function retryDelay(failures: number, baseMs: number, maxMs: number, random = Math.random): number {
  const step = Math.min(maxMs, baseMs * 2 ** Math.min(failures - 1, 40));
  return Math.ceil(step / 2 + random() * (step / 2));
}

/** What one attempt came to. */
interface Outcome {
  ok: boolean;
  status: number | null;
  error: string | null;
}

/** A claimed delivery, with what it sends. */
interface Job {
  id: number;
  attempts: number;
  created: number;
  event: string;
  body: string;
  url: string;
  secret: string;
  /** The lease tag this instance claimed it with. */
  lease: string;
}

/** Posts `body` to `url`; never follows a redirect; resolves at the answer's status line. */
function post(
  url: URL,
  body: string,
  headers: Record<string, string>,
  timeoutMs: number,
  agents: { http: http.Agent; https: https.Agent },
  signal: AbortSignal,
): Promise<Outcome> {
  return new Promise((resolve) => {
    const lib = url.protocol === 'https:' ? https : http;
    let settled = false;
    const done = (o: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(o);
    };
    const req = lib.request(url, {
      method: 'POST',
      headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      agent: url.protocol === 'https:' ? agents.https : agents.http,
    });
    const timer = setTimeout(() => {
      done({ ok: false, status: null, error: `no answer within ${timeoutMs} ms` });
      req.destroy();
    }, timeoutMs);
    const onAbort = () => {
      done({ ok: false, status: null, error: 'interrupted: the server was closing' });
      req.destroy();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    req.on('error', (e: Error & { code?: string }) =>
      done({ ok: false, status: null, error: `could not deliver (${e.code ?? 'network error'})` }),
    );
    req.on('response', (res) => {
      // The answer's body is of no interest; drain it so the connection can be reused.
      res.resume();
      res.on('error', () => {});
      const status = res.statusCode ?? 0;
      if (status >= 200 && status < 300) done({ ok: true, status, error: null });
      else if (status >= 300 && status < 400)
        done({ ok: false, status, error: `answered a redirect (${status}); redirects are not followed` });
      else done({ ok: false, status, error: `answered ${status}` });
    });
    req.end(body);
  });
}

/** Delivers the outbox of one database from this instance. */
export class WebhookDispatcher {
  private readonly o: Settled;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private nextPrune = 0;
  private readonly abort = new AbortController();
  private readonly agents = {
    http: new http.Agent({ keepAlive: true, maxSockets: 16 }),
    https: new https.Agent({ keepAlive: true, maxSockets: 16 }),
  };

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    options: WebhookDispatchOptions = {},
    /** Milliseconds clock; tests may move it. */
    private readonly clock: () => number = Date.now,
    /** The ledger's Unix-seconds clock, which dates events. */
    private readonly now: () => number = () => Math.floor(Date.now() / 1000),
  ) {
    this.o = settleDispatchOptions(options);
  }

  /** Starts ticking (no-op when disabled or already started). */
  start(): void {
    if (!this.o.enabled || this.stopped || this.timer) return;
    this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.running = this.tick()
        .catch((e: unknown) => {
          // A database hiccup: logged, and the next tick tries again.
          this.logger.warn({ err: (e as Error)?.message?.slice(0, 300) }, 'webhook dispatch tick failed');
          return false;
        })
        .then((more) => {
          this.running = null;
          this.schedule(more ? 0 : this.o.intervalMs);
        });
    }, ms);
    // The dispatcher never keeps a process alive on its own.
    this.timer.unref();
  }

  /**
   * One round: claims due deliveries and attempts them. Resolves whether a
   * full batch was claimed (then the next round starts at once).
   */
  async tick(): Promise<boolean> {
    const now = this.clock();
    if (this.o.retentionMs > 0 && now >= this.nextPrune) {
      this.nextPrune = now + PRUNE_EVERY_MS;
      const { deliveries, events } = await this.prune();
      if (deliveries + events > 0) {
        this.logger.info({ deliveries, events }, 'removed webhook deliveries and events past retention');
      }
    }
    const limit = this.o.concurrency * 2;
    const jobs = await this.claim(now, limit);
    let next = 0;
    const worker = async () => {
      while (next < jobs.length && !this.stopped) await this.attempt(jobs[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(this.o.concurrency, jobs.length) }, worker));
    if (this.stopped && next < jobs.length) {
      // Claimed but not attempted before close(): hand them back at once rather than when the lease lapses.
      const left = jobs.slice(next);
      await this.db.run(
        `UPDATE webhook_deliveries SET next_at = ?, lease = NULL WHERE id IN (${inList(left.length)}) AND lease = ?`,
        [this.clock(), ...left.map((j) => j.id), left[0]!.lease],
      );
    }
    return jobs.length === limit && !this.stopped;
  }

  /**
   * Removes finished deliveries (and their attempts) done before the retention period, then events
   * older than it that no delivery refers to any more, in chunks. Pending deliveries and their events
   * stay, however old. Resolves how many of each went.
   */
  async prune(): Promise<{ deliveries: number; events: number }> {
    let deliveries = 0;
    let events = 0;
    if (this.o.retentionMs === 0) return { deliveries, events };
    const doneBefore = this.clock() - this.o.retentionMs;
    for (;;) {
      const ids = (
        await this.db.all<{ id: number }>(
          "SELECT id FROM webhook_deliveries WHERE status <> 'pending' AND done_at < ? LIMIT ?",
          [doneBefore, PRUNE_CHUNK],
        )
      ).map((r) => Number(r.id));
      if (ids.length === 0) break;
      await this.db.transaction(async (tx) => {
        await tx.run(`DELETE FROM webhook_attempts WHERE delivery IN (${inList(ids.length)})`, ids);
        deliveries += await tx.run(`DELETE FROM webhook_deliveries WHERE id IN (${inList(ids.length)})`, ids);
      });
      if (ids.length < PRUNE_CHUNK) break;
    }
    const createdBefore = this.now() - Math.floor(this.o.retentionMs / 1000);
    for (;;) {
      const ids = (
        await this.db.all<{ id: string }>(
          `SELECT e.id AS id FROM outbox_events e WHERE e.created < ?
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event = e.id) LIMIT ?`,
          [createdBefore, PRUNE_CHUNK],
        )
      ).map((r) => r.id);
      if (ids.length === 0) break;
      // Re-checked in the DELETE: a delivery written meanwhile keeps its event.
      events += await this.db.run(
        `DELETE FROM outbox_events WHERE id IN (${inList(ids.length)})
           AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event = outbox_events.id)`,
        ids,
      );
      if (ids.length < PRUNE_CHUNK) break;
    }
    return { deliveries, events };
  }

  /** Leases up to `limit` due deliveries to this instance and reads what they send. */
  private async claim(now: number, limit: number): Promise<Job[]> {
    // A read first: an idle server only reads its outbox index, never writes.
    const due = await this.db.get(
      "SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_at <= ? LIMIT 1",
      [now],
    );
    if (!due) return [];
    const lease = randomBytes(12).toString('base64url');
    // SKIP LOCKED: instances claim disjoint rows without waiting on each other; the outer re-check of
    // next_at keeps a row another instance just leased from being claimed twice even so.
    const skipLocked = this.db.dialect === 'postgres' ? ' FOR UPDATE SKIP LOCKED' : '';
    const claimed = await this.db.all<{ id: number }>(
      `UPDATE webhook_deliveries SET next_at = ?, lease = ? WHERE id IN (
         SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_at <= ? ORDER BY next_at LIMIT ?${skipLocked}
       ) AND status = 'pending' AND next_at <= ? RETURNING id`,
      [now + this.o.timeoutMs + LEASE_MARGIN_MS, lease, now, limit, now],
    );
    if (claimed.length === 0) return [];
    const ids = claimed.map((r) => r.id);
    const rows = await this.db.all<Omit<Job, 'lease'> & Record<string, string | number>>(
      `SELECT d.id AS id, d.attempts AS attempts, d.created AS created, d.event AS event, e.body AS body, w.url AS url, w.secret AS secret
       FROM webhook_deliveries d JOIN outbox_events e ON e.id = d.event JOIN webhooks w ON w.id = d.webhook
       WHERE d.id IN (${inList(ids.length)}) AND d.lease = ?`,
      [...ids, lease],
    );
    return rows.map((r) => ({ ...r, lease }));
  }

  /** One attempt of one delivery, and its bookkeeping. */
  private async attempt(job: Job): Promise<void> {
    const started = this.clock();
    let outcome: Outcome;
    let url: URL | null = null;
    try {
      url = new URL(job.url);
    } catch {
      url = null;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      outcome = { ok: false, status: null, error: 'the webhook URL is not an http(s) URL' };
    } else {
      const t = Math.floor(started / 1000);
      outcome = await post(
        url,
        job.body,
        {
          'content-type': 'application/json',
          'user-agent': WEBHOOK_USER_AGENT,
          [EVENT_ID_HEADER.toLowerCase()]: job.event,
          [SIGNATURE_HEADER.toLowerCase()]: signWebhook(job.secret, job.body, t),
        },
        this.o.timeoutMs,
        this.agents,
        this.abort.signal,
      );
    }
    const end = this.clock();
    const attempts = job.attempts + 1;
    let status: 'delivered' | 'pending' | 'failed';
    let nextAt: number;
    if (outcome.ok) {
      status = 'delivered';
      nextAt = end;
    } else if (this.stopped) {
      // Interrupted by close(): not the endpoint's fault; whoever runs next retries it at once.
      status = 'pending';
      nextAt = end;
    } else {
      const deadline = job.created + this.o.windowMs;
      if (end >= deadline) {
        status = 'failed';
        nextAt = end;
      } else {
        status = 'pending';
        nextAt = Math.min(end + retryDelay(attempts, this.o.baseMs, this.o.maxDelayMs), deadline);
      }
    }
    await this.db.transaction(async (tx) => {
      // Only the lease holder writes: if the lease lapsed and another instance took over, it keeps the books.
      const n = await tx.run(
        `UPDATE webhook_deliveries SET status = ?, attempts = ?, next_at = ?, lease = NULL, last_status = ?, last_error = ?, done_at = ?
         WHERE id = ? AND lease = ?`,
        [
          status,
          attempts,
          nextAt,
          outcome.status,
          outcome.error,
          status === 'pending' ? null : end,
          job.id,
          job.lease,
        ],
      );
      if (n === 0) return;
      await tx.run(
        'INSERT INTO webhook_attempts (delivery, attempt, time, status, error, ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (delivery, attempt) DO NOTHING',
        [job.id, attempts, started, outcome.status, outcome.error, Math.max(0, end - started)],
      );
    });
    if (status === 'failed') {
      this.logger.warn({ delivery: job.id, event: job.event, attempts }, 'webhook delivery failed for good');
    }
  }

  /** Stops ticking, interrupts attempts in flight (they are retried later) and waits for their bookkeeping. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.abort.abort();
    await this.running?.catch(() => {});
    this.agents.http.destroy();
    this.agents.https.destroy();
  }
}
