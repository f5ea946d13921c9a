/**
 * The price manifest contract: strict validation with the JSON path of the
 * bad field, loading from a file, and route matching as the middleware uses it.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  compileManifest,
  compileMatch,
  loadManifest,
  matchManifest,
  PatternError,
  parseManifest,
} from '../../src/compile/index.js';
import { MicropayError } from '../../src/protocol/errors.js';
import { tempDir } from './helpers.js';

const valid = {
  micropay: 'manifest',
  version: 1,
  routes: [
    {
      match: 'GET /articles/42',
      price: '0.02 USD',
      amt: 20000,
      cur: 'USD',
      duration: 86400,
      title: 'Article 42',
      sources: ['site/index.html:12:5'],
    },
    { match: 'GET /live/*', dynamic: 'livePrice', title: 'Live', sources: ['prices.yaml:4:3'] },
  ],
};

function invalid(json: unknown): string {
  try {
    parseManifest(json, 'm.json');
  } catch (e) {
    expect(e).toBeInstanceOf(MicropayError);
    expect((e as MicropayError).code).toBe('invalid_manifest');
    return (e as Error).message;
  }
  throw new Error('expected invalid_manifest');
}

const withRoute = (route: unknown) => ({ micropay: 'manifest', version: 1, routes: [route] });

describe('parseManifest', () => {
  it('accepts a valid manifest as it is', () => {
    expect(parseManifest(structuredClone(valid), 'm.json')).toEqual(valid);
  });

  it('fills in amt and cur from price, and price from amt and cur', () => {
    const m = parseManifest(
      {
        micropay: 'manifest',
        version: 1,
        routes: [
          { match: 'GET /a', price: '€0.5' },
          { match: 'POST /b', amt: 7, cur: 'PTS' },
        ],
      },
      'm.json',
    );
    expect(m.routes).toEqual([
      { match: 'GET /a', price: '0.5 EUR', amt: 500000, cur: 'EUR' },
      { match: 'POST /b', price: '0.000007 PTS', amt: 7, cur: 'PTS' },
    ]);
  });

  it.each([
    [null, 'Price manifest m.json: $ must be a JSON object.'],
    [[], 'Price manifest m.json: $ must be a JSON object.'],
    [{ micropay: 'manifest', version: 1 }, 'Price manifest m.json: $.routes must be an array of routes.'],
    [
      { micropay: 'prices', version: 1, routes: [] },
      'Price manifest m.json: $.micropay must be "manifest", got "prices".',
    ],
    [{ micropay: 'manifest', version: 2, routes: [] }, 'Price manifest m.json: $.version must be 1, got 2.'],
    [
      { micropay: 'manifest', version: 1, routes: [], extra: 1 },
      'Price manifest m.json: $.extra is not a manifest field',
    ],
    [withRoute('GET /a'), '$.routes[0] must be an object, got "GET /a"'],
    [withRoute({ price: '1 USD' }), '$.routes[0].match must be a string'],
    [
      withRoute({ match: '/a', price: '1 USD' }),
      '$.routes[0].match "/a" is not valid: expected "METHOD /path"',
    ],
    [
      withRoute({ match: 'get /a', price: '1 USD' }),
      '$.routes[0].match "get /a" is not valid: the method "get"',
    ],
    [withRoute({ match: 'GET /a/*/b', price: '1 USD' }), '"*" may only end the path'],
    [withRoute({ match: 'GET /a/:1', price: '1 USD' }), '":1" is not a valid ":name" parameter'],
    [withRoute({ match: 'GET /a' }), '$.routes[0] needs a price ("price", or "amt" and "cur") or "dynamic"'],
    [
      withRoute({ match: 'GET /a', price: 'two dollars' }),
      '$.routes[0].price "two dollars" is not a price like "0.02 USD"',
    ],
    [withRoute({ match: 'GET /a', price: 2 }), '$.routes[0].price must be a string like "0.02 USD", got 2'],
    [
      withRoute({ match: 'GET /a', amt: 1.5, cur: 'USD' }),
      '$.routes[0].amt must be an integer of micro-units >= 1, got 1.5',
    ],
    [
      withRoute({ match: 'GET /a', amt: 0, cur: 'USD' }),
      '$.routes[0].amt must be an integer of micro-units >= 1, got 0',
    ],
    [
      withRoute({ match: 'GET /a', amt: 1, cur: 'usd' }),
      '$.routes[0].cur must be a currency code like "USD", got "usd"',
    ],
    [
      withRoute({ match: 'GET /a', price: '0.02 USD', amt: 2000, cur: 'USD' }),
      '$.routes[0].price "0.02 USD" disagrees with "amt": 2000 and "cur": "USD" (0.002 USD)',
    ],
    [
      withRoute({ match: 'GET /a', dynamic: 'f', price: '1 USD' }),
      '$.routes[0].price must not be given with "dynamic"',
    ],
    [withRoute({ match: 'GET /a', dynamic: 'no spaces' }), '$.routes[0].dynamic must be a function name'],
    [
      withRoute({ match: 'GET /a', price: '1 USD', duration: -1 }),
      '$.routes[0].duration must be a whole number of seconds',
    ],
    [
      withRoute({ match: 'GET /a', price: '1 USD', duration: '60' }),
      '$.routes[0].duration must be a whole number',
    ],
    [withRoute({ match: 'GET /a', price: '1 USD', title: 7 }), '$.routes[0].title must be a string'],
    [
      withRoute({ match: 'GET /a', price: '1 USD', sources: 'x' }),
      '$.routes[0].sources must be an array of strings',
    ],
    [withRoute({ match: 'GET /a', price: '1 USD', prize: 1 }), '$.routes[0].prize is not a route field'],
  ])('rejects %j', (json, message) => {
    expect(invalid(json)).toContain(message);
  });

  it('names the index of the bad route, and a match listed twice', () => {
    const routes = [...valid.routes, { match: 'GET /c', price: '1 USD', duration: 1.5 }];
    expect(invalid({ ...valid, routes })).toContain('$.routes[2].duration');
    expect(
      invalid({ ...valid, routes: [...valid.routes, { match: 'GET /articles/42', price: '1 USD' }] }),
    ).toBe('Price manifest m.json: $.routes[2].match repeats "GET /articles/42" of $.routes[0].');
  });
});

describe('loadManifest', () => {
  it('loads a file and names it in errors', () => {
    const dir = tempDir();
    const good = join(dir, 'good.json');
    writeFileSync(good, JSON.stringify(valid));
    expect(loadManifest(good)).toEqual(valid);

    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify(withRoute({ match: 'GET /a', amt: -5, cur: 'USD' })));
    expect(() => loadManifest(bad)).toThrow(
      `Price manifest ${bad}: $.routes[0].amt must be an integer of micro-units >= 1, got -5.`,
    );

    const notJson = join(dir, 'broken.json');
    writeFileSync(notJson, '{ "micropay": ');
    expect(() => loadManifest(notJson)).toThrow(
      expect.objectContaining({
        code: 'invalid_manifest',
        message: expect.stringContaining(`${notJson} is not valid JSON`),
      }),
    );
    expect(() => loadManifest(join(dir, 'missing.json'))).toThrow(
      expect.objectContaining({
        code: 'invalid_manifest',
        message: expect.stringContaining('missing.json cannot be read'),
      }),
    );
  });
});

describe('matching', () => {
  it('matches exact paths, :params and a trailing *, ignoring the query', () => {
    const exact = compileMatch('GET /articles/42');
    expect(exact.exact).toBe(true);
    expect(exact.test('GET', '/articles/42')).toEqual({});
    expect(exact.test('GET', '/articles/42?utm=x')).toEqual({});
    expect(exact.test('GET', '/articles/42/')).toBeNull();
    expect(exact.test('POST', '/articles/42')).toBeNull();
    expect(exact.test('GET', '/Articles/42')).toBeNull();

    const param = compileMatch('GET /u/:user/posts/:id');
    expect(param.test('GET', '/u/ann/posts/7?x')).toEqual({ user: 'ann', id: '7' });
    expect(param.test('GET', '/u//posts/7')).toBeNull();
    expect(param.test('GET', '/u/ann/posts/7/more')).toBeNull();

    const star = compileMatch('GET /live/*');
    expect(star.test('GET', '/live/a/b.json?x=1')).toEqual({ '*': 'a/b.json' });
    expect(star.test('GET', '/live/')).toEqual({ '*': '' });
    expect(star.test('GET', '/live')).toBeNull();
    expect(star.test('GET', '/lively')).toBeNull();

    expect(compileMatch('GET /a.b+c(d)').test('GET', '/a.b+c(d)')).toEqual({});
    expect(compileMatch('GET /a.b').test('GET', '/aXb')).toBeNull();
  });

  it('compares a pattern with a query with the whole target, literally', () => {
    const q = compileMatch('GET /search?q=cats&page=2');
    expect(q.test('GET', '/search?q=cats&page=2')).toEqual({});
    expect(q.test('GET', '/search?page=2&q=cats')).toBeNull();
    expect(q.test('GET', '/search')).toBeNull();
  });

  it('takes a default method for rules, and says what is wrong', () => {
    expect(compileMatch('/a', 'GET').match).toBe('GET /a');
    expect(() => compileMatch('/a')).toThrow(PatternError);
    expect(() => compileMatch('GET a')).toThrow('the path must start with "/"');
    expect(() => compileMatch('GET /a b')).toThrow('the path must not contain spaces or "#"');
    expect(() => compileMatch('Get /a')).toThrow('the method "Get" is not an upper-case HTTP method');
  });

  it('finds the first matching route of a manifest', () => {
    const routes = compileManifest(
      parseManifest(
        {
          micropay: 'manifest',
          version: 1,
          routes: [
            { match: 'GET /live/special', price: '1 USD' },
            { match: 'GET /live/*', dynamic: 'livePrice' },
            { match: 'POST /live/*', price: '2 USD' },
          ],
        },
        'm',
      ),
    );
    expect(matchManifest(routes, 'GET', '/live/special?x')?.route.amt).toBe(1000000);
    expect(matchManifest(routes, 'GET', '/live/other')).toEqual({
      route: routes[1]!.route,
      params: { '*': 'other' },
    });
    expect(matchManifest(routes, 'POST', '/live/special')?.route.amt).toBe(2000000);
    expect(matchManifest(routes, 'GET', '/free')).toBeNull();
  });
});
