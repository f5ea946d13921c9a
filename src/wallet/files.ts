/**
 * Node-only stores: the buyer's key and the wallet's state as files readable
 * by the owner only (0600, in a 0700 folder). Writes go to a temporary file
 * renamed into place, so a crash never leaves half a file.
 */
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { WalletError } from './errors.js';
import type { KeyStore, WalletState, WalletStore } from './types.js';

/** The wallet's home: `$MICROPAY_HOME`, else `~/.micropay`. */
export function defaultHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.MICROPAY_HOME && env.MICROPAY_HOME.length > 0 ? env.MICROPAY_HOME : join(homedir(), '.micropay');
}

/** Writes `text` to `path` with mode 0600, atomically; creates the folder 0700. */
export function writePrivateFile(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, text, { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // nothing was written
    }
    throw e;
  }
}

/** Reads a private file, first making it owner-only if it was readable by others. `null` if it does not exist. */
export function readPrivateFile(path: string): string | null {
  if (!existsSync(path)) return null;
  if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
  return readFileSync(path, 'utf8');
}

function storeError(what: string, path: string, e: unknown): WalletError {
  const why = (e as NodeJS.ErrnoException)?.code ?? (e as Error)?.message ?? String(e);
  return new WalletError(
    'wallet_store_failed',
    `Could not ${what} ${path} (${why}); check that folder's permissions.`,
    {
      cause: e,
    },
  );
}

/**
 * The buyer's key as a file holding the 32-byte seed in hex, mode 0600. Created on first use;
 * an existing key is never overwritten.
 * @example
 * const wallet = createWallet({ billingUrl, token, keyStore: fileKeyStore('/home/me/.micropay/key') });
 */
export function fileKeyStore(path: string = join(defaultHome(), 'key')): KeyStore {
  if (typeof path !== 'string' || path.length === 0)
    throw new WalletError('invalid_option', 'fileKeyStore needs a file path.');
  return {
    async load() {
      let text: string | null;
      try {
        text = readPrivateFile(path);
      } catch (e) {
        throw storeError('read the key file', path, e);
      }
      if (text === null) return null;
      const hex = text.trim();
      if (!/^[0-9a-f]{64}$/i.test(hex)) {
        throw new WalletError(
          'invalid_key',
          `The key file ${path} does not hold a 64-hex-digit Ed25519 seed; move it away to make a new key (a new key needs a new credential, which the wallet gets by itself).`,
        );
      }
      return Uint8Array.from(Buffer.from(hex, 'hex'));
    },
    async save(seed) {
      try {
        mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
        // `wx`: never replace a key that another process wrote meanwhile.
        writeFileSync(path, `${Buffer.from(seed).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') return;
        throw storeError('write the key file', path, e);
      }
    },
  };
}

/**
 * The wallet's state (credential, receipts, history, today's spending) as a JSON file, mode 0600.
 * @example
 * const wallet = createWallet({ billingUrl, token, store: fileWalletStore('/home/me/.micropay/wallet.json') });
 */
export function fileWalletStore(path: string = join(defaultHome(), 'wallet.json')): WalletStore {
  if (typeof path !== 'string' || path.length === 0)
    throw new WalletError('invalid_option', 'fileWalletStore needs a file path.');
  return {
    async load() {
      let text: string | null;
      try {
        text = readPrivateFile(path);
      } catch (e) {
        throw storeError('read the wallet file', path, e);
      }
      if (text === null) return null;
      try {
        return JSON.parse(text) as WalletState;
      } catch {
        throw new WalletError(
          'wallet_store_failed',
          `The wallet file ${path} is not valid JSON; move it away and the wallet starts a new one (its history is lost).`,
        );
      }
    },
    async save(state) {
      try {
        writePrivateFile(path, `${JSON.stringify(state, null, 2)}\n`);
      } catch (e) {
        throw storeError('write the wallet file', path, e);
      }
    },
  };
}
