/**
 * The billing client's statement and webhook calls against a real billing
 * server: statements come back as web ReadableStreams read chunk by chunk
 * (and cancellable), a refused parameter is a BillingError with the server's
 * code before any byte, `Date` bounds travel as Unix seconds, and the
 * webhook admin calls register, list, read the log of and delete endpoints.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BillingClient, BillingError, createBillingClient } from '../../src/billing-client/index.js';
import { startBillingServer, type TestServer } from './helpers.js';

let srv: TestServer;
let admin: BillingClient;
let alice: BillingClient;

async function text(stream: ReadableStream<Uint8Array>): Promise<{ text: string; chunks: number }> {
  const reader = stream.getReader();
  const dec = new TextDecoder();
  let out = '';
  let chunks = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks++;
    out += dec.decode(value, { stream: true });
  }
  return { text: out + dec.decode(), chunks };
}

beforeAll(async () => {
  srv = await startBillingServer('bank-client');
  admin = createBillingClient({ url: srv.url, token: srv.adminToken });
  const created = await admin.admin.createAccount({ id: 'alice', role: 'buyer', currency: 'USD' });
  alice = createBillingClient({ url: srv.url, token: created.token });
  for (let i = 1; i <= 3; i++)
    await admin.admin.adjust('alice', { amt: i * 1000, memo: `top-up ${i}, "quoted"` });
});
afterAll(async () => {
  await srv?.close();
});

describe('statements', () => {
  it("a buyer's statement is a ReadableStream of the JSON document", async () => {
    const stream = await alice.statement({ from: new Date(0) });
    expect(stream).toBeInstanceOf(ReadableStream);
    const doc = JSON.parse((await text(stream)).text);
    expect(doc.statement).toMatchObject({ account: 'alice', from: 0, to: null });
    expect(doc.entries.map((e: { amount: number }) => e.amount)).toEqual([1000, 2000, 3000]);
    expect(doc.totals).toEqual([
      {
        currency: 'USD',
        entries: 3,
        credits: 6000,
        debits: 0,
        net: 6000,
        fees: 0,
        opening: 0,
        closing: 6000,
      },
    ]);
  });

  it("the admin's CSV export, and its summary", async () => {
    const now = new Date();
    const period = `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
    const { text: csv } = await text(await admin.admin.statements({ period, format: 'csv' }));
    expect(csv.split('\r\n')[0]).toMatch(/^record,id,time,/);
    expect(csv).toContain('"top-up 2, ""quoted"""');
    const summary = await admin.admin.statementSummary({ period });
    expect(summary).toMatchObject({ entries: 6, totals: [{ currency: 'USD', net: 0, entries: 6 }] });
  });

  it('a refused parameter throws the server code before any byte; a wrong role is forbidden', async () => {
    await expect(admin.admin.statements({ period: '2026-13' })).rejects.toMatchObject({
      code: 'invalid_request',
      status: 400,
    });
    await expect(alice.statement({ from: 'soon' })).rejects.toBeInstanceOf(BillingError);
    await expect(alice.admin.statements({ period: '2026-11' })).rejects.toMatchObject({ code: 'forbidden' });
  });

  it('the signal cancels a transfer in progress', async () => {
    // A server that sends the beginning of an export and then holds the connection open.
    const held = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/csv' });
      res.write('record,id\r\n');
    });
    await new Promise<void>((resolve) => held.listen(0, '127.0.0.1', resolve));
    try {
      const port = (held.address() as AddressInfo).port;
      const client = createBillingClient({ url: `http://127.0.0.1:${port}`, token: 'mpt_x', timeoutMs: 200 });
      const ctl = new AbortController();
      const stream = await client.statement({ format: 'csv' }, { signal: ctl.signal });
      const reader = stream.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toBe('record,id\r\n');
      // Past the call's timeout, the transfer goes on: the timeout covers the wait for the answer only.
      await new Promise((r) => setTimeout(r, 300));
      const pending = reader.read();
      ctl.abort();
      await expect(pending).rejects.toThrow();
    } finally {
      held.closeAllConnections();
      await new Promise<void>((resolve) => held.close(() => resolve()));
    }
  });
});

describe('webhooks', () => {
  it('create (secret once), list, delivery log, delete', async () => {
    const created = await admin.admin.createWebhook({
      url: 'http://127.0.0.1:9/hooks',
      events: ['account.disabled'],
    });
    expect(created.secret).toMatch(/^whsec_/);
    expect(created.webhook.events).toEqual(['account.disabled']);
    expect((await admin.admin.listWebhooks()).map((w) => w.id)).toEqual([created.webhook.id]);
    await admin.admin.updateAccount('alice', { status: 'disabled' });
    const page = await admin.admin.webhookDeliveries(created.webhook.id);
    expect(page.deliveries).toEqual([
      expect.objectContaining({
        type: 'account.disabled',
        status: 'pending',
        event: expect.stringMatching(/^evt_/),
      }),
    ]);
    expect(page.next).toBeNull();
    await admin.admin.deleteWebhook(created.webhook.id);
    expect(await admin.admin.listWebhooks()).toEqual([]);
    await expect(admin.admin.deleteWebhook(created.webhook.id)).rejects.toMatchObject({
      code: 'no_such_webhook',
      status: 404,
    });
    await expect(
      admin.admin.createWebhook({ url: 'ftp://x/', events: ['account.disabled'] }),
    ).rejects.toMatchObject({ code: 'invalid_request' });
  });
});
