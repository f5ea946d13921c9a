/**
 * Runs the example merchant standalone:
 *   MICROPAY_BILLING_URL=http://127.0.0.1:4000 MICROPAY_MERCHANT=news-site \
 *   MICROPAY_MERCHANT_TOKEN=... npx tsx examples/express-basic/server.ts
 * PORT (default 3000) and HOST (default 127.0.0.1) choose where it listens.
 */
import { createApp } from './app.js';

function need(name: string): string {
  const v = process.env[name];
  if (!v) {
    process.stderr.write(`express-basic: set ${name} (see examples/express-basic/README.md).\n`);
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
  process.stdout.write(`News Site on http://${host}:${port}/ (articles at 0.002 USD)\n`);
});

async function stop(): Promise<void> {
  server.close();
  server.closeIdleConnections();
  await app.micropay.close(); // delivers the deposits still queued
  process.exit(0);
}
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
