import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadReceiptKey } from '../../src/middleware/receipts.js';

const dir = mkdtempSync(join(tmpdir(), 'mp-receipts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('receipt keys', () => {
  it('creates the key file 0600 once; every loader after it gets the same key and kid', () => {
    const file = join(dir, 'sub', 'receipt.key');
    const a = loadReceiptKey({ keyFile: file });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const b = loadReceiptKey({ keyFile: file });
    expect(b.key.x).toBe(a.key.x);
    expect(b.kid).toBe(a.kid);
    expect(a.ephemeral).toBe(false);
  });

  it('a seed gives a stable kid; no option gives an ephemeral key', () => {
    const seed = '55'.repeat(32);
    expect(loadReceiptKey({ key: seed }).kid).toBe(loadReceiptKey({ key: seed }).kid);
    expect(loadReceiptKey().ephemeral).toBe(true);
  });

  it('refuses a bad seed and a bad kid with invalid_option, without echoing the seed', () => {
    try {
      loadReceiptKey({ key: 'secret-not-a-seed' });
      expect.unreachable();
    } catch (e) {
      expect(e).toMatchObject({ code: 'invalid_option' });
      expect((e as Error).message).not.toContain('secret-not-a-seed');
    }
    expect(() => loadReceiptKey({ key: '55'.repeat(32), kid: 'bad kid' })).toThrowError(/receipts.kid/);
  });
});
