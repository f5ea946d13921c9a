/**
 * Test helpers of the billing client and the billing CLI: a real billing
 * server in process on an ephemeral port, buyer keys and signed orders, and
 * a raw HTTP front that fails on cue (503s, slow answers) before proxying to
 * the real server, to exercise retries and timeouts over real sockets.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'vitest';
import { BillingError, createBillingClient } from '../../src/billing-client/index.js';
import { type BillingServer, createBillingServer } from '../../src/billing-server/index.js';
import { generateSigningKey, type SigningKey, signToken, tid } from '../../src/protocol/index.js';

export interface TestServer {
  server: BillingServer;
  url: string;
  adminToken: string;
  close(): Promise<void>;
}

/** A real billing server on SQLite in memory, listening on 127.0.0.1:0. */
export async function startBillingServer(issuer = 'bank-a'): Promise<TestServer> {
  const server = await createBillingServer({ issuer, db: ':memory:', logger: false });
  const url = await server.listen(0, '127.0.0.1');
  return { server, url, adminToken: server.adminToken, close: () => server.close() };
}

/** Resolves to the BillingError `p` rejects with; fails the test when it resolves or rejects otherwise. */
export async function failure(p: Promise<unknown>): Promise<BillingError> {
  const e = await p.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(BillingError);
  return e as BillingError;
}

/** Accounts `<prefix>-merchant` and `<prefix>-buyer` (credit 10 USD, 1 USD a day) on `srv`: their tokens. */
export async function merchantAndBuyer(
  srv: TestServer,
  prefix: string,
  fetchImpl?: typeof fetch,
): Promise<{ merchantToken: string; buyerToken: string }> {
  const admin = createBillingClient({ url: srv.url, token: srv.adminToken, fetch: fetchImpl }).admin;
  const merchant = await admin.createAccount({ id: `${prefix}-merchant`, role: 'merchant', currency: 'USD' });
  const buyer = await admin.createAccount({
    id: `${prefix}-buyer`,
    role: 'buyer',
    currency: 'USD',
    creditLimit: 10_000_000,
    dailyLimit: 1_000_000,
  });
  return { merchantToken: merchant.token, buyerToken: buyer.token };
}

/** A fresh order id. */
export const newOid = (): string => randomBytes(16).toString('base64url');

/** A buyer's key and a way to sign orders under one credential. */
export interface Buyer {
  key: SigningKey;
  cert: string;
  order(o: { mer: string; amt: number; cur?: string; res?: string; oid?: string; iat?: number }): string;
}

/** Signs orders under `cert` with `key`. */
export function buyer(cert: string, key: SigningKey): Buyer {
  return {
    key,
    cert,
    order: (o) =>
      signToken(
        {
          typ: 'mp-order',
          v: 1,
          cid: tid(cert),
          mer: o.mer,
          res: o.res ?? 'GET /articles/42',
          amt: o.amt,
          cur: o.cur ?? 'USD',
          iat: o.iat ?? Math.floor(Date.now() / 1000),
          oid: o.oid ?? newOid(),
        },
        key,
      ),
  };
}

export { generateSigningKey };

/** What the front does with the next request: fail with a status, hang, or pass it to the server. */
export type Step =
  | { status: number; headers?: Record<string, string>; body?: unknown; text?: string }
  | 'hang'
  | 'pass';

/** A raw HTTP server in front of the real one, following a script of steps, then passing everything. */
export interface Front {
  url: string;
  /** Requests seen, as `METHOD path`. */
  seen: string[];
  /** Authorization headers seen (to check what the client sent). */
  auth: (string | undefined)[];
  /** User-Agent headers seen. */
  ua: (string | undefined)[];
  /** Steps still to play. */
  script: Step[];
  close(): Promise<void>;
}

export async function startFront(target: string, script: Step[] = []): Promise<Front> {
  const t = new URL(target);
  const hanging = new Set<http.ServerResponse>();
  const front: Front = { url: '', seen: [], auth: [], ua: [], script, close: async () => {} };
  const srv = http.createServer((req, res) => {
    front.seen.push(`${req.method} ${req.url}`);
    front.auth.push(req.headers.authorization);
    front.ua.push(req.headers['user-agent']);
    const step = front.script.shift() ?? 'pass';
    if (step === 'hang') {
      hanging.add(res);
      req.resume();
      return;
    }
    if (step !== 'pass') {
      req.resume();
      res.writeHead(step.status, { 'content-type': 'application/json', ...step.headers });
      res.end(step.text ?? (step.body === undefined ? '' : JSON.stringify(step.body)));
      return;
    }
    const up = http.request(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  front.url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  front.close = () =>
    new Promise<void>((resolve) => {
      for (const r of hanging) r.destroy();
      srv.closeAllConnections();
      srv.close(() => resolve());
    });
  return front;
}

/** A port that was free a moment ago (listened on, then closed). */
export async function reservePort(): Promise<number> {
  const srv = http.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** A 503 step: the billing server is down for a moment. */
export const unavailable: Step = {
  status: 503,
  body: { error: 'billing_unavailable', message: 'Down for a moment.' },
};

/** The fronts and raw servers a test file starts, closed together (`closeAll` after each test). */
export class Started {
  private closers: (() => Promise<void>)[] = [];

  /** A front before `target` following `script` (see `startFront`). */
  async front(target: string, script: Step[]): Promise<Front> {
    const f = await startFront(target, script);
    this.closers.push(f.close);
    return f;
  }

  /** A raw server answering every request with `handler`: its URL. */
  async server(handler: http.RequestListener): Promise<string> {
    const s = http.createServer(handler);
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    this.closers.push(
      () =>
        new Promise<void>((resolve) => {
          s.closeAllConnections();
          s.close(() => resolve());
        }),
    );
    return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.closers.splice(0).map((close) => close()));
  }
}
