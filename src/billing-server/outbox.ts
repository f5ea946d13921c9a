/**
 * The durable outbox of webhook events. An event is written by the very
 * transaction that makes the ledger change it reports, together with one
 * pending delivery per webhook subscribed to its type: if the transaction
 * rolls back, the event never existed; if it commits, the event is there for
 * the dispatcher (`dispatcher.ts`) to deliver at least once. Nothing here
 * talks to the network.
 *
 * Other parts of the server report their changes with `enqueueEvent(tx, ...)`
 * inside their own transaction (peering calls it for `settlement.updated`).
 */
import { randomBytes } from 'node:crypto';
import type { Tx } from './db/types.js';
import type { DepositAnswer } from './ledger.js';
import type { CheckedOrder, FailedCheck } from './verify.js';

/** The event types a webhook can subscribe to. */
export const EVENT_TYPES = [
  'deposit.credited',
  'order.rejected',
  'account.disabled',
  'settlement.updated',
] as const;

/** One of `EVENT_TYPES`. */
export type EventType = (typeof EVENT_TYPES)[number];

/** Whether `v` names an event type. */
export const isEventType = (v: unknown): v is EventType =>
  typeof v === 'string' && (EVENT_TYPES as readonly string[]).includes(v);

/** A JSON value (what event data is made of). */
export type Json = string | number | boolean | null | Json[] | { [k: string]: Json | undefined };

/** An event to write: its type and data (`data` of the delivered body). */
export interface NewEvent {
  type: EventType;
  data: { [k: string]: Json | undefined };
}

/** A new event id: `evt_` and 22 characters of base64url. */
export const newEventId = (): string => `evt_${randomBytes(16).toString('base64url')}`;

/**
 * The exact bytes every delivery of an event sends (and signs). Built once, at
 * write time, so every retry of one event carries the same body.
 */
export function eventBody(id: string, type: EventType, created: number, data: NewEvent['data']): string {
  return JSON.stringify({ id, type, created, data });
}

/**
 * Writes events into the outbox inside `tx`, with a pending delivery for
 * every webhook subscribed to each event's type. Call it in the transaction
 * that makes the change the events report, never after it.
 * `now` is the transaction's clock, Unix seconds. Resolves the event ids.
 */
export async function enqueueEvents(tx: Tx, events: readonly NewEvent[], now: number): Promise<string[]> {
  if (events.length === 0) return [];
  // The webhook table is small (a handful of endpoints); reading it here keeps subscriptions exact.
  const hooks = await tx.all<{ id: string; events: string }>('SELECT id, events FROM webhooks');
  const ms = Date.now();
  const ids: string[] = [];
  const rows: (string | number)[][] = [];
  const deliveries: (string | number)[][] = [];
  for (const e of events) {
    const id = newEventId();
    ids.push(id);
    rows.push([id, e.type, now, eventBody(id, e.type, now, e.data)]);
    for (const h of hooks) {
      if (h.events.split(' ').includes(e.type)) deliveries.push([h.id, id, 'pending', 0, ms, ms]);
    }
  }
  await tx.insertMany('outbox_events', ['id', 'type', 'created', 'body'], rows);
  await tx.insertMany(
    'webhook_deliveries',
    ['webhook', 'event', 'status', 'attempts', 'created', 'next_at'],
    deliveries,
  );
  return ids;
}

/**
 * Writes one event (see `enqueueEvents`) in `tx`, the transaction of the
 * change it reports; resolves its id.
 * @example
 * await db.transaction(async (tx) => {
 *   // ... move the settlement position ...
 *   await enqueueEvent(tx, 'settlement.updated', { peer, currency, net }, now);
 * });
 */
export async function enqueueEvent(
  tx: Tx,
  type: EventType,
  data: NewEvent['data'],
  now: number = Math.floor(Date.now() / 1000),
): Promise<string> {
  const [id] = await enqueueEvents(tx, [{ type, data }], now);
  return id!;
}

/** What a deposit transaction knows when it reports itself. */
export interface DepositFacts {
  merchant: string;
  currency: string;
  answer: DepositAnswer;
  /** The checks, index for index with `answer.results`. */
  checked: readonly (CheckedOrder | FailedCheck)[];
  /** Commission kept by this batch. */
  fee: number;
  /** The merchant's balance after the batch. */
  balance: number;
}

/**
 * The events of one deposit: `deposit.credited` with the batch's totals when
 * it credited anything, and one `order.rejected` per rejected order.
 */
export function depositEvents(f: DepositFacts): NewEvent[] {
  const out: NewEvent[] = [];
  let orders = 0;
  let amount = 0;
  let rejected = 0;
  let duplicates = 0;
  f.answer.results.forEach((r, i) => {
    if (r.status === 'credited') {
      orders++;
      amount += r.amt ?? 0;
    } else if (r.status === 'duplicate') duplicates++;
    else {
      rejected++;
      const c = f.checked[i];
      const known = c?.ok
        ? { issuer: c.cert.iss, buyer: c.cert.sub, amount: c.order.amt, resource: c.order.res }
        : {};
      out.push({
        type: 'order.rejected',
        data: {
          merchant: f.merchant,
          currency: f.currency,
          batch: f.answer.batch,
          oid: r.oid,
          reason: r.reason ?? 'rejected',
          message: r.message ?? null,
          ...known,
        },
      });
    }
  });
  if (orders > 0) {
    out.unshift({
      type: 'deposit.credited',
      data: {
        merchant: f.merchant,
        currency: f.currency,
        batch: f.answer.batch,
        orders,
        amount,
        fee: f.fee,
        credited: f.answer.credited,
        rejected,
        duplicates,
        balance: f.balance,
      },
    });
  }
  return out;
}
