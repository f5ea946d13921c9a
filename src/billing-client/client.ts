/**
 * The typed client of the billing server API (PROTOCOL.md sections 2, 3, 8
 * and 10): the key set and a shared key resolver, certificates, deposits,
 * online authorizations, the caller's own account and ledger, and the admin
 * namespace. One instance per server and token; it holds no state beyond
 * the key resolver and the issuer id, so it is safe to share.
 */
import { MicropayError } from '../protocol/errors.js';
import { isId } from '../protocol/ids.js';
import {
  HttpKeyResolver,
  type HttpKeyResolverOptions,
  type KeySetDocument,
  parseKeySet,
} from '../protocol/keys.js';
import type { AuthorizationAnswer } from '../protocol/verifier.js';
import { BillingError } from './errors.js';
import { type Call, type HttpConfig, IS_NODE, type Method, request } from './http.js';
import type {
  Account,
  AccountFilter,
  AccountPatch,
  AccountsPage,
  AddedPeer,
  Adjustment,
  AdminStatementParams,
  CallOptions,
  CertificateAnswer,
  CreatedAccount,
  CreatedWebhook,
  DeliveriesPage,
  DepositAnswer,
  DepositRequest,
  EntriesPage,
  IssuedToken,
  LedgerEntry,
  NewAccountInput,
  NewPeerInput,
  NewWebhookInput,
  Peer,
  PeerPatch,
  RotatedKey,
  SettlementPosition,
  StatementParams,
  StatementSummary,
  TimeBound,
  Webhook,
  WebhookDelivery,
} from './types.js';

/** Sent as `User-Agent` unless `userAgent` says otherwise. */
export const DEFAULT_USER_AGENT = 'micropay-billing-client/0.1';

/** Options of `createBillingClient`. */
export interface BillingClientOptions {
  /** Base URL of the billing server, e.g. `http://127.0.0.1:4000` (a path prefix is kept). */
  url: string;
  /** API token sent as `Authorization: Bearer`: a buyer, merchant, admin or peer token. Never put in an error message. */
  token?: string;
  /** Timeout of one attempt of a call, milliseconds. Default 10,000. */
  timeoutMs?: number;
  /** Timeout of `authorize` (one attempt, never retried: a merchant is holding a request). Default 3000 ms. */
  authorizeTimeoutMs?: number;
  /**
   * Further attempts of an idempotent call (GET, and `deposit`, idempotent by
   * batch id) after a network error, a timeout, or a 429/502/503/504. Default 3.
   * Other calls are tried once.
   */
  retries?: number;
  /** Base of the exponential backoff between attempts, milliseconds (full jitter). Default 100. */
  retryBaseMs?: number;
  /** Longest wait between attempts, milliseconds (also caps `Retry-After`). Default 2000. */
  retryMaxDelayMs?: number;
  /** The fetch to use. Default: the global `fetch`. */
  fetch?: typeof fetch;
  /** `User-Agent` header, sent from Node only (never from a browser, where it would break CORS). Default `micropay-billing-client/0.1`. */
  userAgent?: string;
}

/** Options of `keyResolver()`: those of `HttpKeyResolver` except the URL and fetch, which come from the client. */
export type KeyResolverOptions = Omit<HttpKeyResolverOptions, 'url' | 'fetch'>;

const KEYS_PATH = '.well-known/micropay/keys';

function optionError(message: string): MicropayError {
  return new MicropayError('invalid_option', message);
}

function nonNegativeInt(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < 0)
    throw optionError(`The billing client option \`${name}\` must be a non-negative integer.`);
  return v;
}

function positiveInt(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < 1)
    throw optionError(`The billing client option \`${name}\` must be a positive integer.`);
  return v;
}

function baseUrl(url: unknown): URL {
  let u: URL;
  try {
    u = new URL(String(url));
  } catch {
    throw optionError(
      'The billing client option `url` must be an absolute URL, like "http://127.0.0.1:4000".',
    );
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw optionError('The billing client option `url` must be an http: or https: URL.');
  }
  if (u.username || u.password) {
    throw optionError(
      'The billing client option `url` must not hold credentials; pass the API token as `token`.',
    );
  }
  u.search = '';
  u.hash = '';
  if (!u.pathname.endsWith('/')) u.pathname += '/';
  return u;
}

/** One encoded path segment naming an account, token or peer; `.` and `..` cannot travel in a path. */
function segment(what: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 256 || v === '.' || v === '..') {
    throw new BillingError(
      'invalid_request',
      `The ${what} must be a non-empty identifier (not "." or "..").`,
      { status: 400 },
    );
  }
  return encodeURIComponent(v);
}

function accountSegment(id: unknown): string {
  if (!isId(id) || id === '.' || id === '..') {
    throw new BillingError(
      'invalid_request',
      'An account id is 1 to 128 characters [A-Za-z0-9._:-] (and not "." or "..").',
      {
        status: 400,
      },
    );
  }
  return encodeURIComponent(id);
}

function invalidResponse(what: string): BillingError {
  return new BillingError(
    'invalid_response',
    `The billing server's answer to ${what} does not have the documented shape.`,
    {
      status: 502,
    },
  );
}

/** Per-call settings on top of `CallOptions`. */
interface CallArgs extends CallOptions {
  body?: unknown;
  json?: Uint8Array<ArrayBuffer>;
  query?: Call['query'];
  /** Retry on network errors and 429/502/503/504 (default: GET only). */
  retry?: boolean;
}

type CallFn = (method: Method, path: string, o?: CallArgs) => Promise<unknown>;

/** What a token is made of (base64url segments joined by dots): JSON-safe ASCII as it stands. */
const TOKEN = /^[A-Za-z0-9_.-]*$/;
const isToken = (v: unknown): v is string => typeof v === 'string' && TOKEN.test(v);
const OPEN_CERT = '{"cert":"';
const OPEN_ORDER = '","order":"';
const OPEN_AUTH = '","auth":"';

/**
 * The JSON body of `POST /v1/deposits`, written piece by piece into one buffer, or `null` when an
 * order is not made of token characters (it then goes through `JSON.stringify`, and the billing
 * server refuses it). The text of a full batch is about 1 MB: as a string V8 would build it from
 * many young pieces and flatten it once more to send it, and a deposit waiting on a slow billing
 * server keeps all of that through several scavenges of the merchant's heap. The pieces are copied
 * by Buffer's native latin1 writer (token characters are ASCII), and a credential shared by
 * consecutive orders is checked once: byte by byte in JavaScript, the body cost about 30,000
 * instructions an order (callgrind).
 */
export function depositBody(req: DepositRequest): Uint8Array<ArrayBuffer> | null {
  const head = `{"batch":${JSON.stringify(req.batch)},"orders":[`;
  if (typeof Buffer === 'undefined') return null; // (a browser: JSON.stringify)
  if (!/^[\x20-\x7e]*$/.test(head) || !Array.isArray(req.orders)) return null;
  let size = head.length + 2 + Math.max(0, req.orders.length - 1);
  let checkedCert: string | null = null;
  for (const o of req.orders) {
    const cert: unknown = o?.cert;
    if (cert !== checkedCert) {
      if (!isToken(cert)) return null;
      checkedCert = cert;
    }
    if (!isToken(o.order) || (o.auth !== undefined && !isToken(o.auth))) return null;
    size += OPEN_CERT.length + o.cert.length + OPEN_ORDER.length + o.order.length + 2;
    if (o.auth !== undefined) size += OPEN_AUTH.length + o.auth.length;
  }
  // Zero-filled: were `size` ever wrong, the tail would be zeros, never old memory.
  const buf = Buffer.alloc(size);
  let at = buf.write(head, 0, 'latin1');
  for (let i = 0; i < req.orders.length; i++) {
    const o = req.orders[i]!;
    if (i > 0) buf[at++] = 0x2c; // ,
    at += buf.write(OPEN_CERT, at, 'latin1');
    at += buf.write(o.cert, at, 'latin1');
    at += buf.write(OPEN_ORDER, at, 'latin1');
    at += buf.write(o.order, at, 'latin1');
    if (o.auth !== undefined) {
      at += buf.write(OPEN_AUTH, at, 'latin1');
      at += buf.write(o.auth, at, 'latin1');
    }
    buf[at++] = 0x22; // "
    buf[at++] = 0x7d; // }
  }
  buf[at++] = 0x5d; // ]
  buf[at++] = 0x7d; // }
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

type StreamFn = (path: string, query: Call['query'], o: CallOptions) => Promise<ReadableStream<Uint8Array>>;

/** A statement bound as the query carries it (a Date as Unix seconds). */
function bound(v: TimeBound | undefined): string | number | undefined {
  if (v instanceof Date) {
    const t = v.getTime();
    if (!Number.isFinite(t))
      throw new BillingError('invalid_request', 'A statement bound is an invalid Date.', { status: 400 });
    return Math.floor(t / 1000);
  }
  return v;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** The field `name` of an object answer, checked to be an object (or an array with `list`). */
function field<T>(body: unknown, name: string, what: string, list = false): T {
  const v = isObject(body) ? body[name] : undefined;
  if (list ? !Array.isArray(v) : !isObject(v)) throw invalidResponse(what);
  return v as T;
}

function page<T>(body: unknown, name: string, what: string): { items: T[]; next: string | null } {
  const items = field<T[]>(body, name, what, true);
  const next = isObject(body) ? body.next : undefined;
  if (next !== undefined && next !== null && typeof next !== 'string') throw invalidResponse(what);
  return { items, next: next ?? null };
}

/**
 * A client of one billing server with one token.
 * @example
 * const billing = new BillingClient({ url: 'http://127.0.0.1:4000', token: process.env.MERCHANT_TOKEN });
 * const answer = await billing.deposit({ batch: 'b-1', orders });
 */
export class BillingClient {
  /** Base URL of the server (with a trailing `/`). */
  readonly url: string;
  /** Calls of the admin API (`/v1/admin/...`); they need an admin token. */
  readonly admin: BillingAdmin;
  private readonly cfg: HttpConfig;
  private readonly authorizeTimeoutMs: number;
  private resolver: { instance: HttpKeyResolver; opts: KeyResolverOptions } | null = null;
  private issuerId: string | null = null;

  constructor(options: BillingClientOptions) {
    if (!isObject(options))
      throw optionError('createBillingClient needs an options object with at least `url`.');
    const base = baseUrl(options.url);
    if (
      options.token !== undefined &&
      (typeof options.token !== 'string' || options.token.length === 0 || /[\r\n]/.test(options.token))
    ) {
      throw optionError('The billing client option `token` must be a non-empty string on one line.');
    }
    if (options.fetch !== undefined && typeof options.fetch !== 'function')
      throw optionError('The billing client option `fetch` must be a function.');
    // Bound: browsers throw "Illegal invocation" for a fetch called detached from window.
    const globalFetch: typeof fetch | undefined =
      typeof fetch === 'function' ? fetch.bind(globalThis) : undefined;
    const fetchImpl = options.fetch ?? globalFetch;
    if (!fetchImpl)
      throw optionError('There is no global fetch here (Node 18 or later has one); pass the `fetch` option.');
    this.cfg = {
      base,
      token: options.token,
      timeoutMs: positiveInt('timeoutMs', options.timeoutMs, 10_000),
      retries: nonNegativeInt('retries', options.retries, 3),
      retryBaseMs: positiveInt('retryBaseMs', options.retryBaseMs, 100),
      retryMaxDelayMs: positiveInt('retryMaxDelayMs', options.retryMaxDelayMs, 2000),
      fetch: fetchImpl,
      userAgent: options.userAgent ?? DEFAULT_USER_AGENT,
    };
    this.authorizeTimeoutMs = positiveInt('authorizeTimeoutMs', options.authorizeTimeoutMs, 3000);
    this.url = base.toString();
    this.admin = new BillingAdmin(
      (method, path, o) => this.call(method, path, o),
      (path, query, o) => this.stream(path, query, o),
    );
  }

  /** A GET whose successful body is handed over unread, as a web ReadableStream. */
  private async stream(
    path: string,
    query: Call['query'],
    o: CallOptions,
  ): Promise<ReadableStream<Uint8Array>> {
    const c: Call = {
      method: 'GET',
      path,
      query,
      retry: true,
      timeoutMs: o.timeoutMs ?? this.cfg.timeoutMs,
      signal: o.signal,
      raw: true,
    };
    const body = (await request(this.cfg, c)).body;
    if (!(body instanceof ReadableStream)) throw invalidResponse(`GET /${path}`);
    return body as ReadableStream<Uint8Array>;
  }

  /**
   * The caller's statement (buyer or merchant token) as a stream of bytes:
   * one JSON document, or RFC 4180 CSV with `format: 'csv'`. Nothing is
   * buffered: pipe it to a file or read it chunk by chunk. The timeout covers
   * the wait for the answer; `signal` cancels the transfer.
   * @example
   * const csv = await billing.statement({ from: '2026-11-01', to: '2026-11-30', format: 'csv' });
   * await pipeline(Readable.fromWeb(csv), createWriteStream('november.csv'));
   */
  async statement(
    params: StatementParams = {},
    options: CallOptions = {},
  ): Promise<ReadableStream<Uint8Array>> {
    return this.stream(
      'v1/me/statement',
      { from: bound(params.from), to: bound(params.to), format: params.format },
      options,
    );
  }

  /** Runs one call of this client. */
  private async call(method: Method, path: string, o: CallArgs = {}): Promise<unknown> {
    const c: Call = {
      method,
      path,
      retry: o.retry ?? method === 'GET',
      timeoutMs: o.timeoutMs ?? this.cfg.timeoutMs,
      signal: o.signal,
    };
    if (o.body !== undefined) c.body = o.body;
    if (o.json !== undefined) c.json = o.json;
    if (o.query !== undefined) c.query = o.query;
    return (await request(this.cfg, c)).body;
  }

  /** The raw key set of `GET /.well-known/micropay/keys` (validated; throws `invalid_key_set` if it is not one). */
  async keys(options: CallOptions = {}): Promise<KeySetDocument> {
    const doc = parseKeySet(await this.call('GET', KEYS_PATH, options));
    this.issuerId = doc.issuer;
    return doc;
  }

  /**
   * The key resolver of this server, shared by every caller of this client
   * (one LRU, one refetch limit). Options apply when it is first created;
   * asking again with different options throws `invalid_option`.
   */
  keyResolver(options?: KeyResolverOptions): HttpKeyResolver {
    if (this.resolver) {
      if (options !== undefined && !sameOptions(options, this.resolver.opts)) {
        throw optionError(
          'keyResolver() was already created with other options; the resolver is shared, so pass its options once.',
        );
      }
      return this.resolver.instance;
    }
    const keysUrl = new URL(KEYS_PATH, this.cfg.base).toString();
    const fetchImpl = this.cfg.fetch;
    const userAgent = this.cfg.userAgent;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (IS_NODE && userAgent) headers['user-agent'] = userAgent;
    // The resolver asks the origin's well-known path; send it to this client's base (a prefix is kept).
    const viaClient: typeof fetch = (_input, init) => fetchImpl(keysUrl, { ...init, headers });
    const opts = options ?? {};
    const instance = new HttpKeyResolver({ ...opts, url: this.cfg.base.origin, fetch: viaClient });
    this.resolver = { instance, opts };
    return instance;
  }

  /** This server's issuer id (from its key set; fetched once, then remembered). */
  async issuer(options: CallOptions = {}): Promise<string> {
    if (this.issuerId === null) await this.keys(options);
    return this.issuerId!;
  }

  /**
   * A fresh credential for the buyer's Ed25519 public key (buyer token).
   * `key` is the base64url public key, or a `SigningKey` whose `x` is used.
   * A disabled buyer gets `account_disabled` (403).
   */
  async createCertificate(
    key: string | { readonly x: string },
    options: CallOptions = {},
  ): Promise<CertificateAnswer> {
    const x = typeof key === 'string' ? key : key?.x;
    const body = await this.call('POST', 'v1/certificates', { ...options, body: { key: x } });
    if (
      !isObject(body) ||
      typeof body.cert !== 'string' ||
      typeof body.exp !== 'number' ||
      typeof body.lim !== 'number'
    ) {
      throw invalidResponse('POST /v1/certificates');
    }
    return { cert: body.cert, exp: body.exp, lim: body.lim };
  }

  /**
   * Deposits a batch of orders (merchant token). Idempotent by `batch` id, so
   * it is retried on network errors and 429/502/503/504; when it still
   * fails that way it throws `billing_unavailable`: keep the batch and post
   * it again later with the same id.
   */
  async deposit(req: DepositRequest, options: CallOptions = {}): Promise<DepositAnswer> {
    const encoded = depositBody(req);
    const body = await this.call('POST', 'v1/deposits', {
      ...options,
      ...(encoded ? { json: encoded } : { body: { batch: req.batch, orders: req.orders } }),
      retry: true,
    });
    if (!isObject(body) || !Array.isArray(body.results) || typeof body.credited !== 'number') {
      throw invalidResponse('POST /v1/deposits');
    }
    return body as unknown as DepositAnswer;
  }

  /**
   * Asks the billing server to approve an order online (merchant token).
   * One attempt within `authorizeTimeoutMs`, never retried; throws
   * `billing_unavailable` when the server cannot be reached, times out or
   * answers 5xx, so the verifier answers 503 (or fails open if configured).
   */
  async authorize(
    req: { cert: string; order: string },
    options: CallOptions = {},
  ): Promise<AuthorizationAnswer> {
    const body = await this.call('POST', 'v1/authorizations', {
      timeoutMs: options.timeoutMs ?? this.authorizeTimeoutMs,
      signal: options.signal,
      body: { cert: req.cert, order: req.order },
      retry: false,
    });
    if (isObject(body) && body.status === 'approved' && typeof body.auth === 'string')
      return { status: 'approved', auth: body.auth };
    if (isObject(body) && body.status === 'declined' && typeof body.reason === 'string') {
      return { status: 'declined', reason: body.reason };
    }
    throw invalidResponse('POST /v1/authorizations');
  }

  /** The `Authorizer` the verifier takes: `createVerifier({ ..., authorize: client.authorizer() })`. */
  authorizer(): (req: { cert: string; order: string }) => Promise<AuthorizationAnswer> {
    return (req) => this.authorize(req);
  }

  /** The caller's own account: balance and limits (buyer or merchant token). */
  async me(options: CallOptions = {}): Promise<Account> {
    const body = await this.call('GET', 'v1/me', options);
    // `{ account }` like the admin answers; a bare account is taken too.
    const a = isObject(body) && isObject(body.account) ? body.account : body;
    if (!isObject(a) || typeof a.id !== 'string') throw invalidResponse('GET /v1/me');
    return a as unknown as Account;
  }

  /** One page of the caller's ledger entries, newest first. Pass `next` of a page as `cursor` for the following one. */
  async entries(
    params: { cursor?: string; limit?: number } = {},
    options: CallOptions = {},
  ): Promise<EntriesPage> {
    const body = await this.call('GET', 'v1/me/entries', {
      ...options,
      query: { cursor: params.cursor, limit: params.limit },
    });
    const p = page<LedgerEntry>(body, 'entries', 'GET /v1/me/entries');
    return { entries: p.items, next: p.next };
  }

  /** Every ledger entry of the caller, newest first, fetching page after page. */
  async *allEntries(
    params: { limit?: number } = {},
    options: CallOptions = {},
  ): AsyncGenerator<LedgerEntry, void, undefined> {
    let cursor: string | undefined;
    do {
      const p: EntriesPage = await this.entries(
        cursor === undefined ? params : { ...params, cursor },
        options,
      );
      yield* p.entries;
      cursor = p.next ?? undefined;
    } while (cursor !== undefined);
  }
}

/** Calls under `/v1/admin/` (admin token). Reached as `client.admin`. */
export class BillingAdmin {
  /** @internal Made by `BillingClient`; use `client.admin`. */
  constructor(
    private readonly call: CallFn,
    private readonly stream: StreamFn,
  ) {}

  /**
   * Every account's entries of a month (`period: '2026-11'`) or a range, as a
   * stream of JSON or CSV bytes: what a billing run imports. Never buffered.
   * @example
   * const csv = await billing.admin.statements({ period: '2026-11', format: 'csv' });
   * await pipeline(Readable.fromWeb(csv), createWriteStream('2026-11.csv'));
   */
  async statements(
    params: AdminStatementParams,
    options: CallOptions = {},
  ): Promise<ReadableStream<Uint8Array>> {
    return this.stream(
      'v1/admin/statements',
      { period: params.period, from: bound(params.from), to: bound(params.to), format: params.format },
      options,
    );
  }

  /** How many entries a period holds and its totals per currency, without the lines. */
  async statementSummary(
    params: Omit<AdminStatementParams, 'format'>,
    options: CallOptions = {},
  ): Promise<StatementSummary> {
    const body = await this.call('GET', 'v1/admin/statements/summary', {
      ...options,
      query: { period: params.period, from: bound(params.from), to: bound(params.to) },
    });
    if (!isObject(body) || typeof body.entries !== 'number' || !Array.isArray(body.totals)) {
      throw invalidResponse('GET /v1/admin/statements/summary');
    }
    return body as unknown as StatementSummary;
  }

  /**
   * Registers a webhook endpoint for some event types. The answer holds the
   * signing secret (generated unless given): it is shown only this once.
   */
  async createWebhook(input: NewWebhookInput, options: CallOptions = {}): Promise<CreatedWebhook> {
    const body = await this.call('POST', 'v1/admin/webhooks', { ...options, body: input });
    const webhook = field<Webhook>(body, 'webhook', 'POST /v1/admin/webhooks');
    const secret = (body as { secret?: unknown }).secret;
    if (typeof secret !== 'string') throw invalidResponse('POST /v1/admin/webhooks');
    return { webhook, secret };
  }

  /** Every registered webhook endpoint (without secrets). */
  async listWebhooks(options: CallOptions = {}): Promise<Webhook[]> {
    return field<Webhook[]>(
      await this.call('GET', 'v1/admin/webhooks', options),
      'webhooks',
      'GET /v1/admin/webhooks',
      true,
    );
  }

  /** Removes a webhook endpoint; nothing more is sent to it. `no_such_webhook` (404) if unknown. */
  async deleteWebhook(id: string, options: CallOptions = {}): Promise<void> {
    await this.call('DELETE', `v1/admin/webhooks/${segment('webhook id', id)}`, options);
  }

  /** One page of an endpoint's delivery log, newest first, with every attempt. */
  async webhookDeliveries(
    id: string,
    params: { cursor?: string; limit?: number; status?: WebhookDelivery['status'] } = {},
    options: CallOptions = {},
  ): Promise<DeliveriesPage> {
    const body = await this.call('GET', `v1/admin/webhooks/${segment('webhook id', id)}/deliveries`, {
      ...options,
      query: { cursor: params.cursor, limit: params.limit, status: params.status },
    });
    const p = page<WebhookDelivery>(body, 'deliveries', 'GET /v1/admin/webhooks/:id/deliveries');
    return { deliveries: p.items, next: p.next };
  }

  /** Creates an account; answers it with its first API token (shown once). `account_exists` (409) if the id is taken. */
  async createAccount(input: NewAccountInput, options: CallOptions = {}): Promise<CreatedAccount> {
    const body = await this.call('POST', 'v1/admin/accounts', { ...options, body: input });
    const account = field<Account>(body, 'account', 'POST /v1/admin/accounts');
    const b = body as { token?: unknown; tokenId?: unknown };
    if (typeof b.token !== 'string') throw invalidResponse('POST /v1/admin/accounts');
    return typeof b.tokenId === 'string'
      ? { account, token: b.token, tokenId: b.tokenId }
      : { account, token: b.token };
  }

  /** One page of accounts, filtered by role and status. Pass `next` of a page as `cursor` for the following one. */
  async listAccounts(
    filter: AccountFilter & { cursor?: string } = {},
    options: CallOptions = {},
  ): Promise<AccountsPage> {
    const body = await this.call('GET', 'v1/admin/accounts', {
      ...options,
      query: { role: filter.role, status: filter.status, cursor: filter.cursor, limit: filter.limit },
    });
    const p = page<Account>(body, 'accounts', 'GET /v1/admin/accounts');
    return { accounts: p.items, next: p.next };
  }

  /**
   * Every account matching the filter, fetching page after page.
   * @example
   * for await (const a of client.admin.allAccounts({ role: 'buyer' })) console.log(a.id, a.balance);
   */
  async *allAccounts(
    filter: AccountFilter = {},
    options: CallOptions = {},
  ): AsyncGenerator<Account, void, undefined> {
    let cursor: string | undefined;
    do {
      const p: AccountsPage = await this.listAccounts(
        cursor === undefined ? filter : { ...filter, cursor },
        options,
      );
      yield* p.accounts;
      cursor = p.next ?? undefined;
    } while (cursor !== undefined);
  }

  /** One account; `no_such_account` (404) if there is none. */
  async getAccount(id: string, options: CallOptions = {}): Promise<Account> {
    const body = await this.call('GET', `v1/admin/accounts/${accountSegment(id)}`, options);
    return field<Account>(body, 'account', 'GET /v1/admin/accounts/:id');
  }

  /** Changes status, limits, commission or name; answers the updated account. */
  async updateAccount(id: string, patch: AccountPatch, options: CallOptions = {}): Promise<Account> {
    const body = await this.call('PATCH', `v1/admin/accounts/${accountSegment(id)}`, {
      ...options,
      body: patch,
    });
    return field<Account>(body, 'account', 'PATCH /v1/admin/accounts/:id');
  }

  /** Deletes an account; `account_not_settled` (409) while its balance is not zero. */
  async deleteAccount(id: string, options: CallOptions = {}): Promise<void> {
    await this.call('DELETE', `v1/admin/accounts/${accountSegment(id)}`, options);
  }

  /** Issues another API token for an account (shown once). */
  async issueToken(accountId: string, options: CallOptions = {}): Promise<IssuedToken> {
    const body = await this.call('POST', `v1/admin/accounts/${accountSegment(accountId)}/tokens`, options);
    if (!isObject(body) || typeof body.token !== 'string' || typeof body.tokenId !== 'string') {
      throw invalidResponse('POST /v1/admin/accounts/:id/tokens');
    }
    return { token: body.token, tokenId: body.tokenId };
  }

  /** Revokes a token by its id: it stops working at once. */
  async revokeToken(tokenId: string, options: CallOptions = {}): Promise<void> {
    await this.call('DELETE', `v1/admin/tokens/${segment('token id', tokenId)}`, options);
  }

  /** Adds a signed amount to an account's balance (a top-up or a payout), with a memo for the ledger. */
  async adjust(id: string, adjustment: Adjustment, options: CallOptions = {}): Promise<Account> {
    const body = await this.call('POST', `v1/admin/accounts/${accountSegment(id)}/adjustments`, {
      ...options,
      body:
        adjustment.memo === undefined
          ? { amt: adjustment.amt }
          : { amt: adjustment.amt, memo: adjustment.memo },
    });
    return field<Account>(body, 'account', 'POST /v1/admin/accounts/:id/adjustments');
  }

  /** Registers a peer billing server; answers the token the peer presents here. `peer_exists` (409) if known. */
  async addPeer(input: NewPeerInput, options: CallOptions = {}): Promise<AddedPeer> {
    const body = await this.call('POST', 'v1/admin/peers', { ...options, body: input });
    const peer = field<Peer>(body, 'peer', 'POST /v1/admin/peers');
    const token = (body as { token?: unknown }).token;
    if (typeof token !== 'string') throw invalidResponse('POST /v1/admin/peers');
    return { peer, token };
  }

  /** Changes a peer's URL or the token this server presents there. */
  async updatePeer(issuer: string, patch: PeerPatch, options: CallOptions = {}): Promise<Peer> {
    const body = await this.call('PATCH', `v1/admin/peers/${segment('peer issuer', issuer)}`, {
      ...options,
      body: patch,
    });
    return field<Peer>(body, 'peer', 'PATCH /v1/admin/peers/:issuer');
  }

  /** Every peer. */
  async listPeers(options: CallOptions = {}): Promise<Peer[]> {
    return field<Peer[]>(
      await this.call('GET', 'v1/admin/peers', options),
      'peers',
      'GET /v1/admin/peers',
      true,
    );
  }

  /** Removes a peer: its credentials stop being accepted. */
  async removePeer(issuer: string, options: CallOptions = {}): Promise<void> {
    await this.call('DELETE', `v1/admin/peers/${segment('peer issuer', issuer)}`, options);
  }

  /** Makes a new signing key; it signs from now on, the old ones stay published until their credentials expire. */
  async rotateKeys(options: CallOptions = {}): Promise<RotatedKey> {
    const body = await this.call('POST', 'v1/admin/keys/rotate', options);
    if (!isObject(body) || typeof body.kid !== 'string') throw invalidResponse('POST /v1/admin/keys/rotate');
    return { kid: body.kid };
  }

  /** Net positions with each peer per currency (`net > 0`: the peer owes us). */
  async settlement(options: CallOptions = {}): Promise<SettlementPosition[]> {
    const body = await this.call('GET', 'v1/admin/settlement', options);
    return field<SettlementPosition[]>(body, 'positions', 'GET /v1/admin/settlement', true);
  }
}

function sameOptions(a: KeyResolverOptions, b: KeyResolverOptions): boolean {
  const ka = Object.keys(a) as (keyof KeyResolverOptions)[];
  const kb = Object.keys(b) as (keyof KeyResolverOptions)[];
  return ka.length === kb.length && ka.every((k) => a[k] === b[k]);
}

/**
 * Creates a billing client.
 * @example
 * const billing = createBillingClient({ url: 'http://127.0.0.1:4000', token: merchantToken });
 * const verifier = createVerifier({ merchant: 'news-site', accepts: [await billing.issuer()],
 *   keys: billing.keyResolver(), store, authorize: billing.authorizer() });
 */
export function createBillingClient(options: BillingClientOptions): BillingClient {
  return new BillingClient(options);
}
