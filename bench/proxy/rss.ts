/**
 * bench/proxy, memory: the proxy's merchant (the `MicropayCore` a
 * `createProxy` builds from a configuration with the default memory store)
 * takes 1,000,000 payments from distinct buyers (each its own credential,
 * sub and order) with deposits flowing to a billing stub, and reports its
 * RSS. Run in a process of its own (`--expose-gc`) by `index.ts`.
 *
 * Every payment costs two Ed25519 verifications and a receipt signature here
 * (plus the two signatures that make it), about 3,000 a second on one core:
 * so the first payments go through the whole path (`core.handle` with a
 * request and a response, the verifier, the store, the receipt, the queue)
 * for `BENCH_RSS_FULL_SECONDS` (default 15), which fills every bounded cache
 * of the verifier and the store; the rest go through the state that grows
 * with buyers (replay marks and spend tallies in the store, the deposit
 * queue, the batcher). `BENCH_RSS_FULL=1` sends all of them through the
 * whole path (about six minutes). The payments are made by `sign.ts` in
 * another process and read from stdin, one header per line, so this process
 * holds only what the merchant holds. `index.ts` runs this file bundled
 * (plain node, `--expose-gc`, no tsx loader thread). Prints one JSON line.
 */
import { randomBytes } from 'node:crypto';
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import pino from 'pino';
import type { MerchantBilling } from '../../src/middleware/core.js';
import { b64urlEncode } from '../../src/protocol/base64url.js';
import { signingKeyFromSeed } from '../../src/protocol/crypto.js';
import { StaticKeyResolver } from '../../src/protocol/keys.js';
import { parseProxyConfig } from '../../src/proxy/config.js';
import { createProxy } from '../../src/proxy/server.js';

const N = Number(process.env.BENCH_BUYERS ?? 1_000_000);
const FULL_MS =
  process.env.BENCH_RSS_FULL === '1' ? Infinity : Number(process.env.BENCH_RSS_FULL_SECONDS ?? 15) * 1000;
/**
 * How long the proxy sits idle after the burst before its RSS is read. V8 gives back the old
 * generation's emptied pages some seconds after a burst: read each second here, RSS stayed at 195 to
 * 215 MB (heap committed 103 MB) for 4 s, then fell to 164 MB (72 MB) at 6 s and stayed there to 16 s.
 * The 6 s this used to wait sat on that edge (201 MB in some runs, 164 to 168 in others).
 */
const SETTLE_SECONDS = Number(process.env.BENCH_RSS_SETTLE_SECONDS ?? 15);
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
const mb = (n: number) => Math.round(n / 1024 / 1024);

const t0 = Number(process.env.BENCH_T0);
// The merchant's clock moves one second per 1,000 payments, as if they arrived over 1,000 seconds.
let now = t0;
const bank = signingKeyFromSeed(process.env.BENCH_BANK_SEED!);
const keys = new StaticKeyResolver({
  issuer: 'bank-a',
  keys: [{ kid: 'k1', x: bank.x, nbf: 0, exp: t0 + 3 * 86_400 }],
  peers: [],
});
let deposited = 0;
let authorized = 0;
const billing: MerchantBilling = {
  keyResolver: () => keys,
  authorize: async () => {
    authorized++;
    return { status: 'approved', auth: 'bench-auth' };
  },
  deposit: async ({ batch, orders }) => {
    deposited += orders.length;
    return {
      batch,
      results: orders.map((_, i) => ({ oid: String(i), status: 'credited' as const })),
      credited: 0,
    };
  },
};

const config = parseProxyConfig(
  {
    listen: '127.0.0.1:0',
    merchant: 'news-site',
    billing: { url: 'http://127.0.0.1:9', token: 'unused' },
    upstream: 'http://127.0.0.1:9',
    routes: [{ match: 'GET /paid', price: '0.002 USD' }],
    deposits: { maxBatch: 1000, maxDelayMs: 100 },
    logLevel: 'silent',
  },
  'bench',
  {},
);
const proxy = createProxy(config, {
  billing,
  clock: () => now,
  logger: pino({ level: 'silent' }),
  processMetrics: false,
});
const core = proxy.core;
await core.ready();

const socket = new Socket();

// Payment headers from stdin, one per line; reading pauses while enough are waiting.
const waiting: string[] = [];
let partial = '';
let ended = false;
let wake: (() => void) | null = null;
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  const parts = (partial + chunk).split('\n');
  partial = parts.pop()!;
  for (const p of parts) waiting.push(p);
  if (waiting.length > 5000) process.stdin.pause();
  wake?.();
});
process.stdin.on('end', () => {
  ended = true;
  wake?.();
});
async function nextHeader(): Promise<string | null> {
  while (waiting.length === 0) {
    if (ended) return null;
    await new Promise<void>((r) => {
      wake = r;
    });
    wake = null;
  }
  if (waiting.length < 1000) process.stdin.resume();
  return waiting.shift()!;
}

gc();
const base = process.memoryUsage().rss;
let peak = base;
const sampler = setInterval(() => {
  peak = Math.max(peak, process.memoryUsage().rss);
}, 250);

const modes: Record<string, number> = {};
const start = performance.now();
let full = 0;
let i = 0;
for (; i < N && performance.now() - start < FULL_MS; i++) {
  now = t0 + Math.floor(i / 1000);
  const header = await nextHeader();
  if (header === null) break;
  const req = new IncomingMessage(socket);
  req.method = 'GET';
  req.url = '/paid';
  req.headers = { 'micropay-payment': header };
  const res = new ServerResponse(req);
  const o = await core.handle(req, res, '/paid');
  if (o.action !== 'paid' || o.info.kind !== 'order')
    throw new Error(`payment ${i} refused (${res.statusCode})`);
  modes[o.info.mode] = (modes[o.info.mode] ?? 0) + 1;
  res.writeHead(200); // the charge: receipt signed, order queued for deposit
  res.end();
  if (i % 200 === 0) await new Promise((r) => setImmediate(r));
}
full = i;
process.stdin.destroy(); // the maker stops at EPIPE
waiting.length = 0;
const fullSeconds = (performance.now() - start) / 1000;
gc();
const afterFull = process.memoryUsage().rss;

// The rest: what grows with buyers, with the accept the verifier makes (offline with a tally, or
// online with the replay mark only when the store has no room for another tally).
const store = core.store;
const queue = core.queue;
for (; i < N; i++) {
  now = t0 + Math.floor(i / 1000);
  const sub = `buyer-${i}`;
  const oid = b64urlEncode(randomBytes(16));
  const mark = { iss: 'bank-a', sub, oid, iat: now, replayTtl: 420 };
  const cid = b64urlEncode(randomBytes(32));
  let r = await store.accept({
    ...mark,
    tally: { cid, mer: 'news-site', amt: 2000, limit: 5_000_000, ttl: 86_400 },
  });
  let mode = 'offline';
  if (r === 'over_limit') {
    authorized++;
    r = await store.accept({ ...mark, tally: null });
    mode = 'online';
  }
  if (r !== 'accepted') throw new Error(`payment ${i}: ${r}`);
  modes[mode] = (modes[mode] ?? 0) + 1;
  // A deposit item of a real one's size: a credential (~440 characters) and an order (~330).
  await queue.append({
    cert: randomBytes(330).toString('base64url'),
    order: randomBytes(250).toString('base64url'),
  });
  if (i % 1000 === 0) {
    core.deposits?.notify();
    await new Promise((r) => setImmediate(r));
  }
}
core.deposits?.notify();
while ((await queue.size()) > 0) await new Promise((r) => setTimeout(r, 50));
clearInterval(sampler);
gc();
const mem = process.memoryUsage();
peak = Math.max(peak, mem.rss);
const rssAtEnd = mem.rss;
// V8 keeps the heap it grew during the burst until it is idle a while: measure again after a few
// idle seconds (a collection each second), which is where a proxy between bursts sits.
const idleRss: number[] = [];
for (let k = 0; k < SETTLE_SECONDS; k++) {
  await new Promise((r) => setTimeout(r, 1000));
  gc();
  idleRss.push(process.memoryUsage().rss);
}
const settled = process.memoryUsage();
// The first second from which RSS stayed within 2 MB of where it settled.
let settledAfter = idleRss.length;
while (settledAfter > 1 && Math.abs(idleRss[settledAfter - 2]! - settled.rss) <= 2 * 1024 * 1024)
  settledAfter--;
console.log(
  JSON.stringify({
    buyers: N,
    full,
    fullRate: Math.round(full / fullSeconds),
    modes,
    deposited,
    authorized,
    rssBaseMB: mb(base),
    rssAfterFullMB: mb(afterFull),
    rssAtEndMB: mb(rssAtEnd),
    rssPeakMB: mb(peak),
    rssSettledMB: mb(settled.rss),
    settledAfterSeconds: settledAfter,
    settleSeconds: SETTLE_SECONDS,
    rssIdleMB: idleRss.map(mb),
    heapUsedMB: mb(settled.heapUsed),
    heapTotalMB: mb(settled.heapTotal),
    seconds: Math.round((performance.now() - start) / 1000),
  }),
);
await proxy.close();
