/**
 * `micropay billing peers add|list|token|update|remove` and `micropay billing
 * settlement`, run in process through `main` against two real billing
 * servers (SQLite) that the commands make peers of each other: the tokens
 * printed once and handed over, tables and `--json`, positions after a
 * purchase across, help, and usage errors. No token but the one `peers add`
 * must print ever reaches the output.
 */
import { Writable } from 'node:stream';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliIO } from '../../src/cli/io.js';
import { main } from '../../src/cli/micropay.js';
import { type Bank, payer, position, publishedPeers, startBank } from '../billing-server/peering-helpers.js';
import { eventually } from '../helpers/world.js';

class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _enc: BufferEncoding, cb: () => void): void {
    this.text += String(chunk);
    cb();
  }
}

let a: Bank;
let b: Bank;
beforeAll(async () => {
  [a, b] = await Promise.all([startBank('bank-a', 'sqlite'), startBank('bank-b', 'sqlite')]);
});
afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
});

/** Runs `micropay billing ...args` against `bank` with its admin token from the environment. */
async function billing(bank: Bank, args: string[], secrets: string[] = []) {
  const stdout = new Sink();
  const stderr = new Sink();
  const io: CliIO = {
    stdout,
    stderr,
    env: { MICROPAY_BILLING_URL: bank.url, MICROPAY_ADMIN_TOKEN: bank.adminToken },
    cwd: process.cwd(),
  };
  const code = await main(['billing', ...args], io);
  for (const s of [a.adminToken, b.adminToken, ...secrets])
    expect(stdout.text + stderr.text).not.toContain(s);
  return { code, out: stdout.text, err: stderr.text };
}

async function ok(bank: Bank, args: string[], secrets: string[] = []): Promise<string> {
  const r = await billing(bank, args, secrets);
  expect(r.code, r.err).toBe(0);
  expect(r.err).toBe('');
  return r.out;
}

const printedToken = (out: string): string => /presents here: (\S+)/.exec(out)![1]!;

describe('micropay billing peers and settlement', () => {
  it('help for the group, each command and settlement', async () => {
    expect(await ok(a, ['--help'])).toMatch(/peers(.|\n)*settlement/);
    const group = await billing(a, ['peers']);
    expect(group.code).toBe(2);
    expect(group.out).toMatch(/Commands:(.|\n)*add(.|\n)*list(.|\n)*token(.|\n)*update(.|\n)*remove/);
    expect(await ok(a, ['peers', 'add', '--help'])).toMatch(
      /<issuer> <url>(.|\n)*--fee RATE(.|\n)*--token-file PATH/,
    );
    expect(await ok(a, ['peers', 'update', '--help'])).toMatch(/--peer-url URL/);
    expect(await ok(a, ['settlement', '--help'])).toMatch(/Usage: micropay billing settlement(.|\n)*NET > 0/);
  });

  it('add both ways, hand over the tokens, list, pay across, settlement on both sides, remove', async () => {
    const addedA = await ok(a, ['peers', 'add', 'bank-b', b.url, '--fee', '1%']);
    expect(addedA).toMatch(/Registered peer "bank-b"(.|\n)*interchange\s+1% \(100 bps/);
    const forB = printedToken(addedA);
    expect(forB).toMatch(/^mpt_/);
    const addedB = await ok(b, ['peers', 'add', 'bank-a', a.url, '--peer-token', forB, '--json']);
    const forA = JSON.parse(addedB).token as string;
    expect(JSON.parse(addedB).peer).toMatchObject({ issuer: 'bank-a', hasToken: true, feeBps: 0 });
    const set = await ok(a, ['peers', 'token', 'bank-b', forA], [forA]);
    expect(set).toMatch(/Our token at "bank-b" is set/);
    const list = await ok(a, ['peers', 'list'], [forA, forB]);
    expect(list).toMatch(/ISSUER\s+URL\s+OUR TOKEN\s+INTERCHANGE\s+KEYS FETCHED/);
    expect(list).toMatch(/bank-b\s+http:\/\/127\.0\.0\.1:\d+\s+set\s+1%/);
    await eventually(async () => (await publishedPeers(b)).has('bank-a'));
    const listed = JSON.parse(await ok(b, ['peers', 'list', '--json'])).peers;
    expect(listed).toEqual([expect.objectContaining({ issuer: 'bank-a', url: a.url })]);
    expect(listed[0].keysFetched).toEqual(expect.any(Number));

    expect(await ok(a, ['settlement'])).toBe('No positions with peers yet.\n');
    // A buyer of bank-a pays a merchant of bank-b: bank-b claims it from bank-a, which keeps 1%.
    const alice = await payer(a, 'alice');
    const news = await b.account({ id: 'news-b', role: 'merchant', currency: 'USD' });
    const o = { mer: 'news-b', res: 'GET /x', amt: 250_000, cur: 'USD' };
    await request(b.url)
      .post('/v1/deposits')
      .set('Authorization', `Bearer ${news}`)
      .send({ batch: 'cli-1', orders: [{ cert: alice.cert, order: alice.order(o) }] })
      .expect(200);
    await eventually(async () => (await position(b, 'bank-a')).net === 247_500);
    expect(await ok(b, ['settlement'])).toMatch(
      /PEER\s+CURRENCY\s+NET\s+PENDING\s+MEANING\nbank-a\s+USD\s+0\.2475 USD\s+0(\.00)? USD\s+the peer owes us/,
    );
    expect(await ok(a, ['settlement'])).toMatch(/bank-b\s+USD\s+-0\.2475 USD\s+.*we owe the peer/);
    expect(JSON.parse(await ok(a, ['settlement', '--json']))).toEqual({
      positions: [{ peer: 'bank-b', currency: 'USD', net: -247_500, pending: 0 }],
    });

    const upd = await ok(a, ['peers', 'update', 'bank-b', '--fee', '250bps']);
    expect(upd).toMatch(/interchange\s+2\.5%/);
    expect(await ok(a, ['peers', 'remove', 'bank-b'])).toMatch(/Removed peer "bank-b"/);
    expect(await ok(a, ['peers', 'list'])).toBe('No peers.\n');
    // The position stays until it is settled.
    expect(JSON.parse(await ok(a, ['settlement', '--json'])).positions).toHaveLength(1);
  });

  it('usage errors exit 2 with a sentence; server refusals are coded, exit 1; a token is never echoed', async () => {
    for (const [args, re] of [
      [['peers', 'add', 'bank-c'], /Missing <url>/],
      [['peers', 'add', 'bank/c', 'http://x'], /not an issuer id/],
      [['peers', 'add', 'bank-c', 'ftp://x'], /not an http\(s\) URL/],
      [['peers', 'add', 'bank-c', 'http://x', '--fee', '150%'], /not a commission rate/],
      [['peers', 'token', 'bank-c', 'has space'], /printable characters without spaces/],
      [['peers', 'update', 'bank-c'], /--peer-url URL, --fee RATE or both/],
      [['peers', 'frobnicate'], /"frobnicate" is not a "billing peers" command/],
      [['settlement', 'extra'], /Unexpected argument "extra"/],
    ] as [string[], RegExp][]) {
      const r = await billing(a, args, ['has space']);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err, args.join(' ')).toMatch(re);
    }
    const missing = await billing(
      a,
      ['peers', 'token', 'bank-z', 'mpt_secretSecretSecret'],
      ['mpt_secretSecretSecret'],
    );
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/no_such_peer/);
    const self = await billing(a, ['peers', 'add', 'bank-a', 'http://x']);
    expect(self.code).toBe(1);
    expect(self.err).toMatch(/invalid_request(.|\n)*this server itself/);
  });
});
