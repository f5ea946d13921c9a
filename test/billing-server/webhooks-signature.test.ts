/**
 * The documented webhook verifier: `verifyWebhook` of the billing client
 * accepts what `signWebhook` signed and refuses a tampered body, a tampered
 * or foreign signature, a stale or future timestamp and malformed headers.
 * The ten-line example printed in docs/webhooks.md is extracted, run, and
 * must agree with the exported function on every case.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { signWebhook, verifyWebhook } from '../../src/billing-client/index.js';

type Verify = typeof verifyWebhook;

const SECRET = 'whsec_test_0123456789abcdef';
const NOW = 1_795_637_115;
const BODY =
  '{"id":"evt_1","type":"deposit.credited","created":1795637115,"data":{"merchant":"news","amount":2000}}';

/** [what, header, body, now, expected]. */
function cases(): [string, string, string | Uint8Array, number, boolean][] {
  const good = signWebhook(SECRET, BODY, NOW);
  const sig = good.split('v1=')[1]!;
  const flipped = sig.slice(0, -1) + (sig.endsWith('0') ? '1' : '0');
  return [
    ['a fresh signature', good, BODY, NOW, true],
    ['the body as bytes', good, Buffer.from(BODY), NOW, true],
    ['4 minutes 59 later', good, BODY, NOW + 299, true],
    ['exactly 5 minutes later', good, BODY, NOW + 300, true],
    ['stale: 5 minutes and 1 second later', good, BODY, NOW + 301, false],
    ['from the future', good, BODY, NOW - 301, false],
    ['a tampered body', good, BODY.replace('2000', '2001'), NOW, false],
    ['a body with a space added', good, `${BODY} `, NOW, false],
    ['a tampered signature', `t=${NOW},v1=${flipped}`, BODY, NOW, false],
    ['a tampered timestamp', `t=${NOW + 1},v1=${sig}`, BODY, NOW, false],
    ['signed with another secret', signWebhook(`${SECRET}x`, BODY, NOW), BODY, NOW, false],
    ['a second v1 that matches (secret rotation)', `t=${NOW},v1=${flipped},v1=${sig}`, BODY, NOW, true],
    ['no v1', `t=${NOW}`, BODY, NOW, false],
    ['no t', `v1=${sig}`, BODY, NOW, false],
    ['a short v1', `t=${NOW},v1=${sig.slice(2)}`, BODY, NOW, false],
    ['an upper-case v1', `t=${NOW},v1=${sig.toUpperCase()}`, BODY, NOW, false],
    ['an empty header', '', BODY, NOW, false],
    ['garbage', 'definitely not a signature', BODY, NOW, false],
    ['a v0 scheme only', `t=${NOW},v0=${sig}`, BODY, NOW, false],
  ];
}

describe('verifyWebhook', () => {
  it.each(cases())('%s', (_what, header, body, now, expected) => {
    expect(verifyWebhook(SECRET, header, body, { now })).toBe(expected);
  });

  it('uses the clock and a 300-second tolerance by default; tolerance is adjustable', () => {
    const now = Math.floor(Date.now() / 1000);
    expect(verifyWebhook(SECRET, signWebhook(SECRET, BODY, now), BODY)).toBe(true);
    expect(verifyWebhook(SECRET, signWebhook(SECRET, BODY, now - 400), BODY)).toBe(false);
    expect(verifyWebhook(SECRET, signWebhook(SECRET, BODY, now - 400), BODY, { tolerance: 600 })).toBe(true);
    expect(verifyWebhook(SECRET, signWebhook(SECRET, BODY, now - 30), BODY, { tolerance: 10 })).toBe(false);
  });
});

describe('the example in docs/webhooks.md', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mp-docs-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const doc = readFileSync(path.join(import.meta.dirname, '../../docs/webhooks.md'), 'utf8');
  const block = [...doc.matchAll(/```js\n([\s\S]*?)```/g)]
    .map((m) => m[1]!)
    .find((b) => b.includes('export function verifyWebhook'));

  it('is ten lines of Node with node:crypto and timingSafeEqual, and agrees with the exported verifier', async () => {
    expect(block).toBeDefined();
    expect(block!.trimEnd().split('\n').length).toBeLessThanOrEqual(10);
    expect(block).toContain("from 'node:crypto'");
    expect(block).toContain('timingSafeEqual');
    const file = path.join(dir, 'verify.mjs');
    writeFileSync(file, block!);
    const documented = (await import(pathToFileURL(file).href)).verifyWebhook as Verify;
    for (const [what, header, body, now, expected] of cases()) {
      expect(documented(SECRET, header, body, { now }), what).toBe(expected);
    }
    const now = Math.floor(Date.now() / 1000);
    expect(documented(SECRET, signWebhook(SECRET, BODY, now), BODY)).toBe(true);
    expect(documented(SECRET, signWebhook(SECRET, BODY, now - 301), BODY)).toBe(false);
  });
});
