/**
 * The keys of peer billing servers (PROTOCOL.md sections 2 and 9): this
 * server fetches each active peer's `/.well-known/micropay/keys`, publishes
 * the peer's own keys under `peers` in its key set (so its merchants verify
 * the peer's credentials offline, with no change on their side), and verifies
 * deposits of the peer's credentials with them.
 *
 * - Refreshed per the peer's `Cache-Control: max-age` (300 s when absent,
 *   bounded to 10 s .. 1 h), and sooner on demand: an unknown kid in a deposit,
 *   or a request for our key set (a merchant refetches on an unknown kid), both
 *   at most once per `minRefetchMs` per peer, so a rotation at the peer reaches
 *   merchants at once and nobody can make us hammer a peer.
 * - A failed fetch backs off exponentially with jitter and keeps the last good
 *   set; past `graceSeconds` since the last good fetch the set is no longer
 *   published (new acceptance stops), though deposits of orders merchants
 *   accepted meanwhile still verify.
 * - Keys are stored per key in the database, so every instance sharing it
 *   publishes the same set and a restart keeps the last good one. A key the
 *   peer withdrew before its `exp` is deleted (it stops verifying); one that
 *   left the set after its `exp` stays, for late deposits of orders signed
 *   while it was valid. Only the peer's own `keys` are taken, never its `peers`
 *   (trust is not transitive), and only from a set that names the peer.
 * - A removed peer's keys are deleted with it (store.ts), so its credentials
 *   are `unknown_issuer` here from then on.
 */
import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { importPublicKey, isMicropayError, type PublishedKey, parseKeySet } from '../protocol/index.js';
import type { Db, Row } from './db/types.js';
import type { PeerKeySource } from './verify.js';

/** Tuning of the peer key refresh (all optional). */
export interface PeerKeysOptions {
  /** How often this instance re-reads the peers from the database and refreshes due key sets, ms. Default 1000. */
  tickMs?: number;
  /** A peer's keys are refetched on demand (unknown kid, key-set request) at most this often, ms. Default 10 000. */
  minRefetchMs?: number;
  /** Seconds the last good key set of a peer stays published while fetches fail. Default 3600. */
  graceSeconds?: number;
  /** Timeout of one key-set fetch, ms. Default 5000. */
  timeoutMs?: number;
  /** Longest a request for our key set waits for a peer's revalidation, ms. Default 2000. */
  revalidateWaitMs?: number;
  /** First and longest pause after failed fetches, ms (doubling, with jitter). Default 1000 and 60 000. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

/** Everything the key refresher needs. */
export interface PeerKeysContext {
  db: Db;
  issuer: string;
  skew: number;
  /** Unix seconds (the server's clock: key `exp` checks). */
  now: () => number;
  logger: Logger;
}

/** One peer's entry under `peers` of the key set. */
export interface PublishedPeer {
  issuer: string;
  keys: PublishedKey[];
}

const DEFAULT_MAX_AGE = 300;
const MIN_MAX_AGE = 10;
const MAX_MAX_AGE = 3600;

/** Exponential backoff with equal jitter: attempt 1 waits base/2 .. base, doubling up to `max`. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  const d = Math.min(maxMs, baseMs * 2 ** Math.min(30, Math.max(0, attempt - 1)));
  return Math.round(d / 2 + Math.random() * (d / 2));
}

interface StoredKey {
  x: string;
  nbf: number;
  exp: number;
  /** When the last fetch that listed it happened (ms). */
  seen: number;
  key: KeyObject;
}

interface PeerState {
  url: string;
  /** Last good fetch (ms), `null` before the first. */
  fetched: number | null;
  freshUntil: number;
  keys: Map<string, StoredKey>;
  failures: number;
  retryAt: number;
  lastAttempt: number;
  inflight: Promise<void> | null;
}

type PeerRow = Row & {
  issuer: string;
  url: string;
  keys_fetched: number | null;
  keys_fresh_until: number | null;
};

type KeyRow = Row & { kid: string; x: string; nbf: number; exp: number; seen: number };

/** Why a fetch failed, in words safe to log (never a URL: it may hold credentials). */
function reasonOf(e: unknown): string {
  if (isMicropayError(e)) return e.message;
  const err = e as { name?: string; code?: string; cause?: { code?: string } } | null;
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError') return 'timed out';
  return err?.cause?.code ?? err?.code ?? 'unreachable';
}

/** The peers' key sets of one billing server instance. */
export class PeerKeys implements PeerKeySource {
  private readonly peers = new Map<string, PeerState>();
  private readonly tickMs: number;
  private readonly minRefetchMs: number;
  private readonly graceMs: number;
  private readonly timeoutMs: number;
  private readonly revalidateWaitMs: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  private closed = false;

  constructor(
    private readonly ctx: PeerKeysContext,
    o: PeerKeysOptions = {},
  ) {
    this.tickMs = o.tickMs ?? 1000;
    this.minRefetchMs = o.minRefetchMs ?? 10_000;
    this.graceMs = (o.graceSeconds ?? 3600) * 1000;
    this.timeoutMs = o.timeoutMs ?? 5000;
    this.revalidateWaitMs = o.revalidateWaitMs ?? 2000;
    this.backoffBaseMs = o.backoffBaseMs ?? 1000;
    this.backoffMaxMs = o.backoffMaxMs ?? 60_000;
  }

  /** Loads the peers and their stored keys; call once before serving. */
  async init(): Promise<void> {
    await this.load();
  }

  /** Starts the periodic refresh (its timer does not keep the process alive). */
  start(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => {
      this.tick();
    }, this.tickMs);
    this.timer.unref();
    this.tick();
  }

  /** Stops refreshing; resolves once no fetch or database call of ours is under way. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.ticking?.catch(() => {});
    await Promise.all([...this.peers.values()].map((p) => p.inflight?.catch(() => {})));
  }

  private tick(): void {
    if (this.ticking || this.closed) return;
    this.ticking = (async () => {
      await this.load();
      const t = Date.now();
      for (const [issuer, st] of this.peers) {
        if (t >= st.freshUntil && t >= st.retryAt && !st.inflight) void this.fetch(issuer);
      }
    })()
      .catch((e: unknown) => {
        this.ctx.logger.warn({ err: reasonOf(e) }, 'peer keys: could not read the peers');
      })
      .finally(() => {
        this.ticking = null;
      });
  }

  /** Re-reads the active peers and, for those another instance refreshed, their keys. */
  private async load(): Promise<void> {
    const rows = await this.ctx.db.all<PeerRow>(
      'SELECT issuer, url, keys_fetched, keys_fresh_until FROM peers WHERE removed IS NULL',
    );
    const seen = new Set<string>();
    for (const r of rows) {
      seen.add(r.issuer);
      let st = this.peers.get(r.issuer);
      if (!st) {
        st = {
          url: r.url,
          fetched: null,
          freshUntil: 0,
          keys: new Map(),
          failures: 0,
          retryAt: 0,
          lastAttempt: Number.NEGATIVE_INFINITY,
          inflight: null,
        };
        this.peers.set(r.issuer, st);
      }
      if (st.url !== r.url) {
        // A new address: forget the failures of the old one.
        st.url = r.url;
        st.failures = 0;
        st.retryAt = 0;
      }
      st.freshUntil = r.keys_fresh_until ?? 0;
      if (r.keys_fetched !== st.fetched) {
        const keys = await this.readKeys(r.issuer, st);
        // Both at once, after the read: `published` pairs them (a key is current when seen at `fetched`).
        st.keys = keys;
        st.fetched = r.keys_fetched;
      }
    }
    for (const issuer of [...this.peers.keys()]) if (!seen.has(issuer)) this.peers.delete(issuer);
  }

  private async readKeys(issuer: string, st: PeerState): Promise<Map<string, StoredKey>> {
    const rows = await this.ctx.db.all<KeyRow>(
      'SELECT kid, x, nbf, exp, seen FROM peer_keys WHERE issuer = ?',
      [issuer],
    );
    const keys = new Map<string, StoredKey>();
    for (const r of rows) {
      const old = st.keys.get(r.kid);
      // Keep the imported KeyObject when the key is the same (verified credentials are cached by it).
      const key = old && old.x === r.x ? old.key : importPublicKey(r.x);
      keys.set(r.kid, { x: r.x, nbf: r.nbf, exp: r.exp, seen: r.seen, key });
    }
    return keys;
  }

  /** Fetches one peer's key set now (shared with a fetch already under way). */
  private fetch(issuer: string): Promise<void> {
    const st = this.peers.get(issuer);
    if (!st) return Promise.resolve();
    if (!st.inflight) {
      st.inflight = this.fetchOnce(issuer, st).finally(() => {
        st.inflight = null;
      });
    }
    return st.inflight;
  }

  private async fetchOnce(issuer: string, st: PeerState): Promise<void> {
    const start = Date.now();
    st.lastAttempt = start;
    try {
      const res = await fetch(new URL('/.well-known/micropay/keys', st.url), {
        signal: AbortSignal.timeout(this.timeoutMs),
        headers: { accept: 'application/json' },
      });
      if (!res.ok) {
        await res.body?.cancel().catch(() => {});
        throw new Error(`answered HTTP ${res.status}`);
      }
      const doc = parseKeySet(await res.json().catch(() => null));
      if (doc.issuer !== issuer) throw new Error(`the key set there is of "${doc.issuer}", not "${issuer}"`);
      const m = /(?:^|[,\s])max-age=(\d+)/.exec(res.headers.get('cache-control') ?? '');
      const maxAge = Math.min(MAX_MAX_AGE, Math.max(MIN_MAX_AGE, m ? Number(m[1]) : DEFAULT_MAX_AGE));
      const fetched = Date.now();
      const stored = await this.store(issuer, st.url, doc.keys, fetched, fetched + maxAge * 1000);
      if (!stored) return; // removed (or moved) while we fetched
      const fresh = await this.readKeys(issuer, st);
      st.failures = 0;
      st.retryAt = 0;
      st.keys = fresh;
      st.fetched = fetched;
      st.freshUntil = fetched + maxAge * 1000;
    } catch (e) {
      st.failures++;
      st.retryAt = Date.now() + backoffMs(st.failures, this.backoffBaseMs, this.backoffMaxMs);
      // Our own plain errors say what went wrong; for the others, a code.
      const reason = e instanceof Error && e.name === 'Error' ? e.message : reasonOf(e);
      this.ctx.logger.warn(
        { peer: issuer, failures: st.failures, err: reason.slice(0, 300) },
        'could not fetch the key set of a peer; its last good keys stay in use for a while',
      );
    }
  }

  /** Stores a fetched key set; false when the peer was removed or its URL changed meanwhile. */
  private store(
    issuer: string,
    url: string,
    keys: PublishedKey[],
    fetched: number,
    freshUntil: number,
  ): Promise<boolean> {
    const nowS = this.ctx.now();
    return this.ctx.db.transaction(async (tx) => {
      const n = await tx.run(
        'UPDATE peers SET keys_fetched = ?, keys_fresh_until = ? WHERE issuer = ? AND url = ? AND removed IS NULL',
        [fetched, freshUntil, issuer, url],
      );
      if (n === 0) return false;
      for (const k of keys) {
        await tx.run(
          `INSERT INTO peer_keys (issuer, kid, x, nbf, exp, seen) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (issuer, kid) DO UPDATE SET x = excluded.x, nbf = excluded.nbf, exp = excluded.exp, seen = excluded.seen`,
          [issuer, k.kid, k.x, k.nbf, k.exp, fetched],
        );
      }
      // Withdrawn before its exp: no longer trusted. Gone after its exp: kept for late deposits.
      await tx.run('DELETE FROM peer_keys WHERE issuer = ? AND seen < ? AND exp + ? >= ?', [
        issuer,
        fetched,
        this.ctx.skew,
        nowS,
      ]);
      return true;
    });
  }

  // PeerKeySource: what the order checker asks on the deposit path (no I/O).

  accepts(iss: string): boolean {
    return this.peers.has(iss);
  }

  peek(iss: string, kid: string): KeyObject | undefined {
    return this.peers.get(iss)?.keys.get(kid)?.key;
  }

  /** After an unknown kid of `iss`: refetch its keys unless that was tried within `minRefetchMs`. */
  async refreshAfterMiss(iss: string, _kid: string): Promise<void> {
    const st = this.peers.get(iss);
    if (!st) return;
    if (Date.now() - st.lastAttempt < this.minRefetchMs) {
      await st.inflight?.catch(() => {});
      return;
    }
    await this.fetch(iss).catch(() => {});
  }

  /**
   * The `peers` of our key set. Keys older than `minRefetchMs` are revalidated
   * first (waiting at most `revalidateWaitMs` for the fetches this call starts),
   * so a merchant refetching on an unknown kid sees a peer's fresh rotation.
   */
  async published(): Promise<PublishedPeer[]> {
    const t = Date.now();
    const due: Promise<void>[] = [];
    for (const [issuer, st] of this.peers) {
      if (
        !this.closed &&
        t - (st.fetched ?? 0) >= this.minRefetchMs &&
        t - st.lastAttempt >= this.minRefetchMs &&
        t >= st.retryAt
      ) {
        due.push(this.fetch(issuer).catch(() => {}));
      }
      // A fetch already under way is not waited for: it may be the peer's own revalidation, asking us
      // for our key set while we ask for its; waiting on each other would end only at the timeout.
    }
    if (due.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(due),
        new Promise<void>((r) => {
          timer = setTimeout(r, this.revalidateWaitMs);
          timer.unref();
        }),
      ]);
      clearTimeout(timer);
    }
    const now = Date.now();
    const nowS = this.ctx.now();
    const out: PublishedPeer[] = [];
    for (const [issuer, st] of [...this.peers].sort(([a], [b]) => (a < b ? -1 : 1))) {
      // The current set is the keys of the latest fetch that listed any (older ones left the set after their exp).
      let latest = Number.NEGATIVE_INFINITY;
      for (const k of st.keys.values()) latest = Math.max(latest, k.seen);
      if (now - latest > this.graceMs) continue;
      const keys: PublishedKey[] = [];
      for (const [kid, k] of st.keys) {
        if (k.seen === latest && k.exp + this.ctx.skew >= nowS)
          keys.push({ kid, x: k.x, nbf: k.nbf, exp: k.exp });
      }
      if (keys.length > 0) out.push({ issuer, keys });
    }
    return out;
  }

  /** After a peer was added or changed here: read it and fetch its keys now (in the background). */
  async changed(issuer: string): Promise<void> {
    await this.load();
    const st = this.peers.get(issuer);
    if (st) st.freshUntil = 0;
    if (!this.closed) void this.fetch(issuer);
  }

  /** After a peer was removed here: stop trusting its keys at once (other instances follow within a tick). */
  removed(issuer: string): void {
    this.peers.delete(issuer);
  }

  /** Waits for every key fetch under way (tests). */
  async settled(): Promise<void> {
    await Promise.all([...this.peers.values()].map((p) => p.inflight?.catch(() => {})));
  }
}
