/** The outbox's tables, as drizzle sees them (the SQL that creates them is in migrations/). */
import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";

export const outbox = sqliteTable("outbox", {
  seq: integer("seq").primaryKey({ autoIncrement: true }),
  device: text("device").notNull(),
  kind: text("kind").notNull(),
  ts: integer("ts").notNull(),
  topic: text("topic"),
  payload: text("payload").notNull(),
  bytes: integer("bytes").notNull(),
  createdAt: integer("created_at").notNull(),
});

export const meta = sqliteTable("meta", {
  key: text("key").primaryKey(),
  value: text("value").notNull(),
});
