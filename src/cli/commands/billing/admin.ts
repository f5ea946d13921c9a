/**
 * The admin commands of `micropay billing`: accounts, tokens and keys of a
 * running billing server, over HTTP with the admin token. Argument parsing
 * and printing only; every call goes through the billing client.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { type BillingClient, createBillingClient } from '../../../billing-client/index.js';
import type { Account, AccountFilter, AccountPatch } from '../../../billing-client/types.js';
import { MicropayError } from '../../../protocol/errors.js';
import { isCurrency, isId } from '../../../protocol/ids.js';
import { formatMoney } from '../../../protocol/money.js';
import type { CliIO } from '../../io.js';
import {
  accountCard,
  accountsTable,
  parseAmount,
  parseCommission,
  parseSignedAmount,
  sameCurrency,
  usage,
} from './format.js';
import { PEER_GROUPS, PEER_LEAVES } from './peers.js';

/** Where the admin commands look for the server when neither `--url` nor `MICROPAY_BILLING_URL` says. */
export const DEFAULT_BILLING_URL = 'http://127.0.0.1:4000';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | undefined>;

/** Options every admin command takes (connection, --json, --help). */
export const COMMON = {
  url: { type: 'string' },
  token: { type: 'string' },
  'token-file': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

/** Help lines shared by every admin command. */
export const CONNECTION_HELP = `Connection (every admin command):
  --url URL          billing server (env MICROPAY_BILLING_URL; default ${DEFAULT_BILLING_URL})
  --token TOKEN      admin token (env MICROPAY_ADMIN_TOKEN)
  --token-file PATH  read the admin token from this file, e.g. the admin-token file
                     "micropay billing serve" reported (env MICROPAY_ADMIN_TOKEN_FILE)
  --json             print the server's JSON answer, for scripts
  -h, --help         this help`;

/** What a leaf command gets once its arguments are parsed. */
export interface LeafContext {
  io: CliIO;
  values: Values;
  args: string[];
  json: boolean;
  client(): BillingClient;
}

/** One admin command: its name under `billing`, help, own options, positional names, and body. */
export interface Leaf {
  /** e.g. `accounts create`. */
  name: string;
  /** `<id> --role buyer|merchant ...` */
  synopsis: string;
  summary: string;
  /** Extra help lines (options). */
  details?: string;
  options?: Options;
  /** Names of the required positionals, in order. */
  args: string[];
  run(ctx: LeafContext): Promise<void>;
}

function print(io: CliIO, text: string): void {
  io.stdout.write(text);
}

function printJson(io: CliIO, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

function adminToken(values: Values, io: CliIO): string {
  const given = values.token;
  if (typeof given === 'string') {
    if (given.trim() === '') throw usage('--token is empty.', 'billing');
    return given.trim();
  }
  const file = (values['token-file'] as string | undefined) ?? io.env.MICROPAY_ADMIN_TOKEN_FILE;
  const fromEnv = io.env.MICROPAY_ADMIN_TOKEN;
  if (file === undefined && fromEnv !== undefined && fromEnv.trim() !== '') return fromEnv.trim();
  if (file !== undefined && file !== '') {
    const full = path.resolve(io.cwd, file);
    let text: string;
    try {
      text = readFileSync(full, 'utf8');
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'unreadable';
      throw new MicropayError(
        'admin_token_unreadable',
        `Could not read the admin token file ${full} (${code}).`,
      );
    }
    const t = text.trim();
    if (t === '') throw new MicropayError('admin_token_unreadable', `The admin token file ${full} is empty.`);
    return t;
  }
  throw new MicropayError(
    'missing_admin_token',
    'This command needs the admin token. Set MICROPAY_ADMIN_TOKEN=<token>, or pass --token-file <path> ' +
      '(the admin-token file "micropay billing serve" reported, e.g. ./keys/admin-token), or --token <token>.',
  );
}

/** A billing client with the admin token, from the connection options and the environment. */
export function clientOf(values: Values, io: CliIO): BillingClient {
  const url = (values.url as string | undefined) ?? io.env.MICROPAY_BILLING_URL ?? DEFAULT_BILLING_URL;
  const token = adminToken(values, io);
  try {
    return createBillingClient({ url, token });
  } catch (e) {
    if (e instanceof MicropayError && e.code === 'invalid_option' && /`url`/.test(e.message)) {
      throw usage(
        `--url (or MICROPAY_BILLING_URL) ${JSON.stringify(url.slice(0, 100))} is not an http(s) URL like "${DEFAULT_BILLING_URL}".`,
        'billing',
      );
    }
    throw e;
  }
}

function accountId(v: string, command: string): string {
  const shown = JSON.stringify(v.slice(0, 64));
  if (!isId(v)) {
    throw usage(`${shown} is not an account id: use 1 to 128 characters [A-Za-z0-9._:-].`, command);
  }
  return v;
}

function str(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

/** A limit option: an amount in `currency`, or "none" for the daily limit. */
function limitOption(
  values: Values,
  flag: string,
  currency: string,
  id: string,
  command: string,
  nullable: boolean,
) {
  const text = str(values, flag);
  if (text === undefined) return undefined;
  if (nullable && /^(none|off|unlimited)$/i.test(text.trim())) return null;
  const m = parseAmount(text, `--${flag}`, command);
  sameCurrency(m, currency, `--${flag}`, id);
  return m.amt;
}

const ROLES = new Set(['buyer', 'merchant']);

async function changed(ctx: LeafContext, account: Account, sentence: string): Promise<void> {
  if (ctx.json) printJson(ctx.io, { account });
  else print(ctx.io, `${sentence}\n${accountCard(account)}`);
}

const LEAVES: Leaf[] = [
  {
    name: 'accounts create',
    synopsis:
      '<id> --role buyer|merchant --currency CUR [--name TEXT] [--credit-limit AMOUNT] [--daily-limit AMOUNT] [--commission RATE]',
    summary: 'Create an account; prints it and its first API token (shown once: store it)',
    details: `  --role buyer|merchant   what the account does (required)
  --currency CUR          e.g. USD, EUR, or a private unit like PTS (required)
  --name TEXT             a name people recognise
  --credit-limit AMOUNT   how far a buyer may go below zero, e.g. "50 USD" (default 0)
  --daily-limit AMOUNT    cap of a buyer's credential offline limit, e.g. "5 USD" (default none)
  --commission RATE       a merchant's commission, "2.5%" or "250bps" (default 0)`,
    options: {
      role: { type: 'string' },
      currency: { type: 'string' },
      name: { type: 'string' },
      'credit-limit': { type: 'string' },
      'daily-limit': { type: 'string' },
      commission: { type: 'string' },
    },
    args: ['id'],
    async run(ctx) {
      const cmd = 'billing accounts create';
      const id = accountId(ctx.args[0]!, cmd);
      const role = str(ctx.values, 'role');
      if (role === undefined || !ROLES.has(role)) throw usage('--role must be "buyer" or "merchant".', cmd);
      const currency = str(ctx.values, 'currency');
      if (currency === undefined || !isCurrency(currency)) {
        throw usage('--currency must be 3 to 8 characters A-Z or 0-9, like USD.', cmd);
      }
      const input: Parameters<BillingClient['admin']['createAccount']>[0] = {
        id,
        role: role as 'buyer' | 'merchant',
        currency,
      };
      const name = str(ctx.values, 'name');
      if (name !== undefined) input.name = name;
      const credit = limitOption(ctx.values, 'credit-limit', currency, id, cmd, false);
      if (credit !== undefined) input.creditLimit = credit as number;
      const daily = limitOption(ctx.values, 'daily-limit', currency, id, cmd, true);
      if (daily !== undefined) input.dailyLimit = daily;
      const rate = str(ctx.values, 'commission');
      if (rate !== undefined) input.commissionBps = parseCommission(rate, cmd);
      const created = await ctx.client().admin.createAccount(input);
      if (ctx.json) {
        printJson(ctx.io, created);
        return;
      }
      // The one deliberate print of a token: the admin asked for the account and needs its token.
      print(
        ctx.io,
        `Created ${created.account.role} account "${created.account.id}".\n${accountCard(created.account)}\n` +
          `API token: ${created.token}\n` +
          (created.tokenId ? `Token id:  ${created.tokenId}\n` : '') +
          'Store the token now and hand it to the account holder: it is shown only this once.\n',
      );
    },
  },
  {
    name: 'accounts list',
    synopsis: '[--role buyer|merchant|system] [--status active|disabled]',
    summary: 'List accounts (every page)',
    details: `  --role ROLE       only buyer, merchant or system accounts
  --status STATUS   only active or disabled accounts`,
    options: { role: { type: 'string' }, status: { type: 'string' } },
    args: [],
    async run(ctx) {
      const cmd = 'billing accounts list';
      const filter: AccountFilter = {};
      const role = str(ctx.values, 'role');
      if (role !== undefined) {
        if (role !== 'buyer' && role !== 'merchant' && role !== 'system') {
          throw usage('--role must be "buyer", "merchant" or "system".', cmd);
        }
        filter.role = role;
      }
      const status = str(ctx.values, 'status');
      if (status !== undefined) {
        if (status !== 'active' && status !== 'disabled')
          throw usage('--status must be "active" or "disabled".', cmd);
        filter.status = status;
      }
      const accounts: Account[] = [];
      for await (const a of ctx.client().admin.allAccounts(filter)) accounts.push(a);
      if (ctx.json) printJson(ctx.io, { accounts });
      else if (accounts.length === 0) print(ctx.io, 'No accounts match.\n');
      else print(ctx.io, accountsTable(accounts));
    },
  },
  {
    name: 'accounts show',
    synopsis: '<id>',
    summary: 'Show one account: balance, limits, commission',
    args: ['id'],
    async run(ctx) {
      const a = await ctx.client().admin.getAccount(accountId(ctx.args[0]!, 'billing accounts show'));
      if (ctx.json) printJson(ctx.io, { account: a });
      else print(ctx.io, accountCard(a));
    },
  },
  ...(['disable', 'enable'] as const).map(
    (verb): Leaf => ({
      name: `accounts ${verb}`,
      synopsis: '<id>',
      summary:
        verb === 'disable'
          ? 'Disable an account (a buyer gets no new credential; issued ones lapse)'
          : 'Enable a disabled account again',
      args: ['id'],
      async run(ctx) {
        const id = accountId(ctx.args[0]!, `billing accounts ${verb}`);
        const status = verb === 'disable' ? 'disabled' : 'active';
        const a = await ctx.client().admin.updateAccount(id, { status });
        await changed(ctx, a, `Account "${a.id}" is now ${a.status}.`);
      },
    }),
  ),
  {
    name: 'accounts delete',
    synopsis: '<id>',
    summary: 'Delete an account (only once its balance is zero)',
    args: ['id'],
    async run(ctx) {
      const id = accountId(ctx.args[0]!, 'billing accounts delete');
      await ctx.client().admin.deleteAccount(id);
      if (ctx.json) printJson(ctx.io, { deleted: id });
      else print(ctx.io, `Deleted account "${id}".\n`);
    },
  },
  {
    name: 'accounts limits',
    synopsis: '<id> [--credit-limit AMOUNT] [--daily-limit AMOUNT|none]',
    summary: 'Show or change the credit and daily limits',
    details: `  --credit-limit AMOUNT       how far a buyer may go below zero, e.g. "50 USD"
  --daily-limit AMOUNT|none   cap of the credential offline limit, e.g. "5 USD", or none
  Without either option, prints the current limits.`,
    options: { 'credit-limit': { type: 'string' }, 'daily-limit': { type: 'string' } },
    args: ['id'],
    async run(ctx) {
      const cmd = 'billing accounts limits';
      const id = accountId(ctx.args[0]!, cmd);
      const admin = ctx.client().admin;
      if (str(ctx.values, 'credit-limit') === undefined && str(ctx.values, 'daily-limit') === undefined) {
        const a = await admin.getAccount(id);
        if (ctx.json) printJson(ctx.io, { account: a });
        else print(ctx.io, accountCard(a));
        return;
      }
      // Parse first (usage errors before any call), then check the currency against the account.
      for (const flag of ['credit-limit', 'daily-limit']) {
        const text = str(ctx.values, flag);
        if (text !== undefined && !(flag === 'daily-limit' && /^(none|off|unlimited)$/i.test(text.trim()))) {
          parseAmount(text, `--${flag}`, cmd);
        }
      }
      const current = await admin.getAccount(id);
      const patch: AccountPatch = {};
      const credit = limitOption(ctx.values, 'credit-limit', current.currency, id, cmd, false);
      if (credit !== undefined) patch.creditLimit = credit as number;
      const daily = limitOption(ctx.values, 'daily-limit', current.currency, id, cmd, true);
      if (daily !== undefined) patch.dailyLimit = daily;
      const a = await admin.updateAccount(id, patch);
      await changed(ctx, a, `Limits of "${a.id}" changed.`);
    },
  },
  {
    name: 'accounts commission',
    synopsis: '<id> <rate>',
    summary: 'Set a merchant\'s commission, "2.5%" or "250bps"',
    args: ['id', 'rate'],
    async run(ctx) {
      const cmd = 'billing accounts commission';
      const id = accountId(ctx.args[0]!, cmd);
      const bps = parseCommission(ctx.args[1]!, cmd);
      const a = await ctx.client().admin.updateAccount(id, { commissionBps: bps });
      await changed(ctx, a, `Commission of "${a.id}" is now ${ctx.args[1]!.trim()}.`);
    },
  },
  {
    name: 'accounts adjust',
    synopsis: '<id> <amount> --memo TEXT',
    summary: 'Top up ("12.50 USD") or pay out ("-3 USD") an account, with a memo for the ledger',
    details: `  <amount>      signed, in the account's currency: "12.50 USD" adds, "-3 USD" takes away
  --memo TEXT   why, recorded in the ledger (required)`,
    options: { memo: { type: 'string' } },
    args: ['id', 'amount'],
    async run(ctx) {
      const cmd = 'billing accounts adjust';
      const id = accountId(ctx.args[0]!, cmd);
      const money = parseSignedAmount(ctx.args[1]!, 'The amount', cmd);
      const memo = str(ctx.values, 'memo');
      if (memo === undefined || memo.trim() === '')
        throw usage('--memo TEXT is required: say why, for the ledger.', cmd);
      const admin = ctx.client().admin;
      const current = await admin.getAccount(id);
      sameCurrency(money, current.currency, 'the amount', id);
      const a = await admin.adjust(id, { amt: money.amt, memo });
      await changed(
        ctx,
        a,
        `${money.amt > 0 ? 'Added' : 'Took'} ${formatMoney(Math.abs(money.amt), money.cur)} ${money.amt > 0 ? 'to' : 'from'} "${a.id}"; balance ${formatMoney(a.balance, a.currency)}.`,
      );
    },
  },
  {
    name: 'tokens issue',
    synopsis: '<account>',
    summary: 'Issue another API token for an account (printed once: store it)',
    args: ['account'],
    async run(ctx) {
      const id = accountId(ctx.args[0]!, 'billing tokens issue');
      const t = await ctx.client().admin.issueToken(id);
      if (ctx.json) {
        printJson(ctx.io, t);
        return;
      }
      // Printed because the admin asked for exactly this token.
      print(
        ctx.io,
        `API token for "${id}": ${t.token}\nToken id: ${t.tokenId} (revoke with: micropay billing tokens revoke ${t.tokenId})\n` +
          'Store the token now: it is shown only this once.\n',
      );
    },
  },
  {
    name: 'tokens revoke',
    synopsis: '<tokenId>',
    summary: 'Revoke an API token by its id; it stops working at once',
    args: ['tokenId'],
    async run(ctx) {
      const tokenId = ctx.args[0]!;
      if (!/^[A-Za-z0-9._:-]{1,128}$/.test(tokenId)) {
        throw usage(
          `${JSON.stringify(tokenId.slice(0, 64))} is not a token id (like tok_...). Pass the id, not the token.`,
          'billing tokens revoke',
        );
      }
      await ctx.client().admin.revokeToken(tokenId);
      if (ctx.json) printJson(ctx.io, { revoked: tokenId });
      else print(ctx.io, `Revoked token ${tokenId}.\n`);
    },
  },
  {
    name: 'keys rotate',
    synopsis: '',
    summary: 'Make a new signing key; it signs new credentials from now on',
    args: [],
    async run(ctx) {
      const r = await ctx.client().admin.rotateKeys();
      if (ctx.json) printJson(ctx.io, r);
      else
        print(
          ctx.io,
          `New signing key "${r.kid}" signs from now on; older keys stay published until the credentials they signed expire.\n`,
        );
    },
  },
];

// Peers and settlement (section 9) live in peers.ts.
LEAVES.push(...PEER_LEAVES);

const GROUPS: Record<string, string> = {
  accounts: 'Create and manage buyer and merchant accounts',
  tokens: 'Issue and revoke API tokens',
  keys: 'Rotate the signing key',
  ...PEER_GROUPS,
};

function leafHelp(l: Leaf): string {
  return [
    `Usage: micropay billing ${l.name}${l.synopsis ? ` ${l.synopsis}` : ''} [connection options]`,
    '',
    `${l.summary}.`,
    ...(l.details ? ['', 'Options:', l.details] : []),
    '',
    CONNECTION_HELP,
    '',
    'Amounts are written like "12.50 USD" (at most 6 decimals), in the account\'s currency.',
    '',
  ].join('\n');
}

/** Help of a group (`accounts`, `tokens`, `keys`). */
export function groupHelp(group: string): string {
  const leaves = LEAVES.filter((l) => l.name.startsWith(`${group} `));
  const w = Math.max(...leaves.map((l) => l.name.length - group.length - 1));
  return [
    `Usage: micropay billing ${group} <command> [options]     (--help on each command for more)`,
    '',
    `${GROUPS[group]}.`,
    '',
    'Commands:',
    ...leaves.map((l) => `  ${l.name.slice(group.length + 1).padEnd(w)}  ${l.summary}`),
    '',
    CONNECTION_HELP,
    '',
  ].join('\n');
}

/** The admin groups and their one-line summaries, for `billing --help`. */
export const ADMIN_GROUPS = GROUPS;

const wantsHelp = (argv: string[]) => {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).some((a) => a === '--help' || a === '-h');
};

/** Runs `micropay billing <group> ...`. */
export async function runGroup(group: string, argv: string[], io: CliIO): Promise<number> {
  // A group that is one command (`settlement`) takes its options directly.
  const solo = LEAVES.find((l) => l.name === group);
  const [verb, ...rest] = solo ? ['', ...argv] : argv;
  if (!solo && (verb === undefined || verb === '--help' || verb === '-h' || verb === 'help')) {
    io.stdout.write(groupHelp(group));
    return verb === undefined ? 2 : 0;
  }
  const leaf = solo ?? LEAVES.find((l) => l.name === `${group} ${verb}`);
  if (!leaf) {
    const verbs = LEAVES.filter((l) => l.name.startsWith(`${group} `)).map((l) =>
      l.name.slice(group.length + 1),
    );
    throw usage(
      `"${verb}" is not a "billing ${group}" command; use one of: ${verbs.join(', ')}.`,
      `billing ${group}`,
    );
  }
  if (wantsHelp(rest)) {
    io.stdout.write(leafHelp(leaf));
    return 0;
  }
  // A negative amount ("-3 USD") is an argument, not an option: hide it from parseArgs.
  const negatives: string[] = [];
  const args = rest.map((a) => (/^-[\d.]/.test(a) ? `\u0000${negatives.push(a) - 1}` : a));
  const parsed = parseArgs({
    args,
    options: { ...COMMON, ...leaf.options },
    allowPositionals: true,
    strict: true,
  });
  const restore = (a: string) => (a.startsWith('\u0000') ? negatives[Number(a.slice(1))]! : a);
  const positionals = parsed.positionals.map(restore);
  const values: Values = {};
  for (const [k, v] of Object.entries(parsed.values))
    values[k] = typeof v === 'string' ? restore(v) : (v as boolean);
  const cmd = `billing ${leaf.name}`;
  if (positionals.length < leaf.args.length) {
    const missing = leaf.args.slice(positionals.length).map((a) => `<${a}>`);
    throw usage(`Missing ${missing.join(' and ')}: micropay ${cmd} ${leaf.synopsis}.`, cmd);
  }
  if (positionals.length > leaf.args.length) {
    throw usage(`Unexpected argument ${JSON.stringify(positionals[leaf.args.length]!.slice(0, 64))}.`, cmd);
  }
  const v = values;
  let client: BillingClient | undefined;
  await leaf.run({
    io,
    values: v,
    args: positionals,
    json: v.json === true,
    client: () => {
      client ??= clientOf(v, io);
      return client;
    },
  });
  return 0;
}
