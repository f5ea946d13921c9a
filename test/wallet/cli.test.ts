/**
 * `micropay wallet` in process, against the real billing server and example
 * merchant: init (files 0600, token never printed), get (pays, then reuses
 * the receipt across runs), refusals that say what to do, status, history,
 * usage errors and help.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/micropay.js';
import { startWorld, type World } from './helpers.js';

let w: World;
let root: string;
beforeAll(async () => {
  w = await startWorld();
  root = mkdtempSync(join(tmpdir(), 'micropay-wallet-cli-'));
});
afterAll(async () => {
  await w.close();
  rmSync(root, { recursive: true, force: true });
});

function sink() {
  let text = '';
  return {
    stream: new Writable({
      write(chunk, _enc, done) {
        text += String(chunk);
        done();
      },
    }),
    text: () => text,
  };
}

let homes = 0;
/** Runs `micropay wallet ...` with MICROPAY_HOME=home. */
async function cli(home: string, ...args: string[]) {
  const out = sink();
  const err = sink();
  const code = await main(['wallet', ...args], {
    stdout: out.stream,
    stderr: err.stream,
    env: { MICROPAY_HOME: home },
    cwd: root,
  });
  return { code, out: out.text(), err: err.text() };
}

const mode = (p: string) => statSync(p).mode & 0o777;

describe('micropay wallet', () => {
  it('walks through init, get, receipt, refusals, status and history', async () => {
    const home = join(root, `home-${homes++}`);
    const b = await w.buyer();

    const none = await cli(home, 'status');
    expect(none.code).toBe(1);
    expect(none.err).toBe(
      `micropay: no_wallet: There is no wallet in ${home}. Make one: micropay wallet init --billing URL --token TOKEN\n`,
    );

    const init = await cli(
      home,
      'init',
      '--billing',
      w.billingUrl,
      '--token',
      b.token,
      '--max-per-day',
      '0.003 USD',
    );
    expect(init.err).toBe('');
    expect(init.code).toBe(0);
    expect(init.out).toMatch(new RegExp(`^Wallet ready in ${home}\n`));
    expect(init.out).toMatch(new RegExp(`account +${b.id} at bank-a \\(USD\\)`));
    expect(init.out).toMatch(/limits +no limit per payment, 0\.003 USD per day/);
    expect(init.out).not.toContain(b.token);
    expect(mode(home)).toBe(0o700);
    for (const f of ['key', 'token', 'config.json', 'wallet.json'])
      expect(mode(join(home, f)), f).toBe(0o600);
    expect(readFileSync(join(home, 'key'), 'utf8')).toMatch(/^[0-9a-f]{64}\n$/);

    const paid = await cli(home, 'get', `${w.shopUrl}/articles/42`);
    expect(paid.code).toBe(0);
    expect(paid.err).toMatch(
      /^micropay: paid 0\.002 USD to News Site \(news-[^)]+\) for "The answer, explained" GET \/articles\/42; free again until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n$/,
    );
    expect(JSON.parse(paid.out)).toMatchObject({ id: '42', paidBy: b.id, via: 'order' });

    // Another run of the command: the receipt was kept in wallet.json.
    const again = await cli(home, 'get', `${w.shopUrl}/articles/42`);
    expect(again.code).toBe(0);
    expect(again.err).toBe('micropay: opened with an earlier receipt, no charge\n');
    expect(w.charged.filter((c) => c.buyer === b.id)).toHaveLength(1);

    const capped = await cli(home, 'get', `${w.shopUrl}/articles/43`, '--max', '0.001 USD');
    expect(capped.code).toBe(1);
    expect(capped.err).toMatch(
      /^micropay: over_payment_limit: .*more than the most you allowed for this request \(0\.001 USD\)\. .*pass a larger --max\.\n$/,
    );

    const budget = await cli(home, 'get', `${w.shopUrl}/articles/43`);
    expect(budget.code).toBe(1);
    expect(budget.err).toMatch(
      /^micropay: over_daily_budget: .*over your daily budget of 0\.003 USD .*Wait until tomorrow \(UTC\), or raise your budget: micropay wallet init --max-per-day PRICE\.\n$/,
    );
    expect(budget.out).toBe('');

    // Settings change without giving the token again; the key stays.
    const key = readFileSync(join(home, 'key'), 'utf8');
    expect((await cli(home, 'init', '--max-per-day', 'none', '--max-per-payment', '$0.01')).code).toBe(0);
    expect(readFileSync(join(home, 'key'), 'utf8')).toBe(key);

    const saved = await cli(home, 'get', `${w.shopUrl}/articles/43`, '-o', 'article.json');
    expect(saved.code).toBe(0);
    expect(saved.err).toMatch(/paid 0\.002 USD .* GET \/articles\/43/);
    expect(saved.err).toMatch(/wrote \d+ bytes to .*article\.json/);
    expect(JSON.parse(readFileSync(join(root, 'article.json'), 'utf8'))).toMatchObject({ id: '43' });

    const missing = await cli(home, 'get', `${w.shopUrl}/articles/999`);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/answered HTTP 404/);

    const st = await cli(home, 'status');
    expect(st.code).toBe(0);
    expect(st.out).toMatch(/spent today +0\.004 USD/);
    expect(st.out).toMatch(/per payment +0\.01 USD/);
    expect(st.out).toMatch(/per day +no limit/);
    expect(st.out).toMatch(/credential +offline limit 5 USD, valid until /);
    expect(st.out).not.toContain(b.token);
    const stJson = JSON.parse((await cli(home, 'status', '--json')).out);
    expect(stJson).toMatchObject({ credential: { sub: b.id, lim: 5_000_000 }, spentToday: { USD: 4000 } });

    const hist = JSON.parse((await cli(home, 'history', '--json')).out) as { res: string; amt: number }[];
    expect(hist.map((h) => [h.res, h.amt])).toEqual([
      ['GET /articles/43', 2000],
      ['GET /articles/42', 2000],
    ]);
    const table = (await cli(home, 'history')).out.split('\n');
    expect(table[0]).toMatch(/^TIME +AMOUNT +MERCHANT +RESOURCE +ORDER$/);
    expect(table[1]).toMatch(/0\.002 USD +news-\S+ +GET \/articles\/43 /);
    expect(table).toHaveLength(4);
  });

  it('init with a wrong token says what to do, prints no token, and stores nothing', async () => {
    const home = join(root, `home-${homes++}`);
    const token = 'mpt_wrong-token-0123456789abcdef';
    const r = await cli(home, 'init', '--billing', w.billingUrl, '--token', token);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      /^micropay: no_credential: .*did not accept the buyer token\. .*micropay wallet init --billing URL --token TOKEN/,
    );
    expect(r.out + r.err).not.toContain(token);
    expect(existsSync(join(home, 'token'))).toBe(false);
    expect(existsSync(join(home, 'config.json'))).toBe(false);
  });

  it('reads the token from MICROPAY_BUYER_TOKEN and tightens a loose key file', async () => {
    const home = join(root, `home-${homes++}`);
    const b = await w.buyer();
    const out = sink();
    const code = await main(['wallet', 'init', '--billing', w.billingUrl, '--home', home], {
      stdout: out.stream,
      stderr: out.stream,
      env: { MICROPAY_BUYER_TOKEN: b.token },
      cwd: root,
    });
    expect(code).toBe(0);
    const keyFile = join(home, 'key');
    chmodSync(keyFile, 0o644);
    expect((await cli(home, 'status')).code).toBe(0); // reads the key
    expect(mode(keyFile)).toBe(0o600);
  });

  it('a key file that is not a key is an error that says what to do', async () => {
    const home = join(root, `home-${homes++}`);
    const b = await w.buyer();
    expect((await cli(home, 'init', '--billing', w.billingUrl, '--token', b.token)).code).toBe(0);
    writeFileSync(join(home, 'key'), 'not a key\n', { mode: 0o600 });
    const r = await cli(home, 'get', `${w.shopUrl}/articles/42`);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^micropay: invalid_key: The key file .* move it away to make a new key/);
  });

  it('usage errors exit 2, help exits 0', async () => {
    const home = join(root, 'unused');
    expect((await cli(home, 'get')).code).toBe(2);
    expect((await cli(home, 'get', 'ftp://x/')).err).toMatch(/is not an http\(s\) URL/);
    const bogus = await cli(home, 'frob');
    expect(bogus.code).toBe(2);
    expect(bogus.err).toMatch(/"frob" is not a wallet command/);
    expect((await cli(home, 'get', '--bogus', 'http://x/')).code).toBe(2);
    expect((await cli(home, 'init', '--billing', w.billingUrl)).err).toMatch(/--token TOKEN is required/);
    expect((await cli(home, 'init', '--billing', 'x', '--token', 't')).code).toBe(2);
    expect(
      (await cli(home, 'init', '--billing', w.billingUrl, '--token', 't', '--max-per-day', 'lots')).err,
    ).toMatch(/--max-per-day: "lots" is not a valid price/);
    for (const sub of ['init', 'status', 'get', 'history']) {
      const r = await cli(home, sub, '--help');
      expect(r.code, sub).toBe(0);
      expect(r.out, sub).toMatch(new RegExp(`^Usage: micropay wallet ${sub}`));
    }
    const top = await cli(home, '--help');
    expect(top.code).toBe(0);
    expect(top.out).toMatch(/init +Make the key/);
    expect(existsSync(home)).toBe(false);
  });
});
