/**
 * Webhook retention, on both backends: finished deliveries (with their
 * attempt log) done before the retention period are removed, then events
 * older than it that no delivery refers to; a delivery still pending keeps
 * itself and its event, however old, and the ledger is never touched. The
 * server's dispatcher prunes at start: a restarted server removes what aged
 * while it was down.
 */
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { settleDispatchOptions, WebhookDispatcher } from '../../src/billing-server/dispatcher.js';
import { type Buyer, backends, type Harness, startServer } from './helpers.js';
import { openStorage, type Receiver, rows, startReceiver, until } from './webhook-receiver.js';

const FAST = { intervalMs: 20, retryBaseMs: 60_000, retryMaxDelayMs: 60_000, timeoutMs: 2000 };
const DAY_MS = 86_400_000;

const count = async (h: Harness, sql: string) =>
  Number((await rows<{ n: number }>(h, `SELECT COUNT(*) AS n FROM ${sql}`))[0]!.n);

describe.each(backends)('webhook retention on $name', ({ name, skip }) => {
  describe.skipIf(skip)('prune', () => {
    let h: Harness;
    let news: { id: string; token: string };
    let alice: Buyer;
    let rx: Receiver;
    beforeEach(async () => {
      h = await startServer(name, { webhooks: FAST });
      news = await h.merchant('news', { commissionBps: 100 });
      alice = await h.buyer('alice');
      let secret = '';
      rx = await startReceiver(() => secret);
      secret = (
        await h.call('post', '/v1/admin/webhooks', h.admin, { url: rx.url, events: ['deposit.credited'] })
      ).body.secret;
    });
    afterEach(async () => {
      await h.close();
      await rx.close();
    });

    /** One deposit: a credited order (a `deposit.credited` event) and a rejected one (`order.rejected`, which nobody subscribed to). */
    const deposit = (batch: string) =>
      h.call('post', '/v1/deposits', news.token, {
        batch,
        orders: [
          { cert: alice.cert, order: h.order(alice, { mer: 'news', amt: 5000 }) },
          { cert: alice.cert, order: h.order(alice, { mer: 'other' }) },
        ],
      });

    /** Moves every delivery's and event's dates `days` back, as if they were that old. */
    async function age(days: number): Promise<void> {
      const db = openStorage(h);
      try {
        await db.run('UPDATE webhook_deliveries SET created = created - ?, done_at = done_at - ?', [
          days * DAY_MS,
          days * DAY_MS,
        ]);
        await db.run('UPDATE outbox_events SET created = created - ?', [days * 86_400]);
      } finally {
        await db.close();
      }
    }

    it('removes finished deliveries and unreferenced events past retention; keeps pending ones and the ledger', async () => {
      await deposit('b1');
      await until(async () => (await count(h, "webhook_deliveries WHERE status = 'delivered'")) === 1);
      // A second endpoint that never answers: its delivery of the same event stays pending.
      await h.call('post', '/v1/admin/webhooks', h.admin, {
        url: 'http://127.0.0.1:9/never',
        events: ['deposit.credited'],
      });
      await deposit('b2');
      await until(async () => (await count(h, "webhook_deliveries WHERE status = 'delivered'")) === 2);
      await until(async () => (await count(h, 'webhook_attempts WHERE status IS NULL')) >= 1);
      expect(await count(h, 'outbox_events')).toBe(4); // 2 deposit.credited, 2 order.rejected
      const entries = await count(h, 'entries');
      const db = openStorage(h);
      const d = new WebhookDispatcher(db, pino({ level: 'silent' }), { retentionDays: 30 }, Date.now, () =>
        Math.floor(Date.now() / 1000),
      );
      expect(await d.prune()).toEqual({ deliveries: 0, events: 0 });
      await age(31);
      // Both delivered deliveries go with their attempts; then b1's deposit.credited and both
      // order.rejected events, which nothing refers to. b2's deposit.credited stays with its
      // pending delivery.
      expect(await d.prune()).toEqual({ deliveries: 2, events: 3 });
      expect(await count(h, 'webhook_deliveries')).toBe(1);
      expect(await count(h, "webhook_deliveries WHERE status = 'pending'")).toBe(1);
      const left = await rows<{ type: string }>(h, 'SELECT type FROM outbox_events');
      expect(left.map((e) => e.type)).toEqual(['deposit.credited']);
      expect(await count(h, 'webhook_attempts WHERE status = 200')).toBe(0);
      expect(await count(h, 'webhook_attempts WHERE status IS NULL')).toBeGreaterThanOrEqual(1);
      expect(await count(h, 'entries')).toBe(entries);
      expect(await d.prune()).toEqual({ deliveries: 0, events: 0 });
      await db.close();
    });

    it('a restarted server prunes at start; retentionDays 0 keeps everything', async () => {
      await deposit('b1');
      await until(async () => (await count(h, "webhook_deliveries WHERE status = 'delivered'")) === 1);
      await h.server.close();
      await age(40);
      await h.reopen({ webhooks: { ...FAST, retentionDays: 0 } });
      await new Promise((r) => setTimeout(r, 200));
      expect(await count(h, 'webhook_deliveries')).toBe(1);
      expect(await count(h, 'outbox_events')).toBe(2);
      await h.server.close();
      await h.reopen({ webhooks: FAST });
      await until(async () => (await count(h, 'outbox_events')) === 0);
      expect(await count(h, 'webhook_deliveries')).toBe(0);
      expect(await count(h, 'webhook_attempts')).toBe(0);
    });
  });
});

describe('retentionDays', () => {
  it('defaults to 30 days, takes 0, and refuses what is not a whole number of days', () => {
    expect(settleDispatchOptions({}).retentionMs).toBe(30 * DAY_MS);
    expect(settleDispatchOptions({ retentionDays: 0 }).retentionMs).toBe(0);
    for (const bad of [-1, 1.5, 40_000]) {
      expect(() => settleDispatchOptions({ retentionDays: bad })).toThrow(
        /`webhooks.retentionDays` must be an integer/,
      );
    }
  });
});
