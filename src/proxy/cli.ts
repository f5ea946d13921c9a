/**
 * The `micropay-proxy` command (also `micropay proxy`): parses `--config`,
 * `--check` and `--help`, runs the proxy, and turns signals into actions:
 * SIGHUP reloads the configuration file (a bad file is refused and logged,
 * the running configuration stays), SIGTERM and SIGINT drain and stop
 * (exit code 0). Logs are pino JSON lines on stdout; tokens are never logged.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import type { Command } from '../cli/io.js';
import { isMicropayError } from '../protocol/errors.js';
import { DEFAULT_CONFIG_FILE, loadProxyConfig, type ProxyConfig } from './config.js';
import { checkProxyConfig, createProxy } from './server.js';

const HELP = `Usage: micropay-proxy [--config FILE] [--check]
       micropay proxy [--config FILE] [--check]

Runs the paywall proxy in front of any site: priced routes answer 402 until
paid with a Micropay-Payment header; everything else passes to the upstream.

Options:
  -c, --config FILE  configuration, YAML or JSON (default ./${DEFAULT_CONFIG_FILE});
                     \${NAME} is taken from the environment
      --check        validate the configuration and exit (0 when it is good)
  -h, --help         show this help

Signals: SIGHUP reloads the configuration file (a bad file is refused and the
running configuration stays); SIGTERM or SIGINT finishes the requests in
flight, flushes deposits and exits.

Endpoints: /_micropay/healthz; /_micropay/metrics (Prometheus: to this machine
only, or to the bearer of metrics.token).

Every field of the configuration file: docs/proxy.md in the micropay package.
`;

function summary(c: ProxyConfig): string {
  const priced = c.routes.filter((r) => r.price !== null).length;
  return (
    `merchant ${c.merchant}, ${priced} priced route${priced === 1 ? '' : 's'}` +
    `${c.manifest ? ' and a manifest' : ''}, upstream ${c.upstreams.map((u) => u.url).join(', ')}, ` +
    `listen ${c.listen.host}:${c.listen.port}, store ${c.store.kind}`
  );
}

/** `micropay-proxy [--config FILE] [--check]`: resolves the exit code once the proxy has stopped. */
export const run: Command = async (argv, io) => {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string', short: 'c' },
      check: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
  const file = resolve(io.cwd, values.config ?? DEFAULT_CONFIG_FILE);
  const config = loadProxyConfig(file, io.env);
  if (values.check) {
    await checkProxyConfig(config);
    io.stdout.write(`${file}: OK: ${summary(config)}.\n`);
    return 0;
  }
  const logger = pino(
    {
      name: 'micropay-proxy',
      level: config.logLevel,
      redact: { paths: ['token', '*.token'], censor: '[redacted]' },
    },
    io.stdout === process.stdout ? pino.destination({ dest: 1, sync: true }) : io.stdout,
  );
  const proxy = createProxy(config, { logger });
  await proxy.listen();

  return new Promise<number>((done) => {
    let queue = Promise.resolve();
    const onHup = () => {
      queue = queue.then(async () => {
        try {
          const next = loadProxyConfig(file, io.env);
          await proxy.reload(next);
          logger.level = next.logLevel;
        } catch (e) {
          logger.error(
            { code: isMicropayError(e) ? e.code : 'internal_error', err: (e as Error).message },
            'micropay-proxy: reload refused; the running configuration stays',
          );
        }
      });
    };
    const onStop = (signal: NodeJS.Signals) => {
      process.off('SIGHUP', onHup);
      process.off('SIGTERM', onStop);
      process.off('SIGINT', onStop);
      logger.info({ signal }, 'micropay-proxy: draining and stopping (send it again to stop at once)');
      // A second signal stops at once.
      process.once('SIGTERM', () => process.exit(143));
      process.once('SIGINT', () => process.exit(130));
      queue
        .then(() => proxy.close())
        .then(
          () => done(0),
          (e) => {
            logger.error({ err: (e as Error).message }, 'micropay-proxy: shutdown failed');
            done(1);
          },
        );
    };
    process.on('SIGHUP', onHup);
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);
  });
};
