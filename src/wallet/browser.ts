/**
 * `micropay/wallet` in browsers (bundlers pick it by the `browser` export
 * condition): the buyer's wallet signing with
 * @noble/ed25519, hashing with WebCrypto and keeping its key in IndexedDB.
 * It imports nothing Node-only (no node:* module, no Buffer, not
 * `protocol/crypto.ts`); `test/wallet/browser.test.ts` holds it to that.
 */
import { publicKeyOf, randomSeed, signTokenAsync, tidAsync } from '../protocol/noble.js';
import { indexedDbKeyStore } from './indexeddb.js';
import type { KeyStore, Signer } from './types.js';
import { createWalletWith, seedSigner, type Wallet, type WalletOptions } from './wallet.js';

export { isWalletError, WalletError, type WalletErrorCode, type WalletErrorOptions } from './errors.js';
export { type IndexedDbOptions, indexedDbKeyStore, indexedDbWalletStore } from './indexeddb.js';
export { memoryKeyStore, memoryWalletStore } from './memory.js';
export type * from './types.js';
export { renewDue, type Wallet, type WalletOptions, type WalletRuntime } from './wallet.js';

/** Options of the browser `createWallet`. */
export interface BrowserWalletOptions extends WalletOptions {
  /** Where the buyer's key lives. Default: `indexedDbKeyStore()`. */
  keyStore?: KeyStore;
}

/** A signer over a 32-byte seed with @noble/ed25519. */
export function nobleSigner(seed: Uint8Array): Signer {
  const s = Uint8Array.from(seed);
  let pub: Promise<string> | null = null;
  return {
    publicKey: () => {
      pub ??= publicKeyOf(s);
      return pub;
    },
    sign: (payload) => signTokenAsync(payload, s),
  };
}

/**
 * Creates the buyer's wallet in a browser. The billing server must allow this page's origin (its `corsOrigins`).
 * @example
 * import { createWallet } from 'micropay/wallet'; // the browser build, through the `browser` condition
 * const wallet = createWallet({ billingUrl: 'https://bank.example', token: buyerToken,
 *   policy: { maxPerDay: '1 USD', autoPayBelow: '0.01 USD', confirm: (o) => confirm(`Pay ${o.amt / 1e6} ${o.cur}?`) } });
 * const article = await (await wallet.fetch('/articles/42')).text();
 */
export function createWallet(options: BrowserWalletOptions): Wallet {
  const keyStore = options?.keyStore ?? indexedDbKeyStore();
  const signer = seedSigner(keyStore, randomSeed, nobleSigner);
  return createWalletWith(options, { signer, tid: tidAsync });
}
