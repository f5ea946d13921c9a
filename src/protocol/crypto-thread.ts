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

// The worker's code, CommonJS evaluated from a string: no file to resolve in
// the ESM, CommonJS and source layouts alike.
const WORKER_SOURCE = `
'use strict';
const { parentPort } = require('node:worker_threads');
const { sign, verify } = require('node:crypto');
parentPort.on('message', (m) => {
  const jobs = m.jobs;
  const out = new Array(jobs.length / 4);
  for (let i = 0, j = 0; i < jobs.length; i += 4, j++) {
    if (jobs[i] === 0) {
      try {
        out[j] = verify(null, jobs[i + 1], jobs[i + 3], jobs[i + 2]);
      } catch {
        out[j] = false;
      }
    } else {
      try {
        const s = sign(null, jobs[i + 1], jobs[i + 3]);
        out[j] = s.byteLength === s.buffer.byteLength ? s : new Uint8Array(s);
      } catch {
        out[j] = null;
      }
    }
  }
  parentPort.postMessage({ id: m.id, out });
});
`;

/** Most jobs in one message (about 200 KB of it). */
const MAX_BATCH = 512;
/** Most jobs done on the event loop at once when it is not busy: one or two requests' worth. */
const MAX_INLINE = 4;

interface Pending {
  resolve: (v: never) => void;
  reject: (e: unknown) => void;
  /** The same job done on this thread (when the worker is gone, or a signature failed there). */
  fallback: () => unknown;
}

/** One thread and its batching. Use `cryptoThread()` for the process's shared one. */
export class CryptoThread {
  private worker: Worker | null = null;
  /**
   * Queued jobs, four slots each: op (0 verify, 1 sign), data, signature, key. Keys travel with
   * every job: a posted `KeyObject` shares its key material with this thread's (about 5 µs a job),
   * where a key cache in the thread would hold a second copy of every buyer's key.
   */
  private jobs: unknown[] = [];
  private waiting: Pending[] = [];
  private readonly inFlight = new Map<number, Pending[]>();
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
    return this.push(0, own(data), own(signature), publicKey, () => verify(null, data, publicKey, signature));
  }

  /** The Ed25519 signature of `data` by `privateKey`. */
  sign(data: Uint8Array, privateKey: KeyObject): Promise<Uint8Array> {
    return this.push(1, own(data), null, privateKey, () => sign(null, data, privateKey));
  }

  /**
   * Counts since construction: batches and jobs sent to the thread, jobs done on the event loop
   * while the thread was starting or because it died (`fallbacks`), and jobs done there because
   * the loop had room (`inline`).
   */
  get stats(): { batches: number; jobs: number; fallbacks: number; inline: number } {
    return {
      batches: this.nextBatch - 1,
      jobs: this.jobsSent,
      fallbacks: this.jobsOnLoop,
      inline: this.jobsInline,
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
    op: 0 | 1,
    data: Uint8Array,
    sig: Uint8Array | null,
    key: KeyObject,
    fallback: () => T,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.jobs.push(op, data, sig, key);
      this.waiting.push({ resolve: resolve as (v: never) => void, reject, fallback });
      this.schedule();
    });
  }

  private schedule(): void {
    if (!this.scheduled && this.waiting.length > 0 && this.inFlight.size < this.maxInFlight) {
      // Jobs queued in the same tick (an order check and its receipt) travel together.
      this.scheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  private flush(): void {
    this.scheduled = false;
    if (this.waiting.length === 0 || this.inFlight.size >= this.maxInFlight) return;
    const w = this.worker ?? (Date.now() >= this.respawnAt ? this.spawn() : null);
    if (!w || !this.online) {
      // A thread takes tens of ms to start: rather than make these requests wait, do their jobs here.
      const batch = this.waiting;
      this.jobs = [];
      this.waiting = [];
      this.jobsOnLoop += batch.length;
      for (const p of batch) settle(p);
      return;
    }
    if (this.waiting.length <= MAX_INLINE && this.inFlight.size === 0 && this.inlineNow()) {
      const batch = this.waiting;
      this.jobs = [];
      this.waiting = [];
      this.jobsInline += batch.length;
      const t0 = performance.now();
      for (const p of batch) settle(p);
      this.jobMs += ((performance.now() - t0) / batch.length - this.jobMs) * 0.2;
      return;
    }
    // At most MAX_BATCH jobs a message, so one batch always fits the thread's small heap.
    let jobs: unknown[];
    let batch: Pending[];
    if (this.waiting.length <= MAX_BATCH) {
      jobs = this.jobs;
      batch = this.waiting;
      this.jobs = [];
      this.waiting = [];
    } else {
      jobs = this.jobs.splice(0, MAX_BATCH * 4);
      batch = this.waiting.splice(0, MAX_BATCH);
    }
    const id = this.nextBatch++;
    this.jobsSent += batch.length;
    this.windowSent += batch.length;
    this.inFlight.set(id, batch);
    if (this.inFlight.size === 1) w.ref();
    w.postMessage({ id, jobs });
    this.schedule();
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
    // Its heap holds one batch at a time: small limits keep its RSS small (a thread that outgrows
    // them dies, and its jobs are done here).
    const w = new Worker(WORKER_SOURCE, {
      eval: true,
      resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16, stackSizeMb: 1 },
    });
    w.on('message', (m: { id: number; out: unknown[] }) => this.answered(w, m));
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
    return w;
  }

  private answered(w: Worker, m: { id: number; out: unknown[] }): void {
    const batch = this.inFlight.get(m.id);
    if (!batch) return;
    this.inFlight.delete(m.id);
    if (this.inFlight.size === 0) w.unref();
    if (this.waiting.length > 0 && !this.scheduled) this.flush();
    for (let i = 0; i < batch.length; i++) {
      const r = m.out[i];
      // `null` is a signature that failed there: done here, it throws its own error.
      if (r === null) settle(batch[i]!);
      else batch[i]!.resolve(r as never);
    }
  }

  /** The worker died or was stopped: its unanswered jobs are done here, and a new one starts on demand. */
  private lost(w: Worker): void {
    if (this.worker !== w) return;
    this.worker = null;
    // One that could not even start (no threads left, say) is not retried at once: jobs run here.
    if (!this.online) this.respawnAt = Date.now() + 10_000;
    this.online = false;
    for (const r of this.onlineWaiters.splice(0)) r();
    const batches = [...this.inFlight.values()];
    this.inFlight.clear();
    for (const batch of batches) {
      this.jobsOnLoop += batch.length;
      for (const p of batch) settle(p);
    }
    this.schedule();
  }
}

function settle(p: Pending): void {
  try {
    p.resolve(p.fallback() as never);
  } catch (e) {
    p.reject(e);
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
