/**
 * `micropay wallet`: the buyer's wallet from a terminal. `init` makes the key
 * and checks the token by fetching a credential; `status`, `get` and
 * `history` use what is kept in the wallet's home (`--home`, else
 * `$MICROPAY_HOME`, else `~/.micropay`): `key`, `token`, `config.json` and
 * `wallet.json`, all mode 0600. The token is never printed.
 */
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { isMicropayError } from '../../protocol/errors.js';
import { formatMoney, type Money, parseMoney } from '../../protocol/money.js';
import { readPrivateFile, writePrivateFile } from '../../wallet/files.js';
import {
  createWallet,
  defaultHome,
  fileKeyStore,
  fileWalletStore,
  type PaymentRecord,
  type Wallet,
  WalletError,
  type WalletPolicy,
} from '../../wallet/index.js';
import type { CliIO, Command } from '../io.js';
import { card, formatTime, table, usage } from './billing/format.js';

const HELP = `Usage: micropay wallet <command> [options]     (--help on each command for more)

The buyer's wallet: pays per click over HTTP 402 within your limits.

Commands:
  init      Make the key and connect to your billing server: micropay wallet init --billing URL --token TOKEN
  status    The credential, its limits, and what was spent today
  get       Fetch a URL, paying if it asks: micropay wallet get URL [-o FILE] [--max "0.01 USD"]
  history   What was paid, to whom, when, for what

Every command takes --home DIR (default: $MICROPAY_HOME, else ~/.micropay).
`;

const INIT_HELP = `Usage: micropay wallet init --billing URL --token TOKEN [options]

Makes the buyer key (DIR/key, mode 0600) unless there is one, stores the token
(DIR/token, 0600) and the settings, and fetches a credential to check them.
Run it again to change a setting; the key, token and billing URL are kept unless given.

Options:
  --billing URL             Your billing server, e.g. http://127.0.0.1:4000
  --token TOKEN             Your buyer API token (or set MICROPAY_BUYER_TOKEN); never printed
  --max-per-payment PRICE   Most one payment may cost, e.g. "0.05 USD" ("none" to remove)
  --max-per-day PRICE       Most spent per day (UTC), e.g. "2 USD" ("none" to remove)
  --home DIR                The wallet's folder (default: $MICROPAY_HOME, else ~/.micropay)
  -h, --help                This help
`;

const STATUS_HELP = `Usage: micropay wallet status [--json] [--home DIR]

Shows the billing server, the credential (account, offline limit, expiry),
today's spending and your limits. Calls no one.
`;

const GET_HELP = `Usage: micropay wallet get URL [-o FILE] [--max PRICE] [--home DIR]

Fetches URL. If it costs something, pays within your limits (and --max), then
keeps the receipt so fetching it again is free until the receipt expires.
What was paid goes to stderr; the body to stdout, or to FILE with -o.
Exits 1 when the answer is an HTTP error.

Options:
  -o, --output FILE   Write the body to FILE
  --max PRICE         Most this request may cost, e.g. "0.01 USD"
  --home DIR          The wallet's folder
`;

const HISTORY_HELP = `Usage: micropay wallet history [--json] [--home DIR]

Lists the payments made, newest first: when, how much, to whom, for what.
`;

interface Config {
  billingUrl: string;
  policy: { maxPerPayment?: string; maxPerDay?: string };
}

interface Home {
  dir: string;
  key: string;
  token: string;
  config: string;
  state: string;
}

function home(dir: string | undefined, io: CliIO): Home {
  const d = resolve(io.cwd, dir ?? defaultHome(io.env));
  return {
    dir: d,
    key: join(d, 'key'),
    token: join(d, 'token'),
    config: join(d, 'config.json'),
    state: join(d, 'wallet.json'),
  };
}

function noWallet(h: Home): WalletError {
  return new WalletError(
    'no_wallet',
    `There is no wallet in ${h.dir}. Make one: micropay wallet init --billing URL --token TOKEN`,
  );
}

function readConfig(h: Home): Config | null {
  const text = readPrivateFile(h.config);
  if (text === null) return null;
  try {
    const c = JSON.parse(text) as Config;
    if (typeof c.billingUrl !== 'string') throw new Error('no billingUrl');
    return { billingUrl: c.billingUrl, policy: c.policy ?? {} };
  } catch {
    throw new WalletError(
      'no_wallet',
      `${h.config} is not a wallet configuration; run micropay wallet init --billing URL --token TOKEN again.`,
    );
  }
}

function readToken(h: Home): string | null {
  const t = readPrivateFile(h.token)?.trim();
  return t ? t : null;
}

function open(h: Home, c: Config, token: string): Wallet {
  const policy: WalletPolicy = {};
  if (c.policy.maxPerPayment) policy.maxPerPayment = c.policy.maxPerPayment;
  if (c.policy.maxPerDay) policy.maxPerDay = c.policy.maxPerDay;
  return createWallet({
    billingUrl: c.billingUrl,
    token,
    policy,
    keyStore: fileKeyStore(h.key),
    store: fileWalletStore(h.state),
  });
}

/** The wallet of a home that was initialised, or the error saying to run init. */
function load(h: Home): Wallet {
  const c = readConfig(h);
  const token = readToken(h);
  if (!c || !token) throw noWallet(h);
  return open(h, c, token);
}

function price(v: string, option: string, command: string): Money {
  try {
    return parseMoney(v);
  } catch (e) {
    throw usage(`${option}: ${(e as Error).message}`, `wallet ${command}`);
  }
}

const show = (m: Money | null) => (m ? formatMoney(m.amt, m.cur) : 'no limit');

/** Adds what to do next to a refusal, keeping its code. */
function withAdvice(e: unknown, h: Home): unknown {
  if (!isMicropayError(e)) return e;
  const advice: Record<string, string> = {
    no_credential: `Check the billing URL and your token: micropay wallet init --billing URL --token TOKEN --home ${h.dir}`,
    over_payment_limit:
      'To pay it, raise your limit (micropay wallet init --max-per-payment PRICE) or pass a larger --max.',
    over_daily_budget:
      'Wait until tomorrow (UTC), or raise your budget: micropay wallet init --max-per-day PRICE.',
    currency_not_allowed: 'This wallet cannot pay in that currency.',
    issuer_not_accepted: 'This merchant does not work with your billing server.',
    declined: 'The merchant asked your billing server, which declined: check your credit with its operator.',
    limit_exceeded: 'The merchant will not take more from this credential today.',
  };
  let hint = advice[e.code];
  if (!hint && e instanceof WalletError && e.merchantCode !== undefined)
    hint = 'The merchant declined the payment.';
  if (!hint) return e;
  const o: ConstructorParameters<typeof WalletError>[2] = { cause: e };
  if (e.status !== undefined) o.status = e.status;
  return new WalletError(e.code, `${e.message} ${hint}`, o);
}

const init: Command = async (argv, io) => {
  const { values } = parseArgs({
    args: argv,
    options: {
      billing: { type: 'string' },
      token: { type: 'string' },
      'max-per-payment': { type: 'string' },
      'max-per-day': { type: 'string' },
      home: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    io.stdout.write(INIT_HELP);
    return 0;
  }
  const h = home(values.home, io);
  const before = readConfig(h);
  const billingUrl = values.billing ?? before?.billingUrl;
  if (!billingUrl)
    throw usage(
      '--billing URL is required (your billing server, e.g. http://127.0.0.1:4000).',
      'wallet init',
    );
  try {
    const u = new URL(billingUrl);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http');
  } catch {
    throw usage(
      `--billing must be an http(s) URL, like http://127.0.0.1:4000; got ${JSON.stringify(billingUrl.slice(0, 100))}.`,
      'wallet init',
    );
  }
  const token = values.token ?? io.env.MICROPAY_BUYER_TOKEN ?? readToken(h);
  if (!token)
    throw usage(
      '--token TOKEN is required (your buyer API token; or set MICROPAY_BUYER_TOKEN).',
      'wallet init',
    );
  if (/\s/.test(token)) throw usage('--token must be one word without spaces.', 'wallet init');
  const policy: Config['policy'] = { ...(before?.policy ?? {}) };
  for (const [opt, field] of [
    ['max-per-payment', 'maxPerPayment'],
    ['max-per-day', 'maxPerDay'],
  ] as const) {
    const v = values[opt];
    if (v === undefined) continue;
    if (v === 'none') delete policy[field];
    else {
      const m = price(v, `--${opt}`, 'init');
      policy[field] = formatMoney(m.amt, m.cur);
    }
  }
  const config: Config = { billingUrl, policy };
  const wallet = open(h, config, token);
  let cred: Awaited<ReturnType<Wallet['credential']>>;
  try {
    cred = await wallet.credential({ renew: true });
  } catch (e) {
    throw withAdvice(e, h);
  }
  writePrivateFile(h.token, `${token}\n`);
  writePrivateFile(h.config, `${JSON.stringify(config, null, 2)}\n`);
  io.stdout.write(
    `Wallet ready in ${h.dir}\n` +
      card([
        ['billing', billingUrl],
        ['account', `${cred.sub} at ${cred.iss} (${cred.cur})`],
        [
          'credential',
          `offline limit ${formatMoney(cred.lim, cred.cur)}, valid until ${formatTime(cred.exp)} (renewed by itself)`,
        ],
        [
          'limits',
          `${show(policy.maxPerPayment ? parseMoney(policy.maxPerPayment) : null)} per payment, ${show(policy.maxPerDay ? parseMoney(policy.maxPerDay) : null)} per day`,
        ],
        ['key', `${h.key} (mode 0600)`],
      ]) +
      'Try: micropay wallet get URL\n',
  );
  return 0;
};

const status: Command = async (argv, io) => {
  const { values } = parseArgs({
    args: argv,
    options: { json: { type: 'boolean' }, home: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) {
    io.stdout.write(STATUS_HELP);
    return 0;
  }
  const h = home(values.home, io);
  const s = await load(h).status();
  if (values.json) {
    io.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
    return 0;
  }
  const c = s.credential;
  const cur = c?.cur ?? s.policy.currency ?? '';
  const spent = Object.entries(s.spentToday).map(([k, v]) => formatMoney(v, k));
  io.stdout.write(
    card([
      ['wallet', h.dir],
      ['billing', s.billingUrl],
      ['account', c ? `${c.sub} at ${c.iss} (${c.cur})` : 'unknown until the first credential'],
      [
        'credential',
        c
          ? `offline limit ${formatMoney(c.lim, c.cur)}, valid until ${formatTime(c.exp)}${s.renewDue ? ' (renewed before the next payment)' : ''}`
          : 'none yet (fetched before the first payment)',
      ],
      ['spent today', spent.length > 0 ? spent.join(', ') : cur ? formatMoney(0, cur) : '0'],
      ['per payment', show(s.policy.maxPerPayment)],
      ['per day', show(s.policy.maxPerDay)],
      ['receipts', `${s.receipts} valid`],
    ]),
  );
  return 0;
};

const get: Command = async (argv, io) => {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      output: { type: 'string', short: 'o' },
      max: { type: 'string' },
      home: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    io.stdout.write(GET_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw usage('Give exactly one URL: micropay wallet get URL.', 'wallet get');
  const url = positionals[0]!;
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http');
  } catch {
    throw usage(`${JSON.stringify(url.slice(0, 200))} is not an http(s) URL.`, 'wallet get');
  }
  const max = values.max === undefined ? undefined : price(values.max, '--max', 'get');
  const h = home(values.home, io);
  const wallet = load(h);
  let r: Awaited<ReturnType<Wallet['request']>>;
  try {
    r = await wallet.request(url, undefined, max ? { maxPrice: max } : {});
  } catch (e) {
    throw withAdvice(e, h);
  }
  if (r.via === 'paid' && r.payment) io.stderr.write(`micropay: ${describePayment(r.payment)}\n`);
  else if (r.via === 'paid')
    io.stderr.write('micropay: the merchant took no payment (its answer was an error)\n');
  else if (r.via === 'receipt') io.stderr.write('micropay: opened with an earlier receipt, no charge\n');
  const body = Buffer.from(await r.response.arrayBuffer());
  if (values.output !== undefined) {
    const file = resolve(io.cwd, values.output);
    writeFileSync(file, body);
    io.stderr.write(`micropay: wrote ${body.length} bytes to ${file}\n`);
  } else io.stdout.write(body);
  if (r.response.status >= 400) {
    io.stderr.write(`micropay: ${url} answered HTTP ${r.response.status}\n`);
    return 1;
  }
  return 0;
};

function describePayment(p: PaymentRecord): string {
  const who = p.name ? `${p.name} (${p.mer})` : p.mer;
  const until = p.receiptExp === undefined ? '' : `; free again until ${formatTime(p.receiptExp)}`;
  return `paid ${formatMoney(p.amt, p.cur)} to ${who} for ${p.title ? `"${p.title}" ` : ''}${p.res}${until}`;
}

const history: Command = async (argv, io) => {
  const { values } = parseArgs({
    args: argv,
    options: { json: { type: 'boolean' }, home: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) {
    io.stdout.write(HISTORY_HELP);
    return 0;
  }
  const h = home(values.home, io);
  const list = await load(h).history();
  if (values.json) {
    io.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
    return 0;
  }
  if (list.length === 0) {
    io.stdout.write('No payments yet.\n');
    return 0;
  }
  io.stdout.write(
    table(
      ['TIME', 'AMOUNT', 'MERCHANT', 'RESOURCE', 'ORDER'],
      list.map((p) => [formatTime(p.time), formatMoney(p.amt, p.cur), p.mer, p.res, p.oid]),
      new Set([1]),
    ),
  );
  return 0;
};

const COMMANDS: Record<string, Command> = { init, status, get, history };

/** Runs `micropay wallet ...`. */
export const run: Command = async (argv, io) => {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    io.stdout.write(HELP);
    return sub === undefined ? 2 : 0;
  }
  const cmd = COMMANDS[sub];
  if (!cmd) throw usage(`"${sub}" is not a wallet command; use init, status, get or history.`, 'wallet');
  return cmd(rest, io);
};
