/**
 * bench/middleware: autocannon against the same app's free route, paid route
 * (unique pre-signed orders, cached credential) and receipt re-access, for
 * Express and Koa, in one run; then free and paid at half the free route's
 * throughput to compare p99 latency. The server runs in its own process.
 * Prints ratios only mean anything measured together.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { signingKeyFromSeed } from '../../src/protocol/crypto.js';
import { hasWrk, type LoadResult, load, loadAtRate, loadMeasured } from '../lib/load.js';
import { orderHeaders } from '../lib/orders.js';

const DURATION = Number(process.env.BENCH_SECONDS ?? 5);

async function start(script: string, env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  });
  const line: string = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (c) => reject(new Error(`${script} exited ${c}`)));
  });
  return { child, info: JSON.parse(line) };
}
const bank = await start('bench/lib/billing.ts');
const billing = bank.info as { url: string; merchantToken: string; cert: string; seed: string };
const merchant = await start('bench/middleware/server.ts', {
  BENCH_BILLING_URL: billing.url,
  BENCH_MERCHANT_TOKEN: billing.merchantToken,
});
const info = { ...billing, ...(merchant.info as { express: string; koa: string }) };
const key = signingKeyFromSeed(info.seed);

const orders = (n: number): string[] => orderHeaders(info.cert, key, n);

async function firstReceipt(base: string): Promise<string> {
  const [h] = orders(1);
  const res = await fetch(`${base}/paid`, { headers: { 'micropay-payment': h! } });
  await res.text();
  const rc = res.headers.get('micropay-receipt');
  if (!rc) throw new Error(`no receipt (${res.status})`);
  return rc;
}

const results: Record<string, Record<string, LoadResult>> = {};
for (const fw of ['express', 'koa'] as const) {
  const base = info[fw];
  await load(`${base}/free`, [], 2); // warm up
  const pid = merchant.child.pid!;
  const free = await loadMeasured(pid, `${base}/free`, [], DURATION);
  const paid = await loadMeasured(
    pid,
    `${base}/paid`,
    orders(Math.ceil(free.rps * DURATION * 1.2) + 1000),
    DURATION,
  );
  const rec = await loadMeasured(pid, `${base}/paid`, [`receipt="${await firstReceipt(base)}"`], DURATION);
  const half = Math.max(100, Math.floor(free.rps / 2));
  const freeHalf = await loadAtRate(`${base}/free`, [], DURATION, half);
  const paidHalf = await loadAtRate(`${base}/paid`, orders(half * DURATION + 1000), DURATION, half);
  results[fw] = { free, paid, receipt: rec, freeHalf, paidHalf };
  for (const [k, v] of Object.entries(results[fw]!)) {
    if (v.non2xx > 0) console.log(`  warning: ${fw} ${k} had ${v.non2xx} non-2xx answers`);
  }
}
merchant.child.kill('SIGTERM');
bank.child.kill('SIGTERM');

const f = (n: number) => n.toFixed(2);
console.log(
  `bench/middleware (${DURATION}s per run, 32 connections, throughput by ${hasWrk ? 'wrk' : 'autocannon (install wrk for truer ratios)'})`,
);
for (const [fw, r] of Object.entries(results)) {
  console.log(
    `${fw.padEnd(8)} wall: free ${Math.round(r.free!.rps)} req/s, paid ${Math.round(r.paid!.rps)}, receipt ${Math.round(r.receipt!.rps)}` +
      ` | paid/free ${f(r.paid!.rps / r.free!.rps)}  receipt/free ${f(r.receipt!.rps / r.free!.rps)}\n` +
      `${''.padEnd(8)} per merchant CPU-second: free ${Math.round(r.free!.perCpu!)}, paid ${Math.round(r.paid!.perCpu!)}, receipt ${Math.round(r.receipt!.perCpu!)}` +
      ` | paid/free ${f(r.paid!.perCpu! / r.free!.perCpu!)}  receipt/free ${f(r.receipt!.perCpu! / r.free!.perCpu!)}\n` +
      `${''.padEnd(8)} p99 at half the free rate: free ${r.freeHalf!.p99} ms, paid ${r.paidHalf!.p99} ms (adds ${r.paidHalf!.p99 - r.freeHalf!.p99} ms)`,
  );
}
console.log(
  'goals: express paid/free >= 0.50; koa paid/free >= 0.28; receipt/free >= 0.85; paid adds < 1 ms at p99 at half load',
);
console.log(
  '(the billing server, in its own process, verifies and books every paid order meanwhile: wall ratios include that contention on this machine)',
);
