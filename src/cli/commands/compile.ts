/** `micropay compile <dir|file> -o <out-dir> [--rules prices.yaml] [--manifest FILE]`: argument parsing only. */
import { parseArgs } from 'node:util';
import { runCompile } from '../../compile/run.js';
import { MicropayError } from '../../protocol/errors.js';
import type { Command } from '../io.js';

const HELP = `Usage: micropay compile <dir|file> -o <out-dir> [options]

Turns existing HTML pages into click-and-pay links and writes the price
manifest the middleware and the proxy load (their "manifest" option).

Priced links are marked in the page (<a href="/articles/42" data-price="0.02 USD"
data-duration="86400">) or matched by rules (--rules prices.yaml). Every byte
outside the rewritten links is kept; compiling the output again changes nothing.

Options:
  -o, --out <dir>          where to write the pages (required)
  -r, --rules <file>       YAML price rules: [{ match: "/articles/*", price: "0.02 USD" }, { match: "/live/*", dynamic: NAME }]
  -m, --manifest <file>    where to write the manifest (default <out>/micropay-manifest.json)
      --merchant <id>      merchant id written on priced links
      --wallet-script <url> wallet script pages load (default /_micropay/wallet.js)
      --base <path|url>    where the site is served (default /)
  -h, --help               show this help
`;

export const run: Command = async (argv, io) => {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      out: { type: 'string', short: 'o' },
      rules: { type: 'string', short: 'r' },
      manifest: { type: 'string', short: 'm' },
      merchant: { type: 'string' },
      'wallet-script': { type: 'string' },
      base: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1 || !values.out) {
    throw new MicropayError(
      'usage',
      positionals.length !== 1
        ? 'micropay compile takes one input (a directory or an HTML file). See micropay compile --help.'
        : 'micropay compile needs -o <out-dir>. See micropay compile --help.',
    );
  }
  return runCompile(
    {
      input: positionals[0]!,
      outDir: values.out,
      ...(values.rules !== undefined ? { rules: values.rules } : {}),
      ...(values.manifest !== undefined ? { manifest: values.manifest } : {}),
      ...(values.merchant !== undefined ? { merchant: values.merchant } : {}),
      ...(values['wallet-script'] !== undefined ? { walletScript: values['wallet-script'] } : {}),
      ...(values.base !== undefined ? { base: values.base } : {}),
    },
    { stdout: io.stdout, stderr: io.stderr, isTTY: Boolean(io.stderr.isTTY) },
  );
};
