/**
 * The demo runs in the suite: exact final balances, well under 10 s, and
 * nothing left behind (servers refuse connections, the temporary folder is
 * gone). Once through `runDemo` with the example app passed in, once through
 * `micropay demo`, which finds examples/express-basic by itself.
 */
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createApp } from '../../examples/express-basic/app.js';
import { main } from '../../src/cli/micropay.js';
import { runDemo } from '../../src/demo/index.js';

function capture() {
  let text = '';
  const stream = new Writable({
    write(chunk, _enc, done) {
      text += String(chunk);
      done();
    },
  });
  return { stream, text: () => text };
}

const demoDirs = () => readdirSync(tmpdir()).filter((d) => d.startsWith('micropay-demo-'));

async function refused(url: string): Promise<boolean> {
  return fetch(url).then(
    () => false,
    () => true,
  );
}

describe('the demo', () => {
  it('buys, re-reads with the receipt, waits for the deposit, and ends with exact balances', async () => {
    const before = new Set(demoDirs());
    const out = capture();
    const t0 = performance.now();
    const r = await runDemo({ stdout: out.stream, merchantApp: createApp });
    const elapsed = performance.now() - t0;
    // 0.002 USD at 5% commission: the fee is 100 micro-units.
    expect(r.balances).toEqual({ buyer: -2000, merchant: 1900, fees: 100 });
    expect(r.balances.buyer + r.balances.merchant + r.balances.fees).toBe(0);
    expect(r.accounts).toEqual({ buyer: 'alice', merchant: 'news-site', fees: 'fees:USD' });
    expect(elapsed).toBeLessThan(10_000);
    const text = out.text();
    expect(text).toMatch(/402 Payment Required, "This resource costs 0\.002 USD\."/);
    expect(text).toMatch(/The wallet paid 0\.002 USD to News Site/);
    expect(text).toMatch(/Read again with the merchant's receipt: 200, no second charge/);
    expect(text).toMatch(
      /buyer +alice +-0\.002 USD\n +merchant +news-site +0\.0019 USD\n +fees +fees:USD +0\.0001 USD/,
    );
    // Nothing left: both servers are closed and the temporary folder is removed.
    const urls = [...text.matchAll(/on (http:\/\/127\.0\.0\.1:\d+)/g)].map((m) => m[1]!);
    expect(urls).toHaveLength(2);
    for (const u of urls) expect(await refused(u)).toBe(true);
    expect(demoDirs().filter((d) => !before.has(d))).toEqual([]);
  });

  it('runs as `micropay demo`, finding the example merchant itself', async () => {
    const out = capture();
    const err = capture();
    const code = await main(['demo'], {
      stdout: out.stream,
      stderr: err.stream,
      env: {},
      cwd: process.cwd(),
    });
    expect(err.text()).toBe('');
    expect(code).toBe(0);
    expect(out.text()).toMatch(/fees +fees:USD +0\.0001 USD/);
    expect(out.text()).toMatch(/Done in \d+\.\d s/);
  });

  it('`micropay demo --help` says what it does', async () => {
    const out = capture();
    const code = await main(['demo', '--help'], {
      stdout: out.stream,
      stderr: out.stream,
      env: {},
      cwd: '/',
    });
    expect(code).toBe(0);
    expect(out.text()).toMatch(/^Usage: micropay demo/);
  });
});
