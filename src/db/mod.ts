/**
 * Opens a local libSQL database for the agent's outbox or the hub's store.
 *
 * libSQL's native driver never frees a prepared statement (about 2.7 KB each), so every
 * distinct SQL text is prepared once and kept: `prepare()` here is a cache, and drizzle is given
 * the cached `prepare` too. The cache is bounded; statement texts are a small fixed set in this
 * program, so hitting the bound means a bug (SQL built with values inlined) and is reported.
 */
import Database from "libsql";
import { BetterSQLiteSession } from "drizzle-orm/better-sqlite3/session";
import { BaseSQLiteDatabase, SQLiteSyncDialect } from "drizzle-orm/sqlite-core";
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { migrate, type Migration } from "./migrate.ts";

export type { Migration } from "./migrate.ts";
export { agentMigrations, hubMigrations, postgresMigrations } from "./migrations.gen.ts";

/** The subset of a prepared statement this program uses. */
export interface Statement {
  run(...params: unknown[]): { changes: number; lastInsertRowid: number | bigint };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  raw(toggle?: boolean): Statement;
}

export interface LocalDatabase {
  /** The file it was opened from (`:memory:` for none). */
  readonly path: string;
  /** The native handle, for `exec` of fixed SQL. */
  raw: Database.Database;
  /** A drizzle database over the same handle (sync API: `.run()`, `.all()`, `.get()`). */
  orm: BaseSQLiteDatabase<"sync", unknown>;
  /** Returns the cached prepared statement for this SQL text. */
  prepare(sql: string): Statement;
  /**
   * Runs `${head} VALUES (?, …), … ${tail}` over `values`, rows of `width` values laid end to end,
   * as multi-row statements of 64, 16, 4 and 1 rows: one native call per up to 64 rows instead of
   * one per row, and four statement texts per `head`, each built and prepared once. Returns the
   * rows changed.
   */
  insertRows(head: string, width: number, values: readonly unknown[], tail?: string): number;
  /** Runs `fn` in one transaction (BEGIN IMMEDIATE … COMMIT), rolling back on throw. */
  transaction<T>(fn: () => T): T;
  /** How many distinct statements are prepared. */
  statementCount(): number;
  close(): void;
}

export interface OpenOptions {
  migrations: readonly Migration[];
  /** `full` (default): every commit is fsynced, durable across power loss. */
  synchronous?: "full" | "normal";
  /** Upper bound on distinct statements; beyond it `prepare` throws. */
  maxStatements?: number;
}

/** Row counts of the multi-row statements of `insertRows`. */
const ROW_CHUNKS = [64, 16, 4, 1] as const;

/**
 * Makes the database's file (and its WAL and shared-memory files, which SQLite creates with the
 * database file's permissions) 0600, and the folders this creates 0700, whatever the umask.
 */
function prepareFiles(path: string): void {
  const created = mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  if (created !== undefined) chmodSync(dirname(path), 0o700);
  if (!existsSync(path)) closeSync(openSync(path, "a", 0o600));
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      chmodSync(file, 0o600);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }
}

export function openDatabase(path: string, options: OpenOptions): LocalDatabase {
  if (path !== ":memory:") prepareFiles(path);
  const raw = new Database(path);
  raw.exec("PRAGMA journal_mode = WAL");
  raw.exec(`PRAGMA synchronous = ${options.synchronous === "normal" ? "NORMAL" : "FULL"}`);
  raw.exec("PRAGMA busy_timeout = 5000");
  raw.exec("PRAGMA foreign_keys = ON");
  migrate(raw, options.migrations);

  const maxStatements = options.maxStatements ?? 512;
  const cache = new Map<string, Statement>();
  const nativePrepare = raw.prepare.bind(raw);
  const prepare = (sql: string): Statement => {
    let statement = cache.get(sql);
    if (statement === undefined) {
      if (cache.size >= maxStatements) {
        throw new Error(
          `Too many distinct SQL statements (${cache.size}): SQL is being built with inlined values`,
        );
      }
      statement = nativePrepare(sql) as unknown as Statement;
      cache.set(sql, statement);
    }
    return statement;
  };
  // drizzle's better-sqlite3 session calls client.prepare(sql) on every query: route it through
  // the cache. Cached statements are reset by the driver on each run, so reuse is safe.
  (raw as any).prepare = prepare;

  const dialect = new SQLiteSyncDialect();
  const session = new BetterSQLiteSession(raw as any, dialect, undefined, {});
  const orm = new BaseSQLiteDatabase("sync", dialect, session as any, undefined) as BaseSQLiteDatabase<
    "sync",
    unknown
  >;

  const rowsSql = new Map<string, string>();
  const insertRows = (head: string, width: number, values: readonly unknown[], tail = ""): number => {
    const rows = values.length / width;
    let changes = 0;
    let i = 0;
    for (const size of ROW_CHUNKS) {
      if (rows - i < size) continue;
      const key = `${size}\0${head}\0${tail}`;
      let sql = rowsSql.get(key);
      if (sql === undefined) {
        const tuple = `(${Array.from({ length: width }, () => "?").join(", ")})`;
        sql = `${head} VALUES ${Array.from({ length: size }, () => tuple).join(", ")}${
          tail ? ` ${tail}` : ""
        }`;
        rowsSql.set(key, sql);
      }
      const statement = prepare(sql);
      while (rows - i >= size) {
        changes += statement.run(values.slice(i * width, (i + size) * width)).changes;
        i += size;
      }
    }
    return changes;
  };

  const begin = () => raw.exec("BEGIN IMMEDIATE");
  const commit = () => raw.exec("COMMIT");
  const rollback = () => raw.exec("ROLLBACK");
  let closed = false;

  return {
    raw,
    orm,
    prepare,
    insertRows,
    transaction<T>(fn: () => T): T {
      begin();
      try {
        const result = fn();
        commit();
        return result;
      } catch (error) {
        if (raw.inTransaction) rollback();
        throw error;
      }
    },
    statementCount: () => cache.size,
    path,
    close() {
      if (closed) return;
      closed = true;
      cache.clear();
      raw.close();
    },
  };
}
