/**
 * Statements on both backends, over real HTTP: a buyer's and a merchant's
 * own statement (JSON and CSV), the admin export of a month and of all time,
 * and the summary. The totals equal the ledger (closing balances, nets that
 * sum to zero per currency, fees equal to the fee account); resource names
 * with quotes, commas and line breaks come back exactly through a strict
 * RFC 4180 parser; periods cut at their bounds; bad parameters get a coded
 * 400 naming the field.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatAmount } from '../../src/protocol/money.js';
import { csvObjects, parseCsv } from '../helpers/csv.js';
import { type Buyer, backends, expectBalanced, type Harness, startServer } from './helpers.js';

const NOV = Date.UTC(2026, 10, 1) / 1000;
const DEC = Date.UTC(2026, 11, 1) / 1000;
const DAY = 86_400;

/** Resources that CSV must quote, and one that it must not touch. */
const TRICKY = [
  'GET /articles/"quoted"',
  'GET /a,b,c',
  'GET /line\nbreak',
  'GET /crlf\r\ninside, and "both"',
  'GET /plain/ünïcödé',
  ' leading and trailing spaces ',
  '=HYPERLINK("https://example.invalid","click")',
  '@SUM(1+1)',
];
/** What the CSV shows of a text cell: a leading apostrophe on what a spreadsheet would run as a formula. */
const asText = (s: string) => (/^[=+\-@\t\r]/.test(s) ? `'${s}` : s);

interface Line {
  id: string;
  time: number;
  account: string;
  currency: string;
  kind: string;
  counterparty: string | null;
  resource: string | null;
  oid: string | null;
  batch: string | null;
  memo: string | null;
  amount: number;
  fee: number;
  balance: number;
}
interface Doc {
  statement: Record<string, unknown>;
  entries: Line[];
  totals: {
    currency: string;
    entries: number;
    credits: number;
    debits: number;
    net: number;
    fees: number;
    opening?: number;
    closing?: number;
  }[];
}

describe.each(backends)('statements on $name', ({ name, skip }) => {
  describe.skipIf(skip)('me and admin', () => {
    let h: Harness;
    let news: { id: string; token: string };
    let alice: Buyer;
    let bob: Buyer;
    const batches: { id: string; gross: number; fee: number }[] = [];

    const text = async (path: string, token: string) => {
      const r = await h
        .call('get', path, token)
        .buffer(true)
        .parse((res, cb) => {
          let s = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            s += c;
          });
          res.on('end', () => cb(null, s));
        });
      expect(r.status, String(r.body)).toBe(200);
      return { body: r.body as string, type: r.headers['content-type'] as string, headers: r.headers };
    };
    const json = async (path: string, token: string) => JSON.parse((await text(path, token)).body) as Doc;
    const account = async (id: string) =>
      (await h.call('get', `/v1/admin/accounts/${id}`, h.admin)).body.account as {
        balance: number;
        currency: string;
      };

    beforeAll(async () => {
      h = await startServer(name);
      // October: a top-up and one purchase, before the period.
      h.clock.t = NOV - 5 * DAY;
      news = await h.merchant('news', { commissionBps: 250 });
      alice = await h.buyer('alice');
      bob = await h.buyer('bob', { creditLimit: 3000 });
      await h.call('post', '/v1/admin/accounts/alice/adjustments', h.admin, {
        amt: 1_000_000,
        memo: 'top-up',
      });
      const dep = async (batch: string, orders: { b: Buyer; amt: number; res: string }[]) => {
        const r = await h.call('post', '/v1/deposits', news.token, {
          batch,
          orders: orders.map((o) => ({
            cert: o.b.cert,
            order: h.order(o.b, { mer: 'news', amt: o.amt, res: o.res }),
          })),
        });
        expect(r.status).toBe(200);
        const credited = r.body.results.filter((x: { status: string }) => x.status === 'credited');
        batches.push({
          id: batch,
          gross: credited.reduce((s: number, x: { amt: number }) => s + x.amt, 0),
          fee: credited.reduce((s: number, x: { fee: number }) => s + x.fee, 0),
        });
        return r.body;
      };
      await dep('oct-1', [{ b: alice, amt: 5000, res: 'GET /october' }]);
      // November: tricky resources, a second buyer, an adjustment with a tricky memo.
      h.clock.t = NOV + 3 * DAY;
      alice = await h.recert(alice);
      bob = await h.recert(bob);
      await dep(
        'nov-1',
        TRICKY.map((res, i) => ({ b: alice, amt: 1001 + i * 7, res })),
      );
      h.clock.t = NOV + 10 * DAY;
      alice = await h.recert(alice);
      bob = await h.recert(bob);
      const b2 = await dep('nov-2', [
        { b: bob, amt: 2000, res: 'GET /bob/1' },
        { b: alice, amt: 333, res: 'GET /a,"b"' },
      ]);
      expect(b2.results.map((x: { status: string }) => x.status)).toEqual(['credited', 'credited']);
      await h.call('post', '/v1/admin/accounts/news/adjustments', h.admin, {
        amt: -1000,
        memo: 'payout, "partial"\r\nsecond line',
      });
      await h.call('post', '/v1/admin/accounts/alice/adjustments', h.admin, {
        amt: 1,
        memo: "-2+3+cmd|' /C calc'!A0",
      });
      // An EUR pair, so the admin export has two currencies.
      const eurShop = await h.merchant('shop-eu', { currency: 'EUR', commissionBps: 1000 });
      let carla = await h.buyer('carla', { currency: 'EUR' });
      carla = await h.recert(carla);
      const r = await h.call('post', '/v1/deposits', eurShop.token, {
        batch: 'eu-1',
        orders: [{ cert: carla.cert, order: h.order(carla, { mer: 'shop-eu', amt: 12_345, cur: 'EUR' }) }],
      });
      expect(r.body.results[0].status).toBe('credited');
      // December: after the period.
      h.clock.t = DEC + DAY;
      alice = await h.recert(alice);
      await dep('dec-1', [{ b: alice, amt: 4000, res: 'GET /december' }]);
      await expectBalanced(h);
    });
    afterAll(async () => {
      await h?.close();
    });

    it("a buyer's statement of November: one line per order with its resource and merchant, opening and closing balances", async () => {
      const doc = await json('/v1/me/statement?from=2026-11-01&to=2026-11-30', alice.token);
      expect(doc.statement).toMatchObject({
        account: 'alice',
        role: 'buyer',
        currency: 'USD',
        from: NOV,
        to: DEC,
      });
      const orders = doc.entries.filter((e) => e.kind === 'order');
      expect(orders.map((e) => e.resource)).toEqual([...TRICKY, 'GET /a,"b"']);
      expect(orders.every((e) => e.counterparty === 'news' && e.fee === 0 && e.amount < 0)).toBe(true);
      expect(doc.entries.every((e) => e.time >= NOV && e.time < DEC)).toBe(true);
      // Running balance: each line's balance is the previous one plus its amount.
      const [t] = doc.totals;
      let bal = t!.opening!;
      for (const e of doc.entries) {
        bal += e.amount;
        expect(e.balance).toBe(bal);
      }
      expect(t).toMatchObject({ currency: 'USD', entries: doc.entries.length, closing: bal });
      expect(t!.net).toBe(t!.closing! - t!.opening!);
      // The opening balance is what October left: the top-up less the October order.
      expect(t!.opening).toBe(1_000_000 - 5000);
      // Without bounds, the statement closes on the account's balance.
      const all = await json('/v1/me/statement', alice.token);
      expect(all.totals[0]!.closing).toBe((await account('alice')).balance);
      expect(all.totals[0]!.opening).toBe(0);
    });

    it("a merchant's statement shows each deposit batch with its net amount and the batch's fee", async () => {
      const doc = await json(`/v1/me/statement?from=${NOV - 10 * DAY}`, news.token);
      const deposits = doc.entries.filter((e) => e.kind === 'deposit');
      expect(deposits.map((e) => e.batch)).toEqual(batches.map((b) => b.id));
      for (const e of deposits) {
        const b = batches.find((x) => x.id === e.batch)!;
        expect(e.resource).toBe(`deposit batch ${b.id}`);
        expect(e.fee).toBe(b.fee);
        expect(e.amount + e.fee).toBe(b.gross);
      }
      expect(doc.totals[0]!.fees).toBe(batches.reduce((s, b) => s + b.fee, 0));
      expect(doc.totals[0]!.closing).toBe((await account('news')).balance);
    });

    it('CSV: RFC 4180 (CRLF, quoting) round-trips every resource and memo, formulas shown as text; decimals agree with the micro-unit columns', async () => {
      const { body, type, headers } = await text('/v1/me/statement?format=csv', alice.token);
      expect(type).toMatch(/^text\/csv; charset=utf-8/);
      expect(headers['content-disposition']).toMatch(/attachment; filename="statement-alice-.*\.csv"/);
      expect(body.endsWith('\r\n')).toBe(true);
      const rows = csvObjects(body);
      const doc = await json('/v1/me/statement', alice.token);
      const entries = rows.filter((r) => r.record === 'entry');
      expect(entries).toHaveLength(doc.entries.length);
      entries.forEach((r, i) => {
        const e = doc.entries[i]!;
        expect(r.resource).toBe(asText(e.resource ?? ''));
        expect(r.memo).toBe(asText(e.memo ?? ''));
        expect(r.counterparty).toBe(e.counterparty ?? '');
        expect(Number(r.amount_micros)).toBe(e.amount);
        expect(r.amount).toBe(formatAmount(e.amount));
        expect(r.balance).toBe(formatAmount(e.balance));
        expect(Number(r.balance_micros)).toBe(e.balance);
        expect(Number(r.time_unix)).toBe(e.time);
        expect(new Date(r.time!).getTime() / 1000).toBe(e.time);
      });
      for (const res of TRICKY) expect(entries.some((r) => r.resource === asText(res))).toBe(true);
      // What a spreadsheet would have run: shown as text, the JSON keeping the value exactly.
      expect(entries.some((r) => r.resource === `'=HYPERLINK("https://example.invalid","click")`)).toBe(true);
      expect(entries.some((r) => r.resource === "'@SUM(1+1)")).toBe(true);
      expect(entries.some((r) => r.memo === "'-2+3+cmd|' /C calc'!A0")).toBe(true);
      expect(doc.entries.some((e) => e.memo === "-2+3+cmd|' /C calc'!A0")).toBe(true);
      expect(entries.some((r) => r.amount.startsWith('-'))).toBe(true); // numbers keep their sign
      const totals = rows.filter((r) => r.record === 'total');
      expect(totals).toHaveLength(1);
      expect(Number(totals[0]!.balance_micros)).toBe((await account('alice')).balance);
      expect(Number(totals[0]!.amount_micros)).toBe(doc.totals[0]!.net);
    });

    it('the admin export of a month: every account, only that month, totals per currency summing to zero', async () => {
      const csv = (await text('/v1/admin/statements?period=2026-11&format=csv', h.admin)).body;
      const rows = csvObjects(csv);
      const entries = rows.filter((r) => r.record === 'entry');
      expect(entries.length).toBeGreaterThan(10);
      expect(entries.every((r) => Number(r.time_unix) >= NOV && Number(r.time_unix) < DEC)).toBe(true);
      expect(new Set(entries.map((r) => r.account))).toEqual(
        new Set(['alice', 'bob', 'news', 'fees:USD', 'external:USD', 'carla', 'shop-eu', 'fees:EUR']),
      );
      const ids = entries.map((r) => Number(r.id));
      expect(ids).toEqual([...ids].sort((a, b) => a - b));
      const totals = rows.filter((r) => r.record === 'total');
      expect(totals.map((t) => t.currency)).toEqual(['EUR', 'USD']);
      for (const t of totals) {
        const mine = entries.filter((r) => r.currency === t.currency);
        // Double entry: within a currency, everything moved in the period nets to zero.
        expect(mine.reduce((s, r) => s + Number(r.amount_micros), 0)).toBe(0);
        expect(Number(t.amount_micros)).toBe(0);
        expect(Number(t.fee_micros)).toBe(mine.reduce((s, r) => s + Number(r.fee_micros), 0));
        expect(t.memo).toContain(`${mine.length} entries`);
      }
      const doc = await json('/v1/admin/statements?period=2026-11', h.admin);
      expect(doc.entries.map((e) => e.id)).toEqual(entries.map((r) => r.id));
      expect(doc.totals.map((t) => [t.currency, t.entries, t.net])).toEqual(
        totals.map((t) => [t.currency, Number(t.memo!.split(' ')[0]), 0]),
      );
      const summary = await h.call('get', '/v1/admin/statements/summary?period=2026-11', h.admin);
      expect(summary.body).toEqual({
        from: NOV,
        to: DEC,
        entries: entries.length,
        totals: doc.totals.map((t) => ({
          currency: t.currency,
          entries: t.entries,
          credits: t.credits,
          debits: t.debits,
          net: t.net,
          fees: t.fees,
        })),
      });
    });

    it('the all-time export equals the ledger: each account closes on its balance, fees on the fee accounts', async () => {
      const doc = await json('/v1/admin/statements?from=0', h.admin);
      const last = new Map<string, Line>();
      for (const e of doc.entries) last.set(e.account, e);
      for (const [id, e] of last) expect(e.balance, id).toBe((await account(id)).balance);
      for (const t of doc.totals) {
        expect(t.net).toBe(0);
        expect(t.fees).toBe((await account(`fees:${t.currency}`)).balance);
      }
      const entries = await h.call('get', '/v1/me/entries?limit=500', alice.token);
      expect(doc.entries.filter((e) => e.account === 'alice').map((e) => e.id)).toEqual(
        entries.body.entries.map((e: { id: string }) => e.id).reverse(),
      );
    });

    it('an empty period still has its totals line, with equal opening and closing balances', async () => {
      const doc = await json('/v1/me/statement?from=2020-01-01&to=2020-02-01', alice.token);
      expect(doc.entries).toEqual([]);
      expect(doc.totals).toEqual([
        { currency: 'USD', entries: 0, credits: 0, debits: 0, net: 0, fees: 0, opening: 0, closing: 0 },
      ]);
      const csv = parseCsv((await text('/v1/admin/statements?period=2020-01&format=csv', h.admin)).body);
      expect(csv).toHaveLength(1);
      expect(csv[0]![0]).toBe('record');
    });

    it('bounds take dates, ISO times with a zone and Unix seconds; a date as `to` covers that day', async () => {
      const a = await json(`/v1/me/statement?from=${NOV}&to=${DEC}`, alice.token);
      const b = await json(
        '/v1/me/statement?from=2026-11-01T00:00:00Z&to=2026-12-01T01:00:00%2B01:00',
        alice.token,
      );
      const c = await json('/v1/me/statement?from=2026-11-01&to=2026-11-30', alice.token);
      expect(b.entries).toEqual(a.entries);
      expect(c.entries).toEqual(a.entries);
      const first = await json(`/v1/me/statement?from=2026-11-04&to=2026-11-04`, alice.token);
      expect(first.entries.length).toBe(TRICKY.length);
    });

    it('bad parameters get 400 invalid_request naming the field; roles are enforced', async () => {
      const bad: [string, string, string][] = [
        ['/v1/me/statement?from=yesterday', alice.token, 'from'],
        ['/v1/me/statement?to=2026-02-30', alice.token, 'to'],
        ['/v1/me/statement?from=2026-11-01T00:00:00', alice.token, 'from'],
        ['/v1/me/statement?from=2026-12-01&to=2026-11-01', alice.token, 'to'],
        ['/v1/me/statement?format=xml', alice.token, 'format'],
        ['/v1/me/statement?from=1&from=2', alice.token, 'from'],
        ['/v1/admin/statements', h.admin, 'period'],
        ['/v1/admin/statements?period=2026-13', h.admin, 'period'],
        ['/v1/admin/statements?period=26-11', h.admin, 'period'],
        ['/v1/admin/statements?period=2026-11&from=2026-11-01', h.admin, 'period'],
        ['/v1/admin/statements?period=2026-11&format=pdf', h.admin, 'format'],
        ['/v1/admin/statements/summary?period=x', h.admin, 'period'],
      ];
      for (const [path, token, field] of bad) {
        const r = await h.call('get', path, token);
        expect(r.status, path).toBe(400);
        expect(r.body.error, path).toBe('invalid_request');
        expect(r.body.message, path).toContain(`\`${field}\``);
      }
      expect((await h.call('get', '/v1/admin/statements?period=2026-11', alice.token)).status).toBe(403);
      expect((await h.call('get', '/v1/me/statement', h.admin)).status).toBe(403);
      expect((await h.call('get', '/v1/me/statement', null)).status).toBe(401);
      const head = await h.call('head' as 'get', '/v1/admin/statements?period=2026-11&format=csv', h.admin);
      expect(head.status).toBe(200);
      expect(head.headers['content-type']).toMatch(/^text\/csv/);
    });
  });
});

describe('the strict RFC 4180 parser of the tests', () => {
  it('reads quoting and line breaks inside quotes, and refuses what a conforming reader would', () => {
    expect(parseCsv('a,b\r\n"x,""y""\r\nz",\r\n')).toEqual([
      ['a', 'b'],
      ['x,"y"\r\nz', ''],
    ]);
    for (const bad of [
      'a,b\nc,d\n',
      'a,b\r\nc"d,e\r\n',
      'a,b\r\n"c"d,e\r\n',
      'a,b\r\n"c,d\r\n',
      'a,b\r\nc\r\n',
    ]) {
      expect(() => parseCsv(bad), JSON.stringify(bad)).toThrow(/CSV/);
    }
  });
});
