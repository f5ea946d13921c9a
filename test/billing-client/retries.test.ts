/**
 * Failure handling of the billing client over real sockets: a raw HTTP front
 * that answers 503/429/500 or hangs on cue before proxying to a real billing
 * server, a server that starts late on a reserved port, timeouts, aborts.
 * Idempotent calls (GET, deposit) are retried with backoff; authorize and the
 * other POSTs are tried once; every failure is a coded `BillingError`
 * without the token.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type BillingClientOptions,
  backoffDelay,
  createBillingClient,
} from '../../src/billing-client/index.js';
import { createBillingServer } from '../../src/billing-server/index.js';
import { MicropayError } from '../../src/protocol/index.js';
import {
  buyer,
  type Front,
  failure,
  generateSigningKey,
  merchantAndBuyer,
  reservePort,
  Started,
  type Step,
  startBillingServer,
  type TestServer,
  unavailable,
} from './helpers.js';

let srv: TestServer;
let merchantToken: string;
let buyerToken: string;
const started = new Started();

const fast: Partial<BillingClientOptions> = { retryBaseMs: 5, retryMaxDelayMs: 20 };

const front = (...script: Step[]): Promise<Front> => started.front(srv.url, script);

beforeAll(async () => {
  srv = await startBillingServer('bank-r');
  ({ merchantToken, buyerToken } = await merchantAndBuyer(srv, 'r'));
});
afterEach(async () => {
  await started.closeAll();
});
afterAll(async () => {
  await srv?.close();
});

async function signedOrder(amt: number) {
  const key = generateSigningKey();
  const b = createBillingClient({ url: srv.url, token: buyerToken });
  const { cert } = await b.createCertificate(key);
  return { cert, order: buyer(cert, key).order({ mer: 'r-merchant', amt }) };
}

describe('retries of idempotent calls', () => {
  it('a GET answered 503 twice then served succeeds on the third attempt', async () => {
    const f = await front(unavailable, unavailable);
    const c = createBillingClient({ url: f.url, token: merchantToken, ...fast });
    expect((await c.me()).id).toBe('r-merchant');
    expect(f.seen).toEqual(['GET /v1/me', 'GET /v1/me', 'GET /v1/me']);
  });

  it('a deposit answered 502, 504, then 429 with Retry-After: 0 is retried with the same batch and credited once', async () => {
    const f = await front(
      { status: 502 },
      { status: 504, body: 'gateway' },
      {
        status: 429,
        headers: { 'retry-after': '0' },
        body: { error: 'rate_limited', message: 'Slow down.' },
      },
    );
    const c = createBillingClient({ url: f.url, token: merchantToken, ...fast });
    const o = await signedOrder(1000);
    const a = await c.deposit({ batch: 'retry-1', orders: [o] });
    expect(a.results[0]!.status).toBe('credited');
    expect(f.seen).toEqual(Array(4).fill('POST /v1/deposits'));
  });

  it('after `retries` further attempts the error is billing_unavailable with the last status and the server code', async () => {
    const f = await front(unavailable, unavailable, unavailable, unavailable);
    const c = createBillingClient({ url: f.url, token: merchantToken, retries: 2, ...fast });
    const e = await failure(c.deposit({ batch: 'retry-2', orders: [] }));
    expect([e.code, e.status, e.serverCode, e.retryable]).toEqual([
      'billing_unavailable',
      503,
      'billing_unavailable',
      true,
    ]);
    expect(e.message).toContain('Down for a moment.');
    expect(f.seen).toHaveLength(3);
  });

  it('a 500 is billing_unavailable (retry later) but not retried at once; 4xx are never retried', async () => {
    const f = await front({ status: 500, body: { error: 'internal_error', message: 'Oops.' } });
    const c = createBillingClient({ url: f.url, token: merchantToken, ...fast });
    const e = await failure(c.me());
    expect([e.code, e.status, e.serverCode]).toEqual(['billing_unavailable', 500, 'internal_error']);
    expect(f.seen).toHaveLength(1);
    const g = await front({ status: 409, body: { error: 'conflict_here', message: 'No.' } });
    const d = createBillingClient({ url: g.url, token: merchantToken, ...fast });
    const e2 = await failure(d.deposit({ batch: 'retry-3', orders: [] }));
    expect([e2.code, e2.status, e2.message]).toEqual(['conflict_here', 409, 'No.']);
    expect(g.seen).toHaveLength(1);
  });

  it('an error answer without a JSON body gets a code from its status', async () => {
    const f = await front({ status: 404 }, { status: 401 }, { status: 418 });
    const c = createBillingClient({ url: f.url, token: merchantToken, ...fast });
    expect((await failure(c.me())).code).toBe('not_found');
    expect((await failure(c.me())).code).toBe('unauthorized');
    const e = await failure(c.me());
    expect([e.code, e.status]).toEqual(['billing_error', 418]);
  });

  it('a server that is down, then up on the same port: the GET keeps trying and succeeds', async () => {
    const port = await reservePort();
    const url = `http://127.0.0.1:${port}`;
    let calls = 0;
    let late: Awaited<ReturnType<typeof createBillingServer>> | undefined;
    // Start the server once the client has met the closed port: no race on timing.
    const watching: typeof fetch = async (input, init) => {
      calls++;
      try {
        return await fetch(input, init);
      } catch (e) {
        if (!late) {
          late = await createBillingServer({ issuer: 'bank-late', db: ':memory:', logger: false });
          await late.listen(port, '127.0.0.1');
        }
        throw e;
      }
    };
    try {
      const c = createBillingClient({ url, fetch: watching, ...fast });
      expect(await c.issuer()).toBe('bank-late');
      expect(calls).toBe(2);
    } finally {
      await late?.close();
    }
  });

  it('network failure: billing_unavailable 503, retried for GET, once for other POSTs', async () => {
    const port = await reservePort();
    let calls = 0;
    const counting: typeof fetch = (input, init) => {
      calls++;
      return fetch(input, init);
    };
    const c = createBillingClient({
      url: `http://127.0.0.1:${port}`,
      token: buyerToken,
      fetch: counting,
      ...fast,
    });
    const e = await failure(c.me());
    expect([e.code, e.status]).toEqual(['billing_unavailable', 503]);
    expect(e.message).toMatch(/could not be reached \(ECONNREFUSED\)/);
    expect(e.message).not.toContain(buyerToken);
    expect(calls).toBe(4);
    calls = 0;
    await failure(c.createCertificate(generateSigningKey()));
    expect(calls).toBe(1);
  });
});

describe('authorize is never retried', () => {
  it('a 503 throws billing_unavailable after one attempt', async () => {
    const f = await front(unavailable);
    const c = createBillingClient({ url: f.url, token: merchantToken, ...fast });
    const e = await failure(c.authorize(await signedOrder(2000)));
    expect([e.code, e.status]).toEqual(['billing_unavailable', 503]);
    expect(f.seen).toEqual(['POST /v1/authorizations']);
  });

  it('an unreachable server throws at once', async () => {
    const port = await reservePort();
    const c = createBillingClient({ url: `http://127.0.0.1:${port}`, token: merchantToken, ...fast });
    const e = await failure(c.authorize({ cert: 'x', order: 'y' }));
    expect(e.code).toBe('billing_unavailable');
  });

  it('a hanging server times out after authorizeTimeoutMs, one attempt', async () => {
    const f = await front('hang', 'hang');
    const c = createBillingClient({
      url: f.url,
      token: merchantToken,
      authorizeTimeoutMs: 150,
      timeoutMs: 5000,
      ...fast,
    });
    const t0 = Date.now();
    const e = await failure(c.authorize(await signedOrder(2000)));
    const took = Date.now() - t0;
    expect([e.code, e.status]).toEqual(['billing_unavailable', 503]);
    expect(e.message).toMatch(/did not answer within 150 ms/);
    expect(took).toBeGreaterThanOrEqual(140);
    expect(took).toBeLessThan(2000);
    expect(f.seen).toHaveLength(1);
  });

  it('an answer of the wrong shape throws invalid_response', async () => {
    const f = await front({ status: 200, body: { status: 'maybe' } });
    const c = createBillingClient({ url: f.url, token: merchantToken });
    const e = await failure(c.authorize({ cert: 'x', order: 'y' }));
    expect([e.code, e.status]).toEqual(['invalid_response', 502]);
  });
});

describe('timeouts, aborts, tokens and options', () => {
  it('a GET that hangs times out per attempt and is retried', async () => {
    const f = await front('hang');
    const c = createBillingClient({ url: f.url, token: merchantToken, timeoutMs: 100, ...fast });
    expect((await c.me()).id).toBe('r-merchant');
    expect(f.seen).toHaveLength(2);
    const g = await front('hang', 'hang');
    const d = createBillingClient({ url: g.url, token: merchantToken, timeoutMs: 100, retries: 1, ...fast });
    const e = await failure(d.me());
    expect(e.message).toMatch(/did not answer within 100 ms/);
  });

  it('a per-call signal aborts the call and its retry wait with code aborted', async () => {
    const f = await front('hang');
    const c = createBillingClient({ url: f.url, token: merchantToken });
    const e = await failure(c.me({ signal: AbortSignal.timeout(50) }));
    expect(e.code).toBe('aborted');
    // A 503, then a retry that hangs: full jitter draws the retry's wait from [0, 10 s), so about
    // one run in 300 retried before the abort at 30 ms, reached the server and succeeded.
    const g = await front(unavailable, 'hang');
    const d = createBillingClient({
      url: g.url,
      token: merchantToken,
      retryBaseMs: 10_000,
      retryMaxDelayMs: 10_000,
    });
    const ctl = new AbortController();
    const p = failure(d.me({ signal: ctl.signal }));
    setTimeout(() => ctl.abort(), 30);
    expect((await p).code).toBe('aborted');
  });

  it('a signal aborted before the call sends nothing and fails with code aborted', async () => {
    const f = await front();
    const c = createBillingClient({ url: f.url, token: merchantToken });
    const e = await failure(c.me({ signal: AbortSignal.abort() }));
    expect([e.code, e.status]).toEqual(['aborted', 499]);
    expect(f.seen).toEqual([]);
  });

  it('sends the bearer token and a user agent, and scrubs the token from a server message that echoes it', async () => {
    const token = 'mpt_echoed-secret-token-value-0123456789';
    const f = await front({
      status: 400,
      body: { error: 'invalid_request', message: `Bad token ${token} here.` },
    });
    const c = createBillingClient({ url: f.url, token, userAgent: 'test-agent/1' });
    const e = await failure(c.me());
    expect(f.auth).toEqual([`Bearer ${token}`]);
    expect(f.ua).toEqual(['test-agent/1']);
    expect(e.message).toBe('Bad token [token] here.');
    expect(JSON.stringify(e)).not.toContain(token);
  });

  it('a 200 that is not JSON, or empty where an account was expected, is invalid_response', async () => {
    const f = await front(
      { status: 200, headers: { 'content-type': 'text/plain' }, text: 'hello' },
      { status: 200 },
    );
    const c = createBillingClient({ url: f.url, token: merchantToken });
    const e = await failure(c.me());
    expect([e.code, e.status]).toEqual(['invalid_response', 502]);
    expect(e.message).toMatch(/not JSON/);
    expect((await failure(c.me())).code).toBe('invalid_response');
  });

  it('bad options are invalid_option errors with a sentence', () => {
    const cases: unknown[] = [
      {},
      { url: 'not a url' },
      { url: 'ftp://x' },
      { url: 'http://u:p@x' },
      { url: 'http://x', retries: -1 },
      { url: 'http://x', timeoutMs: 0 },
      { url: 'http://x', token: '' },
      { url: 'http://x', token: 'a\nb' },
    ];
    for (const o of cases) {
      expect(() => createBillingClient(o as BillingClientOptions), JSON.stringify(o)).toThrow(MicropayError);
      try {
        createBillingClient(o as BillingClientOptions);
      } catch (e) {
        expect((e as MicropayError).code).toBe('invalid_option');
      }
    }
  });

  it('backoff is full jitter, exponential, capped', () => {
    expect(backoffDelay(0, 100, 2000, () => 0.999)).toBe(99);
    expect(backoffDelay(3, 100, 2000, () => 0.5)).toBe(400);
    expect(backoffDelay(10, 100, 2000, () => 0.999)).toBe(1998);
    expect(backoffDelay(2, 100, 2000, () => 0)).toBe(0);
  });
});
