/** The outbox's tables, as drizzle sees them (the SQL that creates them is in migrations/). */
import { blob, integer, sqliteTable, text } from "drizzle-orm/sqlite-core";

/** One row per group of records committed together, encoded as on the wire (0008_outbox_groups.sql). */
export const outboxGroups = sqliteTable("outbox_groups", {
  /** The seq of the group's last record; it holds `seq - n + 1 … seq`. */
  seq: integer("seq").primaryKey({ autoIncrement: true }),
  n: integer("n").notNull(),
  bytes: integer("bytes").notNull(),
  createdAt: integer("created_at").notNull(),
  records: blob("records", { mode: "buffer" }).notNull(),
});

export const meta = sqliteTable("meta", {
  key: text("key").primaryKey(),
  value: text("value").notNull(),
});
