/**
 * A Redis that may evict keys is named at start: an evicted replay mark lets
 * an order be paid twice, an evicted stream loses deposits. A second
 * redis-server of its own (maxmemory set, `allkeys-lru`) stands for a
 * misconfigured one; the suite's Redis (no maxmemory) draws no warning.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MicropayCore } from '../../src/middleware/core.js';
import { RedisDepositQueue, RedisPaymentStore } from '../../src/stores/redis.js';
import { redisUrl } from '../helpers/services.js';
import { eventually, startWorld, type World } from '../helpers/world.js';

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe.skipIf(!redisUrl)('a Redis that may evict keys', () => {
  let child: ChildProcess;
  let evicting: string;
  let world: World;
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    const port = await freePort();
    evicting = `redis://127.0.0.1:${port}`;
    child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'].concat([
        '--maxmemory',
        '64mb',
        '--maxmemory-policy',
        'allkeys-lru',
      ]),
      { stdio: 'ignore' },
    );
    const failed = new Promise<never>((_, reject) => {
      child.once('error', (e) => reject(new Error(`cannot start redis-server for this test: ${e.message}`)));
    });
    const probe = new RedisPaymentStore({ url: evicting });
    await Promise.race([eventually(async () => (await probe.spent('x', 'y')) === 0, 10_000, 50), failed]);
    await probe.close();
    world = await startWorld();
  });
  afterAll(async () => {
    await Promise.allSettled(closers.map((c) => c()));
    child?.kill();
    await world?.close();
  });

  it('the store and the queue say so, in a sentence that names the fix', async () => {
    const store = new RedisPaymentStore({ url: evicting });
    const queue = new RedisDepositQueue({ url: evicting });
    closers.push(
      () => store.close(),
      () => queue.close(),
    );
    for (const ws of [await store.warnings(), await queue.warnings()]) {
      expect(ws).toHaveLength(1);
      expect(ws[0]).toMatch(/maxmemory-policy allkeys-lru/);
      expect(ws[0]).toMatch(/paid twice/);
      expect(ws[0]).toMatch(/Set maxmemory-policy noeviction/);
    }
  });

  it("the suite's Redis, without maxmemory, draws none", async () => {
    const store = new RedisPaymentStore({ url: redisUrl! });
    closers.push(() => store.close());
    expect(await store.warnings()).toEqual([]);
  });

  it('the merchant logs it once when it connects (store and queue share the Redis)', async () => {
    const lines: { level: number; msg: string }[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const store = new RedisPaymentStore({ url: evicting });
    const queue = new RedisDepositQueue({ url: evicting });
    const core = new MicropayCore({
      merchant: world.merchant.id,
      billing: { url: world.url, token: world.merchant.token },
      prices: { 'GET /a': '0.001 USD' },
      store,
      queue,
      logger,
    });
    closers.push(
      () => core.close(),
      () => store.close(),
      () => queue.close(),
    );
    await core.ready();
    await eventually(() => lines.some((l) => /maxmemory-policy/.test(l.msg)));
    await new Promise((r) => setTimeout(r, 100));
    const warned = lines.filter((l) => /maxmemory-policy/.test(l.msg));
    expect(warned).toHaveLength(1);
    expect(warned[0]!.level).toBe(40);
    expect(warned[0]!.msg).toMatch(/^micropay: Redis has maxmemory \d+ with maxmemory-policy allkeys-lru/);
  });
});
