/**
 * A dedicated thread for the Ed25519 work of the request path (order checks,
 * receipt signatures), fed in batches.
 *
 * Why not libuv's pool (the callback form of `crypto.verify`)? Each pool job
 * costs the event loop a wake-up and a callback, and runs on a cold thread:
 * measured here, 20 to 45 µs of event-loop time per job and 25% more CPU per
 * check than the same check done back to back. This thread takes every job
 * queued while its previous batch was running in one message and answers in
 * one message, so under load the event loop pays a few µs per job, the
 * signatures run hot, and verifying and signing for one request share a trip.
 *
 * The thread is started on first use (or by `start()`; jobs that come while it
 * starts are done on the event loop), holds the process open only while jobs
 * are in flight, and is replaced if it dies: its unanswered jobs are then done
 * on the event loop, so a job never fails for the thread's sake. It costs
 * about 18 MB of RSS (a V8 isolate with small heap limits).
 *
 * At light load a request's jobs stay on the event loop (`inlineBelow`): the
 * trip there and back is two thread wake-ups (measured here, at 2,400 paid
 * requests a second, a trip took 0.62 ms at the median for 0.16 ms of
 * signatures).
 */
import { type KeyObject, sign, verify } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { Lru } from './lru.js';

// The worker's code, evaluated from a string: no file to resolve in the ESM, CommonJS and source
// layouts alike. It imports rather than requires, as a process started with --input-type=module
// evaluates it as a module (where, with require, the thread died at once and every job was done on
// the event loop).
const WORKER_SOURCE = `
'use strict';
(async () => {
const { parentPort } = await import('node:worker_threads');
const { sign, verify } = await import('node:crypto');
// Keys by the id the event loop gave them: each key crosses once, not with every job.
const keys = new Map();
parentPort.on('message', (m) => {
  for (const id of m.forget) keys.delete(id);
  for (let i = 0; i < m.keys.length; i += 2) keys.set(m.keys[i], m.keys[i + 1]);
  const jobs = m.jobs;
  const out = new Array(jobs.length / 4);
  for (let i = 0, j = 0; i < jobs.length; i += 4, j++) {
    const key = keys.get(jobs[i + 3]);
    const op = jobs[i];
    if (key === undefined) {
      out[j] = null; // never expected: the event loop does the job itself
    } else if (op === 0 || op === 2) {
      try {
        out[j] = op === 0
          ? verify(null, jobs[i + 1], key, jobs[i + 2])
          : verify(null, Buffer.from(jobs[i + 1], 'latin1'), key, Buffer.from(jobs[i + 2], 'base64url'));
      } catch {
        out[j] = false;
      }
    } else {
      try {
        const s = sign(null, op === 1 ? jobs[i + 1] : Buffer.from(jobs[i + 1], 'latin1'), key);
        out[j] = op === 3 ? s.toString('base64url') : s.byteLength === s.buffer.byteLength ? s : new Uint8Array(s);
      } catch {
        out[j] = null;
      }
    }
  }
  parentPort.postMessage({ id: m.id, out, held: keys.size });
});
})();
`;

/** Most jobs in one message (about 200 KB of it). */
const MAX_BATCH = 512;
/** Most keys the thread holds (a few MB of its heap): past it, the least recently used is dropped there. */
const MAX_THREAD_KEYS = 4096;
/** Most jobs done on the event loop at once when it is not busy: one or two requests' worth. */
const MAX_INLINE = 4;

/**
 * Jobs in order: four slots each (op; data; signature or null; key). Ops 0 (verify) and 1 (sign)
 * take bytes; 2 and 3 the same with texts: the signed text as latin1 (ASCII here), the signature
 * as base64url, and 3 answers base64url. Texts cost the event loop less to post and receive than
 * byte arrays: for a paid request's verify and sign (callgrind, one request a batch), 19,600
 * instructions against 25,200, and no bytes to make from the token before or after.
 */
type Jobs = unknown[];

/** A batch's jobs and how to answer them: `settlers` holds a resolve and a reject per job. */
interface Batch {
  jobs: Jobs;
  settlers: ((v: never) => void)[];
}

/** One thread and its batching. Use `cryptoThread()` for the process's shared one. */
export class CryptoThread {
  private worker: Worker | null = null;
  /** Jobs queued for the next batch, and their settlers (see `Batch`). */
  private queued: Batch = { jobs: [], settlers: [] };
  private readonly inFlight = new Map<number, Batch>();
  /**
   * Keys cross to the thread once, under an id, rather than with every job (posting a `KeyObject`
   * costs about 5 µs of the two threads' time). `known` is what the current thread holds; a key
   * collected here is dropped there with the next batch (`forget`), so the thread holds no key this
   * side has let go of, and at most MAX_THREAD_KEYS, the most recently used (however late this
   * side's collector runs).
   */
  private readonly keyIds = new WeakMap<KeyObject, number>();
  private nextKeyId = 1;
  private known = this.knownKeys();
  private forget: number[] = [];
  /** Keys the thread said it held, in its last answer. */
  private held = 0;
  private readonly collected = new FinalizationRegistry<number>((id) => {
    if (this.known.delete(id)) this.forget.push(id);
  });
  private nextBatch = 1;
  private scheduled = false;
  private jobsSent = 0;
  private jobsOnLoop = 0;
  /** The current worker has started and takes jobs. */
  private online = false;
  private onlineWaiters: (() => void)[] = [];
  /** A thread that died before it started is not started again before this time (ms). */
  private respawnAt = 0;
  private readonly maxInFlight: number;
  private readonly inlineBelow: number;
  /** Jobs done on the event loop because it was not busy (see `inlineBelow`). */
  private jobsInline = 0;
  /** Whether small batches are done on the event loop now; decided once per window. */
  private inline = false;
  private windowStart = performance.now();
  private windowElu = performance.eventLoopUtilization();
  /** Jobs sent to the thread in this window. */
  private windowSent = 0;
  /** Event-loop milliseconds one job takes when done here (a moving average; a first guess). */
  private jobMs = 0.1;

  /**
   * @param options.maxInFlight batches sent and not yet answered; past it, jobs wait and go
   *   together in the next batch. A deep window keeps the thread fed while the event loop is busy
   *   with HTTP (with two, measured here, the thread sat idle 40% of the time under load). Default 16.
   * @param options.inlineBelow while the event loop would be busy less than this share of the time
   *   with the jobs done on it (measured over windows of 100 ms), the jobs of one or two requests
   *   are done there rather than sent: at light load the trip to the thread and back (two thread
   *   wake-ups) costs more latency than the signatures themselves. Batches of more than 4 jobs (requests
   *   arriving together) always go to the thread. 0 never does jobs here. Default 0.35.
   */
  constructor(options: { maxInFlight?: number; inlineBelow?: number } = {}) {
    this.maxInFlight = options.maxInFlight ?? 16;
    this.inlineBelow = options.inlineBelow ?? 0.35;
  }

  /** Starts the thread now rather than on the first job; resolves when it takes jobs. */
  start(): Promise<void> {
    if (!this.worker) this.spawn();
    if (this.online) return Promise.resolve();
    return new Promise((r) => this.onlineWaiters.push(r));
  }

  /** Whether `signature` is the Ed25519 signature of `data` under `publicKey`. */
  verify(data: Uint8Array, signature: Uint8Array, publicKey: KeyObject): Promise<boolean> {
    return this.push(0, own(data), own(signature), publicKey);
  }

  /** The Ed25519 signature of `data` by `privateKey`. */
  sign(data: Uint8Array, privateKey: KeyObject): Promise<Uint8Array> {
    return this.push(1, own(data), null, privateKey);
  }

  /**
   * `verify` of an ASCII text (its latin1 bytes) and a signature in canonical base64url, as a
   * token carries them (the caller has checked both are that).
   */
  verifyText(text: string, signatureB64url: string, publicKey: KeyObject): Promise<boolean> {
    return this.push(2, text, signatureB64url, publicKey);
  }

  /** `sign` of an ASCII text (its latin1 bytes); the signature in base64url. */
  signText(text: string, privateKey: KeyObject): Promise<string> {
    return this.push(3, text, null, privateKey);
  }

  /**
   * Counts since construction: batches and jobs sent to the thread, jobs done on the event loop
   * while the thread was starting or because it died (`fallbacks`), jobs done there because the
   * loop had room (`inline`), and keys the current thread held at its last answer (`keys`).
   */
  get stats(): { batches: number; jobs: number; fallbacks: number; inline: number; keys: number } {
    return {
      batches: this.nextBatch - 1,
      jobs: this.jobsSent,
      fallbacks: this.jobsOnLoop,
      inline: this.jobsInline,
      keys: this.held,
    };
  }

  /** Stops the thread; jobs in flight are done on the event loop. */
  async close(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    this.lost(w);
    await w.terminate();
  }

  private push<T>(
    op: 0 | 1 | 2 | 3,
    data: Uint8Array | string,
    sig: Uint8Array | string | null,
    key: KeyObject,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const q = this.queued;
      q.jobs.push(op, data, sig, key);
      q.settlers.push(resolve as (v: never) => void, reject);
      this.schedule();
    });
  }

  private schedule(): void {
    if (!this.scheduled && this.queued.settlers.length > 0 && this.inFlight.size < this.maxInFlight) {
      // Jobs queued in the same tick (an order check and its receipt) travel together.
      this.scheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  private flush(): void {
    this.scheduled = false;
    const count = this.queued.settlers.length / 2;
    if (count === 0 || this.inFlight.size >= this.maxInFlight) return;
    const w = this.worker ?? (Date.now() >= this.respawnAt ? this.spawn() : null);
    if (!w || !this.online) {
      // A thread takes tens of ms to start: rather than make these requests wait, do their jobs here.
      const batch = this.queued;
      this.queued = { jobs: [], settlers: [] };
      this.jobsOnLoop += count;
      settleHere(batch, 0, count);
      return;
    }
    if (count <= MAX_INLINE && this.inFlight.size === 0 && this.inlineNow()) {
      const batch = this.queued;
      this.queued = { jobs: [], settlers: [] };
      this.jobsInline += count;
      const t0 = performance.now();
      settleHere(batch, 0, count);
      this.jobMs += ((performance.now() - t0) / count - this.jobMs) * 0.2;
      return;
    }
    // At most MAX_BATCH jobs a message, so one batch always fits the thread's small heap.
    let batch: Batch;
    if (count <= MAX_BATCH) {
      batch = this.queued;
      this.queued = { jobs: [], settlers: [] };
    } else {
      batch = {
        jobs: this.queued.jobs.splice(0, MAX_BATCH * 4),
        settlers: this.queued.settlers.splice(0, MAX_BATCH * 2),
      };
    }
    const n = batch.settlers.length / 2;
    // The message names each job's key by id (the batch keeps the keys, for `settleHere`), and
    // carries the keys the thread does not hold yet.
    const jobs = batch.jobs.slice();
    const keys: unknown[] = [];
    for (let i = 3; i < jobs.length; i += 4) {
      const key = jobs[i] as KeyObject;
      let id = this.keyIds.get(key);
      if (id === undefined) {
        id = this.nextKeyId++;
        this.keyIds.set(key, id);
        this.collected.register(key, id);
      }
      if (this.known.get(id) === undefined) {
        this.known.set(id, true);
        keys.push(id, key);
      }
      jobs[i] = id;
    }
    const forget = this.forget;
    this.forget = [];
    const id = this.nextBatch++;
    this.jobsSent += n;
    this.windowSent += n;
    this.inFlight.set(id, batch);
    if (this.inFlight.size === 1) w.ref();
    w.postMessage({ id, jobs, keys, forget });
    this.schedule();
  }

  /** Ids of the keys a new thread holds: none yet; one dropped to make room is dropped there too. */
  private knownKeys(): Lru<number, true> {
    return new Lru(MAX_THREAD_KEYS, (id) => this.forget.push(id));
  }

  /**
   * Whether the event loop has room for small batches, decided every 100 ms: its busy share over
   * the last window, plus what the jobs sent to the thread meanwhile would have cost here.
   */
  private inlineNow(): boolean {
    if (this.inlineBelow <= 0) return false;
    const now = performance.now();
    const span = now - this.windowStart;
    if (span >= 100) {
      const elu = performance.eventLoopUtilization();
      const busy = performance.eventLoopUtilization(elu, this.windowElu).utilization;
      this.inline = busy + (this.windowSent * this.jobMs) / span < this.inlineBelow;
      this.windowStart = now;
      this.windowElu = elu;
      this.windowSent = 0;
    }
    return this.inline;
  }

  private spawn(): Worker {
    // Its heap holds one batch at a time and the keys in use: small limits keep its RSS small (a
    // thread that outgrows them dies, and its jobs are done here).
    const w = new Worker(WORKER_SOURCE, {
      eval: true,
      resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16, stackSizeMb: 1 },
    });
    w.on('message', (m: { id: number; out: unknown[]; held: number }) => this.answered(w, m));
    w.on('online', () => {
      if (this.worker !== w) return;
      this.online = true;
      if (this.inFlight.size === 0) w.unref();
      for (const r of this.onlineWaiters.splice(0)) r();
      this.schedule();
    });
    w.on('error', () => this.lost(w));
    w.on('exit', () => this.lost(w));
    // Held (the process stays up for a `start()` awaited) until it is online, then only with jobs in flight.
    this.worker = w;
    this.online = false;
    // A new thread holds no keys.
    this.known = this.knownKeys();
    this.forget = [];
    this.held = 0;
    return w;
  }

  private answered(w: Worker, m: { id: number; out: unknown[]; held: number }): void {
    const batch = this.inFlight.get(m.id);
    if (!batch) return;
    this.held = m.held;
    this.inFlight.delete(m.id);
    if (this.inFlight.size === 0) w.unref();
    if (this.queued.settlers.length > 0 && !this.scheduled) this.flush();
    const { out } = m;
    for (let i = 0; i < out.length; i++) {
      const r = out[i];
      // `null` is a job the thread could not do (a signature that failed): done here, where a
      // signature throws its own error.
      if (r === null) settleHere(batch, i, i + 1);
      else batch.settlers[2 * i]!(r as never);
    }
  }

  /** The worker died or was stopped: its unanswered jobs are done here, and a new one starts on demand. */
  private lost(w: Worker): void {
    if (this.worker !== w) return;
    this.worker = null;
    // One that could not even start (no threads left, say) is not retried at once: jobs run here.
    if (!this.online) this.respawnAt = Date.now() + 10_000;
    this.online = false;
    this.known = this.knownKeys();
    this.forget = [];
    this.held = 0;
    for (const r of this.onlineWaiters.splice(0)) r();
    const batches = [...this.inFlight.values()];
    this.inFlight.clear();
    for (const batch of batches) {
      const n = batch.settlers.length / 2;
      this.jobsOnLoop += n;
      settleHere(batch, 0, n);
    }
    this.schedule();
  }
}

/** Does jobs `from` to `to` (exclusive) of `batch` on this thread and settles them. */
function settleHere(batch: Batch, from: number, to: number): void {
  const { jobs, settlers } = batch;
  for (let i = from; i < to; i++) {
    const op = jobs[4 * i] as 0 | 1 | 2 | 3;
    const data = jobs[4 * i + 1];
    const sig = jobs[4 * i + 2];
    const key = jobs[4 * i + 3] as KeyObject;
    try {
      let r: boolean | Uint8Array | string;
      if (op === 0) r = verify(null, data as Uint8Array, key, sig as Uint8Array);
      else if (op === 1) r = sign(null, data as Uint8Array, key);
      else if (op === 2)
        r = verify(null, Buffer.from(data as string, 'latin1'), key, Buffer.from(sig as string, 'base64url'));
      else r = sign(null, Buffer.from(data as string, 'latin1'), key).toString('base64url');
      settlers[2 * i]!(r as never);
    } catch (e) {
      settlers[2 * i + 1]!(e as never);
    }
  }
}

/** A copy when `u` is a view of a larger buffer: posting a view clones its whole buffer. */
function own(u: Uint8Array): Uint8Array {
  return u.byteOffset === 0 && u.byteLength === u.buffer.byteLength ? u : u.slice();
}

let shared: CryptoThread | null = null;

/** The process's crypto thread, started on first use (or by `start()`). */
export function cryptoThread(): CryptoThread {
  shared ??= new CryptoThread();
  return shared;
}
