#!/usr/bin/env node
/**
 * The `micropay` binary: argument dispatch only. Each subcommand lives in
 * `commands/` and is loaded on demand, so `micropay --help` stays instant.
 */
import { type CliIO, type Command, processIO, reportError } from './io.js';

interface Entry {
  summary: string;
  load: () => Promise<Command>;
}

const COMMANDS: Record<string, Entry> = {};

/** Registers a subcommand (each part adds its own line below). */
function add(name: string, summary: string, load: () => Promise<Command>): void {
  COMMANDS[name] = { summary, load };
}

// Subcommands. Keep this list in the order `micropay --help` shows it.
// (billing, wallet, proxy, compile, demo are added as their parts land.)
add(
  'billing',
  'Run and administer a billing server',
  async () => (await import('./commands/billing.js')).run,
);
add(
  'wallet',
  'Buyer wallet: init, status, get, history',
  async () => (await import('./commands/wallet.js')).run,
);
add('proxy', 'Run the paywall proxy in front of any site', async () => (await import('../proxy/cli.js')).run);
add(
  'compile',
  'Turn HTML pages into click-and-pay links and a price manifest',
  async () => (await import('./commands/compile.js')).run,
);
add(
  'demo',
  'Run the end-to-end demo on embedded defaults',
  async () => (await import('./commands/demo.js')).run,
);

function help(io: CliIO): void {
  const names = Object.keys(COMMANDS);
  const w = Math.max(8, ...names.map((n) => n.length));
  io.stdout.write(
    [
      'micropay: per-click payments over HTTP 402',
      '',
      'Usage: micropay <command> [options]     (micropay <command> --help for more)',
      '',
      'Commands:',
      ...names.map((n) => `  ${n.padEnd(w)}  ${COMMANDS[n]!.summary}`),
      '',
      'Protocol: https://github.com/micropay (PROTOCOL.md). Licence: Apache-2.0.',
      '',
    ].join('\n'),
  );
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: string[], io: CliIO = processIO()): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    help(io);
    return name ? 0 : 2;
  }
  if (name === '--version' || name === '-v') {
    io.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    io.stderr.write(`micropay: usage: unknown command "${name}". Run "micropay --help" for the list.\n`);
    return 2;
  }
  try {
    return await (await entry.load())(rest, io);
  } catch (e) {
    return reportError(e, io);
  }
}

const VERSION = '0.1.0';

// Run when executed as a binary (not when imported by tests).
const invoked = process.argv[1] ?? '';
if (/micropay(\.[cm]?[jt]s)?$/.test(invoked)) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
