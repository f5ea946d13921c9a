/**
 * The world the wallet tests pay in: a real billing server (SQLite in
 * memory) and the real example merchant (examples/express-basic) on
 * ephemeral ports, one shared settable clock, and helpers to open buyer
 * accounts and count what the merchant charged.
 */
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp, type ExampleApp } from '../../examples/express-basic/app.js';
import {
  type BillingClient,
  createBillingClient,
  type NewAccountInput,
} from '../../src/billing-client/index.js';
import { type BillingServer, createBillingServer } from '../../src/billing-server/index.js';
import type { PaymentInfo } from '../../src/middleware/express.js';

/** A mutable Unix-seconds clock. */
export interface Clock {
  t: number;
}

export interface World {
  billing: BillingServer;
  billingUrl: string;
  admin: BillingClient;
  clock: Clock;
  merchant: { id: string; token: string };
  shop: ExampleApp;
  shopUrl: string;
  /** Orders the merchant charged (its `onPaid`), in order. */
  charged: PaymentInfo[];
  /** Opens a buyer account and returns its id and token. */
  buyer(fields?: Partial<NewAccountInput>): Promise<{ id: string; token: string }>;
  /** Waits (up to 5 s) until account `id` has balance `expected`, and returns the balance then. */
  balance(id: string, expected: number): Promise<number>;
  close(): Promise<void>;
}

const silent = { info() {}, warn() {}, error() {} };

/** Listens on an ephemeral port of 127.0.0.1 and resolves the base URL. */
export function listen(app: {
  listen: (port: number, host: string) => Server;
}): Promise<{ url: string; server: Server }> {
  return new Promise((resolve, reject) => {
    const server = app.listen(0, '127.0.0.1');
    server.once('error', reject);
    server.once('listening', () => {
      const a = server.address() as AddressInfo;
      resolve({ url: `http://127.0.0.1:${a.port}`, server });
    });
  });
}

/** Closes an HTTP server, dropping idle keep-alive sockets. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

let n = 0;
/** A unique account id for this process. */
export const uniqueId = (prefix: string): string => `${prefix}-${process.pid}-${(n++).toString(36)}`;

/** Starts a billing server and the example merchant sharing `clock` (default: the real time, settable). */
export async function startWorld(o: { clock?: Clock; merchantClock?: Clock } = {}): Promise<World> {
  const clock = o.clock ?? { t: Math.floor(Date.now() / 1000) };
  const merchantClock = o.merchantClock ?? clock;
  const billing = await createBillingServer({
    issuer: 'bank-a',
    db: ':memory:',
    logger: false,
    adminToken: `admin-${randomBytes(12).toString('hex')}`,
    now: () => clock.t,
  });
  const billingUrl = await billing.listen(0, '127.0.0.1');
  const admin = createBillingClient({ url: billingUrl, token: billing.adminToken });
  const mid = uniqueId('news');
  const m = await admin.admin.createAccount({
    id: mid,
    role: 'merchant',
    currency: 'USD',
    commissionBps: 500,
  });
  const charged: PaymentInfo[] = [];
  // The merchant's key cache runs on the merchant's clock too, so clock jumps age it like real time would.
  const client = createBillingClient({ url: billingUrl, token: m.token });
  const resolver = client.keyResolver({ clock: () => merchantClock.t * 1000 });
  // Wrapped: MicropayCore takes any object with a `url` for `{ url, token }` options, and the client has one.
  const merchantBilling = {
    keyResolver: () => resolver,
    authorize: client.authorizer(),
    deposit: (r: Parameters<typeof client.deposit>[0]) => client.deposit(r),
  };
  const shop = createApp({
    merchant: mid,
    billing: merchantBilling,
    deposits: { maxDelayMs: 20, retryBaseMs: 20 },
    logger: silent,
    clock: () => merchantClock.t,
    onPaid: (info) => charged.push(info),
  });
  const { url: shopUrl, server } = await listen(shop);
  return {
    billing,
    billingUrl,
    admin,
    clock,
    merchant: { id: mid, token: m.token },
    shop,
    shopUrl,
    charged,
    async buyer(fields = {}) {
      const id = fields.id ?? uniqueId('buyer');
      const a = await admin.admin.createAccount({
        role: 'buyer',
        currency: 'USD',
        creditLimit: 10_000_000,
        dailyLimit: 5_000_000,
        ...fields,
        id,
      });
      return { id, token: a.token };
    },
    async balance(id, expected) {
      const deadline = Date.now() + 5000;
      for (;;) {
        const a = await admin.admin.getAccount(id);
        if (a.balance === expected || Date.now() > deadline) return a.balance;
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async close() {
      await closeServer(server);
      await shop.micropay.close();
      await billing.close();
    },
  };
}
