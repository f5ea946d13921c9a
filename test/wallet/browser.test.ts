/**
 * The browser entry: its import graph holds nothing Node-only (a static scan
 * and an esbuild bundle for the browser platform), the noble signer's orders
 * verify under node:crypto, and a browser-entry wallet pays the real merchant.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importPublicKey, tid, verifyToken } from '../../src/protocol/crypto.js';
import type { Order } from '../../src/protocol/messages.js';
import { tidAsync } from '../../src/protocol/noble.js';
import {
  createWallet,
  indexedDbKeyStore,
  memoryKeyStore,
  memoryWalletStore,
  nobleSigner,
  WalletError,
} from '../../src/wallet/browser.js';
import { startWorld, type World } from './helpers.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const ENTRY = join(ROOT, 'src/wallet/browser.ts');

/** A file's text without comments (JSDoc examples show imports that are not made). */
function code(file: string): string {
  return readFileSync(file, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/^\s*\/\/.*$/gm, '');
}

/** Every module the entry reaches through static and dynamic imports: relative files and bare specifiers. */
function importGraph(entry: string): { files: string[]; bare: Set<string> } {
  const files: string[] = [];
  const bare = new Set<string>();
  const todo = [entry];
  const seen = new Set<string>();
  const IMPORT =
    /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^import\s*['"]([^'"]+)['"]/gm;
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    files.push(file);
    const text = code(file);
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2] ?? m[3]!;
      if (spec.startsWith('.')) todo.push(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
      else bare.add(spec);
    }
  }
  return { files: files.map((f) => relative(ROOT, f)).sort(), bare };
}

describe('the browser entry imports nothing Node-only', () => {
  it('static scan: no node: module, no Node-only file, only @noble/ed25519 from outside', () => {
    const { files, bare } = importGraph(ENTRY);
    expect(files).toContain('src/wallet/wallet.ts');
    expect(files).toContain('src/protocol/noble.ts');
    expect(files).not.toContain('src/protocol/crypto.ts');
    expect(files).not.toContain('src/wallet/files.ts');
    expect(files).not.toContain('src/wallet/index.ts');
    expect([...bare]).toEqual(['@noble/ed25519']);
    for (const f of files) {
      const text = code(join(ROOT, f));
      expect(text, f).not.toMatch(/\brequire\(|\b__dirname\b|import\.meta/);
      // Node globals only behind a `typeof` guard (base64url's Buffer fast path, the client's IS_NODE).
      if (/\bBuffer\./.test(text)) expect(text, f).toMatch(/typeof Buffer !== 'undefined'/);
      if (/\bprocess\./.test(text)) expect(text, f).toMatch(/typeof process !== 'undefined'/);
    }
  });

  it('bundles for the browser platform with esbuild', async () => {
    const out = await build({
      entryPoints: [ENTRY],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    const inputs = Object.keys(out.metafile.inputs);
    expect(inputs.some((i) => i.startsWith('node:'))).toBe(false);
    expect(inputs.filter((i) => i.includes('protocol/crypto'))).toEqual([]);
    expect(out.outputFiles[0]!.text).not.toMatch(/from ?["']node:/);
  });
});

describe('the noble path', () => {
  const seed = Uint8Array.from({ length: 32 }, (_, i) => i + 1);

  it('signs an order that the Node verifier accepts', async () => {
    const s = nobleSigner(seed);
    const order: Order = {
      typ: 'mp-order',
      v: 1,
      cid: 'A'.repeat(43),
      mer: 'news-site',
      res: 'GET /articles/42',
      amt: 2000,
      cur: 'USD',
      iat: 1_764_000_000,
      oid: 'abcdefghijklmnopqrstuv',
    };
    const token = await s.sign(order);
    expect(verifyToken(token, 'mp-order', importPublicKey(await s.publicKey()))).toEqual(order);
    expect(await tidAsync(token)).toBe(tid(token));
  });

  it('without IndexedDB the default key store says what to do', async () => {
    const e = await indexedDbKeyStore()
      .load()
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(WalletError);
    expect((e as WalletError).code).toBe('no_indexeddb');
    expect((e as WalletError).message).toMatch(/pass keyStore: memoryKeyStore\(\)/);
  });
});

describe('a browser-entry wallet against the real merchant', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld();
  });
  afterAll(async () => {
    await w.close();
  });

  it('pays with a noble-signed order and re-reads with the receipt', async () => {
    const b = await w.buyer();
    const wallet = createWallet({
      billingUrl: w.billingUrl,
      token: b.token,
      keyStore: memoryKeyStore(),
      store: memoryWalletStore(),
    });
    const r = await wallet.request(`${w.shopUrl}/articles/42`);
    expect(r.via).toBe('paid');
    expect(await r.response.json()).toMatchObject({ paidBy: b.id, via: 'order' });
    expect((await wallet.request(`${w.shopUrl}/articles/42`)).via).toBe('receipt');
    expect(w.charged.filter((c) => c.buyer === b.id)).toHaveLength(1);
  });
});
