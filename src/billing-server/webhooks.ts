/**
 * Webhook endpoints of the admin API: register (`POST /v1/admin/webhooks`,
 * the signing secret generated when not given and shown only in that
 * answer), list, delete, and read the delivery log of one endpoint. The
 * events themselves are written by `outbox.ts` and delivered by
 * `dispatcher.ts`. A secret is never listed, logged or put in an error.
 */
import { randomBytes } from 'node:crypto';
import { MicropayError } from '../protocol/index.js';
import type { Db, Row } from './db/types.js';
import { EVENT_TYPES, type EventType, isEventType } from './outbox.js';
import { invalid, onlyFields } from './validate.js';

/** A registered endpoint as the API shows it (never its secret). */
export interface Webhook {
  id: string;
  url: string;
  events: EventType[];
  created: number;
}

/** One attempt of a delivery. */
export interface DeliveryAttempt {
  attempt: number;
  /** When it started, Unix milliseconds. */
  time: number;
  /** The endpoint's HTTP status; `null` when there was no answer. */
  status: number | null;
  error: string | null;
  /** How long it took, milliseconds. */
  ms: number;
}

/** A delivery of one event to one endpoint, with its attempts. */
export interface Delivery {
  id: string;
  event: string;
  type: EventType;
  /** `pending` (to be tried, or retried at `nextAttempt`), `delivered`, or `failed` (gave up after the retry window). */
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  /** Unix milliseconds. */
  created: number;
  /** When the next attempt is due, Unix milliseconds; `null` once delivered or failed. */
  nextAttempt: number | null;
  lastStatus: number | null;
  lastError: string | null;
  /** When it was delivered or given up, Unix milliseconds. */
  done: number | null;
  log: DeliveryAttempt[];
}

const noWebhook = (id: string) =>
  new MicropayError(
    'no_such_webhook',
    `There is no webhook "${id.slice(0, 64)}". List them with GET /v1/admin/webhooks.`,
    { status: 404 },
  );

/** A fresh signing secret: `whsec_` and 43 characters of base64url (32 bytes). */
export const newWebhookSecret = (): string => `whsec_${randomBytes(32).toString('base64url')}`;

/** Checks a registration body; `400 invalid_request` names the field. */
export function parseWebhookBody(body: Record<string, unknown>): {
  url: string;
  events: EventType[];
  secret: string | null;
} {
  onlyFields(body, ['url', 'events', 'secret']);
  const u = body.url;
  let url: URL | null = null;
  if (typeof u === 'string' && u.length <= 2048) {
    try {
      url = new URL(u);
    } catch {
      url = null;
    }
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw invalid(
      '`url` must be an http(s) URL of at most 2048 characters, like "https://erp.example/hooks".',
    );
  }
  if (url.username || url.password) {
    throw invalid(
      '`url` must not hold a user or password: receivers authenticate deliveries by their signature.',
    );
  }
  const ev = body.events;
  if (!Array.isArray(ev) || ev.length === 0 || ev.length > EVENT_TYPES.length * 2 || !ev.every(isEventType)) {
    throw invalid(`\`events\` must be a non-empty list of event types among ${EVENT_TYPES.join(', ')}.`);
  }
  let secret: string | null = null;
  if (body.secret !== undefined && body.secret !== null) {
    if (typeof body.secret !== 'string' || !/^[\x21-\x7e]{16,256}$/.test(body.secret)) {
      throw invalid(
        '`secret` must be 16 to 256 printable characters without spaces (or leave it out to get a generated one).',
      );
    }
    secret = body.secret;
  }
  return { url: url.toString(), events: [...new Set(ev)], secret };
}

type WebhookRow = Row & { id: string; url: string; events: string; created: number };

const toWebhook = (r: WebhookRow): Webhook => ({
  id: r.id,
  url: r.url,
  events: r.events.split(' ').filter(isEventType),
  created: r.created,
});

/** Reads and writes the webhook tables. */
export class Webhooks {
  constructor(private readonly db: Db) {}

  /** Registers an endpoint; resolves it and its secret (the one time the secret is shown). */
  async create(
    input: { url: string; events: EventType[]; secret: string | null },
    now: number,
  ): Promise<{ webhook: Webhook; secret: string }> {
    const id = `wh_${randomBytes(12).toString('base64url')}`;
    const secret = input.secret ?? newWebhookSecret();
    await this.db.run('INSERT INTO webhooks (id, url, events, secret, created) VALUES (?, ?, ?, ?, ?)', [
      id,
      input.url,
      input.events.join(' '),
      secret,
      now,
    ]);
    return { webhook: { id, url: input.url, events: input.events, created: now }, secret };
  }

  /** Every endpoint, oldest first. */
  async list(): Promise<Webhook[]> {
    const rows = await this.db.all<WebhookRow>(
      'SELECT id, url, events, created FROM webhooks ORDER BY created, id',
    );
    return rows.map(toWebhook);
  }

  /** Removes an endpoint and its deliveries (nothing more is sent to it); `404 no_such_webhook`. */
  async remove(id: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      const n = await tx.run('DELETE FROM webhooks WHERE id = ?', [id]);
      if (n === 0) throw noWebhook(id);
      await tx.run(
        'DELETE FROM webhook_attempts WHERE delivery IN (SELECT id FROM webhook_deliveries WHERE webhook = ?)',
        [id],
      );
      await tx.run('DELETE FROM webhook_deliveries WHERE webhook = ?', [id]);
    });
  }

  /**
   * The delivery log of an endpoint, newest first, `limit` at a time before
   * delivery id `before`, optionally of one status.
   */
  async deliveries(
    id: string,
    f: { before?: number; limit: number; status?: Delivery['status'] },
  ): Promise<Delivery[]> {
    if (!(await this.db.get('SELECT id FROM webhooks WHERE id = ?', [id]))) throw noWebhook(id);
    const params: (string | number)[] = [id];
    let cond = '';
    if (f.before !== undefined) {
      cond += ' AND d.id < ?';
      params.push(f.before);
    }
    if (f.status !== undefined) {
      cond += ' AND d.status = ?';
      params.push(f.status);
    }
    params.push(f.limit);
    const rows = await this.db.all<
      Row & {
        id: number;
        event: string;
        type: string;
        status: string;
        attempts: number;
        created: number;
        next_at: number;
        last_status: number | null;
        last_error: string | null;
        done_at: number | null;
      }
    >(
      `SELECT d.id AS id, d.event AS event, e.type AS type, d.status AS status, d.attempts AS attempts, d.created AS created,
              d.next_at AS next_at, d.last_status AS last_status, d.last_error AS last_error, d.done_at AS done_at
       FROM webhook_deliveries d JOIN outbox_events e ON e.id = d.event
       WHERE d.webhook = ?${cond} ORDER BY d.id DESC LIMIT ?`,
      params,
    );
    const logs = new Map<number, DeliveryAttempt[]>();
    if (rows.length > 0) {
      const attempts = await this.db.all<
        Row & { delivery: number; attempt: number; time: number; status: number | null; ms: number }
      >(
        `SELECT delivery, attempt, time, status, error, ms FROM webhook_attempts
         WHERE delivery IN (${rows.map(() => '?').join(', ')}) ORDER BY delivery, attempt`,
        rows.map((r) => r.id),
      );
      for (const a of attempts) {
        const list = logs.get(a.delivery) ?? [];
        list.push({
          attempt: a.attempt,
          time: a.time,
          status: a.status,
          error: a.error as string | null,
          ms: a.ms,
        });
        logs.set(a.delivery, list);
      }
    }
    return rows.map((r) => ({
      id: String(r.id),
      event: r.event,
      type: r.type as EventType,
      status: r.status as Delivery['status'],
      attempts: r.attempts,
      created: r.created,
      nextAttempt: r.status === 'pending' ? r.next_at : null,
      lastStatus: r.last_status,
      lastError: r.last_error,
      done: r.done_at,
      log: logs.get(r.id) ?? [],
    }));
  }
}
