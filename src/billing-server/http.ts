/**
 * The HTTP API of the billing server (PROTOCOL.md sections 2, 8 and 10) as
 * an Express 5 app. Routes are declared in one table with the roles they
 * admit, so authentication happens before any body is read, and so a known
 * path with the wrong method answers 405. Every error body is
 * `{ error, message }`; anything unexpected becomes a coded 500 without a stack.
 */
import { timingSafeEqual } from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import { isMicropayError, MicropayError } from '../protocol/index.js';
import type { Claimer } from './claimer.js';
import type { InterbankClaims } from './claims.js';
import type { KeyRing } from './keyring.js';
import { type DepositItem, type Ledger, MAX_DEPOSIT_ORDERS } from './ledger.js';
import type { Metrics } from './metrics.js';
import type { PeerKeys } from './peering.js';
import { adminPeriod, formatParam, rangePeriod, statementSummary, streamStatement } from './statements.js';
import {
  type AccountRole,
  hashToken,
  isSystemId,
  type Role,
  type Store,
  type StoredAccount,
} from './store.js';
import {
  amountField,
  bpsField,
  currencyField,
  idField,
  invalid,
  limitParam,
  nullableAmountField,
  nullableTextField,
  objectBody,
  onlyFields,
  publicKeyField,
  queryParam,
  tokenField,
  urlField,
} from './validate.js';
import { mountWeb } from './web/index.js';
import { parseWebhookBody, Webhooks } from './webhooks.js';

/** Largest JSON body: a deposit of 1000 orders of about 1 KB each fits. */
export const BODY_LIMIT = '2mb';
/** `Cache-Control: max-age` of the key set. */
export const KEYS_MAX_AGE = 300;

/** What a route handler knows about its caller. */
interface Principal {
  role: Role;
  subject: string;
}

/** Everything the routes need. */
export interface AppContext {
  issuer: string;
  adminTokenHash: string;
  store: Store;
  ledger: Ledger;
  keys: KeyRing;
  metrics: Metrics;
  logger: Logger;
  corsOrigins: readonly string[];
  now: () => number;
  /** Section 9: the peers' keys we publish, the claims peers send us, the claims we send them. */
  peering: { keys: PeerKeys; claims: InterbankClaims; claimer: Claimer };
}

/** The orders of a deposit or claim body (`{ batch, orders: [{ cert, order, auth? }] }`), or a 400 naming the field. */
function depositBody(b: Record<string, unknown>): { batch: string; items: DepositItem[] } {
  const batch = idField(b, 'batch');
  const orders = b.orders;
  if (!Array.isArray(orders)) throw invalid('`orders` must be a list of { cert, order, auth? }.');
  if (orders.length > MAX_DEPOSIT_ORDERS) {
    throw invalid(
      `\`orders\` holds ${orders.length} orders; a deposit holds at most ${MAX_DEPOSIT_ORDERS}. Split the batch.`,
    );
  }
  const items: DepositItem[] = orders.map((o, i) => {
    if (typeof o !== 'object' || o === null || Array.isArray(o))
      throw invalid(`\`orders[${i}]\` must be an object { cert, order, auth? }.`);
    const x = o as Record<string, unknown>;
    const item: DepositItem = {
      cert: tokenField(x, 'cert', `orders[${i}].cert`),
      order: tokenField(x, 'order', `orders[${i}].order`),
    };
    if (x.auth !== undefined && x.auth !== null) item.auth = tokenField(x, 'auth', `orders[${i}].auth`);
    return item;
  });
  return { batch, items };
}

/** The token this server presents at a peer: what a Bearer header can carry, or null. */
function peerTokenField(b: Record<string, unknown>): string | null {
  const v = b.token;
  if (v === null) return null;
  if (typeof v !== 'string' || !/^[\x21-\x7e]{1,512}$/.test(v))
    throw invalid(
      "`token` must be the peer's token for us: 1 to 512 printable characters without spaces, or null.",
    );
  return v;
}

type Handler = (req: Request, res: Response, who: Principal) => Promise<void> | void;

interface Route {
  method: 'get' | 'post' | 'patch' | 'delete';
  path: string;
  /** Roles admitted; empty: no authentication. */
  roles: readonly Role[];
  /** Whether the route reads a JSON body. */
  body?: boolean;
  handler: Handler;
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64url');

function decodeCursor(v: string | undefined): string | undefined {
  if (v === undefined || v === '') return undefined;
  const s = /^[A-Za-z0-9_-]{1,200}$/.test(v) ? Buffer.from(v, 'base64url').toString('utf8') : '';
  if (!/^[A-Za-z0-9._:-]{1,128}$/.test(s))
    throw invalid('`cursor` is not a cursor this server returned; pass `next` from the previous page.');
  return s;
}

function sameHash(a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

const unauthorized = (message: string) => new MicropayError('unauthorized', message, { status: 401 });

/** Builds the Express app. */
export function createApp(ctx: AppContext): express.Express {
  const { store, ledger, keys, metrics, logger } = ctx;
  const hooks = new Webhooks(store.db);
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  const json = express.json({ limit: BODY_LIMIT, strict: true });

  // Request latency and a log line per request (never headers, so never a token).
  app.use((req, res, next) => {
    const start = process.hrtime.bigint();
    res.on('finish', () => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      const route = (req.route as { path?: string } | undefined)?.path ?? 'unmatched';
      metrics.requestSeconds.observe({ method: req.method, route, status: String(res.statusCode) }, seconds);
      logger.info(
        { method: req.method, route, status: res.statusCode, ms: Math.round(seconds * 1e4) / 10 },
        'request',
      );
    });
    next();
  });

  // CORS for the browser wallet and the account pages at / (src/billing-server/web).
  mountWeb(app, ctx);

  async function authenticate(req: Request): Promise<Principal> {
    const h = req.headers.authorization;
    if (h === undefined)
      throw unauthorized('This call needs an API token: send Authorization: Bearer <token>.');
    const m = /^Bearer +([\x21-\x7e]{1,512})\s*$/i.exec(h);
    if (!m) throw unauthorized('The Authorization header must be "Bearer <token>".');
    const hash = hashToken(m[1]!);
    if (sameHash(hash, ctx.adminTokenHash)) return { role: 'admin', subject: 'admin' };
    const owner = await store.tokenOwner(hash);
    if (!owner)
      throw unauthorized('The API token is not known or was revoked. Ask the operator for a new one.');
    return owner;
  }

  /** The caller's own account (buyer or merchant). */
  async function own(who: Principal): Promise<StoredAccount> {
    const a = await store.account(who.subject);
    if (!a) throw unauthorized('The account of this token no longer exists.');
    return a;
  }

  const routes: Route[] = [
    {
      method: 'get',
      path: '/.well-known/micropay/keys',
      roles: [],
      handler: async (_req, res) => {
        res.setHeader('Cache-Control', `max-age=${KEYS_MAX_AGE}`);
        const [own, peers] = await Promise.all([keys.published(), ctx.peering.keys.published()]);
        res.json({ issuer: ctx.issuer, keys: own, peers });
      },
    },
    {
      method: 'get',
      path: '/healthz',
      roles: [],
      handler: async (_req, res) => {
        try {
          await store.db.get('SELECT 1 AS ok');
          res.json({ status: 'ok', issuer: ctx.issuer });
        } catch {
          res.status(503).json({ error: 'storage_unavailable', message: 'The database does not answer.' });
        }
      },
    },
    {
      method: 'get',
      path: '/metrics',
      roles: [],
      handler: async (_req, res) => {
        res.setHeader('Content-Type', metrics.registry.contentType);
        res.send(await metrics.registry.metrics());
      },
    },
    {
      method: 'post',
      path: '/v1/certificates',
      roles: ['buyer'],
      body: true,
      handler: async (req, res, who) => {
        const b = objectBody(req.body);
        const key = publicKeyField(b, 'key');
        const buyer = await own(who);
        res.status(201).json(await ledger.certificate(buyer, key));
      },
    },
    {
      method: 'post',
      path: '/v1/deposits',
      roles: ['merchant'],
      body: true,
      handler: async (req, res, who) => {
        const { batch, items } = depositBody(objectBody(req.body));
        const merchant = await own(who);
        if (merchant.status !== 'active') {
          throw new MicropayError(
            'account_disabled',
            'This merchant account is disabled; ask the billing server operator.',
            { status: 403 },
          );
        }
        const end = metrics.depositSeconds.startTimer();
        const { json, answer } = await ledger.deposit(merchant, batch, items);
        end();
        // A re-posted batch (answer null) changes nothing, so it counts nothing either.
        for (const r of answer?.results ?? []) {
          if (r.status === 'credited') metrics.ordersCredited.inc();
          else if (r.status === 'duplicate') metrics.ordersDuplicate.inc();
          else metrics.ordersRejected.inc({ reason: r.reason ?? 'unknown' });
        }
        res.type('application/json').send(json);
      },
    },
    {
      method: 'post',
      path: '/v1/authorizations',
      roles: ['merchant'],
      body: true,
      handler: async (req, res, who) => {
        const b = objectBody(req.body);
        const cert = tokenField(b, 'cert');
        const order = tokenField(b, 'order');
        const merchant = await own(who);
        if (merchant.status !== 'active') {
          throw new MicropayError(
            'account_disabled',
            'This merchant account is disabled; ask the billing server operator.',
            { status: 403 },
          );
        }
        const answer = await ledger.authorize(merchant, cert, order);
        metrics.authorizations.inc({ status: answer.status });
        res.json(answer);
      },
    },
    {
      method: 'get',
      path: '/v1/me',
      roles: ['buyer', 'merchant'],
      handler: async (_req, res, who) => {
        const a = await own(who);
        const account = a.role === 'buyer' ? { ...a, available: await ledger.available(a) } : a;
        res.json({ account });
      },
    },
    {
      method: 'get',
      path: '/v1/me/entries',
      roles: ['buyer', 'merchant'],
      handler: async (req, res, who) => {
        const limit = limitParam(req.query, 50, 500);
        const cursor = queryParam(req.query, 'cursor');
        if (cursor !== undefined && cursor !== '' && !/^\d{1,15}$/.test(cursor)) {
          throw invalid('`cursor` is not a cursor this server returned; pass `next` from the previous page.');
        }
        const a = await own(who);
        const entries = await store.entries(a.id, cursor ? Number(cursor) : undefined, limit + 1);
        const more = entries.length > limit;
        const page = entries.slice(0, limit);
        res.json({ entries: page, next: more ? page[page.length - 1]!.id : null });
      },
    },
    {
      method: 'get',
      path: '/v1/me/statement',
      roles: ['buyer', 'merchant'],
      // Streamed (statements.ts): every parameter is checked before the first byte goes out.
      handler: async (req, res, who) => {
        const period = rangePeriod(req.query);
        const format = formatParam(req.query);
        const a = await own(who);
        const scope = { account: a.id, currency: a.currency, role: a.role };
        await streamStatement(store.db, res, { scope, period, format, now: ctx.now() });
      },
    },
    {
      method: 'post',
      path: '/v1/admin/accounts',
      roles: ['admin'],
      body: true,
      handler: async (req, res) => {
        const b = objectBody(req.body);
        onlyFields(b, ['id', 'role', 'currency', 'name', 'creditLimit', 'dailyLimit', 'commissionBps']);
        const id = idField(b, 'id');
        if (isSystemId(id))
          throw invalid(
            '`id` may not start with "fees:" or "external:"; those are the server\'s own accounts.',
          );
        if (b.role !== 'buyer' && b.role !== 'merchant')
          throw invalid('`role` must be "buyer" or "merchant".');
        const created = await store.createAccount(
          {
            id,
            role: b.role,
            currency: currencyField(b, 'currency'),
            name: b.name === undefined ? null : nullableTextField(b, 'name', 200),
            creditLimit: b.creditLimit === undefined ? 0 : amountField(b, 'creditLimit'),
            dailyLimit: b.dailyLimit === undefined ? null : nullableAmountField(b, 'dailyLimit'),
            commissionBps: b.commissionBps === undefined ? 0 : bpsField(b, 'commissionBps'),
          },
          ctx.now(),
        );
        res.status(201).json({ account: created.account, token: created.token, tokenId: created.tokenId });
      },
    },
    {
      method: 'get',
      path: '/v1/admin/accounts',
      roles: ['admin'],
      handler: async (req, res) => {
        const role = queryParam(req.query, 'role');
        if (
          role !== undefined &&
          role !== '' &&
          role !== 'buyer' &&
          role !== 'merchant' &&
          role !== 'system'
        ) {
          throw invalid('`role` must be "buyer", "merchant" or "system".');
        }
        const status = queryParam(req.query, 'status');
        if (status !== undefined && status !== '' && status !== 'active' && status !== 'disabled') {
          throw invalid('`status` must be "active" or "disabled".');
        }
        const limit = limitParam(req.query, 100, 1000);
        const after = decodeCursor(queryParam(req.query, 'cursor'));
        const f: Parameters<Store['listAccounts']>[0] = { limit: limit + 1 };
        if (role) f.role = role as AccountRole;
        if (status) f.status = status as 'active' | 'disabled';
        if (after !== undefined) f.after = after;
        const rows = await store.listAccounts(f);
        const page = rows.slice(0, limit);
        res.json({ accounts: page, next: rows.length > limit ? b64(page[page.length - 1]!.id) : null });
      },
    },
    {
      method: 'get',
      path: '/v1/admin/accounts/:id',
      roles: ['admin'],
      handler: async (req, res) => {
        const a = await store.mustAccount(String(req.params.id));
        const account = a.role === 'buyer' ? { ...a, available: await ledger.available(a) } : a;
        res.json({ account });
      },
    },
    {
      method: 'patch',
      path: '/v1/admin/accounts/:id',
      roles: ['admin'],
      body: true,
      handler: async (req, res) => {
        const b = objectBody(req.body);
        onlyFields(b, ['status', 'creditLimit', 'dailyLimit', 'commissionBps', 'name']);
        if (Object.keys(b).length === 0)
          throw invalid(
            'Send at least one of `status`, `creditLimit`, `dailyLimit`, `commissionBps`, `name`.',
          );
        const p: Parameters<Store['patchAccount']>[1] = {};
        if (b.status !== undefined) {
          if (b.status !== 'active' && b.status !== 'disabled')
            throw invalid('`status` must be "active" or "disabled".');
          p.status = b.status;
        }
        if (b.creditLimit !== undefined) p.creditLimit = amountField(b, 'creditLimit');
        if (b.dailyLimit !== undefined) p.dailyLimit = nullableAmountField(b, 'dailyLimit');
        if (b.commissionBps !== undefined) p.commissionBps = bpsField(b, 'commissionBps');
        if (b.name !== undefined) p.name = nullableTextField(b, 'name', 200);
        res.json({ account: await store.patchAccount(String(req.params.id), p, ctx.now()) });
      },
    },
    {
      method: 'delete',
      path: '/v1/admin/accounts/:id',
      roles: ['admin'],
      handler: async (req, res) => {
        await store.deleteAccount(String(req.params.id), ctx.now());
        res.status(204).end();
      },
    },
    {
      method: 'post',
      path: '/v1/admin/accounts/:id/tokens',
      roles: ['admin'],
      handler: async (req, res) => {
        res.status(201).json(await store.issueToken(String(req.params.id), ctx.now()));
      },
    },
    {
      method: 'delete',
      path: '/v1/admin/tokens/:tokenId',
      roles: ['admin'],
      handler: async (req, res) => {
        await store.revokeToken(String(req.params.tokenId), ctx.now());
        res.status(204).end();
      },
    },
    {
      method: 'post',
      path: '/v1/admin/accounts/:id/adjustments',
      roles: ['admin'],
      body: true,
      handler: async (req, res) => {
        const b = objectBody(req.body);
        onlyFields(b, ['amt', 'memo']);
        const amt = b.amt;
        if (typeof amt !== 'number' || !Number.isSafeInteger(amt) || amt === 0) {
          throw invalid(
            '`amt` must be a non-zero integer of micro-units: positive for a top-up, negative for a payout.',
          );
        }
        const memo = b.memo === undefined ? null : nullableTextField(b, 'memo', 512);
        res.status(201).json({ account: await ledger.adjust(String(req.params.id), amt, memo) });
      },
    },
    {
      method: 'get',
      path: '/v1/admin/statements',
      roles: ['admin'],
      handler: async (req, res) => {
        const period = adminPeriod(req.query);
        const format = formatParam(req.query);
        await streamStatement(store.db, res, { scope: { all: true }, period, format, now: ctx.now() });
      },
    },
    {
      method: 'get',
      path: '/v1/admin/statements/summary',
      roles: ['admin'],
      handler: async (req, res) => {
        res.json(await statementSummary(store.db, adminPeriod(req.query)));
      },
    },
    {
      method: 'post',
      path: '/v1/admin/webhooks',
      roles: ['admin'],
      body: true,
      handler: async (req, res) => {
        // The answer is the one place the secret is ever shown.
        res.status(201).json(await hooks.create(parseWebhookBody(objectBody(req.body)), ctx.now()));
      },
    },
    {
      method: 'get',
      path: '/v1/admin/webhooks',
      roles: ['admin'],
      handler: async (_req, res) => {
        res.json({ webhooks: await hooks.list() });
      },
    },
    {
      method: 'delete',
      path: '/v1/admin/webhooks/:id',
      roles: ['admin'],
      handler: async (req, res) => {
        await hooks.remove(String(req.params.id));
        res.status(204).end();
      },
    },
    {
      method: 'get',
      path: '/v1/admin/webhooks/:id/deliveries',
      roles: ['admin'],
      handler: async (req, res) => {
        const limit = limitParam(req.query, 50, 500);
        const cursor = queryParam(req.query, 'cursor');
        if (cursor !== undefined && cursor !== '' && !/^\d{1,15}$/.test(cursor)) {
          throw invalid('`cursor` is not a cursor this server returned; pass `next` from the previous page.');
        }
        const status = queryParam(req.query, 'status');
        if (status !== undefined && status !== '' && !['pending', 'delivered', 'failed'].includes(status)) {
          throw invalid('`status` must be "pending", "delivered" or "failed".');
        }
        const f: Parameters<Webhooks['deliveries']>[1] = { limit: limit + 1 };
        if (cursor) f.before = Number(cursor);
        if (status) f.status = status as 'pending' | 'delivered' | 'failed';
        const rows = await hooks.deliveries(String(req.params.id), f);
        const page = rows.slice(0, limit);
        res.json({ deliveries: page, next: rows.length > limit ? page[page.length - 1]!.id : null });
      },
    },
    {
      method: 'post',
      path: '/v1/admin/keys/rotate',
      roles: ['admin'],
      handler: async (_req, res) => {
        const kid = await keys.rotate();
        logger.info({ kid }, 'signing key rotated');
        res.status(201).json({ kid });
      },
    },
    {
      method: 'get',
      path: '/v1/admin/settlement',
      roles: ['admin'],
      handler: async (_req, res) => {
        res.json({ positions: await ctx.peering.claimer.settlement() });
      },
    },
    {
      method: 'post',
      path: '/v1/admin/peers',
      roles: ['admin'],
      body: true,
      handler: async (req, res) => {
        const b = objectBody(req.body);
        onlyFields(b, ['issuer', 'url', 'token', 'feeBps']);
        const issuer = idField(b, 'issuer');
        if (issuer === ctx.issuer)
          throw invalid('`issuer` is this server itself; a peer is another billing server.');
        const url = urlField(b, 'url');
        const token = b.token === undefined ? null : peerTokenField(b);
        const feeBps = b.feeBps === undefined ? 0 : bpsField(b, 'feeBps');
        const created = await store.createPeer(issuer, url, token, feeBps, ctx.now());
        await ctx.peering.keys.changed(issuer);
        res.status(201).json(created);
      },
    },
    {
      method: 'get',
      path: '/v1/admin/peers',
      roles: ['admin'],
      handler: async (_req, res) => {
        res.json({ peers: await store.peers() });
      },
    },
    {
      method: 'patch',
      path: '/v1/admin/peers/:issuer',
      roles: ['admin'],
      body: true,
      handler: async (req, res) => {
        const b = objectBody(req.body);
        onlyFields(b, ['url', 'token', 'feeBps']);
        if (Object.keys(b).length === 0) throw invalid('Send any of `url`, `token`, `feeBps`.');
        const p: { url?: string; token?: string | null; feeBps?: number } = {};
        if (b.url !== undefined) p.url = urlField(b, 'url');
        if (b.token !== undefined) p.token = peerTokenField(b);
        if (b.feeBps !== undefined) p.feeBps = bpsField(b, 'feeBps');
        const issuer = String(req.params.issuer);
        const peer = await store.patchPeer(issuer, p, ctx.now());
        if (p.url !== undefined) await ctx.peering.keys.changed(issuer);
        res.json({ peer });
      },
    },
    {
      method: 'delete',
      path: '/v1/admin/peers/:issuer',
      roles: ['admin'],
      handler: async (req, res) => {
        const issuer = String(req.params.issuer);
        await store.deletePeer(issuer, ctx.now());
        ctx.peering.keys.removed(issuer);
        res.status(204).end();
      },
    },
    {
      method: 'post',
      path: '/v1/interbank/claims',
      roles: ['peer'],
      body: true,
      // The peer stands where a merchant would: the same body and answer as a deposit (claims.ts).
      handler: async (req, res, who) => {
        const { batch, items } = depositBody(objectBody(req.body));
        const { json } = await ctx.peering.claims.claim(who.subject, batch, items);
        res.type('application/json').send(json);
      },
    },
  ];

  const methodsByPath = new Map<string, string[]>();
  for (const r of routes) {
    const guard = async (req: Request, res: Response, next: NextFunction) => {
      const who = await authenticate(req);
      if (!r.roles.includes(who.role)) {
        throw new MicropayError(
          'forbidden',
          `This call is for ${r.roles.join(' or ')} tokens; this is a ${who.role} token.`,
          { status: 403 },
        );
      }
      res.locals.who = who;
      next();
    };
    const run = async (req: Request, res: Response) => {
      await r.handler(req, res, res.locals.who as Principal);
    };
    const chain = [...(r.roles.length > 0 ? [guard] : []), ...(r.body ? [json] : []), run];
    app[r.method](r.path, ...chain);
    const list = methodsByPath.get(r.path) ?? [];
    list.push(r.method.toUpperCase());
    if (r.method === 'get') list.push('HEAD');
    methodsByPath.set(r.path, list);
  }
  for (const [path, methods] of methodsByPath) {
    app.all(path, (req, res) => {
      res.setHeader('Allow', methods.join(', '));
      res.status(405).json({
        error: 'method_not_allowed',
        message: `${req.method} is not allowed here; use ${methods.join(' or ')}.`,
      });
    });
  }
  app.use((req, res) => {
    res.status(404).json({
      error: 'not_found',
      message: `There is no ${req.method} ${req.path.slice(0, 200)} on this billing server.`,
    });
  });

  // Last: map every error to a coded JSON body. Nothing a client sends should reach the 500 branch.
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const [status, body] = errorBody(err);
    if (status >= 500 && status !== 501 && status !== 503) {
      logger.error(
        { err: describe(err), method: req.method, path: req.path.slice(0, 200) },
        'internal error',
      );
    }
    if (res.headersSent) {
      res.end();
      return;
    }
    res.status(status).json(body);
  });
  return app;
}

/** Status and `{ error, message }` of an error. */
export function errorBody(err: unknown): [number, { error: string; message: string }] {
  if (isMicropayError(err) && err.status !== undefined)
    return [err.status, { error: err.code, message: err.message }];
  const e = err as { type?: string; status?: number; code?: string } | null;
  switch (e?.type) {
    case 'entity.parse.failed':
      return [
        400,
        {
          error: 'invalid_request',
          message: 'The request body is not valid JSON (or not an object or list).',
        },
      ];
    case 'entity.too.large':
      return [
        413,
        { error: 'payload_too_large', message: `The request body is larger than ${BODY_LIMIT}; split it.` },
      ];
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return [
        415,
        {
          error: 'unsupported_media_type',
          message: 'Send the body as UTF-8 JSON without a content encoding.',
        },
      ];
    case 'request.aborted':
      return [400, { error: 'invalid_request', message: 'The request was aborted.' }];
    default:
  }
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) {
    return [e.status, { error: 'invalid_request', message: 'The request could not be read.' }];
  }
  const code = e?.code;
  if (
    typeof code === 'string' &&
    (/^(ECONN|ETIMEDOUT|ENOTFOUND|57P|08)/.test(code) || code === 'SQLITE_BUSY')
  ) {
    return [
      503,
      {
        error: 'storage_unavailable',
        message: 'The database is not available right now. Try again shortly.',
      },
    ];
  }
  return [
    500,
    {
      error: 'internal_error',
      message: 'Something went wrong on the billing server; it was logged. Try again.',
    },
  ];
}

function describe(err: unknown): { name?: string; message?: string; code?: unknown } {
  if (err instanceof Error)
    return { name: err.name, message: err.message.slice(0, 500), code: (err as { code?: unknown }).code };
  return { message: String(err).slice(0, 200) };
}
