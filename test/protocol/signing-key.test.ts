/**
 * Signing keys: fresh ones are random and usable, seeds round-trip, and making
 * many keys never hangs the process (Node 20 can deadlock exporting a key that
 * `generateKeyPairSync` made, when a collection starts during the export).
 */
import { spawn } from 'node:child_process';
import { randomBytes, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { exportSeed, generateSigningKey, signingKeyFromSeed } from '../../src/protocol/crypto.js';

describe('signing keys', () => {
  it('makes distinct keys that sign and verify, and whose seed gives the same key back', () => {
    const a = generateSigningKey();
    const b = generateSigningKey();
    expect(a.x).not.toBe(b.x);
    expect(a.x).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const data = randomBytes(64);
    expect(verify(null, data, a.publicKey, sign(null, data, a.privateKey))).toBe(true);
    expect(verify(null, data, b.publicKey, sign(null, data, a.privateKey))).toBe(false);
    const again = signingKeyFromSeed(exportSeed(a));
    expect(again.x).toBe(a.x);
  });

  it('makes keys in six processes at once without any of them hanging', async () => {
    // The deadlock needs a collection to start inside an export, so it is a matter of chance:
    // with keys made by generateKeyPairSync, this test failed 2 runs in 3 here.
    const script = [
      "const { generateSigningKey } = await import('./src/protocol/crypto.ts');",
      'let n = 0;',
      'for (let i = 0; i < 50000; i++) n += generateSigningKey().x.length === 43 ? 1 : 0;',
      'console.log(n);',
    ].join('\n');
    const run = () => {
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
      });
      return new Promise<string>((resolve) => {
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          resolve('hung for 45 s');
        }, 45_000);
        child.once('exit', (c) => {
          clearTimeout(timer);
          resolve(c === 0 ? out.trim() : `exit ${c}`);
        });
      });
    };
    const results = await Promise.all(Array.from({ length: 6 }, run));
    expect(results).toEqual(Array(6).fill('50000'));
  }, 60_000);
});
