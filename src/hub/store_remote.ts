/**
 * The hub's store on a libSQL server (sqld, Turso) through `@libsql/client` (SPEC §11): the same
 * tables and migrations as the embedded file, over the network. One hub process per database:
 * the server store does not coordinate replicas (use PostgreSQL for that).
 *
 * A batch is one write transaction (`client.batch(…, "write")`): multi-row INSERTs of up to 64
 * records with `ON CONFLICT (edge, id) DO NOTHING RETURNING seq`, then the edge's counter, so it
 * is acknowledged only after the server committed it. `seq` is AUTOINCREMENT in a database whose
 * writes the server serialises, so a reader paging `seq > after` never skips a record.
 *
 * `libsql://host?authToken=…` passes the token; `file:` URLs work too (the client's local mode).
 */
import { type Client, createClient, type InStatement } from "@libsql/client";
import { redactUrl } from "../core/redact.ts";
import { UsageError } from "../core/errors.ts";
import { errorMessage } from "../core/errors.ts";
import { hubMigrations } from "../db/mod.ts";
import type { Logger } from "../telemetry/mod.ts";
import type { HubStore, Push, StoredRecord } from "./store.ts";
import {
  insertCommandArgs,
  insertOperationArgs,
  OPERATION_SQL as OP,
  OPERATIONS_KEPT_PER_EDGE,
  payloadText,
  toOperation,
} from "./store.ts";

const ROWS_PER_INSERT = 64;
const FIELDS = 8;

export async function openRemoteStore(url: string, options: { log: Logger }): Promise<HubStore> {
  let client: Client;
  try {
    const u = new URL(url);
    const authToken = u.searchParams.get("authToken") ?? undefined;
    u.searchParams.delete("authToken");
    client = createClient({ url: u.toString(), ...(authToken ? { authToken } : {}) });
  } catch (error) {
    throw new UsageError(`Cannot use the libSQL store ${redactUrl(url)}: ${errorMessage(error)}`, {
      issues: [{ path: "/store/url", message: errorMessage(error) }],
    });
  }
  try {
    await migrate(client);
  } catch (error) {
    client.close();
    throw new Error(`The libSQL store at ${redactUrl(url)} failed: ${errorMessage(error)}`, { cause: error });
  }
  return createRemoteStore(client, options.log);
}

async function migrate(client: Client): Promise<void> {
  await client.execute(
    "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)",
  );
  const done = new Set(
    (await client.execute("SELECT name FROM _migrations")).rows.map((r) => String(r.name)),
  );
  const known = new Set(hubMigrations.map((m) => m.name));
  const unknown = [...done].filter((name) => !known.has(name));
  if (unknown.length > 0) {
    throw new Error(`Database has migrations this version does not know: ${unknown.join(", ")}`);
  }
  for (const m of hubMigrations) {
    if (done.has(m.name)) continue;
    const statements = m.sql.split(/;\s*\n/).map((s) => s.replace(/^\s*--.*$/gm, "").trim()).filter(Boolean);
    await client.batch(
      [
        ...statements,
        { sql: "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", args: [m.name, Date.now()] },
      ],
      "write",
    );
  }
}

function insertStatement(rows: number): string {
  const row = `(${new Array(FIELDS).fill("?").join(", ")})`;
  return "INSERT INTO records (edge, id, device, kind, ts, topic, payload, received_at) VALUES " +
    new Array(rows).fill(row).join(", ") + " ON CONFLICT (edge, id) DO NOTHING RETURNING seq";
}

const num = (v: unknown) => v === null || v === undefined ? null : Number(v);

function createRemoteStore(client: Client, _log: Logger): HubStore {
  const toPush = (r: Record<string, unknown>): Push => ({
    edge: String(r.edge),
    kind: String(r.kind) as Push["kind"],
    version: String(r.version),
    body: String(r.body),
    createdAt: Number(r.created_at),
  });

  return {
    kind: "libsql server",

    async registerEdges(ids) {
      await client.batch(
        [
          "UPDATE edges SET connected = 0",
          ...ids.map((id) => ({
            sql: "INSERT INTO edges (id) VALUES (?) ON CONFLICT (id) DO NOTHING",
            args: [id],
          })),
        ],
        "write",
      );
    },

    async storeBatch(edge, records, now, onConflict) {
      const payloads = records.map((r) => payloadText(r.payload));
      const statements: InStatement[] = [];
      for (let start = 0; start < records.length; start += ROWS_PER_INSERT) {
        const chunk = records.slice(start, start + ROWS_PER_INSERT);
        const args: (string | number | null)[] = [];
        chunk.forEach((r, i) => {
          args.push(edge, r.id, r.device, r.kind, Number(r.ts), r.topic === "" ? null : r.topic);
          args.push(payloads[start + i], now);
        });
        statements.push({ sql: insertStatement(chunk.length), args });
        // The edge's counter in the same transaction: changes() is the INSERT just before.
        statements.push({
          sql: "UPDATE edges SET records = records + changes(), last_seen_at = ? WHERE id = ?",
          args: [now, edge],
        });
      }
      const results = await client.batch(statements, "write");
      const added = results.reduce((n, r, i) => i % 2 === 0 ? n + r.rows.length : n, 0);
      if (added < records.length) {
        const conflicts: string[] = [];
        for (let k = 0; k < records.length; k++) {
          const r = records[k];
          const held = (await client.execute({
            sql: "SELECT device, kind, ts, topic, payload FROM records WHERE edge = ? AND id = ?",
            args: [edge, r.id],
          })).rows[0];
          if (held === undefined) continue;
          const topic = r.topic === "" ? null : r.topic;
          if (
            held.device !== r.device || held.kind !== r.kind || Number(held.ts) !== Number(r.ts) ||
            (held.topic ?? null) !== topic || held.payload !== payloads[k]
          ) conflicts.push(r.id);
        }
        if (conflicts.length > 0) {
          await client.execute({
            sql: "UPDATE edges SET conflicts = conflicts + ? WHERE id = ?",
            args: [conflicts.length, edge],
          });
          onConflict?.(conflicts);
        }
      }
      return added;
    },

    async setConnected(edge, connected, now) {
      await client.execute(
        connected
          ? {
            sql: "UPDATE edges SET connected = 1, connected_at = ?, last_seen_at = ? WHERE id = ?",
            args: [now, now, edge],
          }
          : { sql: "UPDATE edges SET connected = 0, last_seen_at = ? WHERE id = ?", args: [now, edge] },
      );
    },

    async touch(edge, now) {
      await client.execute({ sql: "UPDATE edges SET last_seen_at = ? WHERE id = ?", args: [now, edge] });
    },

    async saveReport(edge, type, body, now) {
      await client.execute({
        sql:
          "UPDATE edges SET reports = json_set(reports, '$.' || json_quote(?), json(?)), last_seen_at = ? WHERE id = ?",
        args: [type, JSON.stringify(body), now, edge],
      });
    },

    async edges() {
      const rows = (await client.execute(
        "SELECT id, connected, connected_at, last_seen_at, records, conflicts, reports FROM edges ORDER BY id",
      )).rows;
      return rows.map((r) => ({
        id: String(r.id),
        connected: Number(r.connected) === 1,
        connectedAt: num(r.connected_at),
        lastSeenAt: num(r.last_seen_at),
        records: Number(r.records),
        conflicts: Number(r.conflicts ?? 0),
        reports: JSON.parse(String(r.reports)),
      }));
    },

    async records({ edge, device, after, limit }) {
      const rows = (await client.execute({
        sql: "SELECT seq, id, edge, device, kind, ts, topic, payload, received_at FROM records " +
          "WHERE seq > ? AND (? IS NULL OR edge = ?) AND (? IS NULL OR device = ?) ORDER BY seq LIMIT ?",
        args: [after, edge ?? null, edge ?? null, device ?? null, device ?? null, limit],
      })).rows;
      return rows.map((r): StoredRecord => ({
        seq: Number(r.seq),
        id: String(r.id),
        edge: String(r.edge),
        device: String(r.device),
        kind: String(r.kind),
        ts: Number(r.ts),
        topic: r.topic === null ? null : String(r.topic),
        payload: JSON.parse(String(r.payload)),
        receivedAt: Number(r.received_at),
      }));
    },

    async insertCommand(c) {
      await client.execute({
        sql: "INSERT INTO commands (id, edge, device, method, params, timeout_ms, status, created_at) " +
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        args: insertCommandArgs(c),
      });
    },

    async settleCommand(id, edge, status, payload, now) {
      const r = await client.execute({
        sql: "UPDATE commands SET status = ?, payload = ?, completed_at = ? WHERE id = ? AND edge = ?",
        args: [status, payload, now, id, edge],
      });
      return r.rowsAffected > 0;
    },

    async command(id) {
      const r = (await client.execute({
        sql:
          "SELECT id, edge, device, method, params, timeout_ms, status, payload, created_at, completed_at " +
          "FROM commands WHERE id = ?",
        args: [id],
      })).rows[0];
      if (r === undefined) return undefined;
      return {
        id: String(r.id),
        edge: String(r.edge),
        device: String(r.device),
        method: String(r.method),
        params: JSON.parse(String(r.params)),
        timeoutMs: Number(r.timeout_ms),
        status: String(r.status) as never,
        payload: r.payload === null ? null : JSON.parse(String(r.payload)),
        createdAt: Number(r.created_at),
        completedAt: num(r.completed_at),
      };
    },

    async savePush(p) {
      await client.execute({
        sql: "INSERT INTO pushes (edge, kind, version, body, created_at) VALUES (?, ?, ?, ?, ?) " +
          "ON CONFLICT (edge, kind) DO UPDATE SET version = excluded.version, body = excluded.body, " +
          "created_at = excluded.created_at",
        args: [p.edge, p.kind, p.version, p.body, p.createdAt],
      });
    },

    async dropPush(edge, kind) {
      await client.execute({ sql: "DELETE FROM pushes WHERE edge = ? AND kind = ?", args: [edge, kind] });
    },

    async pushesOf(edge) {
      return (await client.execute({
        sql: "SELECT edge, kind, version, body, created_at FROM pushes WHERE edge = ? ORDER BY kind",
        args: [edge],
      })).rows.map(toPush);
    },

    async pushes() {
      return (await client.execute(
        "SELECT edge, kind, version, body, created_at FROM pushes ORDER BY edge, kind",
      ))
        .rows.map(toPush);
    },

    async deleteBefore(before, limit) {
      const r = await client.execute({
        sql:
          "DELETE FROM records WHERE seq IN (SELECT seq FROM records WHERE received_at < ? ORDER BY seq LIMIT ?)",
        args: [before, limit],
      });
      return r.rowsAffected;
    },

    async insertOperation(op) {
      await client.batch([
        {
          sql: OP.insertOperation,
          args: insertOperationArgs(op),
        },
        { sql: OP.pruneOperations, args: [op.edge, op.edge, OPERATIONS_KEPT_PER_EDGE] },
      ], "write");
    },

    async updateOperation(id, edge, next, now) {
      const result = next.result === undefined ? null : JSON.stringify(next.result);
      const answer = next.answer ?? null;
      const r = await client.execute({
        sql: OP.updateOperation,
        args: [next.status, next.reason ?? null, result, now, answer, answer, next.status, id, edge],
      });
      return r.rowsAffected > 0;
    },

    async takeOperationAnswer(id) {
      const [read] = await client.batch([
        { sql: OP.readAnswer, args: [id] },
        { sql: OP.dropAnswer, args: [id] },
      ], "write");
      const body = read.rows[0]?.body;
      return body === null || body === undefined ? null : String(body);
    },

    async operation(id) {
      const r = (await client.execute({ sql: OP.operation, args: [id] })).rows[0];
      return r === undefined ? undefined : toOperation(r);
    },

    async operationsOf(edge, limit) {
      return (await client.execute({ sql: OP.operationsOf, args: [edge, limit] })).rows.map(toOperation);
    },

    async openOperations(edge) {
      return (await client.execute({ sql: OP.openOperations, args: [edge] })).rows
        .map((r) => ({ ...toOperation(r), body: String(r.body) }));
    },

    async openOperationOf(edge, kind, version) {
      const r = (await client.execute({ sql: OP.openOperationOf, args: [edge, kind, version] })).rows[0];
      return r === undefined ? undefined : toOperation(r);
    },

    async countOpenOperations(edge) {
      return Number((await client.execute({ sql: OP.countOpen, args: [edge] })).rows[0].n);
    },

    async failOperations(kind, reason, now, createdBefore = Number.MAX_SAFE_INTEGER) {
      const [open] = await client.batch([
        { sql: OP.openOfKind, args: [kind, createdBefore] },
        { sql: OP.failOfKind, args: [reason, now, kind, createdBefore] },
        { sql: OP.dropAnswers, args: [kind, createdBefore] },
      ], "write");
      return open.rows.map((r) => String(r.id));
    },

    async supersedeOperations(edge, kind, newer, reason, now) {
      await client.execute({ sql: OP.supersede, args: [reason, now, edge, kind, newer] });
    },

    close() {
      client.close();
      return Promise.resolve();
    },
  };
}
