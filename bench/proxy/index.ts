/**
 * bench/proxy, in one run (`npx tsx bench/proxy/index.ts`, about three
 * minutes): wrk (autocannon without it) against the upstream directly, through a plain
 * http-proxy with a keep-alive agent, through micropay-proxy (the real
 * binary as the package ships it: `npm run build` first, then
 * `dist/esm/cli/micropay-proxy.js` with a YAML configuration) on a free
 * route and on a paid route (a unique pre-signed order per request from a
 * pool, one buyer whose credential has a large offline limit, deposits to
 * the real billing server in its own process, at idle priority: see
 * `bench/lib/priority.ts`). The billing server stands for another machine, so
 * it is stopped during every measured window (BENCH_BILLING=live keeps it
 * running at idle priority, as before): the proxy's deposits wait in its queue
 * and go when the window ends, and the event-loop CPU the proxy then spends
 * until every order is answered (deposits, and this script's metrics polls) is
 * added to the paid window's duration, so the paid rate counts the deposit
 * work it deferred. Then the memory run
 * (`rss.ts`): 1,000,000 distinct buyers' payments into the proxy's core.
 *
 * Every server runs in its own process, on plain node: the proxy from
 * `dist/`, the upstream and the plain http-proxy bundled by esbuild. Run
 * through tsx, our TypeScript would carry esbuild's `keepNames` wrappers, a
 * `__name` call for every closure made, which the package's build does not
 * have: 15,000 instructions a free request and 25,000 a paid one (callgrind),
 * a cost the plain http-proxy, plain JavaScript from node_modules, never paid.
 * The machine is shared and noisy, so
 * the four targets are measured in interleaved rounds and the ratios are
 * medians of each round's ratio; the CPU time each server process spends
 * per request (from /proc) is printed beside them, as it is much less
 * sensitive to what else runs, and micropay-proxy's is split by thread
 * (event loop, crypto thread, the rest) to show where a paid request goes. BENCH_SECONDS (default 3) and BENCH_ROUNDS
 * (default 5: single rounds' free/plain ratios ranged from 0.80 to 1.01 in one
 * run here, too wide for a median of 3) set the rounds; BENCH_BUYERS (default
 * 1,000,000) the memory run.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { build } from 'esbuild';
import { signingKeyFromSeed } from '../../src/protocol/crypto.js';
import { hasWrk, load, median } from '../lib/load.js';
import { orderHeaders } from '../lib/orders.js';
import { idlePriority, Paused } from '../lib/priority.js';

const DURATION = Number(process.env.BENCH_SECONDS ?? 3);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const WARMUP = 2;
const CONNECTIONS = 32;
const BUYERS = Number(process.env.BENCH_BUYERS ?? 1_000_000);
const BILLING = process.env.BENCH_BILLING ?? 'paused';
if (BILLING !== 'paused' && BILLING !== 'live') {
  console.error(`BENCH_BILLING must be "paused" (the default) or "live", not ${JSON.stringify(BILLING)}.`);
  process.exit(2);
}
const tmp = mkdtempSync(join(tmpdir(), 'micropay-bench-proxy-'));
const children: ChildProcess[] = [];
const started = Date.now();

function stopAll(): void {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
}
process.on('exit', () => {
  stopAll();
  rmSync(tmp, { recursive: true, force: true });
});

interface Started {
  pid: number;
  info: Record<string, string>;
}

/** Starts a process and resolves its pid and the first stdout line matching `re` as JSON (the rest is drained). */
async function start(args: string[], env: Record<string, string> = {}, re = /^\{/): Promise<Started> {
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  });
  children.push(child);
  return new Promise<Started>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    const onLine = (line: string) => {
      if (!re.test(line)) return;
      rl.off('line', onLine);
      rl.on('line', () => {}); // keep draining
      resolve({ pid: child.pid!, info: JSON.parse(line) });
    };
    rl.on('line', onLine);
    child.once('exit', (c) => reject(new Error(`${args.join(' ')} exited ${c}`)));
  });
}

interface Run {
  rps: number;
  p99: number;
  bad: number;
  /** CPU time of the measured server process per request, microseconds (Linux), or NaN. */
  cpuUs: number;
  /** Of which: its main thread (the event loop), its busiest other thread (micropay-proxy's crypto thread on the paid route), all the rest. */
  threadsUs: { loop: number; busiest: number; rest: number };
  /** Requests answered in the window. */
  requests: number;
  /** Event-loop CPU seconds spent after the window on its deposits (paid runs with the billing server paused), else 0. */
  deferred: number;
}

/** A run's rate with the deposit work it deferred added to its window. */
const charged = (r: Run) => r.requests / (DURATION + r.deferred);
/** The event-loop CPU a run deferred (its deposits), per request, microseconds. */
const deferredUs = (r: Run) => (r.deferred * 1e6) / Math.max(1, r.requests);

/** utime + stime of each thread of a process, in clock ticks, from /proc; empty elsewhere. */
function threadTicks(pid: number | undefined): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const f = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
        out.set(tid, Number(fields[11]) + Number(fields[12]));
      } catch {
        // the thread ended meanwhile
      }
    }
  } catch {
    // not Linux
  }
  return out;
}

/** utime + stime of a process, in clock ticks (100 per second), from /proc; NaN elsewhere. */
function cpuTicks(pid: number | undefined): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return Number.NaN;
  }
}

/** One run against `url` (wrk when installed, else autocannon; `bench/lib/load.ts`), with the server's CPU time. */
async function run(
  url: string,
  headers: string[],
  pid: number | undefined,
  seconds = DURATION,
): Promise<Run> {
  const c0 = cpuTicks(pid);
  const t0 = threadTicks(pid);
  const measure = () => load(url, headers, seconds, CONNECTIONS);
  const r = await (billingPaused ? billingPaused.during(measure) : measure());
  const t1 = threadTicks(pid);
  const total = Math.max(1, r.rps * seconds);
  const us = (ticks: number) => (ticks * 10_000) / total;
  const others = [...t1]
    .filter(([tid]) => tid !== String(pid))
    .map(([tid, t]) => t - (t0.get(tid) ?? 0))
    .sort((a, b) => b - a);
  return {
    requests: r.rps * seconds,
    deferred: 0,
    rps: r.rps,
    p99: r.p99,
    bad: r.non2xx,
    cpuUs: ((cpuTicks(pid) - c0) * 10_000) / total,
    threadsUs: {
      loop: us((t1.get(String(pid)) ?? Number.NaN) - (t0.get(String(pid)) ?? Number.NaN)),
      busiest: us(others[0] ?? 0),
      rest: us(others.slice(1).reduce((a, b) => a + b, 0)),
    },
  };
}

/** `entry` bundled by esbuild into one ES module in the temporary directory, to run on plain node. */
async function bundled(entry: string): Promise<string> {
  const outfile = join(tmp, `${entry.replace(/\W+/g, '-')}.mjs`);
  await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile,
    logLevel: 'error',
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
  });
  return outfile;
}

// --- the servers ----------------------------------------------------------------------------
// micropay-proxy as npm ships it: the package's own build (about 15 s).
execFileSync(process.execPath, ['scripts/build.mjs'], { stdio: ['ignore', 'ignore', 'inherit'] });
const bank = await start(['--import', 'tsx', 'bench/lib/billing.ts']);
const bankPriority = idlePriority(bank.pid);
const billingPaused = BILLING === 'paused' ? new Paused(bank.pid) : null;
const billing = bank.info;
const up = await start([await bundled('bench/proxy/upstream.ts')]);
const upstream = up.info.url!;
const plainServer = await start([await bundled('bench/proxy/plain.ts')], { BENCH_UPSTREAM: upstream });
const configFile = join(tmp, 'micropay.yaml');
writeFileSync(
  configFile,
  [
    'listen: 127.0.0.1:0',
    'merchant: news-site',
    `billing: { url: ${billing.url}, token: \${MERCHANT_TOKEN} }`,
    `upstream: ${upstream}`,
    'routes:',
    '  - match: GET /paid',
    '    price: 0.002 USD',
    'deposits: { maxBatch: 1000, maxDelayMs: 500 }',
    '',
  ].join('\n'),
);
const micropay = await start(
  ['dist/esm/cli/micropay-proxy.js', '--config', configFile],
  { MERCHANT_TOKEN: billing.merchantToken! },
  /micropay-proxy: listening/,
);

const key = signingKeyFromSeed(billing.seed!);
const orders = (n: number): string[] => orderHeaders(billing.cert!, key, n);

// --- throughput: rounds of the four, interleaved, so that the machine's ups and downs fall on all ---
const targets = [
  { name: 'direct', url: `${upstream}/free`, pid: up.pid, paid: false },
  { name: 'plain http-proxy', url: `${plainServer.info.url}/free`, pid: plainServer.pid, paid: false },
  { name: 'micropay free', url: `${micropay.info.url}/free`, pid: micropay.pid, paid: false },
  { name: 'micropay paid', url: `${micropay.info.url}/paid`, pid: micropay.pid, paid: true },
];
const warm: Record<string, Run> = {};
for (const t of targets.filter((x) => !x.paid)) warm[t.name] = await run(t.url, [], t.pid, WARMUP);
// Each paid run gets orders of its own (a reuse would be a 402): paid is never faster than free.
const perRun = Math.min(200_000, Math.ceil(warm['micropay free']!.rps * DURATION * 1.3) + 1000);
/** The proxy's metrics (again on a fresh connection if a kept-alive one was closed under us). */
async function metricsText(): Promise<string> {
  try {
    return await (await fetch(`${micropay.info.url}/_micropay/metrics`)).text();
  } catch {
    const r = await fetch(`${micropay.info.url}/_micropay/metrics`, { headers: { connection: 'close' } });
    return r.text();
  }
}
/** Waits until the proxy's billing server has answered for every order it took; the proxy's event-loop CPU seconds meanwhile. */
async function depositsDone(): Promise<number> {
  const loop = () => threadTicks(micropay.pid).get(String(micropay.pid)) ?? Number.NaN;
  const t0 = loop();
  await depositsAnswered();
  return (loop() - t0) / 100;
}
async function depositsAnswered(): Promise<void> {
  const sum = (text: string, re: RegExp) => [...text.matchAll(re)].reduce((a, m) => a + Number(m[1]), 0);
  const pollMs = 250;
  const polls = 120_000 / pollMs;
  for (let i = 0; i < polls; i++) {
    const text = await metricsText();
    const taken = sum(text, /^micropay_payments_total\{[^}]*\} (\d+)$/gm);
    // Taken and then not charged (a connection wrk closed at the end of a run) is answered too.
    const answered =
      sum(text, /^micropay_deposited_orders_total\{[^}]*\} (\d+)$/gm) +
      sum(text, /^micropay_uncharged_total(?:\{[^}]*\})? (\d+)$/gm);
    if (answered >= taken) return;
    if (i === polls - 1)
      console.log(`  warning: ${taken} payments taken, ${answered} deposited or not charged`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
  console.log('  warning: deposits still running after 120 s');
}
await run(`${micropay.info.url}/paid`, orders(perRun), micropay.pid, WARMUP);
await depositsDone();
const runs: Record<string, Run[]> = Object.fromEntries(targets.map((t) => [t.name, []]));
// Paid first in each round; its deposits flow during it and are all answered before the others.
const order = [targets[3]!, targets[0]!, targets[1]!, targets[2]!];
for (let round = 0; round < ROUNDS; round++) {
  for (const t of order) {
    const r = await run(t.url, t.paid ? orders(perRun) : [], t.pid);
    if (t.paid) {
      const loop = await depositsDone();
      if (billingPaused) r.deferred = loop;
    }
    runs[t.name]!.push(r);
  }
}
stopAll();

// --- Ed25519 alone: what a paid request cannot do without, on this machine today ---------------
/** Microseconds one call of `f` takes, the best of three runs of 2,000 on this thread (the servers are stopped). */
function microseconds(f: () => unknown): number {
  const runs: number[] = [];
  for (let r = 0; r < 3; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 2000; i++) f();
    runs.push(Number(process.hrtime.bigint() - t0) / 2000 / 1000);
  }
  return Math.min(...runs);
}
const pair = generateKeyPairSync('ed25519');
const signed = randomBytes(300); // an order's signed text is about this long
const signature = sign(null, signed, pair.privateKey);
const ed25519 = {
  verify: microseconds(() => verify(null, signed, pair.publicKey, signature)),
  sign: microseconds(() => sign(null, signed, pair.privateKey)),
};

// --- memory: 1,000,000 distinct buyers -----------------------------------------------------
// Bundled and run on plain node, so that tsx's loader thread is not counted.
const bundle = await bundled('bench/proxy/rss.ts');
const memEnv = {
  ...process.env,
  BENCH_BANK_SEED: randomBytes(32).toString('hex'), // the bank's key, shared by maker and merchant
  BENCH_T0: String(Math.floor(Date.now() / 1000)),
  BENCH_BUYERS: String(BUYERS),
};
const maker = spawn(process.execPath, ['--import', 'tsx', 'bench/proxy/sign.ts'], {
  env: memEnv,
  stdio: ['ignore', 'pipe', 'inherit'],
});
const merchant = spawn(process.execPath, ['--expose-gc', bundle], {
  env: memEnv,
  stdio: ['pipe', 'pipe', 'inherit'],
});
children.push(maker, merchant);
maker.stdout!.pipe(merchant.stdin!);
merchant.stdin!.on('error', () => {});
const mem: Record<string, unknown> = await new Promise((resolve, reject) => {
  createInterface({ input: merchant.stdout! }).once('line', (l) => resolve(JSON.parse(l)));
  merchant.once('exit', (c) => reject(new Error(`memory run exited ${c}`)));
});
stopAll();

// --- report -----------------------------------------------------------------------------------
const f = (n: number) => n.toFixed(2);
console.log(
  `bench/proxy: ${ROUNDS} rounds of ${DURATION} s per target, interleaved, after ${WARMUP} s warm-ups; ` +
    `${CONNECTIONS} connections, by ${hasWrk ? 'wrk' : 'autocannon (install wrk for truer ratios)'}; ` +
    `billing server at ${bankPriority}, ${billingPaused ? 'stopped during each window' : 'running during the windows'}; ` +
    `${Math.round((Date.now() - started) / 1000)} s in all`,
);
/** A run's event-loop CPU per request, with its deferred deposit work. */
const loopUs = (r: Run) => r.threadsUs.loop + deferredUs(r);
const med: Record<string, { rps: number; cpuUs: number }> = {};
for (const t of targets) {
  const rs = runs[t.name]!;
  const cpu = (r: Run) => r.cpuUs + deferredUs(r);
  med[t.name] = { rps: median(rs.map((r) => charged(r))), cpuUs: median(rs.map(cpu)) };
  const bad = rs.reduce((a, r) => a + r.bad, 0);
  console.log(
    `  ${t.name.padEnd(17)} ${String(Math.round(med[t.name]!.rps)).padStart(6)} req/s median ` +
      `(${rs.map((r) => Math.round(charged(r))).join(', ')})  p99 ${median(rs.map((r) => r.p99))} ms  ` +
      `server CPU ${Math.round(med[t.name]!.cpuUs)} us/req` +
      (bad ? `  (${bad} non-2xx or errors!)` : ''),
  );
}
if (billingPaused) {
  const rs = runs['micropay paid']!;
  console.log(
    `  micropay paid, its deposits deferred past the window: ${Math.round(median(rs.map(deferredUs)))} us of event loop per request ` +
      `(in the rates above and below); in the window alone ${Math.round(median(rs.map((r) => r.rps)))} req/s`,
  );
}
const ratio = (a: string, b: string) => median(runs[a]!.map((r, i) => charged(r) / charged(runs[b]![i]!)));
console.log(
  `  free/plain-http-proxy ${f(ratio('micropay free', 'plain http-proxy'))} (goal >= 0.9; ` +
    `by server CPU per request ${f(med['plain http-proxy']!.cpuUs / med['micropay free']!.cpuUs)})`,
);
console.log(
  `  paid/free ${f(ratio('micropay paid', 'micropay free'))} (goal >= 0.45; ` +
    `by server CPU per request ${f(med['micropay free']!.cpuUs / med['micropay paid']!.cpuUs)})`,
);
{
  const both = ed25519.verify + ed25519.sign;
  console.log(
    `  Ed25519 alone, one thread, nothing else running: verify ${f(ed25519.verify)} us, sign ${f(ed25519.sign)} us. ` +
      `A paid request needs one of each (the order, its receipt): ${Math.round(both)} us, ` +
      `${f(both / med['micropay free']!.cpuUs)} times the proxy's whole CPU for a free request`,
  );
}
for (const name of ['micropay free', 'micropay paid']) {
  const rs = runs[name]!;
  const part = (k: 'loop' | 'busiest' | 'rest') =>
    Math.round(median(rs.map((r) => (k === 'loop' ? loopUs(r) : r.threadsUs[k]))));
  console.log(
    `  ${name} server CPU by thread (us/req, medians): event loop ${part('loop')}, ` +
      `busiest other thread ${part('busiest')}${name.endsWith('paid') ? ' (the crypto thread: verify and sign)' : ''}, ` +
      `the rest ${part('rest')} (V8's GC and compiler threads, libuv)`,
  );
}
const m = mem as unknown as {
  buyers: number;
  full: number;
  fullRate: number;
  modes: Record<string, number>;
  rssBaseMB: number;
  rssAtEndMB: number;
  rssPeakMB: number;
  rssSettledMB: number;
  settledAfterSeconds: number;
  settleSeconds: number;
  rssIdleMB: number[];
  heapUsedMB: number;
  seconds: number;
};
console.log(
  `  memory: ${m.buyers.toLocaleString('en')} distinct buyers' payments in ${m.seconds} s ` +
    `(${m.full.toLocaleString('en')} through core.handle at ${m.fullRate}/s, the rest through the store and deposit queue; ` +
    `${Object.entries(m.modes)
      .map(([k, v]) => `${v.toLocaleString('en')} ${k}`)
      .join(', ')}: past the memory store's 100,000 spend tallies a new credential is approved online)`,
);
console.log(
  `  RSS: ${m.rssSettledMB} MB settled (goal < 200 MB; live heap ${m.heapUsedMB} MB; ` +
    `reached ${m.settledAfterSeconds} s after the burst, read again each second to ${m.settleSeconds} s: ` +
    `${m.rssIdleMB.join(', ')} MB), ` +
    `${m.rssAtEndMB} MB right after the burst, peak ${m.rssPeakMB} MB, ${m.rssBaseMB} MB before the first payment`,
);
process.exit(0);
