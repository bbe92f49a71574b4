/**
 * The hub's store interface, and its embedded libSQL implementation: received records (one row
 * per (edge, record id), `seq` in arrival order), what it knows of each edge, commands and pushes
 * waiting for their edge. The PostgreSQL store (`store_pg.ts`) and the libSQL server store
 * (`store_remote.ts`) implement the same interface; every method answers a promise.
 *
 * Every SQL text here is a constant, so the statement cache holds a small fixed set; values are
 * always bound, never inlined. A batch is stored in one transaction: all of it or none of it.
 */
// The interface answers promises for the network stores; the embedded driver is synchronous, so
// these methods are async without awaiting anything (their work is done when they return).
// deno-lint-ignore-file require-await
import { type LocalDatabase, openDatabase } from "../db/mod.ts";
import { hubMigrations } from "../db/mod.ts";
import type { WireRecord } from "../proto/mod.ts";

/** One stored record as the API shows it. */
export interface StoredRecord {
  seq: number;
  id: string;
  edge: string;
  device: string;
  kind: string;
  ts: number;
  topic: string | null;
  /** The decoded JSON payload (`{"_raw": text}` when the edge sent something that was not JSON). */
  payload: unknown;
  /** When the hub committed it, ms since the epoch. */
  receivedAt: number;
}

export interface RecordQuery {
  edge?: string;
  device?: string;
  /** Only records with a higher seq. */
  after: number;
  limit: number;
}

export interface EdgeRow {
  id: string;
  connected: boolean;
  connectedAt: number | null;
  lastSeenAt: number | null;
  records: number;
  /** Records sent again under a held id with other content (a cloned or restored edge). */
  conflicts: number;
  /** The latest report body per report type. */
  reports: Record<string, unknown>;
}

export type CommandStatus = "pending" | "ok" | "error" | "timeout" | "device-offline";

export interface CommandRow {
  id: string;
  edge: string;
  device: string;
  method: string;
  params: unknown;
  timeoutMs: number;
  status: CommandStatus;
  payload: unknown;
  createdAt: number;
  completedAt: number | null;
}

export type PushKind = "rules" | "update";

/** Rules or an update offer waiting for its edge to connect. `body` is JSON text. */
export interface Push {
  edge: string;
  kind: PushKind;
  version: string;
  body: string;
  createdAt: number;
}

/** A message between the replicas of one hub (PostgreSQL NOTIFY). */
export type ReplicaMessage =
  | { type: "command"; edge: string; id: string }
  | { type: "result"; edge: string; id: string }
  | { type: "push"; edge: string };

/**
 * What a store shared by several hub processes (replicas) adds: which edges are connected to a
 * live replica, and messages between replicas (commands, their results, pushes).
 */
export interface SharedHub {
  /** This process's replica id (fresh on every start). */
  readonly replica: string;
  /** Edges connected to a replica that is alive (heartbeat recent), this one included. */
  connectedEdges(): Promise<Set<string>>;
  /** Sends a message to every replica, this one included. */
  notify(message: ReplicaMessage): Promise<void>;
  /** Starts listening (and the replica heartbeat); `handler` gets every message. */
  listen(handler: (message: ReplicaMessage) => void): Promise<void>;
}

export interface HubStore {
  /** Adds a row for each configured edge and marks its edges disconnected (start-up). */
  registerEdges(ids: readonly string[]): Promise<void>;
  /**
   * Stores each (edge, id) once, in one transaction; returns how many were new. A record whose id
   * the hub holds with other content is a conflict: counted on the edge and passed to
   * `onConflict`.
   */
  storeBatch(
    edge: string,
    records: readonly WireRecord[],
    now: number,
    onConflict?: (ids: string[]) => void,
  ): Promise<number>;
  setConnected(edge: string, connected: boolean, now: number): Promise<void>;
  touch(edge: string, now: number): Promise<void>;
  saveReport(edge: string, type: string, body: unknown, now: number): Promise<void>;
  edges(): Promise<EdgeRow[]>;
  records(query: RecordQuery): Promise<StoredRecord[]>;
  insertCommand(command: Omit<CommandRow, "payload" | "completedAt">): Promise<void>;
  /** Records how a command ended; false when `edge` sent no such command. */
  settleCommand(
    id: string,
    edge: string,
    status: CommandStatus,
    payload: string | null,
    now: number,
  ): Promise<boolean>;
  command(id: string): Promise<CommandRow | undefined>;
  /** Keeps a push for the edge's next connect, replacing an older one of the same kind. */
  savePush(push: Push): Promise<void>;
  dropPush(edge: string, kind: PushKind): Promise<void>;
  /** The edge's pushes not yet reported on by the edge (kept until it reports; SPEC §14). */
  pushesOf(edge: string): Promise<Push[]>;
  pushes(): Promise<Push[]>;
  /** Deletes up to `limit` records received before `before` (ms), oldest first; returns how many. */
  deleteBefore(before: number, limit: number): Promise<number>;
  close(): Promise<void>;
  /** Present when several hub processes share the store (PostgreSQL). */
  readonly shared?: SharedHub;
  /** What the store is, for logs: `libsql file`, `postgres`, … */
  readonly kind: string;
}

const SQL = {
  countRecords: "UPDATE edges SET records = records + ?, last_seen_at = ? WHERE id = ?",
  addEdge: "INSERT INTO edges (id) VALUES (?) ON CONFLICT (id) DO NOTHING",
  resetEdges: "UPDATE edges SET connected = 0",
  connect: "UPDATE edges SET connected = 1, connected_at = ?, last_seen_at = ? WHERE id = ?",
  disconnect: "UPDATE edges SET connected = 0, last_seen_at = ? WHERE id = ?",
  touch: "UPDATE edges SET last_seen_at = ? WHERE id = ?",
  readReports: "SELECT reports FROM edges WHERE id = ?",
  writeReports: "UPDATE edges SET reports = ?, last_seen_at = ? WHERE id = ?",
  edges:
    "SELECT id, connected, connected_at, last_seen_at, records, conflicts, reports FROM edges ORDER BY id",
  heldRecord: "SELECT device, kind, ts, topic, payload FROM records WHERE edge = ? AND id = ?",
  countConflicts: "UPDATE edges SET conflicts = conflicts + ? WHERE id = ?",
  insertCommand: "INSERT INTO commands (id, edge, device, method, params, timeout_ms, status, created_at) " +
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
  settleCommand: "UPDATE commands SET status = ?, payload = ?, completed_at = ? WHERE id = ? AND edge = ?",
  command: "SELECT id, edge, device, method, params, timeout_ms, status, payload, created_at, completed_at " +
    "FROM commands WHERE id = ?",
  savePush: "INSERT INTO pushes (edge, kind, version, body, created_at) VALUES (?, ?, ?, ?, ?) " +
    "ON CONFLICT (edge, kind) DO UPDATE SET version = excluded.version, body = excluded.body, " +
    "created_at = excluded.created_at",
  dropPush: "DELETE FROM pushes WHERE edge = ? AND kind = ?",
  edgePushes: "SELECT edge, kind, version, body, created_at FROM pushes WHERE edge = ? ORDER BY kind",
  pushes: "SELECT edge, kind, version, body, created_at FROM pushes ORDER BY edge, kind",
  oldest: "SELECT seq FROM records WHERE received_at < ? ORDER BY seq LIMIT 1 OFFSET ?",
  deleteUpTo: "DELETE FROM records WHERE seq <= ? AND received_at < ?",
  deleteAllBefore: "DELETE FROM records WHERE received_at < ?",
} as const;

/**
 * Records go in with multi-row INSERTs (`LocalDatabase.insertRows`): one native call per up to 64
 * records, and AUTOINCREMENT's bookkeeping once per statement instead of once per record.
 */
const INSERT_HEAD = "INSERT INTO records (edge, id, device, kind, ts, topic, payload, received_at)";
const RECORD_FIELDS = 8;

// One fixed text per filter combination, so each can use its index (edge, seq) or (device, seq).
const RECORD_COLUMNS = "SELECT seq, id, edge, device, kind, ts, topic, payload, received_at FROM records";
const RECORD_QUERIES = {
  all: `${RECORD_COLUMNS} WHERE seq > ? ORDER BY seq LIMIT ?`,
  edge: `${RECORD_COLUMNS} WHERE edge = ? AND seq > ? ORDER BY seq LIMIT ?`,
  device: `${RECORD_COLUMNS} WHERE device = ? AND seq > ? ORDER BY seq LIMIT ?`,
  both: `${RECORD_COLUMNS} WHERE device = ? AND edge = ? AND seq > ? ORDER BY seq LIMIT ?`,
} as const;

const utf8 = new TextDecoder();

/** A record payload as JSON text to store: the text itself when it parses, else `{"_raw": text}`. */
export function payloadText(bytes: Uint8Array): string {
  const text = utf8.decode(bytes);
  try {
    JSON.parse(text);
    return text;
  } catch {
    return JSON.stringify({ _raw: text });
  }
}

/** Opens (creating and migrating if needed) the hub's embedded libSQL database at `path`. */
export function createHubStore(path: string): HubStore {
  const db: LocalDatabase = openDatabase(path, { migrations: hubMigrations });
  const q = (sql: string) => db.prepare(sql);

  const toPush = (r: any): Push => ({
    edge: r.edge,
    kind: r.kind,
    version: r.version,
    body: r.body,
    createdAt: r.created_at,
  });

  return {
    async registerEdges(ids) {
      db.transaction(() => {
        q(SQL.resetEdges).run();
        for (const id of ids) q(SQL.addEdge).run(id);
      });
    },

    async storeBatch(edge, records, now, onConflict) {
      // Payloads are checked (and decoded to text) before the transaction starts.
      const payloads = records.map((r) => payloadText(r.payload));
      const values: unknown[] = new Array(records.length * RECORD_FIELDS);
      for (let k = 0; k < records.length; k++) {
        const r = records[k];
        const o = k * RECORD_FIELDS;
        values[o] = edge;
        values[o + 1] = r.id;
        values[o + 2] = r.device;
        values[o + 3] = r.kind;
        values[o + 4] = r.ts;
        values[o + 5] = r.topic === "" ? null : r.topic;
        values[o + 6] = payloads[k];
        values[o + 7] = now;
      }
      return db.transaction(() => {
        const added = db.insertRows(INSERT_HEAD, RECORD_FIELDS, values, "ON CONFLICT (edge, id) DO NOTHING");
        q(SQL.countRecords).run(added, now, edge);
        if (added < records.length) {
          // Some ids were held already: a resend (same content, silent) or a conflict. Only then
          // is anything read back, one row per record of this batch.
          const conflicts: string[] = [];
          for (let k = 0; k < records.length; k++) {
            const r = records[k];
            const held = q(SQL.heldRecord).get(edge, r.id) as
              | { device: string; kind: string; ts: number; topic: string | null; payload: string }
              | undefined;
            if (held === undefined) continue;
            const topic = r.topic === "" ? null : r.topic;
            if (
              held.device !== r.device || held.kind !== r.kind || Number(held.ts) !== Number(r.ts) ||
              held.topic !== topic || held.payload !== payloads[k]
            ) conflicts.push(r.id);
          }
          if (conflicts.length > 0) {
            q(SQL.countConflicts).run(conflicts.length, edge);
            onConflict?.(conflicts);
          }
        }
        return added;
      });
    },

    async setConnected(edge, connected, now) {
      if (connected) q(SQL.connect).run(now, now, edge);
      else q(SQL.disconnect).run(now, edge);
    },

    async touch(edge, now) {
      q(SQL.touch).run(now, edge);
    },

    async saveReport(edge, type, body, now) {
      db.transaction(() => {
        const row = q(SQL.readReports).get(edge) as { reports: string } | undefined;
        if (row === undefined) return;
        const reports = JSON.parse(row.reports) as Record<string, unknown>;
        reports[type] = body;
        q(SQL.writeReports).run(JSON.stringify(reports), now, edge);
      });
    },

    async edges() {
      return (q(SQL.edges).all() as any[]).map((r) => ({
        id: r.id,
        connected: r.connected === 1,
        connectedAt: r.connected_at ?? null,
        lastSeenAt: r.last_seen_at ?? null,
        records: r.records,
        conflicts: r.conflicts ?? 0,
        reports: JSON.parse(r.reports),
      }));
    },

    async records({ edge, device, after, limit }) {
      const rows = (edge !== undefined && device !== undefined)
        ? q(RECORD_QUERIES.both).all(device, edge, after, limit)
        : edge !== undefined
        ? q(RECORD_QUERIES.edge).all(edge, after, limit)
        : device !== undefined
        ? q(RECORD_QUERIES.device).all(device, after, limit)
        : q(RECORD_QUERIES.all).all(after, limit);
      return (rows as any[]).map((r) => ({
        seq: r.seq,
        id: r.id,
        edge: r.edge,
        device: r.device,
        kind: r.kind,
        ts: r.ts,
        topic: r.topic ?? null,
        payload: JSON.parse(r.payload),
        receivedAt: r.received_at,
      }));
    },

    async insertCommand(c) {
      q(SQL.insertCommand).run(
        c.id,
        c.edge,
        c.device,
        c.method,
        JSON.stringify(c.params),
        c.timeoutMs,
        c.status,
        c.createdAt,
      );
    },

    async settleCommand(id, edge, status, payload, now) {
      return q(SQL.settleCommand).run(status, payload, now, id, edge).changes > 0;
    },

    async command(id) {
      const r = q(SQL.command).get(id) as any;
      if (r === undefined) return undefined;
      return {
        id: r.id,
        edge: r.edge,
        device: r.device,
        method: r.method,
        params: JSON.parse(r.params),
        timeoutMs: r.timeout_ms,
        status: r.status,
        payload: r.payload === null ? null : JSON.parse(r.payload),
        createdAt: r.created_at,
        completedAt: r.completed_at ?? null,
      };
    },

    async savePush(p) {
      q(SQL.savePush).run(p.edge, p.kind, p.version, p.body, p.createdAt);
    },

    async dropPush(edge, kind) {
      q(SQL.dropPush).run(edge, kind);
    },

    async pushesOf(edge) {
      return (q(SQL.edgePushes).all(edge) as any[]).map(toPush);
    },

    async pushes() {
      return (q(SQL.pushes).all() as any[]).map(toPush);
    },

    async deleteBefore(before, limit) {
      // The records received before `before` are the oldest seqs (seq follows arrival); delete up
      // to the limit-th of them in one statement.
      const last = q(SQL.oldest).get(before, limit - 1) as { seq: number } | undefined;
      if (last === undefined) return q(SQL.deleteAllBefore).run(before).changes;
      return q(SQL.deleteUpTo).run(last.seq, before).changes;
    },

    async close() {
      db.close();
    },

    kind: "libsql file",
  };
}
