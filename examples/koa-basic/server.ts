/**
 * Runs the Koa example merchant standalone:
 *   MICROPAY_BILLING_URL=http://127.0.0.1:4000 MICROPAY_MERCHANT=news-site \
 *   MICROPAY_MERCHANT_TOKEN=... npx tsx examples/koa-basic/server.ts
 * PORT (default 3000) and HOST (default 127.0.0.1) choose where it listens.
 */
import { createApp } from './app.js';

function need(name: string): string {
  const v = process.env[name];
  if (!v) {
    process.stderr.write(`koa-basic: set ${name} (see examples/koa-basic/README.md).\n`);
    process.exit(2);
  }
  return v;
}

const app = createApp({
  merchant: need('MICROPAY_MERCHANT'),
  billing: { url: need('MICROPAY_BILLING_URL'), token: need('MICROPAY_MERCHANT_TOKEN') },
  receipts: { keyFile: process.env.MICROPAY_RECEIPT_KEY_FILE ?? '.micropay/receipt-key' },
});
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? '127.0.0.1';
const server = app.listen(port, host, () => {
  process.stdout.write(`News Site (Koa) on http://${host}:${port}/ (articles at 0.002 USD)\n`);
});
// Connect now: deposits a previous run left in a durable queue go out without waiting for a paid request.
app.micropay.core.ready().catch((e: Error) => {
  process.stderr.write(
    `koa-basic: billing server not reachable yet (${e.message}); retrying on the first paid request\n`,
  );
});

async function stop(): Promise<void> {
  server.close();
  server.closeIdleConnections();
  await app.micropay.close(); // delivers the deposits still queued
  process.exit(0);
}
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
