/**
 * Webhooks on both backends, over real sockets: registering endpoints (the
 * secret shown once, bad bodies refused naming the field), what the events
 * carry, a receiver that is down and then up getting every event at least
 * once (a lost answer makes a duplicate it dedupes by id), every delivery
 * signed so the documented verifier accepts it, a redirect never followed,
 * a delivery given up after the retry window, and the delivery log of it all.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { verifyWebhook } from '../../src/billing-client/index.js';
import { type Buyer, backends, type Harness, startServer } from './helpers.js';
import { freePort, type Receiver, rows, startReceiver, until } from './webhook-receiver.js';

const FAST = { intervalMs: 25, retryBaseMs: 40, retryMaxDelayMs: 160, timeoutMs: 400 };
const ALL = ['deposit.credited', 'order.rejected', 'account.disabled', 'settlement.updated'];

interface DeliveryView {
  id: string;
  event: string;
  type: string;
  status: string;
  attempts: number;
  nextAttempt: number | null;
  lastStatus: number | null;
  lastError: string | null;
  log: { attempt: number; status: number | null; error: string | null }[];
}

describe.each(backends)('webhooks on $name', ({ name, skip }) => {
  describe.skipIf(skip)('endpoints, events and deliveries', () => {
    let h: Harness;
    let news: { id: string; token: string };
    let alice: Buyer;
    const receivers: Receiver[] = [];
    beforeEach(async () => {
      h = await startServer(name, { webhooks: FAST });
      news = await h.merchant('news', { commissionBps: 500 });
      alice = await h.buyer('alice');
    });
    afterEach(async () => {
      await h.close();
      await Promise.all(receivers.splice(0).map((r) => r.close()));
    });

    const register = async (url: string, events = ALL) => {
      const r = await h.call('post', '/v1/admin/webhooks', h.admin, { url, events });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      return r.body as { webhook: { id: string }; secret: string };
    };
    const deliveries = async (id: string) =>
      (await h.call('get', `/v1/admin/webhooks/${id}/deliveries`, h.admin)).body.deliveries as DeliveryView[];
    /** Two deposits (three orders credited, one rejected) and a disabled account: four events. */
    const happen = async () => {
      const ok = (amt: number, res = 'GET /a') => ({
        cert: alice.cert,
        order: h.order(alice, { mer: 'news', amt, res }),
      });
      const r1 = await h.call('post', '/v1/deposits', news.token, {
        batch: 'b1',
        orders: [ok(1000), ok(3000), { cert: alice.cert, order: h.order(alice, { mer: 'elsewhere' }) }],
      });
      expect(r1.body.credited).toBe(3800);
      await h.call('post', '/v1/deposits', news.token, { batch: 'b2', orders: [ok(2000, 'GET /b')] });
      await h.call('patch', '/v1/admin/accounts/alice', h.admin, { status: 'disabled' });
    };

    it('registers, lists and deletes endpoints; the secret is in the create answer only; bad bodies get 400 naming the field', async () => {
      const a = await register('https://erp.example/hooks', ['deposit.credited']);
      expect(a.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
      const own = await h.call('post', '/v1/admin/webhooks', h.admin, {
        url: 'http://127.0.0.1:9/x',
        events: ['order.rejected', 'order.rejected'],
        secret: 'my-own-secret-0123456789',
      });
      expect(own.body.secret).toBe('my-own-secret-0123456789');
      expect(own.body.webhook.events).toEqual(['order.rejected']);
      const list = await h.call('get', '/v1/admin/webhooks', h.admin);
      // Oldest first; within one second, by id.
      expect(list.body.webhooks.map((w: { id: string }) => w.id)).toEqual(
        [a.webhook.id, own.body.webhook.id].sort(),
      );
      expect(JSON.stringify(list.body)).not.toContain(a.secret);
      expect(JSON.stringify(list.body)).not.toContain('my-own-secret');
      expect((await h.call('delete', `/v1/admin/webhooks/${a.webhook.id}`, h.admin)).status).toBe(204);
      const gone = await h.call('delete', `/v1/admin/webhooks/${a.webhook.id}`, h.admin);
      expect(gone.status).toBe(404);
      expect(gone.body.error).toBe('no_such_webhook');
      expect((await h.call('get', `/v1/admin/webhooks/${a.webhook.id}/deliveries`, h.admin)).status).toBe(
        404,
      );

      const bad: [unknown, string][] = [
        [{ url: 'ftp://x.example/', events: ['deposit.credited'] }, 'url'],
        [{ url: 'https://user:pw@x.example/', events: ['deposit.credited'] }, 'url'],
        [{ url: 'not a url', events: ['deposit.credited'] }, 'url'],
        [{ events: ['deposit.credited'] }, 'url'],
        [{ url: 'https://x.example/', events: [] }, 'events'],
        [{ url: 'https://x.example/', events: ['deposit.made'] }, 'events'],
        [{ url: 'https://x.example/', events: 'deposit.credited' }, 'events'],
        [{ url: 'https://x.example/', events: ['deposit.credited'], secret: 'short' }, 'secret'],
        [{ url: 'https://x.example/', events: ['deposit.credited'], secret: 42 }, 'secret'],
        [{ url: 'https://x.example/', events: ['deposit.credited'], extra: 1 }, 'extra'],
        [[1, 2], 'object'],
      ];
      for (const [body, field] of bad) {
        const r = await h.call('post', '/v1/admin/webhooks', h.admin, body);
        expect(r.status, JSON.stringify(body)).toBe(400);
        expect(r.body.error).toBe('invalid_request');
        expect(r.body.message).toContain(field);
        // A refused secret is never echoed back.
        expect(r.body.message).not.toContain('short');
      }
      const q = await h.call(
        'get',
        `/v1/admin/webhooks/${own.body.webhook.id}/deliveries?status=lost`,
        h.admin,
      );
      expect(q.status).toBe(400);
      expect(q.body.message).toContain('`status`');
      expect(
        (await h.call('post', '/v1/admin/webhooks', news.token, { url: 'https://x.example/', events: ALL }))
          .status,
      ).toBe(403);
    });

    it('a receiver that is down, then up, gets every event at least once, signed; a lost answer is redelivered and deduped by id', async () => {
      const port = await freePort();
      const hook = await register(`http://127.0.0.1:${port}/hooks`);
      await happen();
      const events = await rows<{ id: string; type: string }>(
        h,
        'SELECT id, type FROM outbox_events ORDER BY id',
      );
      expect(events.map((e) => e.type).sort()).toEqual([
        'account.disabled',
        'deposit.credited',
        'deposit.credited',
        'order.rejected',
      ]);
      // Down: every delivery fails, and is scheduled again.
      await until(
        async () => (await deliveries(hook.webhook.id)).every((d) => d.attempts >= 2),
        10_000,
        'two failed attempts each',
      );
      for (const d of await deliveries(hook.webhook.id)) {
        expect(d.status).toBe('pending');
        expect(d.lastError).toMatch(/ECONNREFUSED/);
        expect(d.lastStatus).toBeNull();
        expect(d.nextAttempt).toEqual(expect.any(Number));
        expect(d.log[0]).toMatchObject({
          attempt: 1,
          status: null,
          error: expect.stringMatching(/ECONNREFUSED/),
        });
      }
      // Up: the first answer is a 503, the next one comes after the dispatcher stopped waiting (lost), then all is well.
      const rx = await startReceiver(() => hook.secret, port);
      receivers.push(rx);
      rx.script = [{ status: 503 }, { status: 200, delayMs: 1500 }];
      await until(
        async () => (await deliveries(hook.webhook.id)).every((d) => d.status === 'delivered'),
        15_000,
        'every delivery delivered',
      );
      expect(rx.ids()).toEqual(new Set(events.map((e) => e.id)));
      expect(rx.received.length).toBeGreaterThan(events.length);
      for (const x of rx.received) {
        expect(x.verified).toBe(true);
        expect(x.id).toBe(x.event.id);
      }
      // Deduped by id, a receiver has each event once, whatever came twice.
      const byId = new Map(rx.received.map((x) => [x.event.id, x.event]));
      expect(byId.size).toBe(4);
      const log = await deliveries(hook.webhook.id);
      expect(log.every((d) => d.nextAttempt === null && d.lastStatus !== null && d.lastStatus < 300)).toBe(
        true,
      );
      expect(log.some((d) => d.log.some((a) => a.status === 503))).toBe(true);
      expect(log.some((d) => d.log.some((a) => /no answer within/.test(a.error ?? '')))).toBe(true);
    });

    it('what the events carry: deposit totals, the rejected order, the disabled account', async () => {
      const rx = await startReceiver(() => hook.secret);
      receivers.push(rx);
      const hook = await register(rx.url);
      await happen();
      await until(() => rx.ids().size === 4, 10_000, 'four events');
      const of = (type: string) => rx.received.filter((x) => x.event.type === type).map((x) => x.event);
      const credited = of('deposit.credited').sort((a, b) =>
        String(a.data.batch).localeCompare(String(b.data.batch)),
      );
      expect(credited.map((e) => e.data)).toEqual([
        {
          merchant: 'news',
          currency: 'USD',
          batch: 'b1',
          orders: 2,
          amount: 4000,
          fee: 200,
          credited: 3800,
          rejected: 1,
          duplicates: 0,
          balance: 3800,
        },
        {
          merchant: 'news',
          currency: 'USD',
          batch: 'b2',
          orders: 1,
          amount: 2000,
          fee: 100,
          credited: 1900,
          rejected: 0,
          duplicates: 0,
          balance: 5700,
        },
      ]);
      const [rejected] = of('order.rejected');
      expect(rejected!.data).toMatchObject({
        merchant: 'news',
        batch: 'b1',
        reason: 'wrong_merchant',
        oid: expect.any(String),
      });
      expect(of('account.disabled').map((e) => e.data)).toEqual([
        { account: 'alice', role: 'buyer', currency: 'USD' },
      ]);
      for (const e of rx.received.map((x) => x.event)) {
        expect(e.id).toMatch(/^evt_/);
        expect(e.created).toBe(h.clock.t);
      }
      // A re-posted batch changes nothing, so it reports nothing.
      await h.call('post', '/v1/deposits', news.token, { batch: 'b2', orders: [] });
      expect((await rows(h, 'SELECT id FROM outbox_events')).length).toBe(4);
    });

    it('an endpoint only gets the types it subscribed to; a deleted one gets nothing more', async () => {
      const rx = await startReceiver(() => a.secret);
      receivers.push(rx);
      const a = await register(rx.url, ['account.disabled']);
      const b = await register(`${rx.url}?b`, ['deposit.credited']);
      await h.call('delete', `/v1/admin/webhooks/${b.webhook.id}`, h.admin);
      await happen();
      await until(() => rx.received.length === 1, 10_000, 'one delivery');
      await new Promise((r) => setTimeout(r, 200));
      expect(rx.received.map((x) => x.event.type)).toEqual(['account.disabled']);
      expect((await rows(h, 'SELECT id FROM webhook_deliveries')).length).toBe(1);
    });

    it('a redirect is never followed: the attempt fails and the other host sees nothing', async () => {
      const thief = await startReceiver(() => 'x');
      receivers.push(thief);
      const rx = await startReceiver(() => hook.secret);
      receivers.push(rx);
      rx.fallback = { status: 307, headers: { location: thief.url } };
      const hook = await register(rx.url, ['account.disabled']);
      await h.call('patch', '/v1/admin/accounts/alice', h.admin, { status: 'disabled' });
      await until(async () => (await deliveries(hook.webhook.id))[0]?.attempts === 2, 10_000, 'two attempts');
      const [d] = await deliveries(hook.webhook.id);
      expect(d).toMatchObject({
        status: 'pending',
        lastStatus: 307,
        lastError: expect.stringMatching(/redirect/),
      });
      expect(thief.received).toEqual([]);
    });
  });

  describe.skipIf(skip)('the retry window', () => {
    it('a delivery still failing when the window closes is marked failed, with its log', async () => {
      const h = await startServer(name, { webhooks: { ...FAST, retryWindowSeconds: 1 } });
      try {
        await h.buyer('alice');
        const port = await freePort();
        const r = await h.call('post', '/v1/admin/webhooks', h.admin, {
          url: `http://127.0.0.1:${port}/`,
          events: ['account.disabled'],
        });
        await h.call('patch', '/v1/admin/accounts/alice', h.admin, { status: 'disabled' });
        const log = async () =>
          (await h.call('get', `/v1/admin/webhooks/${r.body.webhook.id}/deliveries`, h.admin)).body
            .deliveries as DeliveryView[];
        await until(async () => (await log())[0]?.status === 'failed', 10_000, 'failed');
        const [d] = await log();
        expect(d!.attempts).toBeGreaterThanOrEqual(3);
        expect(d!.nextAttempt).toBeNull();
        expect(d!.log).toHaveLength(d!.attempts);
        const only = await h.call(
          'get',
          `/v1/admin/webhooks/${r.body.webhook.id}/deliveries?status=failed&limit=1`,
          h.admin,
        );
        expect(only.body.deliveries).toHaveLength(1);
        expect(only.body.next).toBeNull();
      } finally {
        await h.close();
      }
    });
  });
});

describe('signatures on real deliveries', () => {
  it('verify with the secret, and fail with another secret or once stale', async () => {
    const h = await startServer('sqlite', { webhooks: FAST });
    const rx = await startReceiver(() => secret);
    let secret = '';
    try {
      await h.buyer('alice');
      secret = (
        await h.call('post', '/v1/admin/webhooks', h.admin, { url: rx.url, events: ['account.disabled'] })
      ).body.secret;
      await h.call('patch', '/v1/admin/accounts/alice', h.admin, { status: 'disabled' });
      await until(() => rx.received.length === 1, 10_000, 'a delivery');
      const [x] = rx.received;
      expect(x!.verified).toBe(true);
      expect(x!.signature).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
      expect(verifyWebhook(`${secret}x`, x!.signature, x!.raw)).toBe(false);
      expect(verifyWebhook(secret, x!.signature, x!.raw.replace('alice', 'alicf'))).toBe(false);
      expect(verifyWebhook(secret, x!.signature, x!.raw, { now: Date.now() / 1000 + 301 })).toBe(false);
    } finally {
      await h.close();
      await rx.close();
    }
  });
});
