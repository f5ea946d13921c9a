/**
 * A copy of an ASCII string (a token) that holds no reference to the larger
 * string it may have been sliced from: V8 keeps a whole header alive for a
 * slice of it, and a rope (`a + b`) for its parts. For keys that live long in
 * a cache; costs about 2 µs for a 440-character credential.
 */
export function ownString(s: string): string {
  return Buffer.from(s, 'latin1').toString('latin1');
}

interface Entry<K, V> {
  readonly key: K;
  value: V;
  /** The entry used just after this one, or null for the newest. */
  newer: Entry<K, V> | null;
  /** The entry used just before this one, or null for the oldest. */
  older: Entry<K, V> | null;
}

/**
 * A small least-recently-used map: a `Map` to entries chained in order of use. `get` moves an
 * entry to the front by relinking it, so a hit allocates nothing: re-inserting it into the `Map`
 * instead (a delete then a set) made the `Map` rebuild its table every few hits, and each new table,
 * held by a long-lived cache, survived the young-generation GC and was promoted (about 270 bytes a
 * paid request under bench/proxy). The key an entry is stored under is the one given to `set`: a
 * caller's equal key passed to `get` (a slice of a larger string, say) is never kept.
 */
export class Lru<K, V> {
  private readonly map = new Map<K, Entry<K, V>>();
  private newest: Entry<K, V> | null = null;
  private oldest: Entry<K, V> | null = null;

  /**
   * @param max most entries kept; the least recently used goes first.
   * @param onEvict called with each entry dropped to make room (not with those `delete`d or cleared).
   */
  constructor(
    readonly max: number,
    private readonly onEvict?: (key: K, value: V) => void,
  ) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError('Lru max must be a positive integer');
  }

  get size(): number {
    return this.map.size;
  }

  get(key: K): V | undefined {
    const e = this.map.get(key);
    if (e === undefined) return undefined;
    if (e !== this.newest) {
      this.unlink(e);
      this.link(e);
    }
    return e.value;
  }

  /** Reads without refreshing recency. */
  peek(key: K): V | undefined {
    return this.map.get(key)?.value;
  }

  set(key: K, value: V): void {
    const e = this.map.get(key);
    if (e !== undefined) {
      e.value = value;
      if (e !== this.newest) {
        this.unlink(e);
        this.link(e);
      }
      return;
    }
    if (this.map.size >= this.max) {
      const old = this.oldest!;
      this.unlink(old);
      this.map.delete(old.key);
      this.onEvict?.(old.key, old.value);
    }
    const added: Entry<K, V> = { key, value, newer: null, older: null };
    this.map.set(key, added);
    this.link(added);
  }

  delete(key: K): boolean {
    const e = this.map.get(key);
    if (e === undefined) return false;
    this.unlink(e);
    return this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
    this.newest = null;
    this.oldest = null;
  }

  /** Keys from the least to the most recently used (for tests and diagnostics). */
  *keys(): IterableIterator<K> {
    for (let e = this.oldest; e !== null; e = e.newer) yield e.key;
  }

  /** Makes `e`, unlinked, the newest. */
  private link(e: Entry<K, V>): void {
    e.older = this.newest;
    e.newer = null;
    if (this.newest !== null) this.newest.newer = e;
    else this.oldest = e;
    this.newest = e;
  }

  private unlink(e: Entry<K, V>): void {
    if (e.older !== null) e.older.newer = e.newer;
    else this.oldest = e.newer;
    if (e.newer !== null) e.newer.older = e.older;
    else this.newest = e.older;
    e.newer = null;
    e.older = null;
  }
}
