import { describe, expect, it } from 'vitest';
import { formatMoney, parseMoney, parsePrice } from '../../src/protocol/money.js';

describe('money', () => {
  it.each([
    ['0.002 USD', 2000, 'USD'],
    ['$0.002', 2000, 'USD'],
    ['€1', 1_000_000, 'EUR'],
    ['£1.50', 1_500_000, 'GBP'],
    ['USD 12.50', 12_500_000, 'USD'],
    ['  7 PTS ', 7_000_000, 'PTS'],
    ['0.000001 USD', 1, 'USD'],
    ['0.1 USD', 100_000, 'USD'],
    ['9007199254.740991 USD', Number.MAX_SAFE_INTEGER, 'USD'],
  ])('parses %s', (text, amt, cur) => {
    expect(parseMoney(text)).toEqual({ amt, cur });
  });

  it('takes { amt, cur } in micro-units', () => {
    expect(parsePrice({ amt: 2000, cur: 'USD' })).toEqual({ amt: 2000, cur: 'USD' });
  });

  it.each([
    ['0.0000001 USD', 'more than 6 decimal places'],
    ['-1 USD', 'negative'],
    ['$-1', 'negative'],
    ['1 usd', 'currency'],
    ['1,5 USD', 'decimal'],
    ['1e3 USD', 'decimal'],
    ['USD', 'amount and a currency'],
    ['', 'expected'],
    ['9007199254.740992 USD', '2^53-1'],
    ['0.5 USD EUR', 'amount and a currency'],
  ])('rejects %j with a coded error', (text, words) => {
    expect(() => parseMoney(text)).toThrowError(
      expect.objectContaining({ code: 'invalid_price', message: expect.stringContaining(words) }),
    );
  });

  it('rejects floats, negatives and bad objects in { amt, cur }', () => {
    for (const bad of [
      { amt: 0.5, cur: 'USD' },
      { amt: -1, cur: 'USD' },
      { amt: 1, cur: 'usd' },
      { amt: 2 ** 53, cur: 'USD' },
      12,
      null,
    ]) {
      expect(() => parseMoney(bad)).toThrowError(expect.objectContaining({ code: 'invalid_price' }));
    }
  });

  it('a price is at least one micro-unit', () => {
    expect(parseMoney('0 USD')).toEqual({ amt: 0, cur: 'USD' });
    expect(() => parsePrice('0 USD')).toThrowError(expect.objectContaining({ code: 'invalid_price' }));
  });

  it('formats back without trailing zeros, keeping the sign', () => {
    expect(formatMoney(2000, 'USD')).toBe('0.002 USD');
    expect(formatMoney(12_500_000, 'EUR')).toBe('12.5 EUR');
    expect(formatMoney(-1, 'USD')).toBe('-0.000001 USD');
    expect(formatMoney(0, 'USD')).toBe('0 USD');
    for (const amt of [1, 10, 999_999, 1_000_000, 123_456_789, Number.MAX_SAFE_INTEGER]) {
      expect(parseMoney(formatMoney(amt, 'USD')).amt).toBe(amt);
    }
  });
});
