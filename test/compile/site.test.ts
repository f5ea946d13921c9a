/**
 * The compiler over the fixture site (test/fixtures/compile/site): what each
 * page becomes, that every other byte survives, that compiling the output
 * again changes nothing, and the manifest it writes.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, serialize } from 'parse5';
import { beforeAll, describe, expect, it } from 'vitest';
import { type CompileSummary, compile, loadManifest, type PriceManifest } from '../../src/compile/index.js';
import { FIXTURES, readTree, stripCompiled, tempDir } from './helpers.js';

const SITE = join(FIXTURES, 'site');
const RULES = join(FIXTURES, 'prices.yaml');

function linkTag(page: string, href: string): string {
  const at =
    page.indexOf(`href="${href}"`) >= 0 ? page.indexOf(`href="${href}"`) : page.indexOf(`HREF='${href}'`);
  expect(at, `link ${href}`).toBeGreaterThan(0);
  const start = page.lastIndexOf('<', at);
  return page.slice(start, page.indexOf('>', at) + 1);
}

describe('compiling the fixture site', () => {
  let out: string;
  let summary: CompileSummary;
  let input: Map<string, Buffer>;
  let output: Map<string, Buffer>;
  const page = (name: string) => output.get(name)!.toString('utf8');

  beforeAll(async () => {
    out = join(tempDir(), 'out');
    summary = await compile({ input: SITE, outDir: out, rules: RULES, merchant: 'daily-byte' });
    input = readTree(SITE);
    output = readTree(out);
  });

  it('writes every file and the manifest, and counts what it did', () => {
    expect([...output.keys()]).toEqual([...input.keys(), 'micropay-manifest.json'].sort());
    expect(summary).toMatchObject({ files: 7, pages: 6, linksPriced: 13, pagesPriced: 5, pagesChanged: 5 });
    expect(summary.manifestPath).toBe(join(out, 'micropay-manifest.json'));
  });

  it('keeps every byte outside the rewritten start tags and the wallet script', () => {
    for (const [name, bytes] of input) {
      const after = output.get(name)!;
      if (!/\.html?$/.test(name)) {
        expect(after.equals(bytes), name).toBe(true);
        continue;
      }
      const encoding = name === 'latin1.html' ? 'latin1' : 'utf8';
      expect(stripCompiled(after.toString(encoding)), name).toBe(bytes.toString(encoding));
      expect(Buffer.from(stripCompiled(after.toString(encoding)), encoding).equals(bytes), name).toBe(true);
    }
  });

  it('leaves a page without priced links byte for byte the same, with no wallet script', () => {
    expect(output.get('about.html')!.equals(input.get('about.html')!)).toBe(true);
  });

  it('writes per-fee-link attributes on a link priced in the page', () => {
    expect(linkTag(page('index.html'), '/articles/42')).toBe(
      '<a href="/articles/42" data-price="0.02 USD" data-duration="86400" data-title="Article 42"' +
        ' data-micropay-price="0.02 USD" data-micropay-amt="20000" data-micropay-cur="USD"' +
        ' data-micropay-requesturl="/articles/42" data-micropay-merchant="daily-byte"' +
        ' data-micropay-duration="86400" data-micropay-title="Article 42">',
    );
  });

  it('reads prices written with $, € and £, in upper-case and single-quoted markup', () => {
    expect(linkTag(page('index.html'), '/articles/8')).toContain(
      'Data-Title=Eight data-micropay-price="0.05 EUR" data-micropay-amt="50000" data-micropay-cur="EUR"',
    );
    expect(linkTag(page('index.html'), '/articles/9')).toMatch(
      /^<area .*data-micropay-amt="100000" data-micropay-cur="GBP"/,
    );
  });

  it('keeps the query of a link, entities decoded as the browser sends it', () => {
    const tag = linkTag(page('index.html'), '/search?q=cats&amp;page=2');
    expect(tag).toContain('data-micropay-requesturl="/search?q=cats&amp;page=2"');
    expect(tag).toContain('data-micropay-amt="10000"');
  });

  it('prices links matched by rules, fixed and dynamic', () => {
    const seven = linkTag(page('index.html'), 'articles/7');
    expect(seven).toContain('data-micropay-price="0.01 USD"');
    expect(seven).toContain('data-micropay-duration="3600"');
    expect(seven).toContain('data-micropay-title="Seven ways to pay a cent"');
    const live = linkTag(page('index.html'), '/live/scores');
    expect(live).toBe(
      '<a href="/live/scores" data-micropay-dynamic="livePrice" data-micropay-requesturl="/live/scores"' +
        ' data-micropay-merchant="daily-byte" data-micropay-title="Live feed">',
    );
  });

  it('resolves relative links against the page, and a URL priced in one page is priced the same everywhere', () => {
    const post = page('blog/post.html');
    // ../articles/42 is priced in index.html at 0.02 USD: that beats the 0.01 USD rule.
    expect(linkTag(post, '../articles/42')).toContain('data-micropay-amt="20000"');
    expect(linkTag(post, '../articles/42')).toContain('data-micropay-title="Article 42"');
    const seventh = linkTag(post, '../articles/7?ref=blog#comments');
    expect(seventh).toContain('data-micropay-requesturl="/articles/7?ref=blog"');
    expect(seventh).toContain('data-micropay-amt="10000"');
    expect(linkTag(post, './2024/notes.html')).toContain('data-micropay-requesturl="/blog/2024/notes.html"');
    expect(linkTag(page('fragment.htm'), '/articles/42')).toContain('data-micropay-amt="20000"');
  });

  it('leaves alone unpriced links, other sites, other schemes, fragments, comments and script text', () => {
    const index = page('index.html');
    for (const href of [
      '/',
      'blog/post.html',
      'about.html',
      'https://other.example/articles/42',
      'mailto:desk@daily.example',
      '#top',
    ]) {
      expect(linkTag(index, href), href).not.toContain('data-micropay-');
    }
    expect(index).toContain(
      '<!-- <a href="/articles/13" data-price="0.99 USD">commented out, never priced</a> -->',
    );
    expect(index).toContain(`var teaser = '<a href="/articles/1" data-price="9 USD">x</a>';`);
    expect(linkTag(page('blog/post.html'), '//cdn.example/logo.png')).not.toContain('data-micropay-');
    expect(summary.warnings).toEqual([
      {
        code: 'unpriceable_link',
        source: 'site/index.html:30:21',
        message:
          'data-price on "https://other.example/articles/42" is ignored: only links to this site can be priced',
      },
    ]);
  });

  it('adds the wallet script once, before </head>, at the body start, or inline', () => {
    const count = (s: string) => s.split('data-micropay-wallet').length - 1;
    const index = page('index.html');
    expect(count(index)).toBe(1);
    expect(index).toContain(
      '  </script>\n  <script src="/_micropay/wallet.js" defer data-micropay-wallet></script>\n</head>',
    );
    expect(page('blog/post.html')).toContain(
      '<base target="_self">\n    <script src="/_micropay/wallet.js" defer data-micropay-wallet></script>\n  </head>',
    );
    expect(
      page('fragment.htm').startsWith(
        '<script src="/_micropay/wallet.js" defer data-micropay-wallet></script>\n<h2>',
      ),
    ).toBe(true);
    expect(page('malformed.html')).toContain(
      '<title>Malformed, but it must survive</title>\n<script src="/_micropay/wallet.js" defer data-micropay-wallet></script>\n<p>',
    );
    expect(output.get('latin1.html')!.toString('latin1')).toContain(
      '<title>Caf\u00e9</title><script src="/_micropay/wallet.js" defer data-micropay-wallet></script></head>',
    );
  });

  it('changes nothing in malformed HTML but the priced links', () => {
    const m = page('malformed.html');
    expect(linkTag(m, '/articles/100')).toContain('data-micropay-title="in a table" >');
    expect(m).toContain('<a href=/articles/99 data-price="0.03 USD" class=x data-micropay-price="0.03 USD"');
    expect(m).toContain('&unknown; entity &amp c.');
    expect(
      m.endsWith('<!-- an unclosed comment at the very end <a href="/articles/5" data-price="1 USD">\n'),
    ).toBe(true);
    // What a browser builds from it still has the link, priced.
    expect(serialize(parse(m))).toContain(
      '<a href="/articles/99" data-price="0.03 USD" class="x" data-micropay-price="0.03 USD"',
    );
  });

  it('keeps a page that is not UTF-8 byte for byte, priced', () => {
    const bytes = output.get('latin1.html')!;
    expect(bytes.includes(Buffer.from([0x43, 0x61, 0x66, 0xe9]))).toBe(true); // "Café" in latin1
    expect(bytes.toString('latin1')).toContain('<a href="/articles/42" data-micropay-price="0.02 USD"');
  });

  it('writes the manifest: exact URLs of the pages first, then the rules', () => {
    const manifest = JSON.parse(readFileSync(summary.manifestPath, 'utf8')) as PriceManifest;
    expect(loadManifest(summary.manifestPath)).toEqual(manifest);
    expect(manifest.routes.map((r) => r.match)).toEqual([
      'GET /blog/2024/notes.html',
      'GET /articles/42',
      'GET /search?q=cats&page=2',
      'GET /articles/8',
      'GET /articles/9',
      'GET /articles/99',
      'GET /articles/100',
      'GET /articles/*',
      'GET /live/:feed',
      'POST /api/answers',
    ]);
    expect(manifest.routes[1]).toEqual({
      match: 'GET /articles/42',
      price: '0.02 USD',
      amt: 20000,
      cur: 'USD',
      duration: 86400,
      title: 'Article 42',
      sources: [
        'site/index.html:21:26',
        'site/blog/post.html:11:14',
        'site/fragment.htm:2:11',
        'site/latin1.html:3:16',
      ],
    });
    expect(manifest.routes[8]).toEqual({
      match: 'GET /live/:feed',
      dynamic: 'livePrice',
      title: 'Live feed',
      sources: ['prices.yaml:5:3', 'site/index.html:25:13'],
    });
    expect(manifest.routes[7]).toMatchObject({ match: 'GET /articles/*', amt: 10000, duration: 3600 });
    expect(manifest.routes[7]!.sources).toEqual([
      'prices.yaml:2:3',
      'site/blog/post.html:12:9',
      'site/index.html:23:13',
    ]);
    expect(manifest.routes[9]).toEqual({
      match: 'POST /api/answers',
      price: '0.001 USD',
      amt: 1000,
      cur: 'USD',
      sources: ['prices.yaml:8:3'],
    });
  });

  it('is idempotent: compiling its own output changes nothing, pages nor prices', async () => {
    const again = join(tempDir(), 'site');
    const summary2 = await compile({ input: out, outDir: again, rules: RULES, merchant: 'daily-byte' });
    const output2 = readTree(again);
    for (const [name, bytes] of output) {
      if (name === 'micropay-manifest.json') continue;
      expect(output2.get(name)!.equals(bytes), name).toBe(true);
    }
    expect(summary2.pagesChanged).toBe(0);
    expect(summary2.linksPriced).toBe(summary.linksPriced);
    const first = await compile({
      input: SITE,
      outDir: join(tempDir(), 'x'),
      rules: RULES,
      merchant: 'daily-byte',
    });
    // Sources differ (the output has a wallet script line more); the routes do not.
    const withoutSources = (m: PriceManifest) => m.routes.map(({ sources: _, ...r }) => r);
    expect(withoutSources(summary2.manifest)).toEqual(withoutSources(first.manifest));
    expect(summary2.manifest.routes[1]!.sources).toEqual([
      'out/index.html:22:26',
      'out/blog/post.html:12:14',
      'out/fragment.htm:3:11',
      'out/latin1.html:3:16',
    ]);
  });

  it('recognises compiled links even without the rules: the pages stay the same', async () => {
    const again = join(tempDir(), 'site');
    const s = await compile({ input: out, outDir: again, merchant: 'daily-byte' });
    expect(s.pagesChanged).toBe(0);
    expect(s.linksPriced).toBe(summary.linksPriced);
    // Without the rules, the prices an earlier compile left become exact routes.
    expect(s.manifest.routes.find((r) => r.match === 'GET /live/scores')).toMatchObject({
      dynamic: 'livePrice',
    });
  });
});
