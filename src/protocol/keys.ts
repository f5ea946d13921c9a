/**
 * Billing server key sets (PROTOCOL.md section 2) and the resolver a merchant
 * uses to turn `(iss, kid)` into a `KeyObject` without I/O on the hot path:
 * resolved keys sit in an LRU; the set is refetched when its `max-age` runs
 * out (stale keys keep serving meanwhile), an unknown `(iss, kid)` refetches at
 * most once per `minRefetchMs`, and concurrent misses share one fetch.
 */
import type { KeyObject } from 'node:crypto';
import { b64urlDecode } from './base64url.js';
import { importPublicKey } from './crypto.js';
import { MicropayError } from './errors.js';
import { isId, isTime } from './ids.js';
import { Lru } from './lru.js';

/** One signing key as published. */
export interface PublishedKey {
  kid: string;
  /** base64url of the 32-byte Ed25519 public key. */
  x: string;
  nbf: number;
  exp: number;
}

/** `GET /.well-known/micropay/keys`. */
export interface KeySetDocument {
  issuer: string;
  keys: PublishedKey[];
  peers: { issuer: string; keys: PublishedKey[] }[];
}

const MAX_KEYS = 1000;

function badKeySet(why: string): MicropayError {
  return new MicropayError('invalid_key_set', `The billing server's key set is invalid: ${why}.`, {
    status: 502,
  });
}

function parseKeys(v: unknown, where: string): PublishedKey[] {
  if (!Array.isArray(v)) throw badKeySet(`${where} is not a list`);
  return v.map((k, i) => {
    const o = k as Record<string, unknown>;
    if (typeof k !== 'object' || k === null) throw badKeySet(`${where}[${i}] is not an object`);
    if (!isId(o.kid)) throw badKeySet(`${where}[${i}].kid is not an identifier`);
    if (typeof o.x !== 'string' || b64urlDecode(o.x)?.length !== 32)
      throw badKeySet(`${where}[${i}].x is not a base64url key`);
    if (!isTime(o.nbf) || !isTime(o.exp)) throw badKeySet(`${where}[${i}].nbf/exp are not Unix times`);
    return { kid: o.kid, x: o.x, nbf: o.nbf, exp: o.exp };
  });
}

/** Validates a key set document. Throws `invalid_key_set`. */
export function parseKeySet(doc: unknown): KeySetDocument {
  if (typeof doc !== 'object' || doc === null) throw badKeySet('not a JSON object');
  const d = doc as Record<string, unknown>;
  if (!isId(d.issuer)) throw badKeySet('issuer is not an identifier');
  const keys = parseKeys(d.keys, 'keys');
  const peersRaw = d.peers ?? [];
  if (!Array.isArray(peersRaw)) throw badKeySet('peers is not a list');
  const peers = peersRaw.map((p, i) => {
    const o = p as Record<string, unknown>;
    if (typeof p !== 'object' || p === null || !isId(o.issuer))
      throw badKeySet(`peers[${i}].issuer is not an identifier`);
    return { issuer: o.issuer, keys: parseKeys(o.keys, `peers[${i}].keys`) };
  });
  const total = keys.length + peers.reduce((n, p) => n + p.keys.length, 0);
  if (total > MAX_KEYS) throw badKeySet(`more than ${MAX_KEYS} keys`);
  return { issuer: d.issuer, keys, peers };
}

/** Turns `(issuer, kid)` into a public key. The verifier's only view of keys. */
export interface KeyResolver {
  /** The key if known right now, with no I/O (the hot path). */
  peek(iss: string, kid: string, now: number): KeyObject | undefined;
  /** The key, fetching the key set if it is unknown (subject to the refetch limit); `null` if it does not resolve. */
  resolve(iss: string, kid: string, now: number): Promise<KeyObject | null>;
  /** The issuers this resolver knows (own first, then peers); loads the key set if needed. */
  issuers(): Promise<string[]>;
}

interface Entry {
  key: KeyObject;
  exp: number;
}

/** Published keys by `iss NUL kid`, not yet imported. */
function indexKeySet(doc: KeySetDocument): Map<string, PublishedKey> {
  const m = new Map<string, PublishedKey>();
  const add = (iss: string, keys: PublishedKey[]) => {
    for (const k of keys) m.set(`${iss}\u0000${k.kid}`, k);
  };
  add(doc.issuer, doc.keys);
  for (const p of doc.peers) add(p.issuer, p.keys);
  return m;
}

/** A fixed key set (tests, vectors, or keys configured by hand). */
export class StaticKeyResolver implements KeyResolver {
  private readonly keys = new Map<string, Entry>();
  private readonly list: string[];
  /** @param skew seconds a key is still honoured after its `exp`. */
  constructor(
    doc: KeySetDocument,
    private readonly skew = 60,
  ) {
    const d = parseKeySet(doc);
    for (const [id, k] of indexKeySet(d)) this.keys.set(id, { key: importPublicKey(k.x), exp: k.exp });
    this.list = [d.issuer, ...d.peers.map((p) => p.issuer)];
  }
  peek(iss: string, kid: string, now: number): KeyObject | undefined {
    const e = this.keys.get(`${iss}\u0000${kid}`);
    return e && now <= e.exp + this.skew ? e.key : undefined;
  }
  async resolve(iss: string, kid: string, now: number): Promise<KeyObject | null> {
    return this.peek(iss, kid, now) ?? null;
  }
  async issuers(): Promise<string[]> {
    return this.list;
  }
}

/** Options of `HttpKeyResolver`. */
export interface HttpKeyResolverOptions {
  /** Base URL of the merchant's own billing server, e.g. `http://127.0.0.1:4000`. */
  url: string;
  /** Most keys kept in the LRU. Default 1000. */
  maxKeys?: number;
  /** An unknown `(iss, kid)` refetches the key set at most this often. Default 10,000 ms. */
  minRefetchMs?: number;
  /** Used when the answer has no `Cache-Control: max-age`. Default 300 s. */
  defaultMaxAge?: number;
  /** Seconds a key is still honoured after its `exp`. Default 60. */
  skew?: number;
  /** Timeout of one key set fetch. Default 5000 ms. */
  timeoutMs?: number;
  /** The fetch to use (default: global fetch). */
  fetch?: typeof fetch;
  /** Milliseconds clock, for tests. Default `Date.now`. */
  clock?: () => number;
}

/** Resolves keys from a billing server's `/.well-known/micropay/keys`. */
export class HttpKeyResolver implements KeyResolver {
  private readonly lru: Lru<string, Entry>;
  private readonly endpoint: string;
  private readonly minRefetchMs: number;
  private readonly defaultMaxAge: number;
  private readonly skew: number;
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;
  private readonly clock: () => number;
  private doc: KeySetDocument | null = null;
  private index = new Map<string, PublishedKey>();
  private freshUntil = 0;
  private lastFetch = Number.NEGATIVE_INFINITY;
  private inflight: Promise<void> | null = null;

  constructor(opts: HttpKeyResolverOptions) {
    this.endpoint = new URL('/.well-known/micropay/keys', opts.url).toString();
    this.lru = new Lru(opts.maxKeys ?? 1000);
    this.minRefetchMs = opts.minRefetchMs ?? 10_000;
    this.defaultMaxAge = opts.defaultMaxAge ?? 300;
    this.skew = opts.skew ?? 60;
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.fetchImpl = opts.fetch ?? fetch;
    this.clock = opts.clock ?? Date.now;
  }

  /** How many key set fetches were started (for tests and metrics). */
  fetches = 0;
  private readonly listeners = new Set<(doc: KeySetDocument) => void>();

  /** Calls `listener` after every successful key set fetch (e.g. to follow the billing server's peers). */
  subscribe(listener: (doc: KeySetDocument) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The last key set fetched, if any. */
  get document(): KeySetDocument | null {
    return this.doc;
  }

  /** Fetches the key set now (shared with any fetch already under way). */
  refresh(): Promise<void> {
    if (!this.inflight) {
      this.inflight = this.load().finally(() => {
        this.inflight = null;
      });
    }
    return this.inflight;
  }

  private async load(): Promise<void> {
    this.fetches++;
    this.lastFetch = this.clock();
    let res: Response;
    try {
      res = await this.fetchImpl(this.endpoint, {
        signal: AbortSignal.timeout(this.timeoutMs),
        headers: { accept: 'application/json' },
      });
    } catch (e) {
      throw new MicropayError('billing_unavailable', `Could not fetch the key set from ${this.endpoint}.`, {
        status: 503,
        cause: e,
      });
    }
    if (!res.ok) {
      throw new MicropayError(
        'billing_unavailable',
        `The key set at ${this.endpoint} answered ${res.status}.`,
        { status: 503 },
      );
    }
    const doc = parseKeySet(await res.json().catch(() => null));
    const m = /max-age=(\d+)/.exec(res.headers.get('cache-control') ?? '');
    const maxAge = m ? Math.min(Number(m[1]), 86_400) : this.defaultMaxAge;
    this.doc = doc;
    this.index = indexKeySet(doc);
    this.lru.clear();
    this.freshUntil = this.clock() + maxAge * 1000;
    for (const l of this.listeners) l(doc);
  }

  peek(iss: string, kid: string, now: number): KeyObject | undefined {
    if (this.clock() >= this.freshUntil && this.doc) {
      // Stale: keep serving what we have, revalidate in the background.
      this.refresh().catch(() => {});
    }
    const id = `${iss}\u0000${kid}`;
    let e = this.lru.get(id);
    if (!e) {
      const k = this.index.get(id);
      if (!k) return undefined;
      e = { key: importPublicKey(k.x), exp: k.exp };
      this.lru.set(id, e);
    }
    return e && now <= e.exp + this.skew ? e.key : undefined;
  }

  async resolve(iss: string, kid: string, now: number): Promise<KeyObject | null> {
    const hit = this.peek(iss, kid, now);
    if (hit) return hit;
    if (this.doc && this.clock() - this.lastFetch < this.minRefetchMs) {
      if (this.inflight) await this.inflight.catch(() => {});
      return this.peek(iss, kid, now) ?? null;
    }
    await this.refresh();
    return this.peek(iss, kid, now) ?? null;
  }

  async issuers(): Promise<string[]> {
    if (!this.doc) await this.refresh();
    const d = this.doc!;
    return [d.issuer, ...d.peers.map((p) => p.issuer)];
  }

  /** The billing server's own issuer id (loads the key set if needed). */
  async issuer(): Promise<string> {
    return (await this.issuers())[0]!;
  }
}
