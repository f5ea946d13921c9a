/**
 * `micropay demo`: runs the end-to-end demo of `src/demo` (billing server,
 * merchant and wallet in one process, nothing left running afterwards).
 */
import { parseArgs } from 'node:util';
import { runDemo } from '../../demo/index.js';
import type { Command } from '../io.js';

const HELP = `Usage: micropay demo

Starts a billing server (SQLite in a temporary folder), opens a buyer and a
merchant account, starts the example merchant (examples/express-basic), has a
wallet buy an article and read it again with the receipt, waits for the
merchant's deposit, and prints the balances of buyer, merchant and fee
account. Everything is stopped and removed at the end. Run it from a clone
of the repository: npm run demo.
`;

/** Runs `micropay demo`. */
export const run: Command = async (argv, io) => {
  const { values } = parseArgs({
    args: argv,
    options: { help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
  await runDemo({ stdout: io.stdout, cwd: io.cwd });
  return 0;
};
