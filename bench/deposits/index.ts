/**
 * bench/deposits: ingest of deposit batches of 1000 pre-signed orders over
 * HTTP into a billing server running in a child process (so the server has
 * one core to itself and the client's work is not charged to it; every
 * order's signature is re-verified and each batch committed in one
 * transaction), on SQLite and, when reachable, PostgreSQL. Prints orders/s
 * and the ratio to the raw verify rate (decoding each order token and
 * checking its Ed25519 signature in a loop, the least any verifier does)
 * measured in the same run, batch by batch in alternation with the ingest:
 * the machine is shared, so only ratios mean anything. Both are given per
 * wall-clock second and per CPU-second (of the server process, and of this
 * one for the raw loop): under contention from other processes only the
 * per-core (CPU) figures compare like with like. Goal: >= 0.8 on SQLite.
 *
 *   npx tsx bench/deposits/index.ts      (env: BENCH_BATCHES=12, BENCH_PG=postgres://..., BENCH_ONLY=sqlite)
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { type BillingServerOptions, createBillingServer } from '../../src/billing-server/index.js';
import {
  decodeToken,
  generateSigningKey,
  type Order,
  type SigningKey,
  signToken,
  tid,
  verifySignature,
} from '../../src/protocol/index.js';

const BATCH = 1000;
const BATCHES = Number(process.env.BENCH_BATCHES ?? 12);
const WARMUP = 2;
const BUYERS = 50;
const PG_URL =
  process.env.BENCH_PG ?? process.env.MICROPAY_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';

function reachable(url: string): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = net.connect({ host: u.hostname, port: Number(u.port || 5432) });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

async function post(
  url: string,
  token: string,
  p: string,
  body: unknown,
): Promise<{ status: number; json: unknown }> {
  const r = await fetch(url + p, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: r.status, json: await r.json() };
}

/** The child: runs one billing server and tells the parent its URL and admin token. */
async function serveInChild(): Promise<void> {
  const opts = JSON.parse(process.env.BENCH_SERVER_OPTS!) as BillingServerOptions;
  const server = await createBillingServer({ ...opts, logger: false });
  const url = await server.listen(0, '127.0.0.1');
  process.send!({ url, admin: server.adminToken });
  process.on('message', async (m) => {
    if (m === 'cpu') {
      const u = process.cpuUsage();
      process.send!({ cpu: (u.user + u.system) / 1e6 });
      return;
    }
    await server.close();
    process.exit(0);
  });
}

/** CPU seconds (user + system) the server child has used so far. */
function childCpu(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve((m as { cpu: number }).cpu));
    child.send('cpu');
  });
}

/** CPU seconds (user + system) this process has used so far. */
function ownCpu(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Starts a billing server in a child process. */
async function startChild(
  opts: BillingServerOptions,
): Promise<{ url: string; admin: string; child: ChildProcess }> {
  const child = fork(fileURLToPath(import.meta.url), [], {
    execArgv: ['--import', 'tsx', ...(process.env.BENCH_CHILD_ARGS ?? '').split(' ').filter(Boolean)],
    env: { ...process.env, BENCH_ROLE: 'server', BENCH_SERVER_OPTS: JSON.stringify(opts) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const hello = await new Promise<{ url: string; admin: string }>((resolve, reject) => {
    child.once('message', (m) => resolve(m as { url: string; admin: string }));
    child.once('exit', (code) => reject(new Error(`the server child exited (${code})`)));
  });
  return { ...hello, child };
}

interface Run {
  name: string;
  /** Wall clock: orders credited per second of request time, and raw verifications per second. */
  ordersPerSecond: number;
  rawPerSecond: number;
  /** Per core: orders per CPU-second of the server process, and raw verifications per CPU-second. */
  ordersPerCpuSecond: number;
  rawPerCpuSecond: number;
  credited: number;
}

/** Wall and CPU seconds to decode each order and check its signature with the buyer's imported key. */
function rawVerifySeconds(orders: { order: string; key: SigningKey }[]): { wall: number; cpu: number } {
  let ok = 0;
  const c0 = ownCpu();
  const t0 = process.hrtime.bigint();
  for (const o of orders) if (verifySignature(decodeToken(o.order, 'mp-order'), o.key.publicKey)) ok++;
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = ownCpu() - c0;
  if (ok !== orders.length) throw new Error('raw verify failed');
  return { wall, cpu };
}

async function runOn(
  name: string,
  db: Partial<BillingServerOptions>,
  cleanup: () => Promise<void>,
): Promise<Run> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'micropay-bench-'));
  const { url, admin, child } = await startChild({
    issuer: 'bank-a',
    keyDir: path.join(dir, 'keys'),
    db: path.join(dir, 'billing.db'),
    ...db,
  });
  try {
    const mer = await post(url, admin, '/v1/admin/accounts', {
      id: 'news',
      role: 'merchant',
      currency: 'USD',
      commissionBps: 250,
    });
    const merToken = (mer.json as { token: string }).token;
    const buyers: { cert: string; cid: string; key: SigningKey }[] = [];
    for (let i = 0; i < BUYERS; i++) {
      const a = await post(url, admin, '/v1/admin/accounts', {
        id: `buyer${i}`,
        role: 'buyer',
        currency: 'USD',
        creditLimit: 1e12,
      });
      const key = generateSigningKey();
      const c = await post(url, (a.json as { token: string }).token, '/v1/certificates', { key: key.x });
      const cert = (c.json as { cert: string }).cert;
      buyers.push({ cert, cid: tid(cert), key });
    }
    const now = Math.floor(Date.now() / 1000);
    const all: { cert: string; order: string; key: SigningKey }[] = [];
    for (let i = 0; i < BATCH * (BATCHES + WARMUP); i++) {
      const b = buyers[i % BUYERS]!;
      const o: Order = {
        typ: 'mp-order',
        v: 1,
        cid: b.cid,
        mer: 'news',
        res: `GET /articles/${i % 997}?utm_source=newsletter`,
        amt: 1000 + (i % 5000),
        cur: 'USD',
        iat: now,
        oid: randomBytes(16).toString('base64url'),
      };
      all.push({ cert: b.cert, order: signToken(o, b.key), key: b.key });
    }
    // Serialized before timing: building the request is the client's work, not the server's.
    const bodies = Array.from({ length: BATCHES + WARMUP }, (_, i) =>
      JSON.stringify({
        batch: `bench-${i}`,
        orders: all.slice(i * BATCH, (i + 1) * BATCH).map(({ cert, order }) => ({ cert, order })),
      }),
    );
    let credited = 0;
    let ingestSeconds = 0;
    let ingestCpu = 0;
    let rawSeconds = 0;
    let rawCpu = 0;
    // Alternate raw verification and ingest batch by batch, so both see the same machine load.
    for (let i = 0; i < bodies.length; i++) {
      const raw = rawVerifySeconds(all.slice(i * BATCH, (i + 1) * BATCH));
      const c0 = await childCpu(child);
      const t0 = process.hrtime.bigint();
      const r = await post(url, merToken, '/v1/deposits', bodies[i]);
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      const cpu = (await childCpu(child)) - c0;
      if (r.status !== 200)
        throw new Error(`deposit answered ${r.status}: ${JSON.stringify(r.json).slice(0, 300)}`);
      const n = (r.json as { results: { status: string }[] }).results.filter(
        (x) => x.status === 'credited',
      ).length;
      if (n !== BATCH) throw new Error(`only ${n} of ${BATCH} orders credited`);
      if (i >= WARMUP) {
        credited += n;
        ingestSeconds += s;
        ingestCpu += cpu;
        rawSeconds += raw.wall;
        rawCpu += raw.cpu;
      }
    }
    const run: Run = {
      name,
      ordersPerSecond: credited / ingestSeconds,
      rawPerSecond: credited / rawSeconds,
      ordersPerCpuSecond: credited / ingestCpu,
      rawPerCpuSecond: credited / rawCpu,
      credited,
    };
    const f = (n: number) => n.toFixed(0).padStart(6);
    console.log(
      `${name.padEnd(9)} wall: ingest ${f(run.ordersPerSecond)} orders/s, raw verify ${f(run.rawPerSecond)}/s, ratio ${(run.ordersPerSecond / run.rawPerSecond).toFixed(2)}   ` +
        `per core: ingest ${f(run.ordersPerCpuSecond)} orders/CPU-s, raw verify ${f(run.rawPerCpuSecond)}/CPU-s, ratio ${(run.ordersPerCpuSecond / run.rawPerCpuSecond).toFixed(2)}   ` +
        `(${credited} orders, ${BATCHES} batches of ${BATCH} after ${WARMUP} warm-up)`,
    );
    return run;
  } finally {
    await new Promise((resolve) => {
      child.once('exit', resolve);
      child.send('close');
    });
    await cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const runs: Run[] = [];
  runs.push(await runOn('sqlite', {}, async () => {}));
  if (process.env.BENCH_ONLY === 'sqlite') {
    console.log('postgres  skipped (BENCH_ONLY=sqlite)');
  } else if (await reachable(PG_URL)) {
    const schema = `bench_${randomBytes(5).toString('hex')}`;
    runs.push(
      await runOn('postgres', { db: PG_URL, pgSchema: schema }, async () => {
        const c = new pg.Client({ connectionString: PG_URL });
        await c.connect();
        await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        await c.end();
      }),
    );
  } else {
    console.log(`postgres  skipped: ${PG_URL} is not reachable (set BENCH_PG)`);
  }
  // The goal is judged per core (CPU time): on a shared machine wall-clock rates of two processes are not comparable.
  const cpuRatio = (r: Run) => r.ordersPerCpuSecond / r.rawPerCpuSecond;
  const wallRatio = (r: Run) => r.ordersPerSecond / r.rawPerSecond;
  const sqlite = runs[0]!;
  console.log(
    `SUMMARY deposits: ${runs
      .map(
        (r) =>
          `${r.name} ${r.ordersPerCpuSecond.toFixed(0)} orders/CPU-s = ${cpuRatio(r).toFixed(2)} x raw verify per core (wall ${r.ordersPerSecond.toFixed(0)} orders/s = ${wallRatio(r).toFixed(2)})`,
      )
      .join('; ')}; goal sqlite >= 0.80 per core: ${cpuRatio(sqlite) >= 0.8 ? 'MET' : 'NOT MET'}`,
  );
}

if (process.env.BENCH_ROLE === 'server') await serveInChild();
else await main();
