/**
 * The production backend: a pg Pool. Statements are written with `?`
 * placeholders (shared with SQLite) and numbered here. BIGINT and NUMERIC
 * come back as JS numbers, refused when they would not be exact. A
 * transaction locks the account rows it moves (`SELECT ... FOR UPDATE`, in id
 * order) and is retried on deadlock or serialization failure, so several
 * server instances can share one database.
 */
import pg from 'pg';
import { MicropayError } from '../../protocol/index.js';
import { postgresMigrations } from './migrations.js';
import {
  type Db,
  MAX_PARAMS,
  type Queryable,
  type Row,
  type SqlValue,
  type Tx,
  valuesList,
} from './types.js';

function toNumber(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) {
    throw new MicropayError(
      'internal_error',
      'A stored amount is larger than 2^53-1 micro-units and cannot be read exactly.',
    );
  }
  return n;
}

// Our own type parsers (not the global pg.types) so other pg users in the process are not affected.
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 20 || oid === 1700) return (v: string) => (v === null ? null : toNumber(v));
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

const numbered = new Map<string, string>();
/** `?` -> `$1, $2, ...` (our SQL never has `?` inside literals). */
function number(sql: string): string {
  let out = numbered.get(sql);
  if (out === undefined) {
    let i = 0;
    out = sql.replace(/\?/g, () => `$${++i}`);
    if (numbered.size > 1000) numbered.clear();
    numbered.set(sql, out);
  }
  return out;
}

const RETRYABLE = new Set(['40P01', '40001']);

/** Options of the PostgreSQL backend. */
export interface PostgresDbOptions {
  /** `postgres://user@host:port/db` */
  url: string;
  /** Schema to use (created if missing) through `search_path`. Default: the server's default (`public`). */
  schema?: string;
  /** Pool size. Default 10. */
  max?: number;
}

function queryable(q: { query: pg.Pool['query'] } | pg.PoolClient): Queryable {
  const all = async <T extends Row>(sql: string, params: readonly SqlValue[] = []): Promise<T[]> => {
    const r = await (q as pg.Pool).query(number(sql), params as SqlValue[]);
    return r.rows as T[];
  };
  const run = async (sql: string, params: readonly SqlValue[] = []) => {
    const r = await (q as pg.Pool).query(number(sql), params as SqlValue[]);
    return r.rowCount ?? 0;
  };
  return {
    all,
    run,
    insertMany: async (table, columns, rows) => {
      const per = Math.max(1, Math.floor(MAX_PARAMS / columns.length));
      for (let i = 0; i < rows.length; i += per) {
        const chunk = rows.slice(i, i + per);
        await run(
          `INSERT INTO ${table} (${columns.join(', ')}) VALUES ${valuesList(chunk.length, columns.length)}`,
          chunk.flat(),
        );
      }
    },
    get: async <T extends Row>(sql: string, params: readonly SqlValue[] = []) =>
      (await all<T>(sql, params))[0] as T | undefined,
  };
}

/** A PostgreSQL database through a pg Pool. */
export class PostgresDb implements Db {
  readonly dialect = 'postgres' as const;
  private readonly pool: pg.Pool;
  private readonly q: Queryable;
  private readonly schema: string | undefined;

  constructor(opts: PostgresDbOptions) {
    if (opts.schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(opts.schema)) {
      throw new MicropayError(
        'invalid_config',
        'The PostgreSQL schema name must be 1 to 63 of [a-z0-9_], starting with a letter or "_".',
      );
    }
    this.schema = opts.schema;
    const config: pg.PoolConfig = { connectionString: opts.url, max: opts.max ?? 10, types };
    if (opts.schema) config.options = `-c search_path=${opts.schema}`;
    this.pool = new pg.Pool(config);
    // An idle client losing its connection must not crash the process; the next query reconnects.
    this.pool.on('error', () => {});
    this.q = queryable(this.pool);
  }

  all<T extends Row = Row>(sql: string, params?: readonly SqlValue[]): Promise<T[]> {
    return this.q.all<T>(sql, params);
  }
  insertMany(
    table: string,
    columns: readonly string[],
    rows: readonly (readonly SqlValue[])[],
  ): Promise<void> {
    return this.q.insertMany(table, columns, rows);
  }
  get<T extends Row = Row>(sql: string, params?: readonly SqlValue[]): Promise<T | undefined> {
    return this.q.get<T>(sql, params);
  }
  run(sql: string, params?: readonly SqlValue[]): Promise<number> {
    return this.q.run(sql, params);
  }

  async transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect();
      const base = queryable(client);
      const tx: Tx = {
        ...base,
        lockAccounts: async (ids) => {
          if (ids.length === 0) return;
          const sorted = [...new Set(ids)].sort();
          await client.query('SELECT id FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE', [sorted]);
        },
      };
      try {
        await client.query('BEGIN');
        const out = await fn(tx);
        await client.query('COMMIT');
        client.release();
        return out;
      } catch (e) {
        await client.query('ROLLBACK').catch(() => {});
        client.release();
        const code = (e as { code?: string }).code;
        if (code && RETRYABLE.has(code) && attempt < 5) {
          await new Promise((r) => setTimeout(r, 5 * attempt + Math.random() * 10));
          continue;
        }
        throw e;
      }
    }
  }

  async migrate(): Promise<number> {
    if (this.schema) await this.pool.query(`CREATE SCHEMA IF NOT EXISTS ${this.schema}`);
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      // One migrator at a time across instances.
      await client.query('SELECT pg_advisory_xact_lock(7236177)');
      await client.query(
        'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied BIGINT NOT NULL)',
      );
      const r = await client.query('SELECT MAX(version) AS v FROM schema_migrations');
      let current = (r.rows[0]?.v as number | null) ?? 0;
      for (const m of postgresMigrations) {
        if (m.version <= current) continue;
        for (const s of m.statements) await client.query(s);
        await client.query('INSERT INTO schema_migrations (version, name, applied) VALUES ($1, $2, $3)', [
          m.version,
          m.name,
          Math.floor(Date.now() / 1000),
        ]);
        current = m.version;
      }
      await client.query('COMMIT');
      return current;
    } catch (e) {
      await client.query('ROLLBACK').catch(() => {});
      throw e;
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
