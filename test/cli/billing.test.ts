/**
 * `micropay billing` admin commands run in process through `main`, with
 * captured streams, against a real billing server on an ephemeral port:
 * tables and `--json`, every accounts/tokens/keys command, help at every
 * level, and the errors people meet (bad amounts, missing or wrong token,
 * server down), each a coded sentence with the right exit code.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBillingClient } from '../../src/billing-client/index.js';
import type { CliIO } from '../../src/cli/io.js';
import { main } from '../../src/cli/micropay.js';
import { reservePort, startBillingServer, type TestServer } from '../billing-client/helpers.js';

class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _enc: BufferEncoding, cb: () => void): void {
    this.text += String(chunk);
    cb();
  }
}

let srv: TestServer;
const dir = mkdtempSync(join(tmpdir(), 'mp-cli-billing-'));

beforeAll(async () => {
  srv = await startBillingServer('bank-cli');
});
afterAll(async () => {
  await srv?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Ran {
  code: number;
  out: string;
  err: string;
}

/** Runs `micropay billing ...args` with the server's URL and admin token in the environment (unless `env` says otherwise). */
async function billing(args: string[], env?: NodeJS.ProcessEnv): Promise<Ran> {
  const stdout = new Sink();
  const stderr = new Sink();
  const io: CliIO = {
    stdout,
    stderr,
    env: env ?? { MICROPAY_BILLING_URL: srv.url, MICROPAY_ADMIN_TOKEN: srv.adminToken },
    cwd: dir,
  };
  const code = await main(['billing', ...args], io);
  // Whatever happened, the admin token is never printed.
  expect(stdout.text + stderr.text).not.toContain(srv.adminToken);
  return { code, out: stdout.text, err: stderr.text };
}

async function ok(args: string[]): Promise<string> {
  const r = await billing(args);
  expect(r.code, r.err).toBe(0);
  expect(r.err).toBe('');
  return r.out;
}

async function json<T = Record<string, unknown>>(args: string[]): Promise<T> {
  return JSON.parse(await ok([...args, '--json'])) as T;
}

describe('accounts', () => {
  it('create prints the account and its first token (which works); --json gives both', async () => {
    const out = await ok([
      'accounts',
      'create',
      'alice',
      '--role',
      'buyer',
      '--currency',
      'USD',
      '--name',
      'Alice',
      '--credit-limit',
      '50 USD',
      '--daily-limit',
      '5 USD',
    ]);
    expect(out).toMatch(/^Created buyer account "alice"\./);
    expect(out).toMatch(/^credit limit {2}50 USD$/m);
    expect(out).toMatch(/^daily limit {3}5 USD$/m);
    const token = /^API token: (\S+)$/m.exec(out)?.[1];
    expect(token).toMatch(/^mpt_/);
    expect(out).toMatch(/shown only this once/);
    const me = await createBillingClient({ url: srv.url, token: token! }).me();
    expect(me).toMatchObject({ id: 'alice', creditLimit: 50_000_000, dailyLimit: 5_000_000, name: 'Alice' });

    const j = await json<{ account: { id: string; commissionBps: number }; token: string; tokenId: string }>([
      'accounts',
      'create',
      'news',
      '--role',
      'merchant',
      '--currency',
      'USD',
      '--commission',
      '2.5%',
    ]);
    expect(j.account).toMatchObject({ id: 'news', commissionBps: 250 });
    expect(j.token).toMatch(/^mpt_/);
    expect(j.tokenId).toMatch(/^tok_/);
    const bps = await json<{ account: { commissionBps: number } }>([
      'accounts',
      'create',
      'shop',
      '--role',
      'merchant',
      '--currency',
      'EUR',
      '--commission',
      '125bps',
    ]);
    expect(bps.account.commissionBps).toBe(125);
  });

  it('create refuses a taken id (exit 1, coded) and bad input (exit 2, with a hint)', async () => {
    const dup = await billing(['accounts', 'create', 'alice', '--role', 'buyer', '--currency', 'USD']);
    expect(dup.code).toBe(1);
    expect(dup.err).toMatch(/^micropay: account_exists: /);
    const cases: [string[], RegExp][] = [
      [
        ['accounts', 'create', 'x', '--role', 'admin', '--currency', 'USD'],
        /--role must be "buyer" or "merchant"/,
      ],
      [['accounts', 'create', 'x', '--role', 'buyer', '--currency', 'usd'], /--currency must be/],
      [
        ['accounts', 'create', 'x', '--role', 'buyer', '--currency', 'USD', '--credit-limit', 'lots'],
        /--credit-limit "lots" is not an amount: write it like "12.50 USD"/,
      ],
      [
        [
          'accounts',
          'create',
          'x',
          '--role',
          'buyer',
          '--currency',
          'USD',
          '--credit-limit',
          '0.0000001 USD',
        ],
        /not an amount/,
      ],
      [
        ['accounts', 'create', 'x', '--role', 'merchant', '--currency', 'USD', '--commission', '2.555%'],
        /not a commission rate/,
      ],
      [
        ['accounts', 'create', 'x', '--role', 'merchant', '--currency', 'USD', '--commission', '101%'],
        /not a commission rate/,
      ],
      [['accounts', 'create', '--role', 'buyer', '--currency', 'USD'], /Missing <id>/],
      [['accounts', 'create', 'a/b', '--role', 'buyer', '--currency', 'USD'], /not an account id/],
      [['accounts', 'create', 'x', 'y', '--role', 'buyer', '--currency', 'USD'], /Unexpected argument "y"/],
      [['accounts', 'create', 'x', '--bogus'], /Unknown option '--bogus'/],
      [['accounts', 'frobnicate'], /"frobnicate" is not a "billing accounts" command/],
      [['nonsense'], /"nonsense" is not a billing command/],
    ];
    for (const [args, re] of cases) {
      const r = await billing(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err, args.join(' ')).toMatch(/^micropay: usage: /);
      expect(r.err, args.join(' ')).toMatch(re);
      expect(r.err).toMatch(/--help/);
      expect(r.out).toBe('');
    }
    // A currency that differs from the account's is coded, exit 1.
    const cur = await billing([
      'accounts',
      'create',
      'x',
      '--role',
      'buyer',
      '--currency',
      'USD',
      '--credit-limit',
      '5 EUR',
    ]);
    expect(cur.code).toBe(1);
    expect(cur.err).toMatch(/^micropay: currency_mismatch: .*keeps USD; --credit-limit is in EUR/);
  });

  it('list prints an aligned table, filters by role and status, and --json gives every account', async () => {
    const out = await ok(['accounts', 'list', '--role', 'buyer']);
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toMatch(
      /^ID\s+ROLE\s+STATUS\s+BALANCE\s+CREDIT LIMIT\s+DAILY LIMIT\s+COMMISSION\s+NAME$/,
    );
    const alice = lines.find((l) => l.startsWith('alice '))!;
    expect(alice).toMatch(/^alice\s+buyer\s+active\s+0 USD\s+50 USD\s+5 USD\s+0%\s+Alice$/);
    // Right-aligned amounts: each column ends where its header ends.
    const end = (l: string, s: string) => l.indexOf(s) + s.length;
    expect(end(alice, '50 USD')).toBe(end(lines[0]!, 'CREDIT LIMIT'));
    expect(out).not.toMatch(/^news /m);
    const merchants = await json<{ accounts: { id: string }[] }>(['accounts', 'list', '--role', 'merchant']);
    expect(merchants.accounts.map((a) => a.id).sort()).toEqual(['news', 'shop']);
    expect(await ok(['accounts', 'list', '--status', 'disabled'])).toBe('No accounts match.\n');
    expect((await billing(['accounts', 'list', '--status', 'gone'])).code).toBe(2);
  });

  it('show prints the card; an unknown id is no_such_account, exit 1', async () => {
    const out = await ok(['accounts', 'show', 'news']);
    expect(out).toMatch(/^id {12}news$/m);
    expect(out).toMatch(/^commission {4}2\.5% \(250 bps\)$/m);
    expect(out).toMatch(/^daily limit {3}none$/m);
    const j = await json<{ account: { id: string; available: number } }>(['accounts', 'show', 'alice']);
    expect(j.account).toMatchObject({ id: 'alice', available: 50_000_000 });
    const r = await billing(['accounts', 'show', 'nobody']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^micropay: no_such_account: There is no account "nobody"/);
    expect(r.out).toBe('');
  });

  it('disable and enable', async () => {
    expect(await ok(['accounts', 'disable', 'alice'])).toMatch(
      /^Account "alice" is now disabled\.\n(.|\n)*^status {8}disabled$/m,
    );
    const listed = await json<{ accounts: { id: string }[] }>(['accounts', 'list', '--status', 'disabled']);
    expect(listed.accounts.map((a) => a.id)).toEqual(['alice']);
    const j = await json<{ account: { status: string } }>(['accounts', 'enable', 'alice']);
    expect(j.account.status).toBe('active');
  });

  it('limits shows, sets and clears; amounts must be in the account currency', async () => {
    expect(await ok(['accounts', 'limits', 'alice'])).toMatch(/^credit limit {2}50 USD$/m);
    const out = await ok([
      'accounts',
      'limits',
      'alice',
      '--credit-limit',
      '80 USD',
      '--daily-limit',
      'none',
    ]);
    expect(out).toMatch(/^Limits of "alice" changed\./);
    expect(out).toMatch(/^credit limit {2}80 USD$/m);
    expect(out).toMatch(/^daily limit {3}none$/m);
    const j = await json<{ account: { dailyLimit: number } }>([
      'accounts',
      'limits',
      'alice',
      '--daily-limit',
      '$2.5',
    ]);
    expect(j.account.dailyLimit).toBe(2_500_000);
    const eur = await billing(['accounts', 'limits', 'alice', '--daily-limit', '2 EUR']);
    expect(eur.code).toBe(1);
    expect(eur.err).toMatch(
      /^micropay: currency_mismatch: Account "alice" keeps USD; --daily-limit is in EUR/,
    );
    const bad = await billing(['accounts', 'limits', 'alice', '--credit-limit', '12,50 USD']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--credit-limit "12,50 USD" is not an amount/);
  });

  it('commission takes % or bps', async () => {
    const out = await ok(['accounts', 'commission', 'news', '3%']);
    expect(out).toMatch(/^Commission of "news" is now 3%\./);
    expect(out).toMatch(/^commission {4}3% \(300 bps\)$/m);
    expect(
      (await json<{ account: { commissionBps: number } }>(['accounts', 'commission', 'news', '275bps']))
        .account.commissionBps,
    ).toBe(275);
    const r = await billing(['accounts', 'commission', 'news', 'lots']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/write it as a percentage .* \("2\.5%"\) or in basis points \("250bps"\)/);
    expect((await billing(['accounts', 'commission', 'news'])).err).toMatch(/Missing <rate>/);
  });

  it('adjust tops up and pays out with a memo; zero, other currencies and a missing memo are refused', async () => {
    const up = await ok(['accounts', 'adjust', 'alice', '12.50 USD', '--memo', 'top-up']);
    expect(up).toMatch(/^Added 12\.5 USD to "alice"; balance 12\.5 USD\./);
    const down = await json<{ account: { balance: number } }>([
      'accounts',
      'adjust',
      'alice',
      '-3 USD',
      '--memo',
      'payout',
    ]);
    expect(down.account.balance).toBe(9_500_000);
    expect(await ok(['accounts', 'adjust', 'alice', '--memo', 'payout', '-0.5 USD'])).toMatch(
      /^Took 0\.5 USD from "alice"; balance 9 USD\./,
    );
    const zero = await billing(['accounts', 'adjust', 'alice', '0 USD', '--memo', 'x']);
    expect([zero.code, zero.err]).toEqual([
      2,
      expect.stringMatching(/is zero; an adjustment must change the balance/),
    ]);
    const memo = await billing(['accounts', 'adjust', 'alice', '1 USD']);
    expect([memo.code, memo.err]).toEqual([2, expect.stringMatching(/--memo TEXT is required/)]);
    const eur = await billing(['accounts', 'adjust', 'alice', '1 EUR', '--memo', 'x']);
    expect([eur.code, eur.err]).toEqual([1, expect.stringMatching(/^micropay: currency_mismatch: /)]);
    const junk = await billing(['accounts', 'adjust', 'alice', '-3 dollars', '--memo', 'x']);
    expect(junk.code).toBe(2);
    expect(junk.err).toMatch(/is not an amount/);
    const ledger = await createBillingClient({ url: srv.url, token: srv.adminToken }).admin.getAccount(
      'alice',
    );
    expect(ledger.balance).toBe(9_000_000);
  });

  it('delete is refused while the balance is not zero, then works', async () => {
    const r = await billing(['accounts', 'delete', 'alice']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^micropay: account_not_settled: /);
    await ok(['accounts', 'adjust', 'alice', '-9 USD', '--memo', 'settle']);
    expect(await ok(['accounts', 'delete', 'alice'])).toBe('Deleted account "alice".\n');
    expect((await billing(['accounts', 'show', 'alice'])).code).toBe(1);
    expect(await json(['accounts', 'delete', 'shop'])).toEqual({ deleted: 'shop' });
  });
});

describe('tokens and keys', () => {
  it('tokens issue prints a working token and its id; revoke stops it at once', async () => {
    const out = await ok(['tokens', 'issue', 'news']);
    const token = /^API token for "news": (\S+)$/m.exec(out)?.[1];
    const tokenId = /^Token id: (\S+) /m.exec(out)?.[1];
    expect(token).toMatch(/^mpt_/);
    expect(tokenId).toMatch(/^tok_/);
    const client = createBillingClient({ url: srv.url, token: token! });
    expect((await client.me()).id).toBe('news');
    expect(await ok(['tokens', 'revoke', tokenId!])).toBe(`Revoked token ${tokenId}.\n`);
    await expect(client.me()).rejects.toMatchObject({ code: 'unauthorized', status: 401 });
    const again = await billing(['tokens', 'revoke', tokenId!]);
    expect([again.code, again.err]).toEqual([1, expect.stringMatching(/^micropay: no_such_token: /)]);
    const j = await json<{ token: string; tokenId: string }>(['tokens', 'issue', 'news']);
    expect(j.tokenId).toMatch(/^tok_/);
    expect(await json(['tokens', 'revoke', j.tokenId])).toEqual({ revoked: j.tokenId });
    expect((await billing(['tokens', 'issue', 'nobody'])).err).toMatch(/no_such_account/);
    expect((await billing(['tokens', 'revoke', 'mpt_a token/with slash'])).code).toBe(2);
  });

  it('keys rotate names the new key, which then signs', async () => {
    const out = await ok(['keys', 'rotate']);
    const kid = /^New signing key "([^"]+)" signs from now on/.exec(out)?.[1];
    expect(kid).toBeTruthy();
    const doc = await createBillingClient({ url: srv.url }).keys();
    expect(doc.keys.map((k) => k.kid)).toContain(kid);
    const j = await json<{ kid: string }>(['keys', 'rotate']);
    expect(j.kid).not.toBe(kid);
  });
});

describe('help, tokens and connection errors', () => {
  it('--help at every level, exit 0; a bare group prints its help with exit 2', async () => {
    const levels: [string[], RegExp][] = [
      [['--help'], /Usage: micropay billing <command>(.|\n)*serve(.|\n)*accounts(.|\n)*tokens(.|\n)*keys/],
      [['help'], /Usage: micropay billing <command>/],
      [['serve', '--help'], /Usage: micropay billing serve(.|\n)*--port N(.|\n)*--key-dir DIR/],
      [['accounts', '--help'], /Commands:(.|\n)*create(.|\n)*adjust/],
      [['accounts', 'create', '--help'], /--credit-limit AMOUNT(.|\n)*--token-file PATH/],
      [['accounts', 'adjust', '-h'], /<id> <amount> --memo TEXT/],
      [['accounts', 'limits', 'alice', '--help'], /--daily-limit AMOUNT\|none/],
      [['tokens', '--help'], /issue(.|\n)*revoke/],
      [['tokens', 'revoke', '--help'], /<tokenId>/],
      [['keys', 'rotate', '--help'], /Make a new signing key/],
    ];
    for (const [args, re] of levels) {
      const r = await billing(args, {});
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.out, args.join(' ')).toMatch(re);
      expect(r.err).toBe('');
    }
    expect((await billing([], {})).code).toBe(2);
    expect((await billing(['accounts'], {})).code).toBe(2);
    const top = new Sink();
    await main(['--help'], { stdout: top, stderr: new Sink(), env: {}, cwd: dir });
    expect(top.text).toMatch(/^ {2}billing\s+Run and administer a billing server$/m);
  });

  it('a missing admin token says exactly how to provide it', async () => {
    const r = await billing(['accounts', 'list'], { MICROPAY_BILLING_URL: srv.url });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^micropay: missing_admin_token: /);
    expect(r.err).toMatch(/MICROPAY_ADMIN_TOKEN=<token>/);
    expect(r.err).toMatch(/--token-file <path>/);
    expect(r.err).toMatch(/--token <token>/);
    expect(r.out).toBe('');
  });

  it('--token, --token-file and MICROPAY_ADMIN_TOKEN_FILE provide it; a wrong one is unauthorized without echoing it', async () => {
    const file = join(dir, 'admin-token');
    writeFileSync(file, `${srv.adminToken}\n`, { mode: 0o600 });
    for (const [args, env] of [
      [['--token', srv.adminToken], {}],
      [['--token-file', 'admin-token'], {}],
      [[], { MICROPAY_ADMIN_TOKEN_FILE: file }],
    ] as [string[], NodeJS.ProcessEnv][]) {
      const r = await billing(['accounts', 'show', 'news', '--url', srv.url, ...args], env);
      expect(r.code, r.err).toBe(0);
    }
    const wrong = 'mpt_wrong-token-that-looks-real-000000';
    const r = await billing(['accounts', 'list', '--url', srv.url, '--token', wrong], {});
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^micropay: unauthorized: /);
    expect(r.err).not.toContain(wrong);
    const missing = await billing(['accounts', 'list', '--url', srv.url, '--token-file', 'nope'], {});
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(
      /^micropay: admin_token_unreadable: Could not read the admin token file .*nope \(ENOENT\)/,
    );
  });

  it('a server that is down is billing_unavailable, exit 1; a bad --url is a usage error', async () => {
    const port = await reservePort();
    const r = await billing(
      ['keys', 'rotate', '--url', `http://127.0.0.1:${port}`, '--token', srv.adminToken],
      {},
    );
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      /^micropay: billing_unavailable: The billing server at http:\/\/127\.0\.0\.1:\d+ could not be reached/,
    );
    const bad = await billing(['accounts', 'list', '--url', 'localhost:4000', '--token', srv.adminToken], {});
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--url \(or MICROPAY_BILLING_URL\) "localhost:4000" is not an http\(s\) URL/);
  });
});
