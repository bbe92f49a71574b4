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
  | { type: "push"; edge: string }
  /** An operation (config, logs, restart) for the replica the edge is connected to to send. */
  | { type: "operation"; edge: string; id: string };

/**
 * What a store shared by several hub processes (replicas) adds: which edges are connected to a
 * live replica, and messages between replicas (commands, their results, pushes, operations).
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

export type OperationKind = "config" | "logs" | "restart" | "rules" | "update";
export type OperationState = "pending" | "executing" | "successful" | "failed";

/** A management operation on an edge, as the API shows it (no `body`: it may hold secrets). */
export interface OperationRow {
  id: string;
  edge: string;
  kind: OperationKind;
  version: string | null;
  status: OperationState;
  reason: string | null;
  /** What was asked, secrets masked. */
  request: unknown;
  result: unknown;
  createdAt: number;
  updatedAt: number;
}

/** Operations kept per edge; past it the oldest finished ones go. */
export const OPERATIONS_KEPT_PER_EDGE = 1000;

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
  /** Records a new operation (`pending`), pruning the edge's oldest finished ones past the bound. */
  insertOperation(
    op: Omit<OperationRow, "reason" | "result" | "updatedAt"> & { body: string | null },
  ): Promise<void>;
  /**
   * Moves an open operation on (a finished one never changes again; its body is dropped when it
   * finishes, unless `answer` is given: a logs answer kept for the replica waiting for it, see
   * `takeOperationAnswer`). False when there is no such open operation of that edge.
   */
  updateOperation(
    id: string,
    edge: string,
    next: { status: OperationState; reason?: string | null; result?: unknown; answer?: string },
    now: number,
  ): Promise<boolean>;
  /** The answer kept by `updateOperation` for a finished operation, removed as it is read. */
  takeOperationAnswer(id: string): Promise<string | null>;
  operation(id: string): Promise<OperationRow | undefined>;
  /** The edge's operations, newest first. */
  operationsOf(edge: string, limit: number): Promise<OperationRow[]>;
  /** The edge's open operations that go down the link again on connect (those with a body), oldest first. */
  openOperations(edge: string): Promise<(OperationRow & { body: string })[]>;
  /** The newest open operation of a kind and version (rules pushes, update offers). */
  openOperationOf(edge: string, kind: OperationKind, version: string): Promise<OperationRow | undefined>;
  countOpenOperations(edge: string): Promise<number>;
  /**
   * Open operations of `kind` created before `createdBefore` (default: all) that only a live
   * request could finish (logs) fail with `reason`, and so do, in a store shared by replicas,
   * those taken by a replica that is no longer alive; answers of such finished ones that nobody
   * took are dropped. Returns the ids failed.
   */
  failOperations(kind: OperationKind, reason: string, now: number, createdBefore?: number): Promise<string[]>;
  /**
   * Open operations of the edge and kind older than operation `newer` fail with `reason` (the
   * edge reported on a newer rules push or update offer: the older ones will not come).
   */
  supersedeOperations(
    edge: string,
    kind: OperationKind,
    newer: string,
    reason: string,
    now: number,
  ): Promise<void>;
  /** Deletes up to `limit` records received before `before` (ms), oldest first; returns how many. */
  deleteBefore(before: number, limit: number): Promise<number>;
  close(): Promise<void>;
  /** Present when several hub processes share the store (PostgreSQL). */
  readonly shared?: SharedHub;
  /** What the store is, for logs: `libsql file`, `postgres`, … */
  readonly kind: string;
}

const OPERATION_COLUMNS = "id, edge, kind, version, status, reason, request, result, created_at, updated_at";

/** The operations' SQL, shared by the libSQL file and the libSQL server stores. */
export const OPERATION_SQL = {
  insertOperation:
    "INSERT INTO operations (id, edge, kind, version, status, request, body, created_at, updated_at) " +
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
  pruneOperations: "DELETE FROM operations WHERE edge = ? AND status IN ('successful', 'failed') AND id IN " +
    "(SELECT id FROM operations WHERE edge = ? ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?)",
  updateOperation: "UPDATE operations SET status = ?, reason = coalesce(?, reason), " +
    "result = coalesce(?, result), updated_at = ?, " +
    "body = CASE WHEN ? IS NOT NULL THEN ? WHEN ? IN ('successful', 'failed') THEN NULL ELSE body END " +
    "WHERE id = ? AND edge = ? AND status IN ('pending', 'executing')",
  readAnswer: "SELECT body FROM operations WHERE id = ? AND status IN ('successful', 'failed')",
  dropAnswer: "UPDATE operations SET body = NULL WHERE id = ? AND status IN ('successful', 'failed')",
  operation: `SELECT ${OPERATION_COLUMNS} FROM operations WHERE id = ?`,
  operationsOf: `SELECT ${OPERATION_COLUMNS} FROM operations WHERE edge = ? ` +
    "ORDER BY created_at DESC, rowid DESC LIMIT ?",
  openOperations: `SELECT ${OPERATION_COLUMNS}, body FROM operations WHERE edge = ? ` +
    "AND status IN ('pending', 'executing') AND body IS NOT NULL ORDER BY created_at, rowid",
  openOperationOf:
    `SELECT ${OPERATION_COLUMNS} FROM operations WHERE edge = ? AND kind = ? AND version = ? ` +
    "AND status IN ('pending', 'executing') ORDER BY created_at DESC, rowid DESC LIMIT 1",
  supersede: "UPDATE operations SET status = 'failed', reason = ?, body = NULL, updated_at = ? " +
    "WHERE edge = ? AND kind = ? AND status IN ('pending', 'executing') " +
    "AND rowid < (SELECT rowid FROM operations WHERE id = ?)",
  countOpen: "SELECT count(*) AS n FROM operations WHERE edge = ? AND status IN ('pending', 'executing')",
  openOfKind:
    "SELECT id FROM operations WHERE kind = ? AND status IN ('pending', 'executing') AND created_at < ?",
  failOfKind: "UPDATE operations SET status = 'failed', reason = ?, body = NULL, updated_at = ? " +
    "WHERE kind = ? AND status IN ('pending', 'executing') AND created_at < ?",
  dropAnswers: "UPDATE operations SET body = NULL " +
    "WHERE kind = ? AND status IN ('successful', 'failed') AND body IS NOT NULL AND created_at < ?",
} as const;

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
      q(SQL.insertCommand).run(...insertCommandArgs(c));
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

    async insertOperation(op) {
      db.transaction(() => {
        q(OPERATION_SQL.insertOperation).run(...insertOperationArgs(op));
        q(OPERATION_SQL.pruneOperations).run(op.edge, op.edge, OPERATIONS_KEPT_PER_EDGE);
      });
    },

    async updateOperation(id, edge, next, now) {
      const result = next.result === undefined ? null : JSON.stringify(next.result);
      const answer = next.answer ?? null;
      return q(OPERATION_SQL.updateOperation).run(
        next.status,
        next.reason ?? null,
        result,
        now,
        answer,
        answer,
        next.status,
        id,
        edge,
      ).changes > 0;
    },

    async takeOperationAnswer(id) {
      return db.transaction(() => {
        const r = q(OPERATION_SQL.readAnswer).get(id) as { body: string | null } | undefined;
        if (r?.body == null) return null;
        q(OPERATION_SQL.dropAnswer).run(id);
        return r.body;
      });
    },

    async operation(id) {
      const r = q(OPERATION_SQL.operation).get(id);
      return r === undefined ? undefined : toOperation(r);
    },

    async operationsOf(edge, limit) {
      return (q(OPERATION_SQL.operationsOf).all(edge, limit) as any[]).map(toOperation);
    },

    async openOperations(edge) {
      return (q(OPERATION_SQL.openOperations).all(edge) as any[]).map((r) => ({
        ...toOperation(r),
        body: r.body,
      }));
    },

    async openOperationOf(edge, kind, version) {
      const r = q(OPERATION_SQL.openOperationOf).get(edge, kind, version);
      return r === undefined ? undefined : toOperation(r);
    },

    async countOpenOperations(edge) {
      return Number((q(OPERATION_SQL.countOpen).get(edge) as { n: number }).n);
    },

    async failOperations(kind, reason, now, createdBefore = Number.MAX_SAFE_INTEGER) {
      return db.transaction(() => {
        const ids = (q(OPERATION_SQL.openOfKind).all(kind, createdBefore) as { id: string }[]).map((r) =>
          r.id
        );
        q(OPERATION_SQL.failOfKind).run(reason, now, kind, createdBefore);
        q(OPERATION_SQL.dropAnswers).run(kind, createdBefore);
        return ids;
      });
    },

    async supersedeOperations(edge, kind, newer, reason, now) {
      q(OPERATION_SQL.supersede).run(reason, now, edge, kind, newer);
    },

    async close() {
      db.close();
    },

    kind: "libsql file",
  };
}

export function toOperation(r: any): OperationRow {
  return {
    id: r.id,
    edge: r.edge,
    kind: r.kind,
    version: r.version ?? null,
    status: r.status,
    reason: r.reason ?? null,
    request: r.request === null || r.request === undefined ? null : JSON.parse(r.request),
    result: r.result === null || r.result === undefined ? null : JSON.parse(r.result),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

/** The parameters of the commands INSERT, in its column order (the libSQL file and server stores). */
export function insertCommandArgs(c: Omit<CommandRow, "payload" | "completedAt">) {
  return [c.id, c.edge, c.device, c.method, JSON.stringify(c.params), c.timeoutMs, c.status, c.createdAt];
}

/** The parameters of `OPERATION_SQL.insertOperation`, in its column order. */
export function insertOperationArgs(op: Parameters<HubStore["insertOperation"]>[0]) {
  const request = op.request === undefined ? null : JSON.stringify(op.request);
  return [op.id, op.edge, op.kind, op.version, op.status, request, op.body, op.createdAt, op.createdAt];
}
