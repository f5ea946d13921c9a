/**
 * Browser stores on IndexedDB: the buyer's seed and the wallet's state, in
 * one object store of one database (default `micropay`). The key never
 * leaves the origin's storage; nothing here is Node-only.
 */
import { WalletError } from './errors.js';
import type { KeyStore, WalletState, WalletStore } from './types.js';

/** Options of the IndexedDB stores. */
export interface IndexedDbOptions {
  /** Database name. Default `micropay`. */
  database?: string;
  /** Record name inside it. Default `key` for the key store, `wallet` for the state store. */
  name?: string;
}

const OBJECT_STORE = 'kv';

function open(database: string): Promise<IDBDatabase> {
  const idb = (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  if (!idb) {
    return Promise.reject(
      new WalletError(
        'no_indexeddb',
        'This environment has no IndexedDB; pass keyStore: memoryKeyStore() (and store: memoryWalletStore()) or a store of your own.',
      ),
    );
  }
  return new Promise((resolve, reject) => {
    const req = idb.open(database, 1);
    req.onupgradeneeded = () => {
      if (!req.result.objectStoreNames.contains(OBJECT_STORE)) req.result.createObjectStore(OBJECT_STORE);
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(storeError(req.error));
    req.onblocked = () => reject(storeError(new Error('the database is blocked by another tab')));
  });
}

function storeError(e: unknown): WalletError {
  return new WalletError(
    'wallet_store_failed',
    `IndexedDB failed (${(e as Error | null)?.message ?? 'unknown error'}); check that this site may store data.`,
    { cause: e },
  );
}

async function run<T>(
  database: string,
  mode: IDBTransactionMode,
  op: (s: IDBObjectStore) => IDBRequest,
): Promise<T> {
  const db = await open(database);
  try {
    return await new Promise<T>((resolve, reject) => {
      const tx = db.transaction(OBJECT_STORE, mode);
      const req = op(tx.objectStore(OBJECT_STORE));
      tx.oncomplete = () => resolve(req.result as T);
      tx.onerror = () => reject(storeError(tx.error));
      tx.onabort = () => reject(storeError(tx.error));
    });
  } finally {
    db.close();
  }
}

/**
 * The buyer's seed in IndexedDB (the browser entry's default key store). A seed already stored is never replaced.
 * @example
 * const wallet = createWallet({ billingUrl, token, keyStore: indexedDbKeyStore({ database: 'my-shop-wallet' }) });
 */
export function indexedDbKeyStore(options: IndexedDbOptions = {}): KeyStore {
  const database = options.database ?? 'micropay';
  const name = options.name ?? 'key';
  return {
    async load() {
      const v = await run<unknown>(database, 'readonly', (s) => s.get(name));
      return v instanceof Uint8Array ? v : null;
    },
    async save(seed) {
      // `add` fails if a seed is there already: another tab made one first, and that one stays.
      await run(database, 'readwrite', (s) => s.add(Uint8Array.from(seed), name)).catch(() => {});
    },
  };
}

/**
 * The wallet's state in IndexedDB.
 * @example
 * const wallet = createWallet({ billingUrl, token, store: indexedDbWalletStore() });
 */
export function indexedDbWalletStore(options: IndexedDbOptions = {}): WalletStore {
  const database = options.database ?? 'micropay';
  const name = options.name ?? 'wallet';
  return {
    async load() {
      const v = await run<unknown>(database, 'readonly', (s) => s.get(name));
      return typeof v === 'string' ? (JSON.parse(v) as WalletState) : null;
    },
    async save(state) {
      await run(database, 'readwrite', (s) => s.put(JSON.stringify(state), name));
    },
  };
}
