/**
 * `micropay billing serve`: runs the billing server in this process until
 * SIGTERM or SIGINT, then closes it gracefully. Prints the URL it listens on
 * (the real port when `--port 0`) and, when the admin token lives in a file,
 * that file's path; never the token, never the database URL.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { MicropayError } from '../../../protocol/errors.js';
import { isId } from '../../../protocol/ids.js';
import type { CliIO } from '../../io.js';
import { usage } from './format.js';

const CMD = 'billing serve';

export const SERVE_HELP = `Usage: micropay billing serve [options]

Runs a billing server until SIGTERM or Ctrl-C, then stops gracefully.

Options:
  --port N          port to listen on (default 4000; 0 picks a free one and prints it)
  --host HOST       address to listen on (default 127.0.0.1)
  --issuer ID       this server's issuer id, in every credential it signs
                    (env MICROPAY_ISSUER; default bank-a). Keep it once buyers hold credentials.
  --db PATH|URL     SQLite file (default ./billing.db) or a postgres://... URL
  --key-dir DIR     where signing key seeds and a generated admin token are kept, mode 0600
                    (default: "keys" beside the SQLite file; ./.micropay/keys for PostgreSQL)
  --cors-origin URL let pages of this origin (e.g. https://news.example) run the browser
                    wallet against this server: credentials and the buyer's own account.
                    Repeat for several origins; no wildcard.
  --quiet           no request logs
  --json            print { url, issuer, adminTokenFile } as JSON once listening
  -h, --help        this help

Environment: MICROPAY_ADMIN_TOKEN fixes the admin token (else one is generated into
<key-dir>/admin-token on first start, and its path is printed); MICROPAY_SIGNING_KEY
gives the signing key seed instead of a file.
`;

const isPostgres = (db: string) => /^postgres(ql)?:\/\//.test(db);

function port(text: string | undefined): number {
  if (text === undefined) return 4000;
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65_535) {
    throw usage(
      `--port ${JSON.stringify(text.slice(0, 32))} is not a port: give a number from 0 to 65535.`,
      CMD,
    );
  }
  return Number(text);
}

/** Resolves when the process gets SIGTERM or SIGINT. */
function stopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      resolve(sig);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}

/** Runs `micropay billing serve`. */
export async function serve(
  argv: string[],
  io: CliIO,
  stop: () => Promise<unknown> = stopSignal,
): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout.write(SERVE_HELP);
    return 0;
  }
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      issuer: { type: 'string' },
      db: { type: 'string' },
      'key-dir': { type: 'string' },
      'cors-origin': { type: 'string', multiple: true },
      quiet: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length > 0)
    throw usage(`Unexpected argument ${JSON.stringify(positionals[0]!.slice(0, 64))}.`, CMD);
  const listenPort = port(values.port);
  const host = values.host ?? '127.0.0.1';
  const issuer = values.issuer ?? io.env.MICROPAY_ISSUER ?? 'bank-a';
  if (!isId(issuer)) throw usage('--issuer must be 1 to 128 characters [A-Za-z0-9._:-], like "bank-a".', CMD);
  const dbSpec = values.db ?? 'billing.db';
  if (dbSpec === '') throw usage('--db is empty: give a SQLite file path or a postgres:// URL.', CMD);
  const pg = isPostgres(dbSpec);
  const db = pg || dbSpec === ':memory:' ? dbSpec : path.resolve(io.cwd, dbSpec);
  // The same default as the server's, made explicit so the admin token file can be named.
  const keyDir =
    values['key-dir'] !== undefined
      ? path.resolve(io.cwd, values['key-dir'])
      : db === ':memory:'
        ? undefined
        : pg
          ? path.resolve(io.cwd, '.micropay/keys')
          : path.join(path.dirname(db), 'keys');
  // Passed on explicitly, so the server checks the one this command saw (io.env may not be process.env).
  const tokenFromEnv = io.env.MICROPAY_ADMIN_TOKEN !== undefined;
  const tokenFile = keyDir === undefined || tokenFromEnv ? undefined : path.join(keyDir, 'admin-token');
  const existed = tokenFile !== undefined && existsSync(tokenFile);

  const { createBillingServer } = await import('../../../billing-server/index.js');
  const opts: Parameters<typeof createBillingServer>[0] = { issuer, db };
  if (keyDir !== undefined) opts.keyDir = keyDir;
  if (tokenFromEnv) opts.adminToken = io.env.MICROPAY_ADMIN_TOKEN!;
  if (values.quiet) opts.logger = false;
  if (values['cors-origin'] !== undefined) opts.corsOrigins = values['cors-origin'];
  const server = await createBillingServer(opts);
  let url: string;
  try {
    url = await server.listen(listenPort, host);
  } catch (e) {
    await server.close().catch(() => {});
    const code = (e as { code?: string }).code;
    if (code === 'EADDRINUSE') {
      throw new MicropayError(
        'address_in_use',
        `Port ${listenPort} on ${host} is in use. Pick another with --port (0 picks a free one).`,
      );
    }
    if (code === 'EACCES') {
      throw new MicropayError(
        'address_not_allowed',
        `Not allowed to listen on ${host}:${listenPort}. Use a port above 1023.`,
      );
    }
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') {
      throw new MicropayError(
        'bad_host',
        `Cannot listen on host ${JSON.stringify(host)}: no such local address.`,
      );
    }
    throw e;
  }
  const adminTokenFile = tokenFile !== undefined && existsSync(tokenFile) ? tokenFile : undefined;
  if (values.json) {
    io.stdout.write(`${JSON.stringify({ url, issuer, adminTokenFile: adminTokenFile ?? null })}\n`);
  } else {
    io.stdout.write(`micropay billing: issuer ${issuer} listening on ${url}\n`);
    if (adminTokenFile !== undefined) {
      io.stdout.write(
        `micropay billing: admin token ${existed ? 'in' : 'generated into'} ${adminTokenFile} ` +
          `(use: micropay billing accounts list --url ${url} --token-file ${adminTokenFile})\n`,
      );
    } else if (!tokenFromEnv) {
      io.stdout.write(
        'micropay billing: the admin token lives in memory only (--db :memory:); set MICROPAY_ADMIN_TOKEN or --key-dir to use the admin commands.\n',
      );
    }
  }
  const sig = await stop();
  await server.close();
  if (!values.json) io.stdout.write(`micropay billing: stopped (${String(sig ?? 'stop')}).\n`);
  return 0;
}
