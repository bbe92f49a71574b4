/**
 * The hub's PostgreSQL tables as drizzle sees them, for the cold queries (edges, commands,
 * pushes). The SQL that creates them is in migrations/postgres/; the hot paths (storing batches,
 * reading records) are prepared statements of the driver itself (store_pg.ts).
 */
import { bigint, boolean, jsonb, pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core";

const ms = (name: string) => bigint(name, { mode: "number" });

export const edges = pgTable("edges", {
  id: text("id").primaryKey(),
  connected: boolean("connected").notNull(),
  replica: text("replica"),
  generation: ms("generation").notNull(),
  connectedAt: ms("connected_at"),
  lastSeenAt: ms("last_seen_at"),
  records: ms("records").notNull(),
  conflicts: ms("conflicts").notNull(),
  reports: jsonb("reports").notNull(),
});

export const hubReplicas = pgTable("hub_replicas", {
  id: text("id").primaryKey(),
  startedAt: timestamp("started_at", { withTimezone: true }).notNull(),
  seenAt: timestamp("seen_at", { withTimezone: true }).notNull(),
});

export const commands = pgTable("commands", {
  id: text("id").primaryKey(),
  edge: text("edge").notNull(),
  device: text("device").notNull(),
  method: text("method").notNull(),
  params: text("params").notNull(),
  timeoutMs: ms("timeout_ms").notNull(),
  status: text("status").notNull(),
  payload: text("payload"),
  createdAt: ms("created_at").notNull(),
  completedAt: ms("completed_at"),
});

export const pushes = pgTable("pushes", {
  edge: text("edge").notNull(),
  kind: text("kind").notNull(),
  version: text("version").notNull(),
  body: text("body").notNull(),
  createdAt: ms("created_at").notNull(),
}, (t) => [primaryKey({ columns: [t.edge, t.kind] })]);
