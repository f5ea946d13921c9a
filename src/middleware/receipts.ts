/**
 * The merchant's receipt key (PROTOCOL.md section 7): from a seed, from a key
 * file (created `0600` on first use, so every instance that shares the file
 * honours the others' receipts), or generated for this process only.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  linkSync,
  mkdirSync,
  readFileSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { b64urlEncode } from '../protocol/base64url.js';
import { exportSeed, generateSigningKey, type SigningKey, signingKeyFromSeed } from '../protocol/crypto.js';
import { MicropayError } from '../protocol/errors.js';
import { isId } from '../protocol/ids.js';

/** The `receipts` option. */
export interface ReceiptOptions {
  /** The receipt key's 32-byte seed (hex or base64url). Takes precedence over `keyFile`. */
  key?: string;
  /** A file holding the seed; created with mode 0600 if it does not exist. */
  keyFile?: string;
  /** Key id put in receipts. Default: derived from the public key, so instances sharing a key agree. */
  kid?: string;
  /** Default receipt lifetime in seconds for routes that set none. Default 3600. */
  duration?: number;
}

/** A loaded receipt key. */
export interface ReceiptKey {
  key: SigningKey;
  kid: string;
  /** True when the key was generated for this process and dies with it. */
  ephemeral: boolean;
}

function kidOf(key: SigningKey): string {
  return `r${b64urlEncode(createHash('sha256').update(key.x).digest()).slice(0, 10)}`;
}

function readKeyFile(file: string): SigningKey {
  if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  return signingKeyFromSeed(readFileSync(file, 'utf8'));
}

/**
 * Creates the key file atomically: written whole under a temporary name, then linked into place,
 * so instances starting together never read a half-written file; the one that loses the race
 * reads the winner's key.
 */
function createKeyFile(file: string): SigningKey {
  const key = generateSigningKey();
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(tmp, `${Buffer.from(exportSeed(key)).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  try {
    linkSync(tmp, file);
    return key;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return readKeyFile(file);
    throw e;
  } finally {
    unlinkSync(tmp);
  }
}

/** Loads (or creates) the receipt key. Throws `invalid_option` with the reason. */
export function loadReceiptKey(o: ReceiptOptions = {}): ReceiptKey {
  let key: SigningKey;
  let ephemeral = false;
  try {
    if (o.key !== undefined) key = signingKeyFromSeed(o.key);
    else if (o.keyFile !== undefined) {
      key = existsSync(o.keyFile) ? readKeyFile(o.keyFile) : createKeyFile(o.keyFile);
    } else {
      key = generateSigningKey();
      ephemeral = true;
    }
  } catch (e) {
    const where = o.key !== undefined ? 'receipts.key' : `receipts.keyFile (${o.keyFile})`;
    throw new MicropayError(
      'invalid_option',
      `${where}: could not load the receipt key: ${(e as Error).message}`,
      { cause: e },
    );
  }
  const kid = o.kid ?? kidOf(key);
  if (!isId(kid))
    throw new MicropayError('invalid_option', 'receipts.kid must be 1 to 128 characters [A-Za-z0-9._:-].');
  return { key, kid, ephemeral };
}
