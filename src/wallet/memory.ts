/**
 * In-memory key and state stores (runtime-neutral): the key dies with the
 * process, so a credential must be fetched again on every start. For tests,
 * short scripts and pages that get a fresh key per visit.
 */
import type { KeyStore, WalletState, WalletStore } from './types.js';

/**
 * A key store that keeps the seed in memory; pass `seed` to start with a known key.
 * @example
 * const wallet = createWallet({ billingUrl, token, keyStore: memoryKeyStore() });
 */
export function memoryKeyStore(seed?: Uint8Array): KeyStore {
  let held: Uint8Array | null = seed ? Uint8Array.from(seed) : null;
  return {
    async load() {
      return held ? Uint8Array.from(held) : null;
    },
    async save(s) {
      held = Uint8Array.from(s);
    },
  };
}

/**
 * A state store in memory (the SDK's default): history and receipts last as long as the process.
 * @example
 * const store = memoryWalletStore();
 * const wallet = createWallet({ billingUrl, token, store });
 */
export function memoryWalletStore(): WalletStore {
  let held: string | null = null;
  return {
    async load() {
      return held === null ? null : (JSON.parse(held) as WalletState);
    },
    async save(state) {
      held = JSON.stringify(state);
    },
  };
}
