/**
 * The one storage interface of the billing server: a small SQL surface that
 * SQLite (better-sqlite3) and PostgreSQL (pg) both implement. The ledger and
 * the admin code are written once against it; the dialects differ only in
 * their migrations and in how a transaction takes row locks.
 */

/** A value bound to a `?` placeholder. */
export type SqlValue = string | number | null;

/** One row as returned by a query; integer columns come back as safe JS numbers. */
export type Row = Record<string, SqlValue>;

/** Statements that can run inside or outside a transaction. */
export interface Queryable {
  /** Runs a statement with `?` placeholders and returns its rows (empty for statements without RETURNING). */
  all<T extends Row = Row>(sql: string, params?: readonly SqlValue[]): Promise<T[]>;
  /** The first row, or undefined. */
  get<T extends Row = Row>(sql: string, params?: readonly SqlValue[]): Promise<T | undefined>;
  /** Runs a statement; resolves the number of rows it changed. */
  run(sql: string, params?: readonly SqlValue[]): Promise<number>;
  /**
   * Inserts rows into `table`. Each dialect does it its fastest way: SQLite
   * runs one prepared single-row statement per row (measured faster than
   * multi-row VALUES lists there), PostgreSQL sends multi-row statements
   * (one round trip per chunk).
   */
  insertMany(
    table: string,
    columns: readonly string[],
    rows: readonly (readonly SqlValue[])[],
  ): Promise<void>;
}

/** A transaction: the statements see one consistent state and commit together. */
export interface Tx extends Queryable {
  /**
   * Locks the account rows `ids` (in id order, so two transactions never wait
   * on each other in a cycle) until the transaction ends. SQLite holds the
   * database write lock for the whole transaction already, so it only reads.
   */
  lockAccounts(ids: readonly string[]): Promise<void>;
}

/** A database the billing server runs on. */
export interface Db extends Queryable {
  readonly dialect: 'sqlite' | 'postgres';
  /**
   * Runs `fn` in one transaction: commits when it resolves, rolls back when it
   * throws. PostgreSQL retries it (a few times) on deadlock and serialization
   * failures, so `fn` must not have side effects outside the database.
   */
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /** Applies the pending migrations; returns the schema version. */
  migrate(): Promise<number>;
  /** Closes connections. */
  close(): Promise<void>;
}

/** Rows are bound in chunks of at most this many parameters per statement. */
export const MAX_PARAMS = 900;

/** `(?, ?, ?), (?, ?, ?)` for `rows` rows of `cols` columns. */
export function valuesList(rows: number, cols: number): string {
  const one = `(${new Array(cols).fill('?').join(', ')})`;
  return new Array(rows).fill(one).join(', ');
}

/** `?, ?, ?` for an IN list. */
export function inList(n: number): string {
  return new Array(n).fill('?').join(', ');
}
