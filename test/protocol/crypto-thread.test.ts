import { spawnSync } from 'node:child_process';
import { randomBytes, sign, verify } from 'node:crypto';
import type { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { generateSigningKey } from '../../src/protocol/crypto.js';
import { CryptoThread } from '../../src/protocol/crypto-thread.js';

const threads: CryptoThread[] = [];
/**
 * A thread that has started (jobs sent before that are done on the event loop) and takes every
 * job, however idle the event loop (unless `options` say otherwise).
 */
async function thread(options?: ConstructorParameters<typeof CryptoThread>[0]): Promise<CryptoThread> {
  const t = new CryptoThread({ inlineBelow: 0, ...options });
  threads.push(t);
  await t.start();
  return t;
}
afterEach(async () => {
  await Promise.all(threads.splice(0).map((t) => t.close()));
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const worker = (t: CryptoThread) => (t as unknown as { worker: Worker | null }).worker;

describe('CryptoThread', () => {
  it('verifies exactly as node:crypto does, good and tampered signatures alike', async () => {
    const t = await thread();
    const keys = Array.from({ length: 5 }, () => generateSigningKey());
    const cases = Array.from({ length: 300 }, (_, i) => {
      const k = keys[i % keys.length]!;
      const data = randomBytes(20 + (i % 200));
      const sig = sign(null, data, k.privateKey);
      if (i % 3 === 1) sig[i % 64]! ^= 1 << (i % 8); // a flipped bit
      if (i % 3 === 2) data[0]! ^= 0xff; // other data
      return { k, data, sig, want: verify(null, data, k.publicKey, sig) };
    });
    const got = await Promise.all(cases.map((c) => t.verify(c.data, c.sig, c.k.publicKey)));
    expect(got).toEqual(cases.map((c) => c.want));
    expect(got.filter(Boolean)).toHaveLength(100);
    expect(t.stats.fallbacks).toBe(0);
  });

  it('signs the same bytes as node:crypto (Ed25519 is deterministic)', async () => {
    const t = await thread();
    const a = generateSigningKey();
    const b = generateSigningKey();
    const data = Array.from({ length: 50 }, () => randomBytes(100));
    const sigs = await Promise.all(data.map((d, i) => t.sign(d, (i % 2 ? a : b).privateKey)));
    sigs.forEach((s, i) => {
      expect(Buffer.from(s)).toEqual(sign(null, data[i]!, (i % 2 ? a : b).privateKey));
    });
  });

  it('takes texts as tokens carry them (ASCII, base64url signature) on the thread and on the event loop', async () => {
    const k = generateSigningKey();
    const texts = Array.from(
      { length: 40 },
      (_, i) => `micropay-v1:mp-order:${randomBytes(30 + i).toString('base64url')}`,
    );
    const want = texts.map((x) => sign(null, Buffer.from(x), k.privateKey).toString('base64url'));
    const check = async (t: CryptoThread) => {
      expect(await Promise.all(texts.map((x) => t.signText(x, k.privateKey)))).toEqual(want);
      const ok = await Promise.all(texts.map((x, i) => t.verifyText(x, want[i]!, k.publicKey)));
      expect(ok).toEqual(Array(texts.length).fill(true));
      // Another text, or another signature: false, never a throw.
      expect(await t.verifyText(`${texts[0]!}x`, want[0]!, k.publicKey)).toBe(false);
      expect(await t.verifyText(texts[0]!, want[1]!, k.publicKey)).toBe(false);
    };
    const started = await thread();
    await check(started);
    expect(started.stats.jobs).toBe(82);
    expect(started.stats.fallbacks).toBe(0);
    // Before its thread is up, the same jobs are done on the event loop.
    const starting = new CryptoThread({ inlineBelow: 0 });
    threads.push(starting);
    await check(starting);
    expect(starting.stats.fallbacks).toBeGreaterThan(0);
  });

  it('sends the jobs of one tick in one batch: an order check and its receipt share a trip', async () => {
    const t = await thread();
    const k = generateSigningKey();
    const data = randomBytes(64);
    const sig = sign(null, data, k.privateKey);
    const [ok, s] = await Promise.all([t.verify(data, sig, k.publicKey), t.sign(data, k.privateKey)]);
    expect(ok).toBe(true);
    expect(Buffer.from(s)).toEqual(sig);
    expect(t.stats).toEqual({ batches: 1, jobs: 2, fallbacks: 0, inline: 0, keys: 2 });
  });

  it('gathers the jobs that wait behind a full window into the next batch', async () => {
    const t = await thread({ maxInFlight: 1 });
    const k = generateSigningKey();
    const data = randomBytes(64);
    const sig = sign(null, data, k.privateKey);
    const first = t.verify(data, sig, k.publicKey);
    await new Promise((r) => setImmediate(r)); // the first batch is on its way
    const rest: Promise<boolean>[] = [];
    for (let i = 0; i < 10; i++) {
      rest.push(t.verify(data, sig, k.publicKey));
      await Promise.resolve();
    }
    expect(await first).toBe(true);
    expect(await Promise.all(rest)).toEqual(Array(10).fill(true));
    expect(t.stats.batches).toBe(2);
  });

  it('splits a large backlog into batches of at most 512 jobs', async () => {
    const t = await thread();
    const k = generateSigningKey();
    const data = randomBytes(64);
    const sig = sign(null, data, k.privateKey);
    const all = await Promise.all(Array.from({ length: 1300 }, () => t.verify(data, sig, k.publicKey)));
    expect(all.every(Boolean)).toBe(true);
    expect(t.stats).toEqual({ batches: 3, jobs: 1300, fallbacks: 0, inline: 0, keys: 1 });
  });

  it('sends each key to the thread once, by id after that, and again to a new thread', async () => {
    const t = await thread();
    const keys = Array.from({ length: 3 }, () => generateSigningKey());
    const sent: unknown[][] = [];
    const w = worker(t)!;
    const post = w.postMessage.bind(w);
    w.postMessage = (m: { keys: unknown[] }) => {
      sent.push(m.keys);
      post(m);
    };
    for (let round = 0; round < 3; round++) {
      const data = randomBytes(50);
      const sigs = await Promise.all(keys.map((k) => t.sign(data, k.privateKey)));
      expect(sigs.map((s) => Buffer.from(s))).toEqual(keys.map((k) => sign(null, data, k.privateKey)));
      const oks = await Promise.all(keys.map((k, i) => t.verify(data, sigs[i]!, k.publicKey)));
      expect(oks).toEqual([true, true, true]);
    }
    // Three private keys in the first batch, three public ones in the second; nothing after.
    expect(sent.map((k) => k.length / 2)).toEqual([3, 3, 0, 0, 0, 0]);
    expect(t.stats.keys).toBe(6);
    await w.terminate();
    await sleep(20);
    const data = randomBytes(50);
    const s = await t.sign(data, keys[0]!.privateKey); // done here while a new thread starts
    expect(Buffer.from(s)).toEqual(sign(null, data, keys[0]!.privateKey));
    await t.start();
    expect(await t.verify(data, s, keys[0]!.publicKey)).toBe(true);
    expect(t.stats.keys).toBe(1); // the new thread got the one key it was asked to use
  });

  it('holds at most 4,096 keys in the thread, the most recently used, and sends a dropped one again', async () => {
    const t = await thread();
    const keys = Array.from({ length: 4200 }, () => generateSigningKey()); // all alive here
    const data = randomBytes(40);
    for (let i = 0; i < keys.length; i += 500) {
      const part = keys.slice(i, i + 500);
      const sigs = await Promise.all(part.map((k) => t.sign(data, k.privateKey)));
      expect(sigs.map((s) => Buffer.from(s))).toEqual(part.map((k) => sign(null, data, k.privateKey)));
    }
    expect(t.stats.keys).toBeLessThanOrEqual(4096);
    // The first keys were dropped there; they are sent again and still sign rightly.
    const again = await Promise.all(keys.slice(0, 10).map((k) => t.sign(data, k.privateKey)));
    expect(again.map((s) => Buffer.from(s))).toEqual(
      keys.slice(0, 10).map((k) => sign(null, data, k.privateKey)),
    );
    expect(t.stats.keys).toBe(4096);
    expect(t.stats.fallbacks).toBe(0);
  });

  it('drops from the thread the keys collected here', async () => {
    const script = `
      import { setFlagsFromString } from 'node:v8';
      import { runInNewContext } from 'node:vm';
      import { randomBytes, sign } from 'node:crypto';
      import { CryptoThread } from './src/protocol/crypto-thread.ts';
      import { generateSigningKey } from './src/protocol/crypto.ts';
      setFlagsFromString('--expose-gc');
      const gc = runInNewContext('gc');
      const t = new CryptoThread({ inlineBelow: 0 });
      await t.start();
      const data = randomBytes(32);
      const keep = generateSigningKey();
      await Promise.all(Array.from({ length: 50 }, () => t.sign(data, generateSigningKey().privateKey)));
      const before = t.stats.keys;
      for (let i = 0; i < 20 && t.stats.keys > 1; i++) {
        gc();
        await new Promise((r) => setTimeout(r, 20));
        await t.sign(data, keep.privateKey); // carries the ids to forget
      }
      const s = await t.sign(data, keep.privateKey);
      console.log(before, t.stats.keys, Buffer.from(s).equals(sign(null, data, keep.privateKey)));
      await t.close();
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('50 1 true');
  });

  it('takes views of larger buffers (only the view travels)', async () => {
    const t = await thread();
    const k = generateSigningKey();
    const big = randomBytes(8192);
    const data = big.subarray(100, 300);
    const sig = Buffer.concat([randomBytes(10), sign(null, data, k.privateKey)]).subarray(10);
    expect(await t.verify(data, sig, k.publicKey)).toBe(true);
  });

  it('finishes the jobs of a thread that dies on the event loop, then starts a new one', async () => {
    const t = await thread();
    const k = generateSigningKey();
    // Enough work (tens of ms) that the thread is still busy when it is killed.
    const data = Array.from({ length: 400 }, () => randomBytes(100));
    const pending = data.map((d) => t.sign(d, k.privateKey));
    await new Promise((r) => setImmediate(r));
    const w = worker(t)!;
    expect(w).not.toBeNull();
    await w.terminate();
    const sigs = await Promise.all(pending);
    for (const [i, s] of sigs.entries()) expect(Buffer.from(s)).toEqual(sign(null, data[i]!, k.privateKey));
    // A new thread takes the next job.
    const again = await t.sign(data[0]!, k.privateKey);
    expect(Buffer.from(again)).toEqual(sigs[0]);
    expect(worker(t)).not.toBe(w);
    expect(t.stats.fallbacks).toBeGreaterThan(0);
  });

  it('does the jobs of a thread still starting on the event loop, then uses the thread', async () => {
    const t = new CryptoThread({ inlineBelow: 0 });
    threads.push(t);
    const k = generateSigningKey();
    const data = randomBytes(64);
    const sig = sign(null, data, k.privateKey);
    expect(await t.verify(data, sig, k.publicKey)).toBe(true);
    expect(t.stats).toEqual({ batches: 0, jobs: 0, fallbacks: 1, inline: 0, keys: 0 });
    await t.start();
    expect(await t.verify(data, sig, k.publicKey)).toBe(true);
    expect(t.stats).toEqual({ batches: 1, jobs: 1, fallbacks: 1, inline: 0, keys: 1 });
  });

  it('does the jobs of one or two requests on an event loop that is not busy, bigger batches on the thread', async () => {
    const t = await thread({ inlineBelow: 0.35 });
    const k = generateSigningKey();
    const data = randomBytes(64);
    const sig = sign(null, data, k.privateKey);
    await sleep(120); // a window of an idle event loop
    expect(await t.verify(data, sig, k.publicKey)).toBe(true);
    expect(Buffer.from(await t.sign(data, k.privateKey))).toEqual(sig);
    expect(t.stats).toMatchObject({ jobs: 0, inline: 2 });
    // More than 4 jobs at once (requests arriving together) go to the thread all the same.
    const five = await Promise.all(Array.from({ length: 5 }, () => t.verify(data, sig, k.publicKey)));
    expect(five).toEqual([true, true, true, true, true]);
    expect(t.stats).toMatchObject({ jobs: 5, inline: 2 });
  });

  it('sends even single jobs to the thread while the event loop is busy, and takes them back when it is not', async () => {
    const t = await thread({ inlineBelow: 0.35 });
    const k = generateSigningKey();
    const data = randomBytes(64);
    const sig = sign(null, data, k.privateKey);
    await sleep(120);
    expect(await t.verify(data, sig, k.publicKey)).toBe(true);
    expect(t.stats).toMatchObject({ jobs: 0, inline: 1 });
    // 150 ms of a window with the loop busy all along.
    const until = performance.now() + 150;
    while (performance.now() < until);
    expect(await t.verify(data, sig, k.publicKey)).toBe(true);
    expect(t.stats).toMatchObject({ jobs: 1, inline: 1 });
    await sleep(120);
    expect(await t.verify(data, sig, k.publicKey)).toBe(true);
    expect(t.stats).toMatchObject({ jobs: 1, inline: 2 });
  });

  it('rejects a signature with a key that cannot sign, rather than resolving garbage', async () => {
    const t = await thread();
    const k = generateSigningKey();
    await expect(t.sign(randomBytes(10), k.publicKey)).rejects.toThrow();
  });

  it('keeps a process alive while a job is in flight, and lets it exit when idle', () => {
    const script = `
      import { CryptoThread } from './src/protocol/crypto-thread.ts';
      import { generateSigningKey } from './src/protocol/crypto.ts';
      import { sign } from 'node:crypto';
      const k = generateSigningKey();
      const data = Buffer.from('hello');
      const t = new CryptoThread();
      await t.start();
      t.verify(data, sign(null, data, k.privateKey), k.publicKey).then((ok) => console.log('ok', ok, t.stats.batches, t.stats.fallbacks));
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.error).toBeUndefined();
    // Done by the thread (no fallback), though this process evaluates code as a module.
    expect(r.stdout.trim()).toBe('ok true 1 0');
    expect(r.status).toBe(0);
  });
});
