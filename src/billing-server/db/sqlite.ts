/**
 * The embedded backend: one better-sqlite3 connection in WAL mode. SQLite
 * calls are synchronous, but a transaction's body is async (shared ledger
 * code awaits), so an async mutex keeps every statement of other requests out
 * of an open transaction: statements outside a transaction queue behind it.
 */
import Database from 'better-sqlite3';
import { MicropayError } from '../../protocol/index.js';
import { type Migration, sqliteMigrations } from './migrations.js';
import type { Db, Queryable, Row, SqlValue, Tx } from './types.js';

type Statement = Database.Statement<unknown[], unknown>;

/** A FIFO async mutex: `run(fn)` starts `fn` once every earlier holder has finished. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  private held = false;
  get locked(): boolean {
    return this.held;
  }
  async run<T>(fn: () => Promise<T> | T): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((r) => {
      release = r;
    });
    await prev;
    this.held = true;
    try {
      return await fn();
    } finally {
      this.held = false;
      release();
    }
  }
}

/** Opens (creating if needed) a SQLite database file, or `:memory:`. */
export class SqliteDb implements Db {
  readonly dialect = 'sqlite' as const;
  private readonly db: Database.Database;
  private readonly statements = new Map<string, Statement>();
  private readonly mutex = new Mutex();
  private closed = false;

  constructor(file: string) {
    try {
      this.db = new Database(file);
    } catch (e) {
      throw new MicropayError(
        'storage_unavailable',
        `Could not open the SQLite database "${file}": ${(e as Error).message}.`,
        {
          cause: e,
        },
      );
    }
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('foreign_keys = ON');
  }

  private prepare(sql: string): Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      if (this.statements.size > 500) this.statements.clear();
      this.statements.set(sql, s);
    }
    return s;
  }

  // Synchronous primitives, used under the mutex.
  private allSync<T>(sql: string, params: readonly SqlValue[]): T[] {
    const s = this.prepare(sql);
    if (s.reader) return s.all(...params) as T[];
    s.run(...params);
    return [];
  }
  private runSync(sql: string, params: readonly SqlValue[]): number {
    return this.prepare(sql).run(...params).changes;
  }

  private insertManySync(
    table: string,
    columns: readonly string[],
    rows: readonly (readonly SqlValue[])[],
  ): void {
    if (rows.length === 0) return;
    const s = this.prepare(
      `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`,
    );
    for (const r of rows) s.run(...r);
  }

  private readonly direct: Queryable = {
    all: async <T extends Row>(sql: string, params: readonly SqlValue[] = []) => this.allSync<T>(sql, params),
    get: async <T extends Row>(sql: string, params: readonly SqlValue[] = []) =>
      this.allSync<T>(sql, params)[0] as T | undefined,
    run: async (sql: string, params: readonly SqlValue[] = []) => this.runSync(sql, params),
    insertMany: async (table, columns, rows) => this.insertManySync(table, columns, rows),
  };

  all<T extends Row = Row>(sql: string, params: readonly SqlValue[] = []): Promise<T[]> {
    return this.mutex.run(() => this.allSync<T>(sql, params));
  }
  async get<T extends Row = Row>(sql: string, params: readonly SqlValue[] = []): Promise<T | undefined> {
    return (await this.all<T>(sql, params))[0];
  }
  run(sql: string, params: readonly SqlValue[] = []): Promise<number> {
    return this.mutex.run(() => this.runSync(sql, params));
  }
  insertMany(
    table: string,
    columns: readonly string[],
    rows: readonly (readonly SqlValue[])[],
  ): Promise<void> {
    return this.mutex.run(() => this.insertManySync(table, columns, rows));
  }

  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.mutex.run(async () => {
      if (this.closed)
        throw new MicropayError('storage_unavailable', 'The database is closed.', { status: 503 });
      this.db.exec('BEGIN IMMEDIATE');
      const tx: Tx = { ...this.direct, lockAccounts: async () => {} };
      try {
        const out = await fn(tx);
        this.db.exec('COMMIT');
        return out;
      } catch (e) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw e;
      }
    });
  }

  async migrate(): Promise<number> {
    return this.mutex.run(() => applySqlite(this.db, sqliteMigrations));
  }

  async close(): Promise<void> {
    await this.mutex.run(() => {
      if (this.closed) return;
      this.closed = true;
      this.statements.clear();
      this.db.close();
    });
  }
}

function applySqlite(db: Database.Database, migrations: Migration[]): number {
  db.exec(
    'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied INTEGER NOT NULL)',
  );
  const apply = db.transaction(() => {
    const row = db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null };
    let current = row.v ?? 0;
    for (const m of migrations) {
      if (m.version <= current) continue;
      for (const s of m.statements) db.exec(s);
      db.prepare('INSERT INTO schema_migrations (version, name, applied) VALUES (?, ?, ?)').run(
        m.version,
        m.name,
        Math.floor(Date.now() / 1000),
      );
      current = m.version;
    }
    return current;
  });
  return apply.immediate();
}
