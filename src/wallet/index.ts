/**
 * `micropay/wallet` for Node: the buyer's wallet signing with node:crypto and
 * keeping its key in a 0600 file. The logic is in `wallet.ts`, shared with
 * the browser entry (`browser.ts`, what `micropay/wallet` resolves to under
 * the `browser` export condition).
 */
import { randomBytes } from 'node:crypto';
import { signingKeyFromSeed, signToken, tid } from '../protocol/crypto.js';
import { fileKeyStore } from './files.js';
import type { KeyStore, Signer } from './types.js';
import { createWalletWith, seedSigner, type Wallet, type WalletOptions } from './wallet.js';

export { isWalletError, WalletError, type WalletErrorCode, type WalletErrorOptions } from './errors.js';
export { defaultHome, fileKeyStore, fileWalletStore } from './files.js';
export { memoryKeyStore, memoryWalletStore } from './memory.js';
export type * from './types.js';
export { renewDue, type Wallet, type WalletOptions, type WalletRuntime } from './wallet.js';

/** Options of the Node `createWallet`. */
export interface NodeWalletOptions extends WalletOptions {
  /** Where the buyer's key lives. Default: `fileKeyStore()`, the file `key` in `$MICROPAY_HOME` or `~/.micropay`. */
  keyStore?: KeyStore;
}

/** A signer over a 32-byte seed with node:crypto. */
export function nodeSigner(seed: Uint8Array): Signer {
  const key = signingKeyFromSeed(seed);
  return {
    publicKey: async () => key.x,
    sign: async (payload) => signToken(payload, key),
  };
}

/**
 * Creates the buyer's wallet. The key is loaded (or made) and the credential fetched on first use.
 * @example
 * import { createWallet, memoryKeyStore } from 'micropay/wallet';
 * const wallet = createWallet({ billingUrl: 'http://127.0.0.1:4000', token: process.env.BUYER_TOKEN!,
 *   policy: { maxPerPayment: '0.05 USD', maxPerDay: '1 USD' } });
 * const res = await wallet.fetch('http://127.0.0.1:3000/articles/42');
 * console.log(await res.text(), await wallet.spentToday());
 */
export function createWallet(options: NodeWalletOptions): Wallet {
  const keyStore = options?.keyStore ?? fileKeyStore();
  const signer = seedSigner(keyStore, () => Uint8Array.from(randomBytes(32)), nodeSigner);
  return createWalletWith(options, { signer, tid });
}
