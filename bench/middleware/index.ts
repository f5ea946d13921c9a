/**
 * bench/middleware: the same app's free route, paid route (unique pre-signed
 * orders, cached credential) and receipt re-access, for Express and for Koa,
 * in one run; then free and paid at the same fixed rate (half the paid
 * route's throughput), paced open loop (`bench/lib/paced.ts`), to compare
 * p99 latency; and again at a tenth of the paid route's throughput.
 *
 * The merchant runs in its own process; the billing server in another, at
 * idle priority (it stands for a service on another machine; see
 * `bench/lib/priority.ts`): the deposits of a paid run flow during that run,
 * are all credited before the next run starts, and are counted in the report. The machine is shared and noisy: free, paid and receipt are
 * measured in interleaved rounds, and each ratio is the median of the rounds'
 * ratios. BENCH_SECONDS (default 5) and BENCH_ROUNDS (default 3) set them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { signingKeyFromSeed } from '../../src/protocol/crypto.js';
import { hasWrk, type LoadResult, load, loadMeasured, median } from '../lib/load.js';
import { orderHeaders } from '../lib/orders.js';
import { type PacedResult, paced } from '../lib/paced.js';
import { idlePriority } from '../lib/priority.js';

const DURATION = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const started = Date.now();
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
});

async function start(script: string, env: Record<string, string> = {}) {
  const flags = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...flags, '--import', 'tsx', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  });
  children.push(child);
  const line: string = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (c) => reject(new Error(`${script} exited ${c}`)));
  });
  return { child, info: JSON.parse(line) };
}
const bank = await start('bench/lib/billing.ts');
const bankPriority = idlePriority(bank.child.pid!);
const billing = bank.info as { url: string; merchantToken: string; cert: string; seed: string };
const merchant = await start('bench/middleware/server.ts', {
  BENCH_BILLING_URL: billing.url,
  BENCH_MERCHANT_TOKEN: billing.merchantToken,
});
const urls = merchant.info as { express: string; koa: string };
const pid = merchant.child.pid!;
const key = signingKeyFromSeed(billing.seed);
const orders = (n: number): string[] => orderHeaders(billing.cert, key, n);

async function firstReceipt(base: string): Promise<string> {
  const [h] = orders(1);
  const res = await fetch(`${base}/paid`, { headers: { 'micropay-payment': h! } });
  await res.text();
  const rc = res.headers.get('micropay-receipt');
  if (!rc) throw new Error(`no receipt (${res.status})`);
  return rc;
}

interface Deposits {
  charged: number;
  credited: number;
  rejected: number;
  seconds: number;
}
/** Waits until the billing server has answered for every order the app charged. */
async function depositsSettled(base: string): Promise<Deposits> {
  const t0 = Date.now();
  for (;;) {
    // (A kept-alive connection the server closed meanwhile is retried once on a fresh one.)
    const res = await fetch(`${base}/_bench/deposits`).catch(() =>
      fetch(`${base}/_bench/deposits`, { headers: { connection: 'close' } }),
    );
    const d = (await res.json()) as Omit<Deposits, 'seconds'>;
    const seconds = Math.round((Date.now() - t0) / 100) / 10;
    if (d.credited + d.rejected >= d.charged || seconds > 300) return { ...d, seconds };
    await new Promise((r) => setTimeout(r, 200));
  }
}

interface FrameworkResult {
  free: LoadResult[];
  paid: LoadResult[];
  receipt: LoadResult[];
  rate: number;
  freeAtRate: PacedResult;
  paidAtRate: PacedResult;
  light: number;
  freeLight: PacedResult;
  paidLight: PacedResult;
  deposits: Deposits;
}
const results: Record<string, FrameworkResult> = {};
for (const fw of ['express', 'koa'] as const) {
  const base = urls[fw];
  const receipt = [`receipt="${await firstReceipt(base)}"`];
  // Warm-ups: the free, paid and receipt paths compiled before anything counts.
  const warm = await load(`${base}/free`, [], 2);
  await load(`${base}/paid`, orders(Math.ceil(warm.rps * 2) + 1000), 2);
  await load(`${base}/paid`, receipt, 1);
  await depositsSettled(base);
  const r: Pick<FrameworkResult, 'free' | 'paid' | 'receipt'> = {
    free: [],
    paid: [],
    receipt: [],
  };
  for (let round = 0; round < ROUNDS; round++) {
    const free = await loadMeasured(pid, `${base}/free`, [], DURATION);
    // Never reused within a run (a reuse would be a 402): paid is never faster than free.
    const pool = orders(Math.ceil(free.rps * DURATION * 1.1) + 1000);
    r.free.push(free);
    r.paid.push(await loadMeasured(pid, `${base}/paid`, pool, DURATION));
    // The paid run's deposits finish before the next run, which must not pay for them.
    await depositsSettled(base);
    r.receipt.push(await loadMeasured(pid, `${base}/paid`, receipt, DURATION));
  }
  // Latency: both routes at the same rate, one the paid route takes with room to spare.
  const rate = Math.max(100, Math.floor(median(r.paid.map((x) => x.rps)) / 2));
  // Each after a second at that rate, unmeasured, so that neither starts cold (the receipt and
  // free runs before it made no payments).
  await paced(`${base}/free`, [], 1, rate);
  const freeAtRate = await paced(`${base}/free`, [], DURATION, rate);
  const pool = orders(rate * (DURATION + 1) + 1000);
  await paced(`${base}/paid`, pool.slice(0, rate), 1, rate);
  const paidAtRate = await paced(`${base}/paid`, pool.slice(rate), DURATION, rate);
  // And at a tenth of the paid route's throughput, where this machine's two cores are not shared
  // out between the merchant's threads, the billing server and the load generator: what a paid
  // request itself adds.
  const light = Math.max(50, Math.floor(rate / 5));
  const freeLight = await paced(`${base}/free`, [], DURATION, light);
  const paidLight = await paced(`${base}/paid`, orders(light * DURATION + 100), DURATION, light);
  const deposits = await depositsSettled(base);
  results[fw] = { ...r, rate, freeAtRate, paidAtRate, light, freeLight, paidLight, deposits };
  for (const [k, v] of Object.entries(r)) {
    const bad = v.reduce((a, x) => a + x.non2xx, 0);
    if (bad > 0) console.log(`  warning: ${fw} ${k} had ${bad} non-2xx answers`);
  }
  for (const [k, v] of Object.entries({ freeAtRate, paidAtRate, freeLight, paidLight })) {
    if (v.bad > 0) console.log(`  warning: ${fw} ${k} had ${v.bad} non-2xx answers or errors`);
  }
}

const f = (n: number) => n.toFixed(2);
console.log(
  `bench/middleware: ${ROUNDS} rounds of ${DURATION} s per route, interleaved, 32 connections, ` +
    `throughput by ${hasWrk ? 'wrk' : 'autocannon (install wrk for truer ratios)'}; billing server at ${bankPriority}; ` +
    `${Math.round((Date.now() - started) / 1000)} s in all`,
);
for (const [fw, r] of Object.entries(results)) {
  const ratio = (a: LoadResult[], b: LoadResult[], k: 'rps' | 'perCpu') =>
    median(a.map((x, i) => x[k]! / b[i]![k]!));
  const rps = (xs: LoadResult[]) => Math.round(median(xs.map((x) => x.rps)));
  const d = r.deposits;
  console.log(
    `${fw.padEnd(8)} free ${rps(r.free)} req/s, paid ${rps(r.paid)}, receipt ${rps(r.receipt)} (medians)` +
      ` | paid/free ${f(ratio(r.paid, r.free, 'rps'))}  receipt/free ${f(ratio(r.receipt, r.free, 'rps'))}\n` +
      `${''.padEnd(8)} rounds: paid/free ${r.paid.map((x, i) => f(x.rps / r.free[i]!.rps)).join(', ')}; ` +
      `receipt/free ${r.receipt.map((x, i) => f(x.rps / r.free[i]!.rps)).join(', ')}\n` +
      `${''.padEnd(8)} per merchant CPU-second (both of its threads): paid/free ${f(ratio(r.paid, r.free, 'perCpu'))}` +
      `  receipt/free ${f(ratio(r.receipt, r.free, 'perCpu'))}\n` +
      `${''.padEnd(8)} at ${r.rate} req/s, paced: p99 free ${r.freeAtRate.p99} ms, paid ${r.paidAtRate.p99} ms ` +
      `(adds ${f(r.paidAtRate.p99 - r.freeAtRate.p99)} ms); p50 free ${r.freeAtRate.p50}, paid ${r.paidAtRate.p50}\n` +
      `${''.padEnd(8)} at ${r.light} req/s, paced: p99 free ${r.freeLight.p99} ms, paid ${r.paidLight.p99} ms ` +
      `(adds ${f(r.paidLight.p99 - r.freeLight.p99)} ms); p50 free ${r.freeLight.p50}, paid ${r.paidLight.p50}\n` +
      `${''.padEnd(8)} deposits: ${d.charged} orders charged, ${d.credited} credited, ${d.rejected} rejected ` +
      `(settled ${d.seconds} s after the last run)`,
  );
}
console.log(
  'goals: express paid/free >= 0.50; koa paid/free >= 0.28; receipt/free >= 0.85; paid adds < 1 ms at p99 at half load',
);
process.exit(0);
