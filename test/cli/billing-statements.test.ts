/**
 * `micropay billing statements` in process through `main`, against a real
 * billing server with a ledger in November 2026: the CSV file it writes is
 * the server's export (strict RFC 4180 parse, tricky resources intact), JSON
 * and stdout work, a terminal gets a progress bar and a summary line while a
 * pipe gets silence, help, usage errors (exit 2), server errors (exit 1), and
 * a transfer cut midway leaves no file behind.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliIO } from '../../src/cli/io.js';
import { main } from '../../src/cli/micropay.js';
import { type Harness, startServer } from '../billing-server/helpers.js';
import { csvObjects, parseCsv } from '../helpers/csv.js';

class Sink extends Writable {
  text = '';
  constructor(readonly isTTY = false) {
    super();
  }
  override _write(chunk: Buffer | string, _enc: BufferEncoding, cb: () => void): void {
    this.text += String(chunk);
    cb();
  }
}

const NOV = Date.UTC(2026, 10, 1) / 1000;
const DAY = 86_400;
const RESOURCES = ['GET /a,"b"', 'GET /multi\r\nline', 'GET /plain'];

let h: Harness;
let url = '';
const dir = mkdtempSync(join(tmpdir(), 'mp-cli-statements-'));

beforeAll(async () => {
  h = await startServer('sqlite');
  // The harness's own listener: a request built (never sent) tells its origin.
  url = new URL(h.call('get', '/healthz').url).origin;
  h.clock.t = NOV + 2 * DAY;
  const news = await h.merchant('news', { commissionBps: 200 });
  const alice = await h.buyer('alice');
  for (let i = 0; i < 40; i++) {
    await h.call('post', '/v1/deposits', news.token, {
      batch: `b${i}`,
      orders: RESOURCES.map((res) => ({ cert: alice.cert, order: h.order(alice, { mer: 'news', res }) })),
    });
  }
  h.clock.t = NOV + 40 * DAY;
  await h.call('post', '/v1/admin/accounts/alice/adjustments', h.admin, { amt: 5, memo: 'December' });
});
afterAll(async () => {
  await h?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Ran {
  code: number;
  out: string;
  err: string;
}

async function run(args: string[], opts: { tty?: boolean; base?: string } = {}): Promise<Ran> {
  const stdout = new Sink();
  const stderr = new Sink(opts.tty ?? false);
  const io: CliIO = {
    stdout,
    stderr,
    env: { MICROPAY_BILLING_URL: opts.base ?? baseUrl(), MICROPAY_ADMIN_TOKEN: h.admin },
    cwd: dir,
  };
  const code = await main(['billing', 'statements', ...args], io);
  expect(stdout.text + stderr.text).not.toContain(h.admin);
  return { code, out: stdout.text, err: stderr.text };
}

const baseUrl = (): string => url;

/** The server's own export, fetched directly. */
async function direct(query: string): Promise<string> {
  const r = await h
    .call('get', `/v1/admin/statements?${query}`, h.admin)
    .buffer(true)
    .parse((res, cb) => {
      let s = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        s += c;
      });
      res.on('end', () => cb(null, s));
    });
  return r.body as string;
}

describe('billing statements', () => {
  it('writes the month as CSV to a file, quietly when stderr is not a terminal', async () => {
    const r = await run(['--period', '2026-11', '--format', 'csv', '-o', 'nov.csv']);
    expect(r).toEqual({ code: 0, out: '', err: '' });
    const text = readFileSync(join(dir, 'nov.csv'), 'utf8');
    expect(text).toBe(await direct('period=2026-11&format=csv'));
    const rows = csvObjects(text);
    const entries = rows.filter((x) => x.record === 'entry');
    // 40 batches of 3 orders: 120 buyer entries, 40 merchant entries, 40 fee entries; December is left out.
    expect(entries).toHaveLength(200);
    for (const res of RESOURCES) expect(entries.filter((x) => x.resource === res)).toHaveLength(40);
    expect(entries.some((x) => x.memo === 'December')).toBe(false);
    expect(readdirSync(dir).filter((f) => f.endsWith('.part'))).toEqual([]);
  });

  it('draws a progress bar and a summary on a terminal', async () => {
    const r = await run(['--period', '2026-11', '-o', 'tty.csv'], { tty: true });
    expect(r.code).toBe(0);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/\[#{30}\] 100%\s+200 \/ 200 entries/);
    expect(r.err).toMatch(/Wrote 200 entries \([\d.]+ MB\) to .*tty\.csv in [\d.]+ s\.\n$/);
    expect(parseCsv(readFileSync(join(dir, 'tty.csv'), 'utf8'))).toHaveLength(1 + 200 + 1);
  });

  it('JSON to stdout, and a range instead of a month', async () => {
    const r = await run(['--from', '2026-11-01', '--to', '2026-11-30', '--format', 'json']);
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    const doc = JSON.parse(r.out) as { entries: unknown[]; totals: { net: number }[] };
    expect(doc.entries).toHaveLength(200);
    expect(doc.totals).toEqual([expect.objectContaining({ currency: 'USD', net: 0, entries: 200 })]);
    const all = await run(['--from', '0']);
    expect(parseCsv(all.out).filter((x) => x[0] === 'entry')).toHaveLength(202);
  });

  it('--help, and `billing --help` lists the command', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('micropay billing statements --period YYYY-MM');
    expect(r.out).toContain('--format csv|json');
    expect(r.out).toContain('-o, --output FILE');
    const io: CliIO = { stdout: new Sink(), stderr: new Sink(), env: {}, cwd: dir };
    expect(await main(['billing', '--help'], io)).toBe(0);
    expect((io.stdout as Sink).text).toMatch(/statements\s+Export every account's entries/);
  });

  it('usage errors exit 2 with a sentence; server refusals exit 1 with the code', async () => {
    for (const [args, pattern] of [
      [['--period', '2026-13'], /--period "2026-13" is not a month/],
      [[], /--period YYYY-MM is required/],
      [['--period', '2026-11', '--format', 'xml'], /--format must be "csv" or "json"/],
      [['--period', '2026-11', '--from', '2026-11-01'], /not both/],
      [['--period', '2026-11', 'extra'], /Unexpected argument "extra"/],
      [['--period', '2026-11', '--colour'], /usage/],
    ] as [string[], RegExp][]) {
      const r = await run(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err, args.join(' ')).toMatch(pattern);
    }
    const bad = await run(['--from', 'yesterday']);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/^micropay: invalid_request: `from` must be/);
    const io: CliIO = {
      stdout: new Sink(),
      stderr: new Sink(),
      env: { MICROPAY_BILLING_URL: baseUrl() },
      cwd: dir,
    };
    expect(await main(['billing', 'statements', '--period', '2026-11'], io)).toBe(1);
    expect((io.stderr as Sink).text).toMatch(/missing_admin_token/);
  });

  it('a transfer cut midway exits 1 and leaves no file', async () => {
    // A front that answers the export with a beginning, then drops the connection.
    const front = http.createServer((req, res) => {
      if (req.url?.startsWith('/v1/admin/statements/summary')) {
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end('{"from":0,"to":null,"entries":1000,"totals":[]}');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/csv' });
      res.write('record,id\r\nentry,1\r\n');
      setTimeout(() => res.socket?.destroy(), 50);
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    try {
      const base = `http://127.0.0.1:${(front.address() as AddressInfo).port}`;
      const r = await run(['--period', '2026-11', '-o', 'cut.csv'], { base, tty: true });
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/export_interrupted: The export was cut off/);
      expect(existsSync(join(dir, 'cut.csv'))).toBe(false);
      expect(existsSync(join(dir, 'cut.csv.part'))).toBe(false);
    } finally {
      await new Promise<void>((resolve) => front.close(() => resolve()));
    }
  });
});
