/**
 * The rules file: YAML parsing, validation with line and column, and the
 * first-match-wins order.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadRules, parseRules } from '../../src/compile/index.js';
import { FIXTURES, tempDir } from './helpers.js';

function invalid(text: string): string {
  try {
    parseRules(text, 'prices.yaml');
  } catch (e) {
    expect((e as { code?: string }).code).toBe('invalid_rules');
    return (e as Error).message;
  }
  throw new Error('expected invalid_rules');
}

describe('rules', () => {
  it('loads the fixture rules: fixed, dynamic, with a method', () => {
    const rules = loadRules(join(FIXTURES, 'prices.yaml'));
    expect(rules.map((r) => [r.matcher.match, r.money, r.dynamic, r.duration, r.title, r.source])).toEqual([
      ['GET /articles/*', { amt: 10000, cur: 'USD' }, undefined, 3600, undefined, 'prices.yaml:2:3'],
      ['GET /live/:feed', undefined, 'livePrice', undefined, 'Live feed', 'prices.yaml:5:3'],
      ['POST /api/answers', { amt: 1000, cur: 'USD' }, undefined, undefined, undefined, 'prices.yaml:8:3'],
    ]);
  });

  it('reads an empty file as no rules', () => {
    expect(parseRules('', 'p.yaml')).toEqual([]);
    expect(parseRules('# nothing yet\n', 'p.yaml')).toEqual([]);
  });

  it('says where a rule is wrong', () => {
    expect(invalid('- match: /a\n  price: 0.01 USD\n- match: /b\n  price: cheap\n')).toBe(
      'Price rule at prices.yaml:3:3: "price" "cheap" is not a price like "0.02 USD".',
    );
    expect(invalid('- match: /a\n  price: 1 USD\n  dynamic: f\n')).toBe(
      'Price rule at prices.yaml:1:3: give exactly one of "price" (like "0.02 USD") and "dynamic" (a function name).',
    );
    expect(invalid('- match: /a\n')).toContain('give exactly one of "price"');
    expect(invalid('- match: /a\n  dynamic: 12\n')).toContain(
      '"dynamic" must be a function name like "livePrice", got 12',
    );
    expect(invalid('- match: /a\n  price: 1 USD\n  duration: 1h\n')).toContain(
      '"duration" must be a whole number of seconds',
    );
    expect(invalid('- match: /a\n  price: 1 USD\n  title: [x]\n')).toContain('"title" must be a string');
    expect(invalid('- match: /a\n  price: 1 USD\n  cost: 2\n')).toContain('"cost" is not a rule field');
    expect(invalid('- match: a\n  price: 1 USD\n')).toContain(
      '"match" "a" is not valid: the path must start with "/"',
    );
    expect(invalid('- price: 1 USD\n')).toContain('"match" must be a path pattern');
    expect(invalid('- /articles/*\n')).toBe(
      'Price rule at prices.yaml:1:3: expected a mapping like { match: "/articles/*", price: "0.02 USD" }.',
    );
    expect(invalid('match: /a\nprice: 1 USD\n')).toBe(
      'Rules file prices.yaml:1:1: expected a list of rules ("- match: /articles/*" lines).',
    );
    expect(invalid('- match: /a\n  price: [1 USD\n')).toMatch(
      /^Rules file prices\.yaml:\d+:\d+ is not valid YAML: /,
    );
  });

  it('accepts prices with symbols and as { amt, cur }', () => {
    const rules = parseRules(
      '- match: /a\n  price: $0.02\n- match: /b\n  price: "€0.02"\n- match: /c\n  price: £0.02\n- match: /d\n  price: { amt: 5, cur: PTS }\n',
      'p.yaml',
    );
    expect(rules.map((r) => r.money)).toEqual([
      { amt: 20000, cur: 'USD' },
      { amt: 20000, cur: 'EUR' },
      { amt: 20000, cur: 'GBP' },
      { amt: 5, cur: 'PTS' },
    ]);
  });

  it('names a file it cannot read', () => {
    expect(() => loadRules(join(tempDir(), 'nope.yaml'))).toThrow(
      expect.objectContaining({
        code: 'invalid_rules',
        message: expect.stringContaining('nope.yaml cannot be read'),
      }),
    );
    const p = join(tempDir(), 'r.yaml');
    writeFileSync(p, '- match: /x\n  price: 0.1 USD\n');
    expect(loadRules(p)[0]!.source).toBe('r.yaml:1:3');
  });
});
