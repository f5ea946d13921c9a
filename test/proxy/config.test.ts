/**
 * Configuration of micropay-proxy: every field's error names the field, `${ENV}`
 * interpolation (inside YAML flow mappings too), YAML and JSON files, relative
 * paths, defaults, and the core-level check (`checkProxyConfig`).
 */
// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these strings test the ${NAME} syntax of configuration files.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PROXY_CONFIG_FIELDS } from '../../src/proxy/config.js';
import { checkProxyConfig, loadProxyConfig, parseProxyConfig } from '../../src/proxy/index.js';
import { configObject, tempDir } from './helpers.js';

const tmp = tempDir('micropay-proxy-config-');
afterAll(() => tmp.remove());

const manifestFile = join(tmp.dir, 'manifest.json');
writeFileSync(
  manifestFile,
  JSON.stringify({
    micropay: 'manifest',
    version: 1,
    routes: [
      { match: 'GET /a', price: '0.01 USD', amt: 10000, cur: 'USD' },
      { match: 'GET /live/*', dynamic: 'livePrice' },
    ],
  }),
);
const badManifest = join(tmp.dir, 'bad-manifest.json');
writeFileSync(badManifest, JSON.stringify({ micropay: 'manifest', version: 2, routes: [] }));

const base = () => configObject('http://127.0.0.1:3000');
const route = (over: Record<string, unknown>) => ({ routes: [{ match: 'GET /a', price: '1 USD', ...over }] });

/** [what is wrong, overrides of the base config, the start of the message after "test: "]. */
const bad: [string, Record<string, unknown>, string][] = [
  ['no merchant', { merchant: undefined }, 'merchant: must be your merchant account id'],
  ['a merchant with a space', { merchant: 'news site' }, 'merchant: must be your merchant account id'],
  ['an unknown top-level field', { prices: {} }, 'prices: is not a known field here'],
  ['listen not host:port', { listen: 'localhost' }, 'listen: must be "host:port"'],
  ['listen port too large', { listen: '127.0.0.1:70000' }, 'listen: port 70000 is above 65535'],
  ['listen an object', { listen: { port: 1 } }, 'listen: must be "host:port"'],
  ['no billing', { billing: undefined }, 'billing: is required'],
  ['billing a string', { billing: 'http://x' }, 'billing: must be a mapping'],
  ['billing.url not a URL', { billing: { url: 'nope', token: 't' } }, 'billing.url: is not a URL'],
  [
    'billing.url ftp',
    { billing: { url: 'ftp://x', token: 't' } },
    'billing.url: must be an http:// or https:// URL',
  ],
  [
    'billing.token missing',
    { billing: { url: 'http://x' } },
    'billing.token: must be the merchant API token',
  ],
  [
    'billing.token empty',
    { billing: { url: 'http://x', token: '' } },
    'billing.token: must be the merchant API token',
  ],
  [
    'billing unknown field',
    { billing: { url: 'http://x', token: 't', tls: 1 } },
    'billing.tls: is not a known field',
  ],
  ['no upstream', { upstream: undefined }, 'upstream: is required'],
  ['upstream not a URL', { upstream: 'localhost:3000' }, 'upstream: must be an http:// or https:// URL'],
  [
    'upstream and upstreams',
    { upstreams: [{ url: 'http://x' }] },
    'upstreams: cannot be given together with upstream',
  ],
  ['upstreams empty', { upstream: undefined, upstreams: [] }, 'upstreams: must be a non-empty list'],
  [
    'upstreams[1].url bad',
    { upstream: undefined, upstreams: [{ url: 'http://a' }, { url: 'x' }] },
    'upstreams[1].url: is not a URL',
  ],
  [
    'upstreams[0].pathPrefix without /',
    { upstream: undefined, upstreams: [{ url: 'http://a', pathPrefix: 'api' }] },
    'upstreams[0].pathPrefix: must start with "/"',
  ],
  [
    'upstreams[0].host bad',
    { upstream: undefined, upstreams: [{ url: 'http://a', host: 'a b' }] },
    'upstreams[0].host: must be a host name',
  ],
  [
    'upstreams[0] unknown field',
    { upstream: undefined, upstreams: [{ url: 'http://a', path: '/x' }] },
    'upstreams[0].path: is not a known field',
  ],
  ['routes not a list', { routes: { 'GET /a': '1 USD' } }, 'routes: must be a list'],
  ['routes[0] not a mapping', { routes: ['GET /a'] }, 'routes[0]: must be a mapping'],
  [
    'routes[0].match missing',
    route({ match: undefined }),
    'routes[0].match: must be a route like "GET /articles/*"',
  ],
  ['routes[0].match without method', route({ match: '/a' }), 'routes[0].match: "/a" is not a route'],
  [
    'routes[0].match with a star inside',
    route({ match: 'GET /a/*/b' }),
    'routes[0].match: "GET /a/*/b" is not a route',
  ],
  ['routes[0].price missing', route({ price: undefined }), 'routes[0].price: is required'],
  [
    'routes[0].price not a price',
    route({ price: 'two cents' }),
    'routes[0].price: "two cents" is not a price',
  ],
  ['routes[0].price a bare number', route({ price: 0.002 }), 'routes[0].price: 0.002 is not a price'],
  ['routes[0].price zero', route({ price: '0 USD' }), 'routes[0].price: "0 USD" is not a price'],
  [
    'routes[0].duration negative',
    route({ duration: -1 }),
    'routes[0].duration: must be a whole number of seconds',
  ],
  [
    'routes[0].duration fractional',
    route({ duration: 1.5 }),
    'routes[0].duration: must be a whole number of seconds',
  ],
  ['routes[0].title a number', route({ title: 5 }), 'routes[0].title: must be a string'],
  ['routes[0] unknown field', route({ cost: 1 }), 'routes[0].cost: is not a known field'],
  [
    'routes[2].match repeats routes[0]',
    {
      routes: [
        { match: 'GET /a', price: '1 USD' },
        { match: 'GET /b', price: '1 USD' },
        { match: ' GET /a ', price: '2 USD' },
      ],
    },
    'routes[2].match: repeats routes[0].match "GET /a"',
  ],
  ['manifest missing file', { manifest: join(tmp.dir, 'nope.json') }, 'manifest: cannot read'],
  ['manifest invalid', { manifest: badManifest }, 'manifest: Price manifest'],
  ['store unknown kind', { store: 'sqlite' }, 'store: must be a mapping'],
  [
    'store.redis not a redis URL',
    { store: { redis: 'http://x' } },
    'store.redis: must be a redis:// or rediss:// URL',
  ],
  [
    'store.prefix with braces',
    { store: { redis: 'redis://x', prefix: 'a{b}' } },
    'store.prefix: must not contain',
  ],
  ['store.prefix without redis', { store: { prefix: 'a' } }, 'store.prefix: only applies to store.redis'],
  [
    'store memory and redis',
    { store: { redis: 'redis://x', memory: {} } },
    'store.memory: cannot be given together',
  ],
  [
    'store.memory.maxEntries zero',
    { store: { memory: { maxEntries: 0 } } },
    'store.memory.maxEntries: must be a whole number',
  ],
  ['receipts unknown field', { receipts: { file: 'x' } }, 'receipts.file: is not a known field'],
  ['receipts.key not a seed', { receipts: { key: 'abc' } }, 'receipts.key: must be a 32-byte seed'],
  [
    'receipts.duration text',
    { receipts: { duration: 'an hour' } },
    'receipts.duration: must be a whole number',
  ],
  [
    'onlineThreshold not a price',
    { onlineThreshold: 'lots' },
    'onlineThreshold: must be a price like "1 USD"',
  ],
  ['onlineThreshold zero', { onlineThreshold: 0 }, 'onlineThreshold: must be a whole number of micro-units'],
  ['accepts empty', { accepts: [] }, 'accepts: must be a non-empty list'],
  ['accepts[1] bad id', { accepts: ['bank-a', 'bank b'] }, 'accepts[1]: is not an issuer id'],
  ['freshness zero', { freshness: 0 }, 'freshness: must be a whole number of seconds from 1'],
  ['skew too large', { skew: 99999 }, 'skew: must be a whole number of seconds from 0 to 3600'],
  ['failOpen without max', { failOpen: {} }, 'failOpen.max: is required'],
  ['failOpen.max not a price', { failOpen: { max: 'x' } }, 'failOpen.max: must be a price'],
  [
    'deposits.maxBatch too large',
    { deposits: { maxBatch: 5000 } },
    'deposits.maxBatch: must be a whole number of orders from 1 to 1000',
  ],
  ['deposits unknown field', { deposits: { every: 1 } }, 'deposits.every: is not a known field'],
  ['trustProxy not a boolean', { trustProxy: 'yes' }, 'trustProxy: must be true or false'],
  ['paidHeaders not a boolean', { paidHeaders: 1 }, 'paidHeaders: must be true or false'],
  [
    'tls.cert missing file',
    { tls: { cert: join(tmp.dir, 'no.pem'), key: manifestFile } },
    'tls.cert: cannot read',
  ],
  ['tls.key missing', { tls: { cert: manifestFile } }, 'tls.key: must be the path of a PEM private key'],
  [
    'shutdownTimeoutMs negative',
    { shutdownTimeoutMs: -5 },
    'shutdownTimeoutMs: must be a whole number of milliseconds',
  ],
  [
    'upstreamTimeoutMs not a number',
    { upstreamTimeoutMs: '30s' },
    'upstreamTimeoutMs: must be a whole number of milliseconds from 0 to 3600000, got "30s"',
  ],
  [
    'metrics.token too short (and not repeated in the message)',
    { metrics: { token: 'hunter2' } },
    'metrics.token: must be a secret of 16 or more characters without spaces',
  ],
  ['metrics unknown field', { metrics: { tokens: 'x' } }, 'metrics.tokens: is not a known field here'],
  ['logLevel unknown', { logLevel: 'loud' }, 'logLevel: must be one of fatal, error, warn, info'],
  [
    'walletScript empty',
    { walletScript: '' },
    'walletScript: must be a path or URL of the wallet script, or false',
  ],
  [
    'an unset variable',
    { billing: { url: 'http://x', token: '${NOPE_TOKEN}' } },
    'billing.token: the environment variable NOPE_TOKEN is not set',
  ],
  [
    'an unclosed variable',
    { upstream: 'http://${HOST' },
    'upstream: "http://${HOST" has a "${" without its closing "}"',
  ],
  [
    'a bad variable name',
    { upstream: 'http://${1HOST}' },
    'upstream: "${1HOST}" is not a variable reference',
  ],
];

describe('parseProxyConfig refuses bad configurations, naming the field', () => {
  it.each(bad)('%s', (_what, over, message) => {
    const obj = { ...base(), ...over };
    for (const k of Object.keys(obj)) if (obj[k] === undefined) delete obj[k];
    let error: unknown;
    try {
      parseProxyConfig(obj, 'test', {});
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ name: 'MicropayError', code: 'invalid_config' });
    expect((error as Error).message.startsWith(`test: ${message}`), (error as Error).message).toBe(true);
    expect((error as Error).message).toMatch(/\.$/);
  });

  it('never repeats a bad metrics.token in its message (it is a secret)', () => {
    for (const token of ['short-secret', 'a long secret with spaces in it']) {
      expect(() => parseProxyConfig({ ...base(), metrics: { token } }, 'x.yaml', {})).toThrow(
        expect.objectContaining({ message: expect.not.stringContaining(token) }),
      );
    }
  });

  it('refuses a configuration that is not a mapping', () => {
    expect(() => parseProxyConfig([1], 'x.yaml', {})).toThrow(
      /^x\.yaml: the configuration must be a mapping/,
    );
  });
});

describe('parseProxyConfig', () => {
  it('fills in the defaults', () => {
    const c = parseProxyConfig(
      {
        merchant: 'news-site',
        billing: { url: 'http://127.0.0.1:4000', token: 't' },
        upstream: 'http://127.0.0.1:3000',
      },
      'inline',
      {},
    );
    expect(c).toEqual({
      source: 'inline',
      listen: { host: '127.0.0.1', port: 8080 },
      merchant: 'news-site',
      billing: { url: 'http://127.0.0.1:4000', token: 't' },
      upstreams: [{ url: 'http://127.0.0.1:3000', changeOrigin: false }],
      routes: [],
      store: { kind: 'memory' },
      receipts: {},
      deposits: {},
      trustProxy: false,
      paidHeaders: false,
      shutdownTimeoutMs: 10_000,
      upstreamTimeoutMs: 60_000,
      metrics: {},
      accessLog: false,
      logLevel: 'info',
    });
  });

  it('reads every field', () => {
    const c = parseProxyConfig(
      {
        ...base(),
        listen: '[::1]:0',
        name: 'News',
        upstream: undefined,
        upstreams: [{ url: 'http://a:1', host: 'News.Example', pathPrefix: '/api/', changeOrigin: true }],
        routes: [
          { match: 'GET /free/*', price: null },
          { match: 'GET /x', price: 'free' },
          { match: 'GET /a/:id', price: '$0.5', duration: '30', title: 'A', description: 'D' },
        ],
        manifest: manifestFile,
        store: { redis: 'redis://127.0.0.1:6379/2' },
        receipts: { key: 'a'.repeat(64), duration: 10 },
        onlineThreshold: '0.5 USD',
        accepts: ['bank-a'],
        freshness: 60,
        skew: 5,
        failOpen: { max: '0.01 USD' },
        deposits: { maxBatch: 10, maxDelayMs: 5, retryBaseMs: 1, retryMaxMs: 2, drainTimeoutMs: 3 },
        trustProxy: 'true',
        paidHeaders: true,
        upstreamTimeoutMs: '2500',
        metrics: { token: 'scrape-me-0123456789' },
        accessLog: 'true',
        logLevel: 'warn',
        walletScript: '/wallet.js',
      },
      'inline',
      {},
    );
    expect(c).toMatchObject({
      listen: { host: '::1', port: 0 },
      name: 'News',
      upstreams: [{ url: 'http://a:1', host: 'news.example', pathPrefix: '/api/', changeOrigin: true }],
      routes: [
        { match: 'GET /free/*', price: null },
        { match: 'GET /x', price: null },
        { match: 'GET /a/:id', price: '$0.5', duration: 30, title: 'A', description: 'D' },
      ],
      manifest: manifestFile,
      store: { kind: 'redis', url: 'redis://127.0.0.1:6379/2', prefix: 'micropay:news-site:' },
      receipts: { key: 'a'.repeat(64), duration: 10 },
      onlineThreshold: 500_000,
      accepts: ['bank-a'],
      freshness: 60,
      skew: 5,
      failOpen: { max: 10_000 },
      deposits: { maxBatch: 10, maxDelayMs: 5, retryBaseMs: 1, retryMaxMs: 2, drainTimeoutMs: 3 },
      trustProxy: true,
      paidHeaders: true,
      upstreamTimeoutMs: 2500,
      metrics: { token: 'scrape-me-0123456789' },
      accessLog: true,
      logLevel: 'warn',
      walletScript: '/wallet.js',
    });
    expect(parseProxyConfig({ ...base(), listen: 9000 }, 'x', {}).listen).toEqual({
      host: '0.0.0.0',
      port: 9000,
    });
    expect(parseProxyConfig({ ...base(), listen: ':9000' }, 'x', {}).listen).toEqual({
      host: '0.0.0.0',
      port: 9000,
    });
  });

  it('interpolates ${NAME}, ${NAME:-default} and $${ in values', () => {
    const c = parseProxyConfig(
      {
        ...base(),
        billing: { url: 'http://${BILLING_HOST:-127.0.0.1}:${BILLING_PORT}', token: '${TOKEN}' },
        name: 'Costs $${DOLLARS}',
        listen: '127.0.0.1:${PORT}',
      },
      'inline',
      { BILLING_PORT: '4000', TOKEN: 'tok:#{}[]', PORT: '8081' },
    );
    expect(c.billing).toEqual({ url: 'http://127.0.0.1:4000', token: 'tok:#{}[]' });
    expect(c.name).toBe('Costs ${DOLLARS}');
    expect(c.listen.port).toBe(8081);
  });
});

describe('loadProxyConfig', () => {
  it('reads YAML with ${ENV} inside a flow mapping, and resolves paths against the file', () => {
    const file = join(tmp.dir, 'micropay.yaml');
    writeFileSync(
      file,
      [
        'listen: 127.0.0.1:${PORT:-8080}',
        'merchant: news-site',
        'billing: { url: http://127.0.0.1:4000, token: ${MERCHANT_TOKEN} }',
        'upstream: http://127.0.0.1:3000',
        'manifest: manifest.json',
        'receipts: { keyFile: keys/receipt.key }',
        'routes:',
        '  - match: GET /articles/*',
        '    price: 0.002 USD',
        '    duration: 3600',
        '    title: "Article: ${TITLE_SUFFIX:-none}"',
        '',
      ].join('\n'),
    );
    const c = loadProxyConfig(file, { MERCHANT_TOKEN: 'secret token # with: yaml } chars' });
    expect(c.billing.token).toBe('secret token # with: yaml } chars');
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(c.manifest).toBe(manifestFile);
    expect(c.receipts.keyFile).toBe(join(tmp.dir, 'keys/receipt.key'));
    expect(c.routes).toEqual([
      { match: 'GET /articles/*', price: '0.002 USD', duration: 3600, title: 'Article: none' },
    ]);
    expect(c.source).toBe(file);
  });

  it('names the variable and the field when a variable is unset', () => {
    const file = join(tmp.dir, 'unset.yaml');
    writeFileSync(
      file,
      'merchant: m\nbilling: { url: http://x, token: ${MERCHANT_TOKEN} }\nupstream: http://127.0.0.1:1\n',
    );
    expect(() => loadProxyConfig(file, {})).toThrow(
      `${file}: billing.token: the environment variable MERCHANT_TOKEN is not set. Set it, or give a default with \${MERCHANT_TOKEN:-value}.`,
    );
  });

  it('reads JSON', () => {
    const file = join(tmp.dir, 'micropay.json');
    writeFileSync(file, JSON.stringify({ ...base(), billing: { url: 'http://x', token: '${T}' } }));
    expect(loadProxyConfig(file, { T: 'abc' }).billing.token).toBe('abc');
  });

  it('reports YAML and JSON syntax errors with where they are', () => {
    const y = join(tmp.dir, 'broken.yaml');
    writeFileSync(y, 'merchant: m\nroutes: [\n  a: b\n');
    expect(() => loadProxyConfig(y, {})).toThrow(/broken\.yaml: is not valid YAML at line \d+, column \d+: /);
    const j = join(tmp.dir, 'broken.json');
    writeFileSync(j, '{"merchant": ');
    expect(() => loadProxyConfig(j, {})).toThrow(/broken\.json: is not valid JSON: /);
  });

  it('says what to do when the file is missing', () => {
    expect(() => loadProxyConfig(join(tmp.dir, 'none.yaml'), {})).toThrow(
      /none\.yaml: no such file\. Write one/,
    );
  });
});

describe('checkProxyConfig', () => {
  it('passes a good configuration and refuses a manifest route without its price function', async () => {
    await expect(checkProxyConfig(parseProxyConfig(base(), 'test', {}))).resolves.toBeUndefined();
    const withManifest = parseProxyConfig({ ...base(), manifest: manifestFile }, 'test', {});
    await expect(checkProxyConfig(withManifest)).rejects.toMatchObject({
      code: 'invalid_config',
      message: expect.stringMatching(/^test: manifest route "GET \/live\/\*" needs a price function/),
    });
    await expect(
      checkProxyConfig(withManifest, { dynamicPrices: { livePrice: () => '1 USD' } }),
    ).resolves.toBeUndefined();
  });
});

describe('docs/proxy.md', () => {
  const doc = readFileSync(new URL('../../docs/proxy.md', import.meta.url), 'utf8');
  const rows = new Set([...doc.matchAll(/^\| `(\w+)` \|/gm)].map((m) => m[1]));

  it('has a row for every field a configuration file may have, and none for others', () => {
    expect([...rows].sort()).toEqual([...PROXY_CONFIG_FIELDS].sort());
  });

  it('gives the defaults the parser fills in', () => {
    const c = parseProxyConfig(
      { merchant: 'm', billing: { url: 'http://127.0.0.1:4000', token: 't' }, upstream: 'http://a:1' },
      'x',
      {},
    );
    const row = (field: string) => doc.split('\n').find((l) => l.startsWith(`| \`${field}\` |`)) ?? '';
    expect(row('listen')).toContain(`\`${c.listen.host}:${c.listen.port}\``);
    expect(row('shutdownTimeoutMs')).toContain(c.shutdownTimeoutMs.toLocaleString('en'));
    expect(row('upstreamTimeoutMs')).toContain(c.upstreamTimeoutMs.toLocaleString('en'));
    expect(row('logLevel')).toContain(`\`${c.logLevel}\``);
    expect(row('trustProxy')).toContain(`\`${c.trustProxy}\``);
    expect(row('paidHeaders')).toContain(`\`${c.paidHeaders}\``);
    expect(row('accessLog')).toContain(`\`${c.accessLog}\``);
  });
});
