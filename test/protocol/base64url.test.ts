/**
 * base64url decoding is canonical only, whichever way the bytes are decoded:
 * by Buffer in Node (after a native check of the text), or by the loop that
 * browsers run. Both are held to the same answers here, the loop by running
 * the module's own source in a context with no `Buffer`, as a browser would.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import { transformSync } from 'esbuild';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { b64urlDecode, b64urlEncode, isB64urlOf } from '../../src/protocol/base64url.js';

const loopDecode: typeof b64urlDecode = (() => {
  const source = readFileSync(new URL('../../src/protocol/base64url.ts', import.meta.url), 'utf8');
  const { code } = transformSync(source, { loader: 'ts', format: 'cjs' });
  const module = { exports: {} as { b64urlDecode?: typeof b64urlDecode } };
  vm.runInNewContext(code, { module, exports: module.exports, TextEncoder, TextDecoder });
  return module.exports.b64urlDecode!;
})();

const hex = (u: Uint8Array | null) => (u === null ? null : Buffer.from(u).toString('hex'));

describe('b64urlDecode', () => {
  it('the module run without Buffer decodes by its loop', () => {
    expect(loopDecode).not.toBe(b64urlDecode);
    expect(hex(loopDecode('AQID'))).toBe('010203');
  });

  it('round-trips every length from 0 to 100 bytes, in both ways, into bytes of their own', () => {
    for (let n = 0; n <= 100; n++) {
      const bytes = randomBytes(n);
      const text = bytes.toString('base64url');
      expect(b64urlEncode(bytes)).toBe(text);
      for (const decode of [b64urlDecode, loopDecode]) {
        const out = decode(text)!;
        expect(hex(out)).toBe(bytes.toString('hex'));
        expect(out.byteOffset).toBe(0);
        expect(out.buffer.byteLength).toBe(n);
      }
    }
  });

  it.each([
    ['AQ==', 'padding'],
    ['A+/B', 'the standard alphabet'],
    ['AQI ', 'a space'],
    ['AQIé', 'a character beyond ASCII'],
    ['AQIDB', 'a length of 1 mod 4'],
    ['AR', 'non-zero trailing bits after one byte'],
    ['AQB', 'non-zero trailing bits after two bytes'],
    ['A.B', 'a dot'],
  ])('refuses %j (%s), in both ways', (text) => {
    expect(b64urlDecode(text)).toBeNull();
    expect(loopDecode(text)).toBeNull();
  });

  it('takes the canonical neighbours of those', () => {
    for (const [text, bytes] of [
      ['AQ', '01'],
      ['AQI', '0102'],
      ['', ''],
      ['_-8', 'ffef'],
    ]) {
      expect(hex(b64urlDecode(text!))).toBe(bytes);
      expect(hex(loopDecode(text!))).toBe(bytes);
    }
  });

  it('property: both ways give the same answer for any text near the alphabet', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.stringMatching(/^[A-Za-z0-9_=+/.-]{0,40}$/), fc.string({ maxLength: 20 })),
        (text) => {
          expect(hex(b64urlDecode(text))).toBe(hex(loopDecode(text)));
        },
      ),
      { numRuns: 5000 },
    );
  });
});

describe('isB64urlOf', () => {
  it('says yes exactly where b64urlDecode gives that many bytes', () => {
    const sig = b64urlEncode(randomBytes(64));
    expect(isB64urlOf(sig, 64)).toBe(true);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.stringMatching(/^[A-Za-z0-9_=+/.-]{0,90}$/),
          // One character of a real signature changed, or one too many or too few.
          fc
            .tuple(fc.nat(85), fc.constantFrom('A', 'B', 'Q', 'g', 'w', '_', '-', '=', '+', ''))
            .map(([i, c]) => sig.slice(0, i) + c + sig.slice(i + 1)),
        ),
        fc.constantFrom(0, 1, 2, 3, 63, 64, 65),
        (text, bytes) => {
          expect(isB64urlOf(text, bytes)).toBe(b64urlDecode(text)?.length === bytes);
        },
      ),
      { numRuns: 5000 },
    );
  });
});
