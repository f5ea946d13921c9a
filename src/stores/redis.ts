/**
 * Redis stores (through ioredis) for merchants that run several instances:
 * `RedisPaymentStore` (replay marks and spend tallies written by one Lua
 * script, so two instances never both accept one order) and
 * `RedisDepositQueue` (a Redis Stream with a consumer group, so an order
 * charged by any instance is deposited once even if a depositor crashes).
 *
 * Keys one script or transaction touches share a hash tag, so both run
 * unchanged on Redis Cluster. Run Redis with `maxmemory-policy noeviction`:
 * an evicted replay mark would let a replay through.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { type Cluster, Redis } from 'ioredis';
import { MicropayError } from '../protocol/errors.js';
import { Lru } from '../protocol/lru.js';
import { batchIdOf, checkAcceptRequest, checkAmount, positiveInteger } from './internal.js';
import type {
  AcceptRequest,
  AcceptResult,
  DepositBatch,
  DepositItem,
  DepositQueue,
  PaymentStore,
} from './types.js';

/** Connection options shared by `RedisPaymentStore` and `RedisDepositQueue`. */
export interface RedisStoreOptions {
  /**
   * An ioredis client (`Redis` or `Cluster`) to use. It stays yours: `close()`
   * never quits a client it was given. When set, `url` is ignored.
   */
  client?: Redis | Cluster;
  /**
   * URL of the Redis server for a client the store creates itself (and quits
   * in `close()`). While Redis is unreachable, a command of that client fails
   * after two reconnection attempts (`maxRetriesPerRequest: 2`, a few hundred
   * ms), so a paid request is answered `503 store_unavailable` rather than
   * held; pass your own `client` for other settings.
   * Default `redis://127.0.0.1:6379`.
   */
  url?: string;
  /**
   * Prefix of every key. Give each merchant sharing a Redis its own. It must
   * not contain `{` or `}`, which would break the hash tags. Default `'micropay:'`.
   */
  prefix?: string;
}

/** Options of `RedisDepositQueue`. */
export interface RedisDepositQueueOptions extends RedisStoreOptions {
  /**
   * Entries a consumer claimed and neither acked nor released for this many
   * ms are taken from it by the next `claim` of any instance (its consumer
   * crashed). Keep it above the time a deposit call may take, or a slow batch
   * is delivered twice (harmless, the billing server credits an order once,
   * but wasteful). Default `30_000`.
   */
  claimTimeoutMs?: number;
  /** This instance's consumer name in the stream's consumer group. Default hostname, pid and a random suffix. */
  consumer?: string;
  /**
   * A consumer that holds no pending entries and has not touched the group for this many ms (a
   * process killed without `close()`, whose entries others have since claimed) is removed from the
   * group by a later `claim` of any instance, checked at most every ten minutes. Default `3_600_000`.
   */
  forgetConsumersAfterMs?: number;
}

interface Connection {
  client: Redis | Cluster;
  /** Whether `close()` must quit it. */
  owned: boolean;
  prefix: string;
  /** Set by `quit`: an owned client makes no further reconnection attempt. */
  closing?: boolean;
}

function connect(options: RedisStoreOptions): Connection {
  const prefix = options.prefix ?? 'micropay:';
  if (typeof prefix !== 'string' || /[{}]/.test(prefix)) {
    throw new MicropayError('invalid_store_option', 'prefix must be a string without "{" or "}".');
  }
  if (options.client !== undefined) return { client: options.client, owned: false, prefix };
  // A command waits through at most two reconnection attempts (a few hundred ms) rather than
  // ioredis's default twenty (about 30 s): a paid request is answered 503 store_unavailable at once
  // while Redis is down, instead of hanging. A client passed in keeps its own settings.
  const conn: Connection = { client: null as unknown as Redis, owned: true, prefix };
  conn.client = new Redis(options.url ?? 'redis://127.0.0.1:6379', {
    maxRetriesPerRequest: 2,
    // ioredis's own delays; none once closing, so that the attempt under way ends the client.
    retryStrategy: (times) => (conn.closing ? null : Math.min(times * 50, 2000)),
  });
  // While Redis is down ioredis reconnects and emits 'error' for each attempt; with no listener it
  // prints each one with a stack trace. Every command that fails rejects to its caller, which reports
  // it (the core as a 503 or a logged error), so the events themselves say nothing more.
  conn.client.on('error', () => {});
  return conn;
}

/**
 * The warning for a Redis that may evict keys: with a `maxmemory` and any policy but `noeviction`,
 * memory pressure drops keys (the `volatile-*` policies precisely those with a TTL, as replay marks
 * have), so an evicted mark lets an order be paid twice and an evicted stream loses deposits. Read
 * with INFO, which managed services allow where CONFIG is refused; nothing when it cannot be read.
 */
async function evictionWarnings(conn: Connection): Promise<string[]> {
  let info: string;
  try {
    info = await conn.client.info('memory');
  } catch {
    return [];
  }
  const max = Number(/^maxmemory:(\d+)/m.exec(info)?.[1] ?? 0);
  const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
  if (max === 0 || policy === undefined || policy === 'noeviction') return [];
  return [
    `Redis has maxmemory ${max} with maxmemory-policy ${policy}: when it fills up it evicts keys, and an evicted replay mark lets an order be paid twice, an evicted deposit queue loses charged orders. Set maxmemory-policy noeviction (or no maxmemory) on this Redis.`,
  ];
}

/** Longest wait for a reconnecting client's next attempt to end it (ioredis's delays are at most 2 s). */
const RECONNECTING_CLOSE_MS = 3000;

async function quit(conn: Connection): Promise<void> {
  if (!conn.owned || conn.client.status === 'end') return;
  conn.closing = true;
  if (conn.client.status === 'reconnecting') {
    // disconnect() now would cancel the next attempt and leave the client 'reconnecting' for good,
    // with the commands it holds for Redis never answered (ioredis 5): let that attempt run and end
    // the client instead (the retry strategy gives up), which rejects them.
    const client = conn.client;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        client.off('end', done);
        client.off('ready', done);
        resolve();
      };
      const timer = setTimeout(done, RECONNECTING_CLOSE_MS);
      client.once('end', done);
      client.once('ready', done);
    });
    if (client.status === 'end') return;
  }
  // QUIT lets queued replies arrive; a client still connecting has none and would wait.
  if (conn.client.status !== 'ready') {
    conn.client.disconnect();
    return;
  }
  try {
    await conn.client.quit();
  } catch {
    conn.client.disconnect();
  }
}

// Replay mark and tally in one step. KEYS[1] mark, KEYS[2] tally (absent when
// there is no tally); ARGV replayTtl, amt, limit, tallyTtl. Returns {code, ttl}:
// code 0 accepted, 1 replayed, 2 over_limit; ttl the tally's life left once
// accepted. A tally's TTL only ever grows. Amounts are at most 2^53-1, exact
// in Lua numbers.
const ACCEPT_LUA = `
if redis.call('EXISTS', KEYS[1]) == 1 then return {1, 0} end
if #KEYS == 2 then
  local spent = tonumber(redis.call('GET', KEYS[2]) or '0')
  if spent + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return {2, 0} end
  redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1])
  redis.call('INCRBY', KEYS[2], ARGV[2])
  local ttl = tonumber(ARGV[4])
  local left = redis.call('TTL', KEYS[2])
  if left < ttl then
    redis.call('EXPIRE', KEYS[2], ttl)
    left = ttl
  end
  return {0, left}
end
redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1])
return {0, 0}
`;

// Takes ARGV[1] off the tally KEYS[1], never below 0 (a tally at 0 is deleted: it reads the same).
const RELEASE_LUA = `
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
if spent <= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 0
end
return redis.call('DECRBY', KEYS[1], ARGV[1])
`;

// Records whose tallies a credential's are: KEYS[1] owner key, ARGV tag, ttl.
// It lives a few seconds longer than the tally it points to, and its life is
// never shortened. Returns its TTL.
const OWNER_LUA = `
local left = redis.call('TTL', KEYS[1])
local ttl = tonumber(ARGV[2])
if left >= ttl then return left end
ttl = ttl + 5
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
return ttl
`;

// Versioned names: defineCommand adds methods to a client that may be shared.
const ACCEPT_CMD = 'micropayAcceptV1';
const RELEASE_CMD = 'micropayReleaseV1';
const OWNER_CMD = 'micropayOwnerV1';

interface ScriptCommands {
  [ACCEPT_CMD](numKeys: number, ...args: (string | number)[]): Promise<[code: number, ttl: number]>;
  [RELEASE_CMD](key: string, amt: number): Promise<number>;
  [OWNER_CMD](key: string, tag: string, ttl: number): Promise<number>;
}

interface Owner {
  tag: string;
  /** Until when (ms) the owner key is known to live; 0 when unknown. */
  exp: number;
}

const ACCEPT_RESULTS: readonly AcceptResult[] = ['accepted', 'replayed', 'over_limit'];

/** How many `cid -> buyer` pairs a payment store keeps in memory (see `RedisPaymentStore`). */
const OWNER_CACHE_SIZE = 50_000;

/**
 * Replay marks and spend tallies in Redis, shared by every instance of a
 * merchant. `accept` is one Lua script: check the mark, check the tally,
 * then set the mark and charge the tally, atomically.
 *
 * Keys: `<prefix>{<iss>/<sub>}:seen:<oid>` and `<prefix>{<iss>/<sub>}:tally:<cid>:<mer>`.
 * The hash tag is the buyer, not the credential: the replay mark is per
 * `(iss, sub, oid)` whatever credential the order came under, and it must sit
 * in the same Cluster slot as the tally the script charges. (`/` cannot occur
 * in an identifier, so two buyers never share a tag; `:` can.)
 *
 * `release` and `spent` get only `(cid, mer)`, so the store remembers which
 * buyer a credential belongs to: in memory, and in `<prefix>owner:{<cid>}`
 * for the other instances and after a restart.
 */
export class RedisPaymentStore implements PaymentStore {
  private readonly conn: Connection;
  private readonly scripts: ScriptCommands;
  private readonly owners = new Lru<string, Owner>(OWNER_CACHE_SIZE);

  /**
   * @example
   * const store = new RedisPaymentStore({ url: 'redis://127.0.0.1:6379', prefix: 'shop:' });
   */
  constructor(options: RedisStoreOptions = {}) {
    this.conn = connect(options);
    const { client } = this.conn;
    client.defineCommand(ACCEPT_CMD, { lua: ACCEPT_LUA });
    client.defineCommand(RELEASE_CMD, { lua: RELEASE_LUA, numberOfKeys: 1 });
    client.defineCommand(OWNER_CMD, { lua: OWNER_LUA, numberOfKeys: 1 });
    this.scripts = client as unknown as ScriptCommands;
  }

  async accept(req: AcceptRequest): Promise<AcceptResult> {
    checkAcceptRequest(req);
    const tag = this.buyerTag(req.iss, req.sub);
    const seen = `${tag}:seen:${req.oid}`;
    const replayTtl = Math.ceil(req.replayTtl);
    if (req.tally === null) {
      const [code] = await this.scripts[ACCEPT_CMD](1, seen, replayTtl);
      return ACCEPT_RESULTS[code]!;
    }
    const { cid, mer, amt, limit } = req.tally;
    const ttl = Math.ceil(req.tally.ttl);
    const [code, left] = await this.scripts[ACCEPT_CMD](
      2,
      seen,
      `${tag}:tally:${cid}:${mer}`,
      replayTtl,
      amt,
      limit,
      ttl,
    );
    if (code === 0) await this.rememberOwner(cid, tag, left);
    return ACCEPT_RESULTS[code]!;
  }

  async release(cid: string, mer: string, amt: number): Promise<void> {
    checkAmount('amt', amt);
    const key = await this.tallyKey(cid, mer);
    if (key !== null) await this.scripts[RELEASE_CMD](key, amt);
  }

  async spent(cid: string, mer: string): Promise<number> {
    const key = await this.tallyKey(cid, mer);
    if (key === null) return 0;
    const v = await this.conn.client.get(key);
    return v === null ? 0 : Number(v);
  }

  /** A warning when this Redis may evict keys (see `evictionWarnings`). */
  warnings(): Promise<string[]> {
    return evictionWarnings(this.conn);
  }

  async close(): Promise<void> {
    await quit(this.conn);
  }

  private buyerTag(iss: string, sub: string): string {
    return `${this.conn.prefix}{${iss}/${sub}}`;
  }

  private ownerKey(cid: string): string {
    return `${this.conn.prefix}owner:{${cid}}`;
  }

  /**
   * Makes the owner key outlive the tally just charged. Costs a round trip only
   * the first time a process sees a credential (or when its tally's life grew).
   * The order is accepted whatever happens here: if the write fails, the next
   * accept retries it, and meanwhile a release may miss the tally, which errs
   * on the safe side (the tally stays high).
   */
  private async rememberOwner(cid: string, tag: string, ttl: number): Promise<void> {
    const now = Date.now();
    const known = this.owners.get(cid);
    // The owner key's margin over the tally keeps this from firing as both count down.
    if (known !== undefined && known.tag === tag && known.exp >= now + ttl * 1000) return;
    try {
      const left = await this.scripts[OWNER_CMD](this.ownerKey(cid), tag, ttl);
      // Rounded down a second: Redis counts TTLs in whole seconds.
      this.owners.set(cid, { tag, exp: now + (left - 1) * 1000 });
    } catch {}
  }

  private async tallyKey(cid: string, mer: string): Promise<string | null> {
    let tag = this.owners.get(cid)?.tag;
    if (tag === undefined) {
      const stored = await this.conn.client.get(this.ownerKey(cid));
      if (stored === null) return null; // no tally was ever charged under this credential (or it expired)
      tag = stored;
      this.owners.set(cid, { tag, exp: 0 });
    }
    return `${tag}:tally:${cid}:${mer}`;
  }
}

/** The consumer group every queue instance reads through. */
const GROUP = 'depositors';
/** How long Redis remembers which entries make a batch, so `ack` works from another process or after a restart. */
const BATCH_TTL_S = 86_400;
/** How many batch ids an instance keeps in memory; older ones are looked up in Redis. */
const BATCH_CACHE_SIZE = 10_000;
/** XAUTOCLAIM scans at most 10 x COUNT pending entries a call; this bounds the calls of one claim. */
const AUTOCLAIM_ROUNDS = 10;

type StreamEntry = [id: string, fields: string[] | null];

/** Orders stream ids numerically ("999-0" before "1000-0"). */
function compareStreamIds(a: string, b: string): number {
  const [am = '0', as = '0'] = a.split('-');
  const [bm = '0', bs = '0'] = b.split('-');
  const d = BigInt(am) - BigInt(bm) || BigInt(as) - BigInt(bs);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

function toItem(fields: string[]): DepositItem {
  const f = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!, fields[i + 1]!);
  // A damaged entry still goes out (the billing server rejects it visibly) rather than vanish here.
  const item: DepositItem = { cert: f.get('cert') ?? '', order: f.get('order') ?? '' };
  const auth = f.get('auth');
  if (auth !== undefined) item.auth = auth;
  return item;
}

// Removes from group ARGV[1] of stream KEYS[1] every consumer but ARGV[3] that holds no pending entry
// and has been idle more than ARGV[2] ms; returns how many. In one script, so no consumer can take an
// entry between the check and the removal (XGROUP DELCONSUMER drops a consumer's pending entries).
const FORGET_LUA = `
local n = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] ~= ARGV[3] and f['pending'] == 0 and f['idle'] > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    n = n + 1
  end
end
return n
`;
const FORGET_CMD = 'micropayForgetConsumers';
/** How often one instance looks for consumers to forget. */
const FORGET_EVERY_MS = 600_000;

function defaultConsumer(): string {
  return `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/**
 * The deposit queue as a Redis Stream (`<prefix>{deposits}`) read through a
 * consumer group, durable once `append` resolves.
 *
 * `claim` first takes entries any consumer left pending longer than
 * `claimTimeoutMs` (XAUTOCLAIM), else reads new ones (XREADGROUP). A batch id
 * is SHA-256 over the queue's salt (kept in Redis) and the sorted entry ids,
 * so whoever claims the same entries again posts the same batch id and the
 * billing server answers it idempotently. `ack` removes the entries (XACK and
 * XDEL, so XLEN counts what is left); `release` marks them idle long enough
 * that the next `claim` of any instance takes them.
 */
export class RedisDepositQueue implements DepositQueue {
  /** Appended orders outlive the process: the merchant holds a charged response until the append. */
  readonly durable = true;
  /** This instance's consumer name in the group. */
  readonly consumer: string;
  readonly claimTimeoutMs: number;
  readonly forgetConsumersAfterMs: number;
  private readonly conn: Connection;
  private readonly stream: string;
  private readonly batches = new Lru<string, string[]>(BATCH_CACHE_SIZE);
  private ready: Promise<string> | undefined;
  private nextForget = 0;

  /**
   * @example
   * const queue = new RedisDepositQueue({ url: 'redis://127.0.0.1:6379', prefix: 'shop:' });
   */
  constructor(options: RedisDepositQueueOptions = {}) {
    this.claimTimeoutMs = positiveInteger('claimTimeoutMs', options.claimTimeoutMs, 30_000);
    if (options.consumer !== undefined && (typeof options.consumer !== 'string' || options.consumer === '')) {
      throw new MicropayError('invalid_store_option', 'consumer must be a non-empty string.');
    }
    this.consumer = options.consumer ?? defaultConsumer();
    this.forgetConsumersAfterMs = positiveInteger(
      'forgetConsumersAfterMs',
      options.forgetConsumersAfterMs,
      3_600_000,
    );
    this.conn = connect(options);
    this.conn.client.defineCommand(FORGET_CMD, { lua: FORGET_LUA, numberOfKeys: 1 });
    this.stream = `${this.conn.prefix}{deposits}`;
  }

  async append(item: DepositItem): Promise<void> {
    const fields = ['cert', item.cert, 'order', item.order];
    if (item.auth !== undefined) fields.push('auth', item.auth);
    await this.conn.client.xadd(this.stream, '*', ...fields);
  }

  async claim(max: number): Promise<DepositBatch | null> {
    positiveInteger('max', max, 1, 'invalid_store_argument');
    const salt = await this.init();
    let entries = await this.withGroup(() => this.claimStale(max));
    if (entries.length === 0) entries = await this.withGroup(() => this.readNew(max));
    if (Date.now() >= this.nextForget) {
      this.nextForget = Date.now() + Math.min(FORGET_EVERY_MS, this.forgetConsumersAfterMs);
      this.forgetIdleConsumers().catch(() => {}); // housekeeping: tried again at the next round
    }
    if (entries.length === 0) return null;
    entries.sort((a, b) => compareStreamIds(a[0], b[0]));
    const ids = entries.map(([id]) => id);
    const id = batchIdOf(salt, ids);
    this.batches.set(id, ids);
    await this.conn.client.set(this.batchKey(id), ids.join(','), 'EX', BATCH_TTL_S);
    return { id, items: entries.map(([, fields]) => toItem(fields!)) };
  }

  async ack(batchId: string): Promise<void> {
    const ids = await this.batchIds(batchId);
    if (ids === null) return;
    // One slot ({deposits}), so one transaction even on Cluster.
    await this.conn.client
      .multi()
      .xack(this.stream, GROUP, ...ids)
      .xdel(this.stream, ...ids)
      .del(this.batchKey(batchId))
      .exec();
    this.batches.delete(batchId);
  }

  async release(batchId: string): Promise<void> {
    const ids = await this.batchIds(batchId);
    if (ids === null) return;
    // Claiming them for ourselves with their idle time set to the timeout makes the next
    // XAUTOCLAIM of any instance take them now; JUSTID leaves their delivery count alone.
    await this.withGroup(() =>
      this.conn.client.call(
        'XCLAIM',
        this.stream,
        GROUP,
        this.consumer,
        0,
        ...ids,
        'IDLE',
        this.claimTimeoutMs,
        'JUSTID',
      ),
    );
  }

  async size(): Promise<number> {
    return this.conn.client.xlen(this.stream);
  }

  /** A warning when this Redis may evict keys (see `evictionWarnings`). */
  warnings(): Promise<string[]> {
    return evictionWarnings(this.conn);
  }

  /**
   * Removes from the consumer group every other consumer that holds no pending entries and has been
   * idle longer than `forgetConsumersAfterMs` (what processes killed without `close()` leave behind);
   * resolves how many. `claim` calls it at most every ten minutes.
   */
  async forgetIdleConsumers(): Promise<number> {
    const run = (this.conn.client as unknown as Record<string, (...a: unknown[]) => Promise<number>>)[
      FORGET_CMD
    ]!;
    return this.withGroup(() =>
      run.call(this.conn.client, this.stream, GROUP, this.forgetConsumersAfterMs, this.consumer),
    );
  }

  /**
   * Leaves the consumer group if this consumer holds no pending entries (so
   * names do not pile up across restarts), then quits a client the queue created.
   */
  async close(): Promise<void> {
    if (this.ready !== undefined && this.conn.client.status === 'ready') {
      try {
        const pending = (await this.conn.client.call(
          'XPENDING',
          this.stream,
          GROUP,
          '-',
          '+',
          1,
          this.consumer,
        )) as unknown[] | null;
        if (pending === null || pending.length === 0) {
          await this.conn.client.call('XGROUP', 'DELCONSUMER', this.stream, GROUP, this.consumer);
        }
      } catch {
        // Best effort: a consumer name left behind costs a few bytes.
      }
    }
    await quit(this.conn);
  }

  private batchKey(batchId: string): string {
    return `${this.stream}:batch:${batchId}`;
  }

  private async batchIds(batchId: string): Promise<string[] | null> {
    const cached = this.batches.get(batchId);
    if (cached !== undefined) return cached;
    const stored = await this.conn.client.get(this.batchKey(batchId));
    return stored === null || stored === '' ? null : stored.split(',');
  }

  /** Creates the consumer group (once) and loads the queue's batch id salt. */
  private init(): Promise<string> {
    if (this.ready === undefined) {
      const ready = this.loadSalt();
      ready.catch(() => {
        if (this.ready === ready) this.ready = undefined; // let the next call try again
      });
      this.ready = ready;
    }
    return this.ready;
  }

  private async loadSalt(): Promise<string> {
    const { client } = this.conn;
    await this.createGroup();
    const saltKey = `${this.stream}:salt`;
    // The salt lives in Redis so every instance (and a restarted one) names batches alike.
    await client.set(saltKey, randomBytes(16).toString('base64url'), 'NX');
    const salt = await client.get(saltKey);
    if (salt === null)
      throw new MicropayError('store_unavailable', 'Redis lost the deposit queue salt; retry.');
    return salt;
  }

  private async createGroup(): Promise<void> {
    try {
      // From id 0 so entries appended before any consumer existed are read too.
      await this.conn.client.xgroup('CREATE', this.stream, GROUP, '0', 'MKSTREAM');
    } catch (e) {
      if (!(e instanceof Error && e.message.startsWith('BUSYGROUP'))) throw e;
    }
  }

  /** Runs a group command, recreating the group once if the stream was deleted under us. */
  private async withGroup<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (!(e instanceof Error && e.message.startsWith('NOGROUP'))) throw e;
      await this.createGroup();
      return fn();
    }
  }

  /** Entries pending longer than the claim timeout, taken over by this consumer. */
  private async claimStale(max: number): Promise<StreamEntry[]> {
    const out: StreamEntry[] = [];
    let cursor = '0-0';
    for (let round = 0; round < AUTOCLAIM_ROUNDS && out.length < max; round++) {
      const reply = (await this.conn.client.call(
        'XAUTOCLAIM',
        this.stream,
        GROUP,
        this.consumer,
        this.claimTimeoutMs,
        cursor,
        'COUNT',
        max - out.length,
      )) as [string, StreamEntry[], ...unknown[]];
      // Entries deleted meanwhile come back without fields (Redis 6.2); skip them.
      for (const entry of reply[1]) if (entry[1] !== null) out.push(entry);
      cursor = reply[0];
      if (cursor === '0-0') break;
    }
    return out;
  }

  /** Entries never delivered to any consumer. */
  private async readNew(max: number): Promise<StreamEntry[]> {
    const reply = (await this.conn.client.call(
      'XREADGROUP',
      'GROUP',
      GROUP,
      this.consumer,
      'COUNT',
      max,
      'STREAMS',
      this.stream,
      '>',
    )) as [string, StreamEntry[]][] | null;
    return reply?.[0]?.[1] ?? [];
  }
}
