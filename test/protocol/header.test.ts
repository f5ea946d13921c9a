import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeToken } from '../../src/protocol/codec.js';
import { isMicropayError } from '../../src/protocol/errors.js';
import { formatPaymentHeader, parsePaymentHeader } from '../../src/protocol/header.js';
import { vectors as V } from '../helpers/vectors.js';

const malformed = expect.objectContaining({ code: 'malformed_payment' });

describe('Micropay-Payment header', () => {
  it('parses the vector header', () => {
    expect(parsePaymentHeader(V.tokens.paymentHeader)).toEqual({
      kind: 'order',
      cert: V.tokens.cert.token,
      order: V.tokens.order.token,
    });
  });

  it('round-trips through formatPaymentHeader, including escapes', () => {
    const h = { kind: 'order' as const, cert: 'a"b\\c', order: 'x' };
    expect(parsePaymentHeader(formatPaymentHeader(h))).toEqual(h);
    expect(parsePaymentHeader('receipt="r.s"')).toEqual({ kind: 'receipt', receipt: 'r.s' });
  });

  it('follows RFC 8941 whitespace rules and ignores unknown keys', () => {
    expect(parsePaymentHeader('  cert="a" ,\torder="b", x-future="c"')).toMatchObject({
      cert: 'a',
      order: 'b',
    });
    expect(parsePaymentHeader(['cert="a"', 'order="b"'])).toMatchObject({ cert: 'a', order: 'b' });
  });

  it.each([
    ['', 'empty'],
    ['cert=1; order=2', 'quoted string'],
    ['cert="a"', 'order is missing'],
    ['order="a"', 'cert is missing'],
    ['cert="a", order="b",', 'trailing'],
    ['cert="a" order="b"', 'expected ","'],
    ['cert="a";x=1, order="b"', 'parameters'],
    ['cert="a", cert="b", order="c"', 'twice'],
    ['Cert="a", order="b"', 'invalid key'],
    ['cert="a\\n", order="b"', 'escape'],
    ['cert="a, order="b"', 'expected ","'],
    ['cert="a", order="b", receipt="c"', 'not both'],
    ['cert="é", order="b"', 'printable ASCII'],
    ['cert', 'key="value"'],
    [`cert="${'a'.repeat(10_001)}", order="b"`, 'longer than'],
  ])('rejects %j', (h, words) => {
    expect(() => parsePaymentHeader(h)).toThrowError(
      expect.objectContaining({ code: 'malformed_payment', message: expect.stringContaining(words) }),
    );
  });

  it('property: any string gives a parse or the coded error, never another exception', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) => {
        try {
          parsePaymentHeader(s);
        } catch (e) {
          expect(isMicropayError(e) && e.code === 'malformed_payment').toBe(true);
        }
      }),
      { numRuns: 5000 },
    );
  });

  it('property: mutations of a valid header parse or fail with the coded error', () => {
    const base = V.tokens.paymentHeader;
    fc.assert(
      fc.property(
        fc.nat(base.length - 1),
        fc.string({ minLength: 0, maxLength: 3 }),
        fc.nat(3),
        (pos, ins, del) => {
          const s = base.slice(0, pos) + ins + base.slice(pos + del);
          try {
            parsePaymentHeader(s);
          } catch (e) {
            expect(e).toEqual(malformed);
          }
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('property: the wallet-form shortcut gives what the dictionary parser gives, or the same refusal', () => {
    // An array of one header is never taken by the shortcut: it is the dictionary parser's answer.
    const outcome = (h: string | string[]) => {
      try {
        return parsePaymentHeader(h);
      } catch (e) {
        return isMicropayError(e) ? e.code : e;
      }
    };
    const base = V.tokens.paymentHeader;
    const near = fc
      .tuple(
        fc.nat(base.length - 1),
        fc.constantFrom('"', '\\', ' ', ',', '=', ';', 'é', '\t', '', 'a'),
        fc.nat(2),
      )
      .map(([p, ins, d]) => base.slice(0, p) + ins + base.slice(p + d));
    const shaped = fc
      .tuple(
        fc.stringMatching(/^[A-Za-z0-9_.\-"\\ ,=]{0,40}$/),
        fc.stringMatching(/^[A-Za-z0-9_.\-"\\ ,=]{0,40}$/),
      )
      .map(([a, b]) => `cert="${a}", order="${b}"`);
    fc.assert(
      fc.property(fc.oneof(near, shaped), (h) => {
        expect(outcome(h)).toEqual(outcome([h]));
      }),
      { numRuns: 5000 },
    );
    // The shortcut's own cases, spelled out.
    expect(outcome('cert="a.b", order="c.d"')).toEqual({ kind: 'order', cert: 'a.b', order: 'c.d' });
    expect(outcome('cert="a\\"b", order="c"')).toEqual({ kind: 'order', cert: 'a"b', order: 'c' });
    expect(outcome('cert="a", order="b" ')).toEqual({ kind: 'order', cert: 'a', order: 'b' });
    expect(outcome(`cert="${'a'.repeat(9_990)}", order="b"`)).toBe('malformed_payment');
  });
});

describe('token decoding', () => {
  it('property: random and mutated tokens give the coded error or a decode, never another exception', () => {
    const base = V.tokens.order.token;
    const tokenish = fc.oneof(
      fc.string({ maxLength: 500 }),
      fc.stringMatching(/^[A-Za-z0-9_.=+/-]{0,400}$/),
      fc
        .tuple(fc.nat(base.length - 1), fc.string({ maxLength: 4 }), fc.nat(4))
        .map(([p, ins, d]) => base.slice(0, p) + ins + base.slice(p + d)),
    );
    fc.assert(
      fc.property(tokenish, (t) => {
        try {
          decodeToken(t, 'mp-order');
        } catch (e) {
          expect(e).toEqual(malformed);
        }
      }),
      { numRuns: 5000 },
    );
  });
});
