/**
 * The hub's libSQL store: received records (one row per (edge, record id), `seq` in arrival
 * order), what it knows of each edge, commands and pushes waiting for their edge.
 *
 * Every SQL text here is a constant, so the statement cache holds a small fixed set; values are
 * always bound, never inlined. A batch is stored in one transaction: all of it or none of it.
 */
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
  /** Adds a row for each configured edge and marks every edge disconnected (start-up). */
  registerEdges(ids: readonly string[]): void;
  /** Stores a batch in one transaction, each (edge, id) once; returns how many rows were new. */
  /**
   * Stores each (edge, id) once; returns how many were new. A record whose id the hub holds with
   * other content is a conflict: counted on the edge and passed to `onConflict`.
   */
  storeBatch(
    edge: string,
    records: readonly WireRecord[],
    now: number,
    onConflict?: (ids: string[]) => void,
  ): number;
  setConnected(edge: string, connected: boolean, now: number): void;
  touch(edge: string, now: number): void;
  saveReport(edge: string, type: string, body: unknown, now: number): void;
  edges(): EdgeRow[];
  records(query: RecordQuery): StoredRecord[];
  insertCommand(command: Omit<CommandRow, "payload" | "completedAt">): void;
  /** Records how a command ended; false when `edge` sent no such command. */
  settleCommand(
    id: string,
    edge: string,
    status: CommandStatus,
    payload: string | null,
    now: number,
  ): boolean;
  command(id: string): CommandRow | undefined;
  /** Keeps a push for the edge's next connect, replacing an older one of the same kind. */
  savePush(push: Push): void;
  dropPush(edge: string, kind: PushKind): void;
  /** The edge's pushes not yet reported on by the edge (kept until it reports; SPEC §14). */
  pushesOf(edge: string): Push[];
  pushes(): Push[];
  /** Records a new operation (`pending`), pruning the edge's oldest finished ones past the bound. */
  insertOperation(op: Omit<OperationRow, "reason" | "result" | "updatedAt"> & { body: string | null }): void;
  /**
   * Moves an open operation on (a finished one never changes again; its body is dropped when it
   * finishes). False when there is no such open operation of that edge.
   */
  updateOperation(
    id: string,
    edge: string,
    next: { status: OperationState; reason?: string | null; result?: unknown },
    now: number,
  ): boolean;
  operation(id: string): OperationRow | undefined;
  /** The edge's operations, newest first. */
  operationsOf(edge: string, limit: number): OperationRow[];
  /** The edge's open operations of `kinds` that go down the link again on connect, oldest first. */
  openOperations(edge: string): (OperationRow & { body: string })[];
  /** The newest open operation of a kind and version (rules pushes, update offers). */
  openOperationOf(edge: string, kind: OperationKind, version: string): OperationRow | undefined;
  countOpenOperations(edge: string): number;
  /** At start-up: open operations that only a live request could finish (logs) fail with `reason`. */
  failOperations(kind: OperationKind, reason: string, now: number): string[];
  /**
   * Open operations of the edge and kind older than operation `newer` fail with `reason` (the
   * edge reported on a newer rules push or update offer: the older ones will not come).
   */
  supersedeOperations(edge: string, kind: OperationKind, newer: string, reason: string, now: number): void;
  close(): void;
}

const OPERATION_COLUMNS = "id, edge, kind, version, status, reason, request, result, created_at, updated_at";

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
  insertOperation:
    "INSERT INTO operations (id, edge, kind, version, status, request, body, created_at, updated_at) " +
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
  pruneOperations: "DELETE FROM operations WHERE edge = ? AND status IN ('successful', 'failed') AND id IN " +
    "(SELECT id FROM operations WHERE edge = ? ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?)",
  updateOperation: "UPDATE operations SET status = ?, reason = coalesce(?, reason), " +
    "result = coalesce(?, result), updated_at = ?, " +
    "body = CASE WHEN ? IN ('successful', 'failed') THEN NULL ELSE body END " +
    "WHERE id = ? AND edge = ? AND status IN ('pending', 'executing')",
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
  openOfKind: "SELECT id FROM operations WHERE kind = ? AND status IN ('pending', 'executing')",
  failOfKind: "UPDATE operations SET status = 'failed', reason = ?, body = NULL, updated_at = ? " +
    "WHERE kind = ? AND status IN ('pending', 'executing')",
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

/** Opens (creating and migrating if needed) the hub database at `path`. */
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
    registerEdges(ids) {
      db.transaction(() => {
        q(SQL.resetEdges).run();
        for (const id of ids) q(SQL.addEdge).run(id);
      });
    },

    storeBatch(edge, records, now, onConflict) {
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

    setConnected(edge, connected, now) {
      if (connected) q(SQL.connect).run(now, now, edge);
      else q(SQL.disconnect).run(now, edge);
    },

    touch(edge, now) {
      q(SQL.touch).run(now, edge);
    },

    saveReport(edge, type, body, now) {
      db.transaction(() => {
        const row = q(SQL.readReports).get(edge) as { reports: string } | undefined;
        if (row === undefined) return;
        const reports = JSON.parse(row.reports) as Record<string, unknown>;
        reports[type] = body;
        q(SQL.writeReports).run(JSON.stringify(reports), now, edge);
      });
    },

    edges() {
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

    records({ edge, device, after, limit }) {
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

    insertCommand(c) {
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

    settleCommand(id, edge, status, payload, now) {
      return q(SQL.settleCommand).run(status, payload, now, id, edge).changes > 0;
    },

    command(id) {
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

    savePush(p) {
      q(SQL.savePush).run(p.edge, p.kind, p.version, p.body, p.createdAt);
    },

    dropPush(edge, kind) {
      q(SQL.dropPush).run(edge, kind);
    },

    pushesOf(edge) {
      return (q(SQL.edgePushes).all(edge) as any[]).map(toPush);
    },

    pushes() {
      return (q(SQL.pushes).all() as any[]).map(toPush);
    },

    insertOperation(op) {
      db.transaction(() => {
        q(SQL.insertOperation).run(
          op.id,
          op.edge,
          op.kind,
          op.version,
          op.status,
          op.request === undefined ? null : JSON.stringify(op.request),
          op.body,
          op.createdAt,
          op.createdAt,
        );
        q(SQL.pruneOperations).run(op.edge, op.edge, OPERATIONS_KEPT_PER_EDGE);
      });
    },

    updateOperation(id, edge, next, now) {
      const result = next.result === undefined ? null : JSON.stringify(next.result);
      return q(SQL.updateOperation).run(next.status, next.reason ?? null, result, now, next.status, id, edge)
        .changes > 0;
    },

    operation(id) {
      const r = q(SQL.operation).get(id);
      return r === undefined ? undefined : toOperation(r);
    },

    operationsOf(edge, limit) {
      return (q(SQL.operationsOf).all(edge, limit) as any[]).map(toOperation);
    },

    openOperations(edge) {
      return (q(SQL.openOperations).all(edge) as any[]).map((r) => ({ ...toOperation(r), body: r.body }));
    },

    openOperationOf(edge, kind, version) {
      const r = q(SQL.openOperationOf).get(edge, kind, version);
      return r === undefined ? undefined : toOperation(r);
    },

    countOpenOperations(edge) {
      return Number((q(SQL.countOpen).get(edge) as { n: number }).n);
    },

    failOperations(kind, reason, now) {
      return db.transaction(() => {
        const ids = (q(SQL.openOfKind).all(kind) as { id: string }[]).map((r) => r.id);
        q(SQL.failOfKind).run(reason, now, kind);
        return ids;
      });
    },

    supersedeOperations(edge, kind, newer, reason, now) {
      q(SQL.supersede).run(reason, now, edge, kind, newer);
    },

    close() {
      db.close();
    },
  };
}

function toOperation(r: any): OperationRow {
  return {
    id: r.id,
    edge: r.edge,
    kind: r.kind,
    version: r.version ?? null,
    status: r.status,
    reason: r.reason ?? null,
    request: r.request === null || r.request === undefined ? null : JSON.parse(r.request),
    result: r.result === null || r.result === undefined ? null : JSON.parse(r.result),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}
