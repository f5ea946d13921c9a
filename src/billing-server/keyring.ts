/**
 * The billing server's signing keys (PROTOCOL.md section 2). Public keys are
 * listed in the database (so every instance sharing it publishes and verifies
 * the same set); private seeds live in `<keyDir>/<kid>.seed` files written
 * 0600, or come from `MICROPAY_SIGNING_KEY`, never in the database and never
 * in a log. The newest key whose seed this instance holds signs. A retired
 * key stays listed until every credential and authorization it signed has
 * expired, and stays usable for verifying deposits after that.
 */

import type { KeyObject } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  b64urlEncode,
  exportSeed,
  generateSigningKey,
  importPublicKey,
  MicropayError,
  type PublishedKey,
  type SigningKey,
  signingKeyFromSeed,
} from '../protocol/index.js';
import type { Db, Row } from './db/types.js';

type KeyRow = Row & {
  kid: string;
  x: string;
  seq: number;
  nbf: number;
  retired: number | null;
  last_cert_exp: number | null;
};

/** Options of the key ring (from the server options). */
export interface KeyRingOptions {
  db: Db;
  /** Directory of seed files; `null`: seeds kept in memory only (`:memory:` databases). */
  keyDir: string | null;
  /** Seed of the current key from the environment, if any. */
  envSeed?: string | undefined;
  credentialLifetime: number;
  authorizationLifetime: number;
  skew: number;
  now: () => number;
}

const SEED_SUFFIX = '.seed';
// How long (ms) this instance trusts its view of the key table before re-reading it (another instance may have rotated).
const REFRESH_MS = 2000;
// An unknown kid re-reads the table at once (another instance may have just rotated), but a kid that
// missed is not looked for again for a while, and forced re-reads are capped per second: kids come from clients.
const MISS_TTL_MS = 2000;
const MAX_MISS_RELOADS_PER_SECOND = 10;

/** A kid from the time: `k2026-11-25T19-30-00Z`, plus a random tail so two rotations in one second differ. */
export function newKid(nowSeconds: number): string {
  const t = new Date(nowSeconds * 1000)
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/:/g, '-');
  return `k${t}.${randomBytes(3).toString('hex')}`;
}

/** The signing keys of this billing server. */
export class KeyRing {
  private readonly o: KeyRingOptions;
  private readonly seeds = new Map<string, SigningKey>();
  private rows: KeyRow[] = [];
  private publicKeys = new Map<string, KeyObject>();
  private loadedAt = Number.NEGATIVE_INFINITY;
  private loading: Promise<void> | null = null;
  private readonly misses = new Map<string, number>();
  private missWindow = { start: 0, count: 0 };

  constructor(o: KeyRingOptions) {
    this.o = o;
  }

  /** Loads seeds and the key table; creates the first key when there is none. */
  async init(): Promise<void> {
    if (this.o.keyDir) {
      mkdirSync(this.o.keyDir, { recursive: true, mode: 0o700 });
      for (const f of readdirSync(this.o.keyDir)) {
        if (!f.endsWith(SEED_SUFFIX)) continue;
        const kid = f.slice(0, -SEED_SUFFIX.length);
        try {
          this.seeds.set(kid, signingKeyFromSeed(readFileSync(path.join(this.o.keyDir, f), 'utf8')));
        } catch {
          throw new MicropayError(
            'invalid_key',
            `The key file ${path.join(this.o.keyDir, f)} does not hold a 32-byte seed.`,
          );
        }
      }
    }
    await this.reload();
    if (this.o.envSeed) {
      const key = signingKeyFromSeed(this.o.envSeed);
      const known = this.rows.find((r) => r.x === key.x);
      if (known) this.seeds.set(known.kid, key);
      else await this.add(key, true);
    }
    if (!this.signingRow()) await this.add(generateSigningKey(), true);
  }

  /** Re-reads the key table (shared by concurrent callers). */
  private reload(): Promise<void> {
    if (!this.loading) {
      this.loading = (async () => {
        const rows = await this.o.db.all<KeyRow>(
          'SELECT kid, x, seq, nbf, retired, last_cert_exp FROM signing_keys ORDER BY seq',
        );
        const pk = new Map<string, KeyObject>();
        for (const r of rows) pk.set(r.kid, this.publicKeys.get(r.kid) ?? importPublicKey(r.x));
        this.rows = rows;
        this.publicKeys = pk;
        this.loadedAt = Date.now();
      })().finally(() => {
        this.loading = null;
      });
    }
    return this.loading;
  }

  private async fresh(maxAgeMs = REFRESH_MS): Promise<void> {
    if (Date.now() - this.loadedAt > maxAgeMs) await this.reload();
  }

  /** The newest key row this instance holds a seed for. */
  private signingRow(): KeyRow | undefined {
    for (let i = this.rows.length - 1; i >= 0; i--) {
      const r = this.rows[i]!;
      if (this.seeds.has(r.kid)) return r;
    }
    return undefined;
  }

  /** Stores a key: seed file (0600) and public row; `retireOthers` makes it the one that signs everywhere. */
  private async add(key: SigningKey, retireOthers: boolean): Promise<string> {
    const now = this.o.now();
    const kid = newKid(now);
    if (this.o.keyDir) {
      const file = path.join(this.o.keyDir, kid + SEED_SUFFIX);
      writeFileSync(file, `${b64urlEncode(exportSeed(key))}\n`, { mode: 0o600, flag: 'wx' });
      chmodSync(file, 0o600); // the umask may have narrowed or the platform ignored the mode
    }
    this.seeds.set(kid, key);
    await this.o.db.transaction(async (tx) => {
      const r = await tx.get<{ s: number | null }>('SELECT MAX(seq) AS s FROM signing_keys');
      const seq = (r?.s ?? 0) + 1;
      if (retireOthers) await tx.run('UPDATE signing_keys SET retired = ? WHERE retired IS NULL', [now]);
      await tx.run(
        'INSERT INTO signing_keys (kid, x, seq, nbf, retired, last_cert_exp) VALUES (?, ?, ?, ?, NULL, NULL)',
        [kid, key.x, seq, now],
      );
    });
    await this.reload();
    return kid;
  }

  /** Makes a new key the signing key; the old ones stay listed until what they signed has expired. */
  async rotate(): Promise<string> {
    return this.add(generateSigningKey(), true);
  }

  /** The key that signs now, with its kid. */
  async signer(): Promise<{ kid: string; key: SigningKey }> {
    await this.fresh();
    let row = this.signingRow();
    if (!row) {
      await this.reload();
      row = this.signingRow();
    }
    if (!row) {
      throw new MicropayError(
        'no_signing_key',
        'This instance holds no seed of any listed signing key; share the key directory or set MICROPAY_SIGNING_KEY.',
        {
          status: 503,
        },
      );
    }
    return { kid: row.kid, key: this.seeds.get(row.kid)! };
  }

  /** Records that `kid` signed a credential expiring at `exp`, so the key stays listed until then. */
  async noteCredential(kid: string, exp: number): Promise<void> {
    await this.o.db.run(
      'UPDATE signing_keys SET last_cert_exp = CASE WHEN last_cert_exp IS NULL OR last_cert_exp < ? THEN ? ELSE last_cert_exp END WHERE kid = ?',
      [exp, exp, kid],
    );
  }

  /** The public key of `kid` (any key this server ever had), re-reading the table on a miss. */
  async publicKey(kid: string): Promise<KeyObject | undefined> {
    const k = this.publicKeys.get(kid);
    if (k) return k;
    await this.refreshAfterMiss(kid);
    return this.publicKeys.get(kid);
  }

  /**
   * After `kid` was not found: re-reads the key table (another instance may
   * have just rotated), unless this kid already missed in the last 2 s or
   * forced re-reads reached their cap for this second.
   */
  async refreshAfterMiss(kid: string): Promise<void> {
    const t = Date.now();
    const last = this.misses.get(kid);
    if (last !== undefined && t - last < MISS_TTL_MS) return;
    if (t - this.missWindow.start >= 1000) this.missWindow = { start: t, count: 0 };
    if (this.missWindow.count >= MAX_MISS_RELOADS_PER_SECOND) return;
    this.missWindow.count++;
    if (this.misses.size >= 1000) this.misses.clear();
    this.misses.set(kid, t);
    await this.reload();
  }

  /** The synchronous view (no I/O): the public key of `kid` if known now. */
  peekPublicKey(kid: string): KeyObject | undefined {
    return this.publicKeys.get(kid);
  }

  /** Until when a key must stay published. */
  private keyExp(r: KeyRow, now: number): number {
    if (r.retired === null) return Math.max(now + this.o.credentialLifetime, r.last_cert_exp ?? 0);
    return Math.max(
      r.last_cert_exp ?? r.retired + this.o.credentialLifetime,
      r.retired + this.o.authorizationLifetime,
    );
  }

  /** Keys to publish: the current ones and every retired one whose signatures may still be in use. */
  async published(): Promise<PublishedKey[]> {
    await this.fresh();
    const now = this.o.now();
    const out: PublishedKey[] = [];
    for (const r of this.rows) {
      const exp = this.keyExp(r, now);
      if (exp + this.o.skew >= now) out.push({ kid: r.kid, x: r.x, nbf: r.nbf, exp });
    }
    return out.reverse(); // newest first
  }

  /** Kids that have a seed file in the key directory (for tests and checks). */
  seedFiles(): string[] {
    if (!this.o.keyDir || !existsSync(this.o.keyDir)) return [];
    return readdirSync(this.o.keyDir).filter((f) => f.endsWith(SEED_SUFFIX));
  }
}
