/**
 * The compiler on pages held in memory (`compilePages`): conflicts, invalid
 * markup, line endings, `<base>`, templates, pages already compiled, and the
 * options. The fixture site is in site.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { CompileError, compilePages, type PageInput, type PricingOptions } from '../../src/compile/index.js';
import { isMicropayError } from '../../src/protocol/errors.js';
import { stripCompiled } from './helpers.js';

const doc = (body: string, head = '<title>t</title>') =>
  `<!DOCTYPE html>\n<html>\n<head>\n  ${head}\n</head>\n<body>\n${body}\n</body>\n</html>\n`;

function one(html: string, options: PricingOptions = {}, path = 'index.html') {
  const r = compilePages([{ path, html }], options);
  return { html: r.pages[0]!.html, result: r };
}

function failure(pages: PageInput[], options: PricingOptions = {}): CompileError {
  try {
    compilePages(pages, options, 'site/');
  } catch (e) {
    expect(e).toBeInstanceOf(CompileError);
    expect(isMicropayError(e)).toBe(true);
    return e as CompileError;
  }
  throw new Error('expected a CompileError');
}

describe('conflicts', () => {
  it('rejects a URL priced twice differently, naming both places', () => {
    const e = failure([
      { path: 'index.html', html: doc('<p><a href="/articles/42" data-price="0.02 USD">a</a></p>') },
      { path: 'blog/post.html', html: doc('<p>\n  <a href="../articles/42" data-price="$0.03">b</a></p>') },
    ]);
    expect(e.code).toBe('price_conflict');
    expect(e.problems).toEqual([
      {
        code: 'price_conflict',
        source: 'site/blog/post.html:8:3',
        message:
          'GET /articles/42 is priced 0.02 USD at site/index.html:7:4 but 0.03 USD at site/blog/post.html:8:3',
      },
    ]);
    expect(e.message).toContain('site/index.html:7:4');
    expect(e.message).toContain('site/blog/post.html:8:3');
  });

  it('rejects the same URL in two currencies, and differing durations', () => {
    const e = failure([
      {
        path: 'a.html',
        html: '<a href="/x" data-price="0.02 USD" data-duration="60">1</a><a href="/x" data-price="€0.02">2</a>',
      },
      { path: 'b.html', html: '<a href="/x" data-price="0.02 USD" data-duration="120">3</a>' },
    ]);
    expect(e.problems.map((p) => p.message)).toEqual([
      'GET /x is priced 0.02 USD at site/a.html:1:1 but 0.02 EUR at site/a.html:1:60',
      'GET /x has duration 60 at site/a.html:1:1 but 120 at site/b.html:1:1',
    ]);
  });

  it('accepts the same price written differently, and tells paths from queries apart', () => {
    const { result } = one(
      '<a href="/x" data-price="0.02 USD">1</a><a href="/x" data-price="$0.020">2</a>' +
        '<a href="/x?page=2" data-price="0.05 USD">3</a><a href="/x#top" data-price="20000 USD">4</a>'.replace(
          '20000 USD',
          'USD 0.02',
        ),
    );
    expect(result.manifest.routes.map((r) => [r.match, r.amt])).toEqual([
      ['GET /x', 20000],
      ['GET /x?page=2', 50000],
    ]);
  });

  it('lets page markup win over a rule, without conflict', () => {
    const { html, result } = one(
      '<a href="/articles/1" data-price="0.05 USD">1</a> <a href="/articles/2">2</a>',
      {
        rules: [{ match: '/articles/*', price: '0.01 USD' }],
      },
    );
    expect(html).toContain('<a href="/articles/1" data-price="0.05 USD" data-micropay-price="0.05 USD"');
    expect(html).toContain('<a href="/articles/2" data-micropay-price="0.01 USD"');
    expect(result.manifest.routes.map((r) => r.match)).toEqual(['GET /articles/1', 'GET /articles/*']);
  });
});

describe('invalid markup', () => {
  it('reports every bad price and duration with its place, and writes nothing', () => {
    const e = failure([
      {
        path: 'p.html',
        html: '<p>\n<a href="/a" data-price="0.02">a</a>\n<a href="/b" data-price="-1 USD">b</a>\n<a href="/c" data-price="1 USD" data-duration="soon">c</a>',
      },
    ]);
    expect(e.code).toBe('invalid_price');
    expect(e.problems.map((p) => p.source)).toEqual([
      'site/p.html:2:1',
      'site/p.html:3:1',
      'site/p.html:4:1',
    ]);
    expect(e.problems[0]!.message).toMatch(/^data-price "0\.02" is not a price: /);
    expect(e.problems[2]!.message).toBe('data-duration "soon" is not a whole number of seconds');
  });

  it('warns about prices on links it cannot price and leaves them alone', () => {
    const html = '<a data-price="1 USD">no href</a> <a href="ftp://files/x" data-price="1 USD">ftp</a>';
    const { html: out, result } = one(html);
    expect(out).toBe(html);
    expect(result.warnings.map((w) => w.message)).toEqual([
      'data-price on a link without href is ignored',
      'data-price on "ftp://files/x" is ignored: only links to this site can be priced',
    ]);
  });

  it('warns about a path that would read as a pattern', () => {
    const { html, result } = one('<a href="/files/*" data-price="1 USD">star</a>');
    expect(html).not.toContain('data-micropay-');
    expect(result.warnings[0]!.message).toBe(
      '/files/* cannot be priced: its path reads as a pattern (":" segment or "*")',
    );
    const long = `/${'a'.repeat(2048)}`;
    expect(one(`<a href="${long}" data-price="1 USD">long</a>`).result.warnings[0]!.message).toBe(
      `${long} cannot be priced: it is longer than 2048 characters`,
    );
  });
});

describe('splicing', () => {
  it('keeps CRLF line endings and every other byte', () => {
    const html = doc('<p>\r\n  <a href="/a" data-price="1 USD">a</a>\r\n</p>').replace(/\n/g, '\r\n');
    const { html: out } = one(html);
    expect(out).toContain(
      '<title>t</title>\r\n  <script src="/_micropay/wallet.js" defer data-micropay-wallet></script>\r\n</head>',
    );
    expect(stripCompiled(out)).toBe(html);
    expect(out.replace(/\r\n/g, '')).not.toContain('\n');
  });

  it('keeps a byte order mark and puts the script after it', () => {
    const html = '\uFEFF<p><a href="/a" data-price="1 USD">a</a></p>';
    const { html: out } = one(html);
    expect(
      out.startsWith('\uFEFF<script src="/_micropay/wallet.js" defer data-micropay-wallet></script><p>'),
    ).toBe(true);
    expect(stripCompiled(out)).toBe(html);
  });

  it('writes into self-closing and unquoted tags, and escapes values', () => {
    const { html } = one(
      '<a href=/a/ data-price="1 USD" data-title="Tom &amp; &quot;Jerry&quot; <3"/>x</a><a href="/b" data-price="1 USD"\n/>y</a>',
    );
    expect(html).toContain(
      '<a href=/a/ data-price="1 USD" data-title="Tom &amp; &quot;Jerry&quot; <3" data-micropay-price="1 USD"' +
        ' data-micropay-amt="1000000" data-micropay-cur="USD" data-micropay-requesturl="/a/"' +
        ' data-micropay-title="Tom &amp; &quot;Jerry&quot; &lt;3"/>',
    );
    expect(html).toContain('<a href="/b" data-price="1 USD" data-micropay-price="1 USD"');
    expect(html).toContain('data-micropay-title="y"\n/>y</a>');
  });

  it('rewrites stale compiled attributes in place and keeps the rest of the tag', () => {
    const html =
      '<a data-micropay-title="old" href="/a" data-micropay-amt="5"  data-price="2 USD" class="c" data-micropay-merchant="m">a</a>';
    const { html: out } = one(html, { merchant: 'shop' });
    expect(out).toBe(
      '<script src="/_micropay/wallet.js" defer data-micropay-wallet></script>\n<a href="/a"  data-price="2 USD" class="c"' +
        ' data-micropay-price="2 USD" data-micropay-amt="2000000" data-micropay-cur="USD" data-micropay-requesturl="/a"' +
        ' data-micropay-merchant="shop" data-micropay-title="a">a</a>',
    );
    expect(one(out, { merchant: 'shop' }).html).toBe(out);
  });

  it('does not add a second wallet script, and none to a page without priced links', () => {
    const withScript = doc(
      '<a href="/a" data-price="1 USD">a</a>',
      '<script src="/w.js" data-micropay-wallet></script>',
    );
    expect(one(withScript).html.split('data-micropay-wallet').length).toBe(2);
    const free = doc('<a href="/a">a</a>');
    expect(one(free, { rules: [{ match: '/b', price: '1 USD' }] }).html).toBe(free);
  });

  it('uses the walletScript option, escaped', () => {
    const { html } = one('<a href="/a" data-price="1 USD">a</a>', {
      walletScript: 'https://cdn.example/w.js?v=1&x="2"',
    });
    expect(html).toContain(
      '<script src="https://cdn.example/w.js?v=1&amp;x=&quot;2&quot;" defer data-micropay-wallet></script>',
    );
  });

  it('puts the script at the start of the body when the head has no end tag', () => {
    const html =
      '<html><head><title>t</title>\n<body>\n    <a href="/a" data-price="1 USD">a</a>\n</body></html>';
    expect(one(html).html).toBe(
      '<html><head><title>t</title>\n<body>\n    <script src="/_micropay/wallet.js" defer data-micropay-wallet></script>\n' +
        '    <a href="/a" data-price="1 USD" data-micropay-price="1 USD" data-micropay-amt="1000000" data-micropay-cur="USD"' +
        ' data-micropay-requesturl="/a" data-micropay-title="a">a</a>\n</body></html>',
    );
  });

  it('prices links inside templates, not those of SVG, and reads misnested links once', () => {
    const { html, result } = one(
      '<template><a href="/t" data-price="1 USD">t</a></template><svg><a href="/s" data-price="1 USD"><text>s</text></a></svg>' +
        '<b><a href="/m" data-price="1 USD"><p>m</b>n</a>',
    );
    expect(html).toContain('<a href="/t" data-price="1 USD" data-micropay-price');
    expect(html).toContain('<a href="/s" data-price="1 USD"><text>');
    expect(html.split('requesturl="/m"').length).toBe(2);
    expect(result.pages[0]!.linksPriced).toBe(2);
  });
});

describe('resolving links', () => {
  it('follows <base href> and the base option', () => {
    const page = '<head><base href="/docs/v2/"></head><a href="guide" data-price="1 USD">g</a>';
    expect(one(page).result.manifest.routes[0]!.match).toBe('GET /docs/v2/guide');
    const rel =
      '<a href="guide" data-price="1 USD">g</a><a href="https://news.example/abs" data-price="1 USD">a</a>';
    const r = one(rel, { base: 'https://news.example/site/' }, 'sub/page.html').result;
    expect(r.manifest.routes.map((x) => x.match)).toEqual(['GET /site/sub/guide', 'GET /abs']);
    expect(r.warnings).toEqual([]);
    const p = one(rel, { base: '/site' }, 'page.html').result;
    expect(p.manifest.routes.map((x) => x.match)).toEqual(['GET /site/guide']);
    expect(p.warnings[0]!.message).toContain('https://news.example/abs');
  });

  it('percent-encodes as a browser does, from pages whose names need it', () => {
    const { result } = one(
      '<a href="caf\u00e9 menu.html?q=a b" data-price="1 USD">x</a>',
      {},
      'my dir/index.html',
    );
    expect(result.manifest.routes[0]!.match).toBe('GET /my%20dir/caf%C3%A9%20menu.html?q=a%20b');
  });

  it('does not price fragment links by rule', () => {
    const { html } = one(
      '<a href="#part-2">part 2</a>',
      { rules: [{ match: '/*', price: '1 USD' }] },
      'articles/1',
    );
    expect(html).not.toContain('data-micropay-');
  });
});

describe('options', () => {
  it('rejects a bad merchant id, rules and base', () => {
    const p = [{ path: 'a.html', html: '' }];
    expect(() => compilePages(p, { merchant: 'no spaces' })).toThrow(
      expect.objectContaining({ code: 'invalid_options' }),
    );
    expect(() => compilePages(p, { base: 'ftp://x/' })).toThrow(
      expect.objectContaining({ code: 'invalid_options' }),
    );
    expect(() => compilePages(p, { rules: [{ match: '/a/*/b', price: '1 USD' }] })).toThrow(
      expect.objectContaining({ code: 'invalid_rules', message: expect.stringContaining('rules[0]') }),
    );
  });

  it('takes rules in code, with { amt, cur } prices', () => {
    const { result } = one('<a href="/p/1">1</a>', {
      rules: [{ match: '/p/:id', price: { amt: 5, cur: 'PTS' }, title: 'P' }],
    });
    expect(result.manifest.routes).toEqual([
      {
        match: 'GET /p/:id',
        price: '0.000005 PTS',
        amt: 5,
        cur: 'PTS',
        title: 'P',
        sources: ['rules[0]', 'index.html:1:1'],
      },
    ]);
  });

  it('warns about a rule that page markup shadows', () => {
    const { result } = one('<a href="/a" data-price="1 USD">a</a>', {
      rules: [
        { match: '/a', price: '2 USD' },
        { match: 'GET /a', price: '3 USD' },
      ],
    });
    expect(result.manifest.routes.map((r) => r.match)).toEqual(['GET /a']);
    expect(result.warnings.map((w) => [w.code, w.source])).toEqual([
      ['shadowed_rule', 'rules[0]'],
      ['shadowed_rule', 'rules[1]'],
    ]);
  });
});
