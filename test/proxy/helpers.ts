/**
 * Test helpers for micropay-proxy: a real upstream site on an ephemeral port
 * (node:http plus a ws echo server) that records what reaches it, a bank of
 * fixed keys (a `MerchantBilling` over `StaticKeyResolver`, recording
 * authorizations and deposits) that signs credentials and orders, and a
 * helper that starts a proxy and closes it after the test file.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll } from 'vitest';
import { WebSocketServer } from 'ws';
import type { MerchantBilling } from '../../src/middleware/core.js';
import { b64urlEncode } from '../../src/protocol/base64url.js';
import { generateSigningKey, type SigningKey, signToken, tid } from '../../src/protocol/crypto.js';
import { formatPaymentHeader } from '../../src/protocol/header.js';
import { StaticKeyResolver } from '../../src/protocol/keys.js';
import { type ProxyConfig, parseProxyConfig } from '../../src/proxy/config.js';
import { type CreateProxyOptions, createProxy, type MicropayProxy } from '../../src/proxy/server.js';
import type { DepositItem } from '../../src/stores/types.js';

export const silent = pino({ level: 'silent' });

/** What reached the upstream. */
export interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

export interface Upstream {
  url: string;
  port: number;
  seen: Seen[];
  /** Requests to `/slow` wait for this to be called before their second chunk. */
  releaseSlow(): void;
  /** Resolves when `/slow` has sent its first chunk. */
  slowStarted: Promise<void>;
  /** `/slow` responses the proxy closed before they finished (the client went away). */
  slowAborted: number;
  /** Websocket messages and upgrade requests the upstream saw. */
  wsSeen: Seen[];
  close(): Promise<void>;
}

/**
 * A small site: `/status/:n` answers that status, `/slow` streams one chunk then waits for
 * `releaseSlow()`, `/die` sends a chunk then drops the connection, `/echo` returns the request's headers, `/ws` is a websocket echo, anything
 * else answers 200 with `{ path }`.
 */
export async function startUpstream(name = 'upstream'): Promise<Upstream> {
  const seen: Seen[] = [];
  const wsSeen: Seen[] = [];
  let release: () => void = () => {};
  const released = new Promise<void>((r) => {
    release = r;
  });
  let started: () => void = () => {};
  const slowStarted = new Promise<void>((r) => {
    started = r;
  });
  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    seen.push({ method: req.method ?? 'GET', url, headers: req.headers });
    const status = /^\/status\/(\d{3})/.exec(url);
    if (status) {
      res.statusCode = Number(status[1]);
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ status: res.statusCode, name }));
      return;
    }
    if (url.startsWith('/slow')) {
      res.setHeader('Content-Type', 'text/plain');
      res.write('first\n');
      res.once('close', () => {
        if (!res.writableFinished) upstream.slowAborted++;
      });
      started();
      released.then(() => res.end('second\n'));
      return;
    }
    if (url.startsWith('/die')) {
      res.setHeader('Content-Type', 'text/plain');
      res.write('partial\n');
      setTimeout(() => res.socket?.destroy(), 50);
      return;
    }
    if (url.startsWith('/upload')) {
      let n = 0;
      req.on('data', (c: Buffer) => {
        n += c.length;
      });
      req.on('end', () => res.end(JSON.stringify({ bytes: n })));
      return;
    }
    // A site that sends a receipt header of its own (a stale copy, or a forgery).
    if (url.includes('forged-receipt')) res.setHeader('Micropay-Receipt', 'forged');
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ name, path: url, headers: req.headers }));
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    wsSeen.push({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers });
    if (req.url?.startsWith('/ws-missing')) {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `echo:${data.toString()}`));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const upstream: Upstream = {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    wsSeen,
    slowAborted: 0,
    releaseSlow: release,
    slowStarted,
    close: async () => {
      release();
      for (const c of wss.clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  return upstream;
}

/**
 * For a test file: an upstream started before its tests and, after them, every proxy the file
 * started and the upstream closed. Call the returned function inside tests.
 */
export function upstreamForFile(): () => Upstream {
  let up: Upstream | undefined;
  beforeAll(async () => {
    up = await startUpstream();
  });
  afterAll(async () => {
    await closeProxies();
    await up?.close();
  });
  return () => {
    if (!up) throw new Error('upstreamForFile(): the upstream starts in beforeAll');
    return up;
  };
}

/** Polls `fn` until it returns a truthy value (or throws after `timeoutMs`). */
export async function eventually<T>(fn: () => Promise<T> | T, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A port nothing listens on (an upstream that is down). */
export async function deadPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A billing server made of fixed keys: issues credentials, signs orders, records calls. */
export interface Bank {
  issuer: string;
  key: SigningKey;
  billing: MerchantBilling;
  authorizations: number;
  deposits: DepositItem[];
  /** Answer authorizations with this. */
  authorizeAs: 'approved' | 'declined' | 'down';
  buyer(sub: string, o?: { lim?: number; cur?: string; exp?: number }): Buyer;
}

export interface Buyer {
  sub: string;
  cert: string;
  key: SigningKey;
  /** The Micropay-Payment header paying `res` (`"GET /path"`). */
  pay(res: string, o?: { amt?: number; cur?: string; mer?: string; iat?: number; oid?: string }): string;
}

export function startBank(issuer = 'bank-t', merchant = 'news-site'): Bank {
  const key = generateSigningKey();
  const now = () => Math.floor(Date.now() / 1000);
  const keys = new StaticKeyResolver({
    issuer,
    keys: [{ kid: 'k1', x: key.x, nbf: 0, exp: now() + 86_400 * 3 }],
    peers: [],
  });
  const bank: Bank = {
    issuer,
    key,
    authorizations: 0,
    deposits: [],
    authorizeAs: 'approved',
    billing: {
      keyResolver: () => keys,
      authorize: async () => {
        bank.authorizations++;
        if (bank.authorizeAs === 'down') throw new Error('billing down');
        return bank.authorizeAs === 'approved'
          ? { status: 'approved', auth: 'test-auth' }
          : { status: 'declined', reason: 'over_limit' };
      },
      deposit: async ({ batch, orders }) => {
        bank.deposits.push(...orders);
        return {
          batch,
          results: orders.map((o) => ({
            oid: String(JSON.parse(Buffer.from(o.order.split('.')[0]!, 'base64url').toString()).oid),
            status: 'credited' as const,
          })),
          credited: 0,
        };
      },
    },
    buyer(sub, o = {}) {
      const bk = generateSigningKey();
      const cert = signToken(
        {
          typ: 'mp-cert',
          v: 1,
          iss: issuer,
          kid: 'k1',
          sub,
          key: bk.x,
          cur: o.cur ?? 'USD',
          lim: o.lim ?? 5_000_000,
          nbf: now() - 60,
          exp: o.exp ?? now() + 86_400,
        },
        key,
      );
      return {
        sub,
        cert,
        key: bk,
        pay(res, p = {}) {
          const order = signToken(
            {
              typ: 'mp-order',
              v: 1,
              cid: tid(cert),
              mer: p.mer ?? merchant,
              res,
              amt: p.amt ?? 2000,
              cur: p.cur ?? 'USD',
              iat: p.iat ?? now(),
              oid: p.oid ?? b64urlEncode(randomBytes(16)),
            },
            bk,
          );
          return formatPaymentHeader({ kind: 'order', cert, order });
        },
      };
    },
  };
  return bank;
}

/** A configuration object for `parseProxyConfig`, with `over` merged at the top level. */
export function configObject(upstream: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    listen: '127.0.0.1:0',
    merchant: 'news-site',
    billing: { url: 'http://127.0.0.1:9', token: 'test-token' },
    upstream,
    routes: [
      { match: 'GET /articles/*', price: '0.002 USD', duration: 60, title: 'An article' },
      { match: 'GET /status/*', price: '0.002 USD' },
      { match: 'GET /slow-paid', price: '0.002 USD' },
      { match: 'GET /ws-paid', price: '0.002 USD' },
      { match: 'GET /ws-missing', price: '0.002 USD' },
    ],
    deposits: { maxDelayMs: 20 },
    shutdownTimeoutMs: 5000,
    ...over,
  };
}

export function config(upstream: string, over: Record<string, unknown> = {}): ProxyConfig {
  return parseProxyConfig(configObject(upstream, over), 'test', {});
}

const running: MicropayProxy[] = [];

/** Starts a proxy (closed by `closeProxies`) and returns it with its URL. */
export async function startProxy(
  cfg: ProxyConfig,
  opts: CreateProxyOptions = {},
): Promise<{ proxy: MicropayProxy; url: string }> {
  const proxy = createProxy(cfg, { logger: silent, processMetrics: false, ...opts });
  running.push(proxy);
  const url = await proxy.listen();
  return { proxy, url };
}

export async function closeProxies(): Promise<void> {
  await Promise.all(running.splice(0).map((p) => p.close()));
}

/** A fresh temporary directory, removed by the returned function. */
export function tempDir(prefix = 'micropay-proxy-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A plain HTTP request returning status, headers and body text. */
export function get(
  url: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  json: () => Record<string, unknown>;
}> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}
