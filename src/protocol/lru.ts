/**
 * A copy of an ASCII string (a token) that holds no reference to the larger
 * string it may have been sliced from: V8 keeps a whole header alive for a
 * slice of it, and a rope (`a + b`) for its parts. For keys that live long in
 * a cache; costs about 2 µs for a 440-character credential.
 */
export function ownString(s: string): string {
  return Buffer.from(s, 'latin1').toString('latin1');
}

/** A small least-recently-used map on top of `Map`'s insertion order: O(1) get and set, bounded size. */
export class Lru<K, V> {
  private readonly map = new Map<K, V>();

  /**
   * @param max most entries kept; the least recently used goes first.
   * @param keyOf the key an entry was stored under, read from its value: `get` re-inserts
   *   under it rather than under the caller's equal key (which may be a slice of a larger
   *   string that the cache would then keep alive).
   */
  constructor(
    readonly max: number,
    private readonly keyOf?: (value: V) => K,
  ) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError('Lru max must be a positive integer');
  }

  get size(): number {
    return this.map.size;
  }

  get(key: K): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(this.keyOf === undefined ? key : this.keyOf(v), v);
    }
    return v;
  }

  /** Reads without refreshing recency. */
  peek(key: K): V | undefined {
    return this.map.get(key);
  }

  set(key: K, value: V): void {
    if (this.map.has(key)) this.map.delete(key);
    else if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value as K);
    this.map.set(key, value);
  }

  delete(key: K): boolean {
    return this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
  }
}
