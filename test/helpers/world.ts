/**
 * A small real world for integration tests: a billing server (SQLite in
 * memory unless told otherwise) listening on an ephemeral port, a merchant and
 * a buyer with tokens, and a buyer that signs orders for offers.
 */
import { randomBytes } from 'node:crypto';
import { type BillingClient, createBillingClient } from '../../src/billing-client/index.js';
import {
  type BillingServer,
  type BillingServerOptions,
  createBillingServer,
} from '../../src/billing-server/index.js';
import { b64urlEncode } from '../../src/protocol/base64url.js';
import { generateSigningKey, type SigningKey, signToken, tid } from '../../src/protocol/crypto.js';
import { formatPaymentHeader } from '../../src/protocol/header.js';
import type { Offer } from '../../src/protocol/messages.js';

export interface Buyer {
  id: string;
  token: string;
  key: SigningKey;
  cert: string;
  client: BillingClient;
  /** Signs an order paying `offer` (or overrides) and returns the Micropay-Payment header. */
  pay(
    offer: Offer,
    over?: Partial<{ amt: number; oid: string; iat: number; res: string; mer: string }>,
  ): string;
  /** Fetches a fresh credential. */
  renew(): Promise<string>;
}

export interface World {
  server: BillingServer;
  url: string;
  admin: BillingClient;
  merchant: { id: string; token: string; client: BillingClient };
  buyer: Buyer;
  addBuyer(id: string, opts?: { creditLimit?: number; dailyLimit?: number | null }): Promise<Buyer>;
  close(): Promise<void>;
}

/** Starts a billing server with one merchant (`news-site`, 5% commission) and one buyer (`alice`). */
export async function startWorld(
  o: Partial<BillingServerOptions> & { commissionBps?: number } = {},
): Promise<World> {
  const { commissionBps = 500, ...serverOpts } = o;
  const server = await createBillingServer({
    issuer: 'bank-a',
    db: ':memory:',
    logger: false,
    ...serverOpts,
  });
  const url = await server.listen(0, '127.0.0.1');
  const admin = createBillingClient({ url, token: server.adminToken });
  const m = await admin.admin.createAccount({
    id: 'news-site',
    role: 'merchant',
    currency: 'USD',
    commissionBps,
  });
  const merchant = { id: 'news-site', token: m.token, client: createBillingClient({ url, token: m.token }) };

  const addBuyer = async (
    id: string,
    b: { creditLimit?: number; dailyLimit?: number | null } = {},
  ): Promise<Buyer> => {
    const created = await admin.admin.createAccount({
      id,
      role: 'buyer',
      currency: 'USD',
      creditLimit: b.creditLimit ?? 10_000_000,
      dailyLimit: b.dailyLimit === undefined ? 5_000_000 : b.dailyLimit,
    });
    const client = createBillingClient({ url, token: created.token });
    const key = generateSigningKey();
    const buyer: Buyer = {
      id,
      token: created.token,
      key,
      cert: '',
      client,
      renew: async () => {
        buyer.cert = (await client.createCertificate(key.x)).cert;
        return buyer.cert;
      },
      pay(offer, over = {}) {
        const order = signToken(
          {
            typ: 'mp-order',
            v: 1,
            cid: tid(buyer.cert),
            mer: over.mer ?? offer.mer,
            res: over.res ?? offer.res,
            amt: over.amt ?? offer.amt,
            cur: offer.cur,
            iat: over.iat ?? Math.floor(Date.now() / 1000),
            oid: over.oid ?? b64urlEncode(randomBytes(16)),
          },
          key,
        );
        return formatPaymentHeader({ kind: 'order', cert: buyer.cert, order });
      },
    };
    await buyer.renew();
    return buyer;
  };
  const buyer = await addBuyer('alice');
  return { server, url, admin, merchant, buyer, addBuyer, close: () => server.close() };
}

/** Polls `fn` until it returns a truthy value (or throws after `timeoutMs`). */
export async function eventually<T>(fn: () => Promise<T> | T, timeoutMs = 10_000, everyMs = 25): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
