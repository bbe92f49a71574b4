/**
 * Applies SQL migrations in name order, each in its own transaction, and records each one in
 * `_migrations` so that it runs once. A database with a migration this program does not know is
 * refused (it was written by a newer version).
 */
import type Database from "libsql";
import { errorMessage } from "../core/errors.ts";
type Db = Database.Database;

export interface Migration {
  /** `0001_outbox.sql`: the number orders them. */
  name: string;
  sql: string;
}

export function migrate(db: Db, migrations: readonly Migration[]): string[] {
  db.exec(
    "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)",
  );
  const done = new Set(
    (db.prepare("SELECT name FROM _migrations").all() as { name: string }[]).map((r) => r.name),
  );
  const known = new Set(migrations.map((m) => m.name));
  const unknown = [...done].filter((name) => !known.has(name));
  if (unknown.length > 0) {
    throw new Error(
      `Database has migrations this version does not know: ${
        unknown.join(", ")
      } (written by a newer outpost?)`,
    );
  }
  const applied: string[] = [];
  const record = db.prepare("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)");
  for (const m of migrations) {
    if (done.has(m.name)) continue;
    db.exec("BEGIN IMMEDIATE");
    try {
      db.exec(m.sql);
      record.run(m.name, Date.now());
      db.exec("COMMIT");
    } catch (error) {
      db.exec("ROLLBACK");
      throw new Error(`Migration ${m.name} failed: ${errorMessage(error)}`, { cause: error });
    }
    applied.push(m.name);
  }
  return applied;
}
