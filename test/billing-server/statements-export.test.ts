/**
 * A 100,000-entry admin export streams: the billing server runs in a child
 * process with a small heap (so buffering the export would not even fit) and
 * samples its own memory; the entries are written straight through the
 * storage layer in one transaction. The first byte comes long before the
 * last, a reader that stalls holds the server back (backpressure) instead of
 * the server piling the export up in memory, and the server's heap grows by
 * a bounded amount while the export is several times larger. The CSV read
 * back through the strict parser has every entry and totals that net to zero.
 */
import { type ChildProcess, fork } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresDb } from '../../src/billing-server/db/postgres.js';
import { SqliteDb } from '../../src/billing-server/db/sqlite.js';
import type { Db } from '../../src/billing-server/db/types.js';
import { parseCsv } from '../helpers/csv.js';
import { backends, type Harness, startServer } from './helpers.js';

const PAIRS = 50_000;
const ENTRIES = PAIRS * 2;
const MB = 1024 * 1024;
/** Most the server's heap may grow by while exporting. */
const HEAP_BOUND = 28 * MB;
/** A long resource name and memo, so the export (~40 MB) dwarfs the bound. */
const RES = `GET /catalogue/${'x'.repeat(250)}/item`;
const MEMO = `batch of the day, ${'y'.repeat(250)}`;
const CHILD = path.join(import.meta.dirname, 'fixtures', 'memory-server.ts');

interface Report {
  baseline: { heap: number; external: number; rss: number };
  peak: { heap: number; external: number; rss: number };
}

/** Writes `PAIRS` buyer/external entry pairs (with running balances) and the balances they add up to, in one transaction. */
async function fill(db: Db, time: number): Promise<void> {
  const cols = [
    'account',
    'time',
    'amount',
    'balance',
    'kind',
    'counterparty',
    'res',
    'oid',
    'memo',
    'ref',
    'fee',
  ];
  await db.transaction(async (tx) => {
    const rows: (string | number | null)[][] = [];
    let alice = 0;
    for (let i = 0; i < PAIRS; i++) {
      const amt = 1000 + (i % 97);
      alice -= amt;
      rows.push([
        'alice',
        time + (i % 3600),
        -amt,
        alice,
        'order',
        'news',
        RES,
        `o${i}`,
        null,
        `b${i >> 10}`,
        0,
      ]);
      rows.push([
        'news',
        time + (i % 3600),
        amt,
        -alice,
        'deposit',
        null,
        null,
        null,
        MEMO,
        `b${i >> 10}`,
        0,
      ]);
      if (rows.length >= 10_000) await tx.insertMany('entries', cols, rows.splice(0));
    }
    await tx.insertMany('entries', cols, rows);
    await tx.run('UPDATE accounts SET balance = ? WHERE id = ?', [alice, 'alice']);
    await tx.run('UPDATE accounts SET balance = ? WHERE id = ?', [-alice, 'news']);
  });
}

describe.each(backends)('a 100,000-entry export on $name', ({ name, skip }) => {
  describe.skipIf(skip)('streams in bounded memory', () => {
    let h: Harness;
    let child: ChildProcess;
    let url = '';
    const waiters: ((m: { type: string }) => void)[] = [];
    const ask = <T>(type: string): Promise<T> =>
      new Promise((resolve, reject) => {
        if (child.exitCode !== null || child.signalCode !== null)
          return reject(new Error('the server process died (out of memory?)'));
        waiters.push(resolve as (m: { type: string }) => void);
        child.send({ type });
      });

    beforeAll(async () => {
      h = await startServer(name);
      await h.buyer('alice');
      await h.merchant('news');
      await h.server.close();
      const db =
        name === 'postgres'
          ? new PostgresDb({ url: h.opts.db!, schema: h.opts.pgSchema!, max: 1 })
          : new SqliteDb(h.opts.db!);
      try {
        await fill(db, Date.UTC(2026, 10, 2) / 1000);
      } finally {
        await db.close();
      }
      const { now: _clock, logger: _logger, ...opts } = h.opts;
      child = fork(CHILD, [], {
        execArgv: ['--import', 'tsx', '--expose-gc', '--max-old-space-size=64', '--max-semi-space-size=1'],
        env: { ...process.env, MICROPAY_TEST_OPTIONS: JSON.stringify(opts) },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      url = await new Promise<string>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`the server process exited with ${code}`)));
        child.on('message', (m: { type: string; url?: string }) => {
          if (m.type === 'listening') resolve(m.url!);
          else waiters.shift()?.(m);
        });
      });
    }, 60_000);
    afterAll(async () => {
      if (child && child.exitCode === null) {
        const gone = new Promise((r) => child.once('exit', r));
        child.send({ type: 'exit' });
        await gone;
      }
      await h?.close();
    });

    /** Fetches the export, stalling when `stall` says so; resolves timings and the body. */
    function exportCsv(
      stall?: (bytes: number) => number,
    ): Promise<{ first: number; end: number; text: string }> {
      return new Promise((resolve, reject) => {
        const start = performance.now();
        let first = 0;
        const parts: Buffer[] = [];
        let bytes = 0;
        const req = http.get(
          `${url}/v1/admin/statements?period=2026-11&format=csv`,
          { headers: { authorization: `Bearer ${h.admin}` } },
          (res) => {
            if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
            res.on('data', (c: Buffer) => {
              if (first === 0) first = performance.now() - start;
              parts.push(c);
              bytes += c.length;
              const ms = stall?.(bytes) ?? 0;
              if (ms > 0) {
                res.pause();
                setTimeout(() => res.resume(), ms);
              }
            });
            res.on('end', () =>
              resolve({ first, end: performance.now() - start, text: Buffer.concat(parts).toString('utf8') }),
            );
            res.on('error', reject);
          },
        );
        req.on('error', reject);
      });
    }

    it('sends the first byte at once, holds back for a stalled reader with a bounded heap, and sends every entry', async () => {
      await ask('reset');
      let stalled = false;
      const { first, end, text } = await exportCsv((bytes) => {
        // One long stall once a little has arrived, then short ones every few MB.
        if (!stalled && bytes > 256 * 1024) {
          stalled = true;
          return 500;
        }
        return bytes % (4 * MB) < 64 * 1024 ? 20 : 0;
      });
      const r = await ask<Report>('report');
      const heap = r.peak.heap - r.baseline.heap;
      const external = r.peak.external - r.baseline.external;
      console.info(
        `[${name}] export of ${ENTRIES} entries, ${(text.length / MB).toFixed(1)} MB: first byte ${first.toFixed(0)} ms, all ${end.toFixed(0)} ms (a reader stalled 0.5 s and more); server heap ${(r.baseline.heap / MB).toFixed(1)} MB +${(heap / MB).toFixed(1)} MB, external +${(external / MB).toFixed(1)} MB, rss +${((r.peak.rss - r.baseline.rss) / MB).toFixed(1)} MB`,
      );
      // Streamed: the first byte is there while most of the export is still to come.
      expect(first).toBeLessThan(end / 4);
      // The server held back while the reader stalled: its heap grew by a bounded amount, far below the export.
      expect(text.length).toBeGreaterThan(HEAP_BOUND);
      expect(heap).toBeLessThan(HEAP_BOUND);
      expect(external).toBeLessThan(HEAP_BOUND);
      // And nothing was lost on the way.
      const rows = parseCsv(text);
      expect(rows).toHaveLength(1 + ENTRIES + 1);
      expect(rows.filter((x) => x[8] === RES)).toHaveLength(PAIRS);
      const total = rows[rows.length - 1]!;
      expect(total[0]).toBe('total');
      expect(total[13]).toBe('0');
      expect(total[11]).toContain(`${ENTRIES} entries`);
    });
  });
});
