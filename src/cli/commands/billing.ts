/**
 * `micropay billing`: run a billing server (`serve`) and administer a running
 * one over HTTP (`accounts`, `tokens`, `keys`). Dispatch and help only; the
 * commands live in `billing/`.
 */
import type { CliIO, Command } from '../io.js';
import { ADMIN_GROUPS, CONNECTION_HELP, runGroup } from './billing/admin.js';
import { usage } from './billing/format.js';

const HELP = `Usage: micropay billing <command> [options]     (--help on each command for more)

Run and administer a billing server (PROTOCOL.md sections 8 and 10).

Commands:
  serve      Run a billing server: micropay billing serve --port 4000 --issuer bank-a --db ./billing.db
  statements Export every account's entries of a month: --period 2026-11 --format csv -o FILE
${Object.entries(ADMIN_GROUPS)
  .map(([g, s]) => `  ${g.padEnd(9)}  ${s}`)
  .join('\n')}

Examples:
  micropay billing accounts create alice --role buyer --currency USD --credit-limit "50 USD" --daily-limit "5 USD"
  micropay billing accounts create news --role merchant --currency USD --commission 2.5%
  micropay billing accounts adjust alice "12.50 USD" --memo "top-up"
  micropay billing accounts list --role buyer --json

${CONNECTION_HELP}
`;

function help(io: CliIO): void {
  io.stdout.write(HELP);
}

/** Runs `micropay billing ...`. */
export const run: Command = async (argv, io) => {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    help(io);
    return sub === undefined ? 2 : 0;
  }
  if (sub === 'serve') return (await import('./billing/serve.js')).serve(rest, io);
  if (sub === 'statements') return (await import('./billing/statements.js')).statements(rest, io);
  if (Object.hasOwn(ADMIN_GROUPS, sub)) return runGroup(sub, rest, io);
  throw usage(
    `"${sub}" is not a billing command; use serve, statements, ${Object.keys(ADMIN_GROUPS).join(', ')}.`,
    'billing',
  );
};
