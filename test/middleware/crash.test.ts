/**
 * A merchant process SIGKILLed mid-batch, with a real billing server and
 * Redis, then restarted on the same Redis queue: the merchant's balance ends
 * exactly at the charged orders minus commission, nothing lost, nothing twice.
 *
 * A small forwarding gate stands between the merchant and the billing server.
 * While it "holds", it forwards a deposit and lets the billing server credit
 * it, but keeps the answer from the merchant: the process dies with a batch
 * credited but not acknowledged (pending in the consumer group) and further
 * orders queued but not yet claimed. The next process must claim the first
 * (same entries, same batch id: the billing server answers it again, crediting
 * nothing twice) and deposit the rest.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Offer } from '../../src/protocol/messages.js';
import { redisUrl } from '../helpers/services.js';
import { eventually, startWorld, type World } from '../helpers/world.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FIXTURE = fileURLToPath(new URL('../fixtures/middleware/merchant.ts', import.meta.url));
const N = 57; // not a multiple of maxBatch (20): the last orders wait for the 2 s window
const CLAIM_TIMEOUT_MS = 3000;
const amountOf = (i: number) => 1000 + 37 * i; // varied, so each fee is rounded down on its own
const feeOf = (amt: number) => Math.floor((amt * 500) / 10_000);

interface Merchant {
  child: ChildProcess;
  url: string;
  exited: Promise<number | null>;
  stderr: () => string;
}

const children = new Set<ChildProcess>();

function startMerchant(env: Record<string, string>): Promise<Merchant> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
    cwd: ROOT,
    env: { ...process.env, ...env, NODE_ENV: 'test' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      children.delete(child);
      resolve(code);
    });
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`merchant did not start in time: ${err}`)), 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (!line) return;
      clearTimeout(timer);
      const { port } = JSON.parse(line) as { port: number };
      resolve({ child, url: `http://127.0.0.1:${port}`, exited, stderr: () => err });
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`merchant exited (${code}) before listening: ${err}`));
    });
  });
}

interface HeldDeposit {
  batch: string;
  orders: number;
  credited: number;
}

/** Forwards everything to the billing server; while `hold` is set, deposit answers are kept from the caller. */
interface Gate {
  server: Server;
  url: string;
  /** Deposits credited at the billing server whose answers were kept from the merchant. */
  held: HeldDeposit[];
  /** Batch ids of every deposit posted through the gate, in order. */
  posted: string[];
  hold: boolean;
}

function startGate(target: string): Promise<Gate> {
  const t = new URL(target);
  const gate: Gate = { server: null as unknown as Server, url: '', held: [], posted: [], hold: false };
  gate.server = createServer((req, res) => {
    const body: Buffer[] = [];
    req.on('data', (c: Buffer) => body.push(c));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v1/deposits')
        gate.posted.push((JSON.parse(Buffer.concat(body).toString()) as { batch: string }).batch);
      const up = httpRequest(
        { host: t.hostname, port: t.port, path: req.url, method: req.method, headers: req.headers },
        (ur: IncomingMessage) => {
          const chunks: Buffer[] = [];
          ur.on('data', (c: Buffer) => chunks.push(c));
          ur.on('end', () => {
            const answer = Buffer.concat(chunks);
            if (gate.hold && req.method === 'POST' && req.url === '/v1/deposits' && ur.statusCode === 200) {
              const a = JSON.parse(answer.toString()) as {
                batch: string;
                results: unknown[];
                credited: number;
              };
              gate.held.push({ batch: a.batch, orders: a.results.length, credited: a.credited });
              return; // credited at the billing server; the merchant never hears of it
            }
            res.writeHead(ur.statusCode ?? 502, ur.headers);
            res.end(answer);
          });
        },
      );
      up.on('error', () => res.destroy());
      up.end(Buffer.concat(body));
    });
  });
  return new Promise((resolve) => {
    gate.server.listen(0, '127.0.0.1', () => {
      gate.url = `http://127.0.0.1:${(gate.server.address() as AddressInfo).port}`;
      resolve(gate);
    });
  });
}

describe.skipIf(!redisUrl)('a merchant process SIGKILLed mid-batch, then restarted', () => {
  const prefix = `mp-test-crash-${process.pid}-${randomBytes(4).toString('hex')}:`;
  const stream = `${prefix}{deposits}`;
  let world: World;
  let redis: Redis;
  let gate: Gate;
  let env: Record<string, string>;

  beforeAll(async () => {
    world = await startWorld();
    redis = new Redis(redisUrl!);
    gate = await startGate(world.url);
    env = {
      MICROPAY_BILLING_URL: gate.url,
      MICROPAY_MERCHANT_TOKEN: world.merchant.token,
      MICROPAY_REDIS_URL: redisUrl!,
      MICROPAY_REDIS_PREFIX: prefix,
      MICROPAY_CLAIM_TIMEOUT_MS: String(CLAIM_TIMEOUT_MS),
    };
  });

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    if (gate) {
      gate.server.closeAllConnections();
      await new Promise<void>((r) => gate.server.close(() => r()));
    }
    if (redis) {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
        if (keys.length > 0) await redis.del(...keys);
        cursor = next;
      } while (cursor !== '0');
      redis.disconnect();
    }
    await world?.close();
  });

  const balance = async () => (await world.admin.admin.getAccount('news-site')).balance;

  async function pay(m: Merchant, i: number): Promise<string> {
    const path = `/items/${amountOf(i)}`;
    const challenge = await fetch(`${m.url}${path}`);
    expect(challenge.status).toBe(402);
    const { offer } = (await challenge.json()) as { offer: Offer };
    const header = world.buyer.pay(offer);
    const r = await fetch(`${m.url}${path}`, { headers: { 'Micropay-Payment': header } });
    expect(r.status).toBe(200);
    expect(r.headers.get('micropay-receipt')).toBeTruthy();
    await r.arrayBuffer();
    return header;
  }

  it('loses nothing and credits nothing twice', async () => {
    const first = await startMerchant(env);
    gate.hold = true;
    const headers: string[] = [];
    // A few at a time, as browsers would.
    for (let i = 0; i < N; i += 6) {
      const wave = Array.from({ length: Math.min(6, N - i) }, (_, k) => i + k);
      headers.push(...(await Promise.all(wave.map((j) => pay(first, j)))));
    }
    // The first full batch went out and was credited; its answer is held. Kill the merchant now,
    // before the 2 s window of the last orders has elapsed.
    await eventually(() => gate.held.length === 1, 5000);
    first.child.kill('SIGKILL');
    await first.exited;
    const held = gate.held[0]!;
    expect(held.orders).toBeGreaterThan(0);
    expect(held.orders).toBeLessThan(N);
    expect(held.credited).toBeGreaterThan(0);
    expect(await balance()).toBe(held.credited);
    // What the dead process left: every order still in the stream, the held batch pending with its
    // consumer (credited, never acknowledged), the others queued and never sent.
    expect(await redis.xlen(stream)).toBe(N);
    const [pending] = (await redis.xpending(stream, 'depositors')) as [number, ...unknown[]];
    expect(pending).toBe(held.orders);
    expect(gate.posted).toEqual([held.batch]);
    gate.hold = false;
    const postedBefore = gate.posted.length;

    const second = await startMerchant(env);
    // Replay marks are in Redis: the dead process's orders stay spent.
    const replay = await fetch(`${second.url}/items/${amountOf(0)}`, {
      headers: { 'Micropay-Payment': headers[0]! },
    });
    expect(replay.status).toBe(402);
    expect(((await replay.json()) as { error: string }).error).toBe('replayed_order');

    // The new process deposits the unclaimed orders at once and, once the claim timeout has passed,
    // takes over the batch the dead one left pending, with no paid request to wake it.
    const expected = Array.from({ length: N }, (_, i) => amountOf(i) - feeOf(amountOf(i))).reduce(
      (s, x) => s + x,
      0,
    );
    await eventually(async () => (await balance()) === expected && (await redis.xlen(stream)) === 0, 15_000);

    // The held batch went out again under its own id: the billing server answered it as before.
    expect(gate.posted.slice(postedBefore)).toContain(held.batch);

    // After the restart: paid requests still work, and SIGTERM drains them before exiting.
    const after = [N, N + 1, N + 2];
    await Promise.all(after.map((i) => pay(second, i)));
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    expect(second.stderr()).not.toContain(world.merchant.token);
    const total = [...Array.from({ length: N }, (_, i) => i), ...after]
      .map((i) => amountOf(i) - feeOf(amountOf(i)))
      .reduce((s, x) => s + x, 0);
    expect(await balance()).toBe(total);
    expect(await redis.xlen(stream)).toBe(0);

    // The ledger: the buyer has one entry per order (whatever the merchant's entries look like), each
    // order once; the merchant's entries add up to its balance; the held batch was credited once.
    const bought = [];
    for await (const e of world.buyer.client.allEntries()) if (e.kind === 'order') bought.push(e);
    expect(bought).toHaveLength(N + after.length);
    expect(new Set(bought.map((e) => e.oid)).size).toBe(N + after.length);
    expect(bought.every((e) => e.counterparty === 'news-site')).toBe(true);
    expect(bought.filter((e) => e.batch === held.batch)).toHaveLength(held.orders);
    let sum = 0;
    for await (const e of world.merchant.client.allEntries()) sum += e.amount;
    expect(sum).toBe(total);
  });
});
