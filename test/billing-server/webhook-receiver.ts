/**
 * A webhook receiver for tests: a real HTTP server on 127.0.0.1 that
 * records every delivery (raw body, headers, whether the documented verifier
 * accepts it) and answers what the test scripts: a status, a redirect, or a
 * delay past the dispatcher's timeout (an answer that gets lost). Also the
 * helpers that read the outbox straight from storage and wait for a state.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyWebhook } from '../../src/billing-client/index.js';
import { PostgresDb } from '../../src/billing-server/db/postgres.js';
import { SqliteDb } from '../../src/billing-server/db/sqlite.js';
import type { Db, Row } from '../../src/billing-server/db/types.js';
import type { Harness } from './helpers.js';

export interface Received {
  id: string | undefined;
  signature: string;
  raw: string;
  verified: boolean;
  event: { id: string; type: string; created: number; data: Record<string, unknown> };
}

/** What to do with one request: answer a status (with headers), or wait `delayMs` first. */
export interface Answer {
  status: number;
  headers?: Record<string, string>;
  delayMs?: number;
}

export interface Receiver {
  url: string;
  port: number;
  received: Received[];
  /** Answers for the next requests, in order; then `fallback`. */
  script: Answer[];
  fallback: Answer;
  /** Distinct event ids received (deduped, as a receiver should). */
  ids(): Set<string>;
  close(): Promise<void>;
}

/** Starts a receiver on `port` (0: any) that checks signatures with `secret`. */
export async function startReceiver(secret: () => string, port = 0): Promise<Receiver> {
  const received: Received[] = [];
  const sockets = new Set<import('node:net').Socket>();
  const r: Receiver = {
    url: '',
    port: 0,
    received,
    script: [],
    fallback: { status: 204 },
    ids: () => new Set(received.map((x) => x.event.id)),
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const signature = String(req.headers['micropay-signature'] ?? '');
      received.push({
        id: req.headers['micropay-event-id'] as string | undefined,
        signature,
        raw: raw.toString('utf8'),
        verified: verifyWebhook(secret(), signature, raw),
        event: JSON.parse(raw.toString('utf8')),
      });
      const a = r.script.shift() ?? r.fallback;
      const reply = () => {
        if (res.destroyed) return;
        res.writeHead(a.status, a.headers);
        res.end();
      };
      if (a.delayMs) setTimeout(reply, a.delayMs);
      else reply();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  r.port = (server.address() as AddressInfo).port;
  r.url = `http://127.0.0.1:${r.port}/hooks`;
  return r;
}

/** A free port (listened on, then closed). */
export async function freePort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** A second connection to the harness's storage, for reading (or sabotaging) it directly. */
export function openStorage(h: Harness): Db {
  return h.backend === 'postgres'
    ? new PostgresDb({ url: h.opts.db!, schema: h.opts.pgSchema!, max: 1 })
    : new SqliteDb(h.opts.db!);
}

/** Rows of a query on the harness's storage. */
export async function rows<T extends Row>(
  h: Harness,
  sql: string,
  params: (string | number)[] = [],
): Promise<T[]> {
  const db = openStorage(h);
  try {
    return await db.all<T>(sql, params);
  } finally {
    await db.close();
  }
}

/** Polls `check` until it returns true (or throws after `ms`). */
export async function until(
  check: () => Promise<boolean> | boolean,
  ms = 10_000,
  what = 'condition',
): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
