/**
 * The outbox's promise, on both backends: an event is written in the same
 * transaction as the ledger change it reports. A deposit forced to fail
 * after its events were written (a trigger refusing its batch row) leaves
 * neither events nor deliveries nor ledger rows; an event that cannot be
 * written takes its deposit down with it. A server closed mid-delivery hands
 * the delivery back, and the next instance delivers it. On PostgreSQL, two
 * instances polling one outbox deliver each event exactly once to a healthy
 * receiver (SKIP LOCKED claims).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type BillingServer, createBillingServer } from '../../src/billing-server/index.js';
import { type Buyer, backends, expectBalanced, type Harness, startServer } from './helpers.js';
import { openStorage, type Receiver, rows, startReceiver, until } from './webhook-receiver.js';

const FAST = { intervalMs: 20, retryBaseMs: 40, retryMaxDelayMs: 160, timeoutMs: 2000 };

/** Makes inserts into `table` fail, from a second connection (a failing statement inside the server's transaction). */
async function sabotage(h: Harness, table: string): Promise<() => Promise<void>> {
  const db = openStorage(h);
  const trigger = `fail_${table}`;
  if (h.backend === 'postgres') {
    await db.run(
      "CREATE FUNCTION forced_failure() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'forced failure'; END $$ LANGUAGE plpgsql",
    );
    await db.run(
      `CREATE TRIGGER ${trigger} BEFORE INSERT ON ${table} FOR EACH ROW EXECUTE FUNCTION forced_failure()`,
    );
  } else {
    await db.run(
      `CREATE TRIGGER ${trigger} BEFORE INSERT ON ${table} BEGIN SELECT RAISE(ABORT, 'forced failure'); END`,
    );
  }
  return async () => {
    await db.run(
      h.backend === 'postgres' ? `DROP TRIGGER ${trigger} ON ${table}` : `DROP TRIGGER ${trigger}`,
    );
    if (h.backend === 'postgres') await db.run('DROP FUNCTION forced_failure()');
    await db.close();
  };
}

const count = async (h: Harness, table: string) =>
  Number((await rows<{ n: number }>(h, `SELECT COUNT(*) AS n FROM ${table}`))[0]!.n);

describe.each(backends)('the outbox on $name', ({ name, skip }) => {
  describe.skipIf(skip)('same transaction as the ledger', () => {
    let h: Harness;
    let news: { id: string; token: string };
    let alice: Buyer;
    let rx: Receiver | undefined;
    beforeEach(async () => {
      h = await startServer(name, { webhooks: FAST });
      news = await h.merchant('news', { commissionBps: 100 });
      alice = await h.buyer('alice');
      await h.call('post', '/v1/admin/webhooks', h.admin, {
        url: 'http://127.0.0.1:9/never',
        events: ['deposit.credited', 'order.rejected'],
      });
    });
    afterEach(async () => {
      await h.close();
      await rx?.close();
      rx = undefined;
    });

    const batch = () => ({
      batch: 'b1',
      orders: [
        { cert: alice.cert, order: h.order(alice, { mer: 'news', amt: 5000 }) },
        { cert: alice.cert, order: h.order(alice, { mer: 'other' }) },
      ],
    });

    it('a deposit rolled back after writing its events emits nothing', async () => {
      const restore = await sabotage(h, 'batches');
      const body = batch();
      const r = await h.call('post', '/v1/deposits', news.token, body);
      expect(r.status).toBe(500);
      for (const t of ['outbox_events', 'webhook_deliveries', 'entries', 'orders', 'batches']) {
        expect(await count(h, t), t).toBe(0);
      }
      await expectBalanced(h);
      // Once the failure is gone, the same batch goes through, with its events, once.
      await restore();
      const again = await h.call('post', '/v1/deposits', news.token, body);
      expect(again.body.credited).toBe(4950);
      const events = await rows<{ type: string }>(h, 'SELECT type FROM outbox_events');
      expect(events.map((e) => e.type).sort()).toEqual(['deposit.credited', 'order.rejected']);
      expect(await count(h, 'webhook_deliveries')).toBe(2);
    });

    it('a deposit whose event cannot be written does not happen', async () => {
      const restore = await sabotage(h, 'outbox_events');
      const r = await h.call('post', '/v1/deposits', news.token, batch());
      expect(r.status).toBe(500);
      for (const t of ['entries', 'orders', 'batches', 'webhook_deliveries'])
        expect(await count(h, t), t).toBe(0);
      expect((await h.call('get', '/v1/admin/accounts/news', h.admin)).body.account.balance).toBe(0);
      // Nor does disabling an account.
      const d = await h.call('patch', '/v1/admin/accounts/alice', h.admin, { status: 'disabled' });
      expect(d.status).toBe(500);
      expect((await h.call('get', '/v1/admin/accounts/alice', h.admin)).body.account.status).toBe('active');
      await restore();
    });

    it('a server closed mid-delivery hands it back; the next instance delivers it', async () => {
      let secret = '';
      rx = await startReceiver(() => secret);
      // The receiver holds the first request until the server has closed.
      rx.script = [{ status: 200, delayMs: 5000 }];
      const hook = await h.call('post', '/v1/admin/webhooks', h.admin, {
        url: rx.url,
        events: ['deposit.credited'],
      });
      secret = hook.body.secret;
      await h.call('post', '/v1/deposits', news.token, batch());
      await until(() => rx!.received.length === 1, 10_000, 'the first attempt');
      const started = Date.now();
      await h.server.close();
      // close() does not wait for the endpoint: it interrupts the attempt.
      expect(Date.now() - started).toBeLessThan(2000);
      const [d] = await rows<{ status: string; attempts: number; last_error: string; lease: string | null }>(
        h,
        `SELECT d.status AS status, d.attempts AS attempts, d.last_error AS last_error, d.lease AS lease
         FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook WHERE w.url = ?`,
        [rx.url],
      );
      expect(d).toMatchObject({ status: 'pending', attempts: 1, lease: null });
      expect(d!.last_error).toMatch(/closing/);
      await h.reopen({ webhooks: FAST });
      await until(() => rx!.received.length === 2, 10_000, 'the second attempt');
      expect(new Set(rx.received.map((x) => x.event.id)).size).toBe(1);
      expect(rx.received.every((x) => x.verified)).toBe(true);
    });
  });
});

describe.skipIf(backends[1]!.skip)('two instances on one PostgreSQL database', () => {
  let h: Harness;
  let second: BillingServer | undefined;
  let rx: Receiver;
  afterEach(async () => {
    await second?.close();
    await h.close();
    await rx.close();
  });

  it('deliver each event exactly once to a healthy receiver', async () => {
    h = await startServer('postgres', { webhooks: { ...FAST, concurrency: 4 } });
    second = await createBillingServer({ ...h.opts, webhooks: { ...FAST, concurrency: 4 } });
    const news = await h.merchant('news');
    const alice = await h.buyer('alice');
    let secret = '';
    rx = await startReceiver(() => secret);
    rx.fallback = { status: 200, delayMs: 5 };
    secret = (
      await h.call('post', '/v1/admin/webhooks', h.admin, { url: rx.url, events: ['order.rejected'] })
    ).body.secret;
    // 150 rejected orders: 150 events, claimed by both instances as they poll.
    const orders = Array.from({ length: 150 }, () => ({
      cert: alice.cert,
      order: h.order(alice, { mer: 'other' }),
    }));
    const r = await h.call('post', '/v1/deposits', news.token, { batch: 'many', orders });
    expect(r.body.results.every((x: { status: string }) => x.status === 'rejected')).toBe(true);
    await until(() => rx.ids().size === 150, 20_000, '150 events');
    await new Promise((res) => setTimeout(res, 300));
    expect(rx.received).toHaveLength(150);
    expect(rx.received.every((x) => x.verified)).toBe(true);
    const states = await rows<{ status: string; n: number }>(
      h,
      'SELECT status, COUNT(*) AS n FROM webhook_deliveries GROUP BY status',
    );
    expect(states.map((s) => [s.status, Number(s.n)])).toEqual([['delivered', 150]]);
  });
});
