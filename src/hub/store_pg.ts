/**
 * The hub's PostgreSQL store (SPEC §11): everything the hub keeps, shared by any number of hub
 * processes (replicas) on one database.
 *
 * Invariants:
 * - Schema migrations run at start in one transaction under an advisory lock, so replicas that
 *   start together apply each once (recorded in `outpost_migrations`).
 * - A batch is one prepared statement (an `unnest` INSERT … ON CONFLICT (edge, id) DO NOTHING
 *   plus the edge's counter) in one implicit transaction: acknowledged only after its commit,
 *   each (edge, id) stored once, no round trip per record.
 * - `seq` is one ascending sequence, and readers never skip a record (docs/decisions/0010): every
 *   writing statement first takes a shared advisory lock keyed on the sequence's value before it
 *   draws any number; readers serve only seqs below the lowest key still held (and at most the
 *   last number handed out when they looked), so a record committed late is never behind a
 *   reader's cursor.
 * - Connectivity across replicas: an edge row names its replica and a generation bumped on every
 *   connect; a replica marks an edge disconnected only under the generation it connected it
 *   with, and an edge counts as connected only while its replica's heartbeat is recent.
 * - NOTIFY is sent only for commands, their results, pushes and operations, never from ingest.
 * - Operations are rows every replica reads and moves on; a finished one never changes again.
 *
 * postgres (porsager/postgres) is the driver: it prepares each statement once per connection by
 * itself, passes arrays as one parameter, and LISTENs on a connection of its own that comes back
 * after a restart. drizzle builds the cold queries over the same client.
 */
import postgres from "postgres";
import { drizzle } from "drizzle-orm/postgres-js";
import { and, asc, eq, sql as dsql } from "drizzle-orm";
import { randomUUID } from "node:crypto";
import { UsageError } from "../core/errors.ts";
import { errorMessage } from "../core/errors.ts";
import { redactUrl } from "../core/redact.ts";
import { postgresMigrations } from "../db/mod.ts";
import type { Migration } from "../db/mod.ts";
import type { Logger } from "../telemetry/mod.ts";
import type { WireRecord } from "../proto/mod.ts";
import type { HubStore, Push, ReplicaMessage, SharedHub, StoredRecord } from "./store.ts";
import { OPERATIONS_KEPT_PER_EDGE, payloadText, toOperation } from "./store.ts";
import * as t from "./pg_tables.ts";

/** The advisory lock that serialises migrations across replicas ('outp' as an integer). */
const MIGRATION_LOCK = 0x6f757470;
/**
 * Advisory lock keys of writers in flight are `(28528 << 48) + k` ('op' in the top 16 bits, so
 * they cannot meet another application's keys), k below every seq the writer will draw. The SQL
 * below spells the base as `(28528::int8 << 48)`; this is its lock-table class id.
 */
const KEY_CLASS_LOW = 28528 * 65536;
/** How long a computed read horizon is reused. */
const HORIZON_CACHE_MS = 20;
/** Replica heartbeat, and how old a heartbeat may be before its edges count as disconnected. */
const HEARTBEAT_MS = 2_000;
const REPLICA_STALE_S = 10;
const CHANNEL = "outpost_hub";
const OPERATION_COLUMNS = "id, edge, kind, version, status, reason, request, result, created_at, updated_at";

/** Numbers for int8 (ms timestamps, counts, seqs stay below 2^53). */
const INT8 = { to: 20, from: [20], serialize: (x: number) => String(x), parse: (x: string) => Number(x) };

export interface PgStoreOptions {
  log: Logger;
  /** Stops the connection retries at start. */
  signal?: AbortSignal;
  /** How often this replica says it is alive (default 2 s). */
  heartbeatMs?: number;
  /** How old a replica's heartbeat may be before its edges count as disconnected (default 10 s). */
  replicaStaleSeconds?: number;
}

/**
 * Connects (retrying with backoff while the database does not answer), applies the migrations
 * and returns the store. A wrong password or a missing database is a `UsageError` (exit 2) that
 * names `/store/url` and never shows the password.
 */
export async function openPgStore(url: string, options: PgStoreOptions): Promise<HubStore> {
  const { log } = options;
  const shown = redactUrl(url);
  const sql = postgres(url, {
    max: 10,
    idle_timeout: 0,
    connect_timeout: 5,
    onnotice: () => {},
    connection: { application_name: "outpost-hub" },
    types: { bigint: INT8 },
  });
  let applied: string[];
  try {
    applied = await connectAndMigrate(sql, shown, options);
  } catch (error) {
    await sql.end({ timeout: 1 }).catch(() => {});
    throw error;
  }
  log.info("hub.store_opened", { store: "postgres", url: shown, migrations: applied });
  return createPgStore(sql, log, options);
}

async function connectAndMigrate(sql: postgres.Sql, shown: string, o: PgStoreOptions): Promise<string[]> {
  let delay = 250;
  for (let attempt = 1;; attempt++) {
    try {
      return await migrate(sql, postgresMigrations);
    } catch (error) {
      const code = (error as { code?: string }).code;
      // Bad credentials or a database that does not exist: an operator must fix the config.
      if (code === "28P01" || code === "28000") {
        throw new UsageError(`PostgreSQL at ${shown} refused the sign-in: ${errorMessage(error)}`, {
          issues: [{ path: "/store/url", message: `PostgreSQL refused the user or password (${code})` }],
        });
      }
      if (code === "3D000") {
        throw new UsageError(`PostgreSQL at ${shown}: ${errorMessage(error)}`, {
          issues: [{ path: "/store/url", message: "the database does not exist" }],
        });
      }
      if (!isUnavailable(error)) throw error;
      if (o.signal?.aborted) {
        throw new Error(`PostgreSQL at ${shown} does not answer: ${errorMessage(error)}`);
      }
      o.log.warn("hub.store_unavailable", {
        url: shown,
        attempt,
        retryInMs: delay,
        error: errorMessage(error),
      });
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 5_000);
    }
  }
}

/** Connection-level failures (the server is down, starting, restarting): worth a retry. */
function isUnavailable(error: unknown): boolean {
  const code = String((error as { code?: string }).code ?? "");
  return /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EAI_AGAIN|CONNECT_TIMEOUT|CONNECTION_.*|57P0[1-3]|08\d\d\d)$/
    .test(code);
}

async function migrate(sql: postgres.Sql, migrations: readonly Migration[]): Promise<string[]> {
  return await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK}::int8)`;
    await tx`CREATE TABLE IF NOT EXISTS outpost_migrations (
      name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`;
    const done = new Set((await tx`SELECT name FROM outpost_migrations`).map((r) => r.name as string));
    const known = new Set(migrations.map((m) => m.name));
    const unknown = [...done].filter((name) => !known.has(name));
    if (unknown.length > 0) {
      throw new Error(
        `The database has hub migrations this version does not know: ${
          unknown.join(", ")
        } (written by a newer outpost?)`,
      );
    }
    const applied: string[] = [];
    for (const m of migrations) {
      if (done.has(m.name)) continue;
      await tx.unsafe(m.sql);
      await tx`INSERT INTO outpost_migrations (name) VALUES (${m.name})`;
      applied.push(m.name);
    }
    return applied;
  }) as string[];
}

const utf8 = new TextDecoder();

/** A batch as the statement's column arrays; `text` turns a payload's bytes into its text. */
interface Columns {
  ids: string[];
  devices: string[];
  kinds: string[];
  tss: number[];
  topics: (string | null)[];
  payloads: string[];
}

function columns(records: readonly WireRecord[], text: (bytes: Uint8Array) => string): Columns {
  const n = records.length;
  const c: Columns = {
    ids: new Array(n),
    devices: new Array(n),
    kinds: new Array(n),
    tss: new Array(n),
    topics: new Array(n),
    payloads: new Array(n),
  };
  for (let k = 0; k < n; k++) {
    const r = records[k];
    c.ids[k] = r.id;
    c.devices[k] = r.device;
    c.kinds[k] = r.kind;
    c.tss[k] = Number(r.ts);
    c.topics[k] = r.topic === "" ? null : r.topic;
    c.payloads[k] = text(r.payload);
  }
  return c;
}

function createPgStore(sql: postgres.Sql, log: Logger, o: PgStoreOptions): HubStore {
  const heartbeatMs = o.heartbeatMs ?? HEARTBEAT_MS;
  const staleSeconds = o.replicaStaleSeconds ?? REPLICA_STALE_S;
  const db = drizzle({ client: sql });
  const replica = randomUUID();
  /** The generation under which this replica connected each edge. */
  const generations = new Map<string, number>();
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  let listening: { unlisten(): Promise<void> } | undefined;
  let horizon: { at: number; value: Promise<number> } | undefined;

  /**
   * The highest seq a reader may serve now: every record at or below it is committed or will
   * never be (its writer rolled back). Two statements, in this order: first the last number
   * handed out, then the lowest key of the writers still in flight.
   */
  async function computeHorizon(): Promise<number> {
    const [{ last }] = await sql`SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS last
      FROM records_seq`;
    const [{ low }] = await sql`SELECT min(((classid::int8 << 32) | objid::int8) - (28528::int8 << 48)) AS low
      FROM pg_locks
      WHERE locktype = 'advisory' AND objsubid = 1
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND classid::int8 >= ${KEY_CLASS_LOW}::int8 AND classid::int8 < ${KEY_CLASS_LOW + 65536}::int8`;
    return low === null ? Number(last) : Math.min(Number(last), Number(low));
  }

  function readHorizon(): Promise<number> {
    const now = Date.now();
    if (horizon === undefined || now - horizon.at > HORIZON_CACHE_MS) {
      const value = computeHorizon();
      horizon = { at: now, value };
      value.catch(() => {
        if (horizon?.value === value) horizon = undefined;
      });
    }
    return horizon.value;
  }

  const toPush = (r: typeof t.pushes.$inferSelect): Push => ({
    edge: r.edge,
    kind: r.kind as Push["kind"],
    version: r.version,
    body: r.body,
    createdAt: r.createdAt,
  });

  const live = dsql`EXISTS (SELECT 1 FROM hub_replicas r WHERE r.id = ${t.edges.replica}
    AND r.seen_at > now() - make_interval(secs => ${staleSeconds}))`;

  /**
   * One statement, one implicit transaction: register under the horizon lock before any number
   * is drawn, insert in outbox order, count what was new on the edge. Returns how many were new.
   */
  async function insertBatch(edge: string, c: Columns, now: number): Promise<number> {
    const [{ added }] = await sql`
      WITH registered AS (
        SELECT pg_advisory_xact_lock_shared((28528::int8 << 48) + last_value - 1) FROM records_seq
      ), inserted AS (
        INSERT INTO records (edge, id, device, kind, ts, topic, payload, received_at)
        SELECT ${edge}::text, u.id, u.device, u.kind, u.ts, u.topic, u.payload::json, ${now}::int8
        FROM unnest(${c.ids}::text[], ${c.devices}::text[], ${c.kinds}::text[], ${c.tss}::int8[],
          ${c.topics}::text[], ${c.payloads}::text[]) WITH ORDINALITY AS u(id, device, kind, ts, topic, payload, n)
        WHERE EXISTS (SELECT 1 FROM registered)
        ORDER BY u.n
        ON CONFLICT (edge, id) DO NOTHING
        RETURNING 1
      ), counted AS (
        UPDATE edges SET records = records + (SELECT count(*) FROM inserted), last_seen_at = ${now}::int8
        WHERE id = ${edge}::text
      )
      SELECT count(*)::int AS added FROM inserted`;
    return added;
  }

  const shared: SharedHub = {
    replica,
    async connectedEdges() {
      const rows = await db.select({ id: t.edges.id }).from(t.edges).where(
        and(eq(t.edges.connected, true), live),
      );
      return new Set(rows.map((r) => r.id));
    },
    async notify(message: ReplicaMessage) {
      await sql.notify(CHANNEL, JSON.stringify(message));
    },
    async listen(handler) {
      const beat = async () => {
        await sql`INSERT INTO hub_replicas (id) VALUES (${replica})
          ON CONFLICT (id) DO UPDATE SET seen_at = now()`;
      };
      await beat();
      heartbeat = setInterval(() => {
        beat().catch((error) =>
          log.warn("hub.store_unavailable", { error: errorMessage(error), what: "heartbeat" })
        );
      }, heartbeatMs);
      listening = await sql.listen(CHANNEL, (payload) => {
        let message: ReplicaMessage;
        try {
          message = JSON.parse(payload);
        } catch {
          return;
        }
        try {
          handler(message);
        } catch (error) {
          log.error("hub.store_listen_failed", { error: errorMessage(error) });
        }
      });
    },
  };

  return {
    kind: "postgres",
    shared,

    async registerEdges(ids) {
      await sql`INSERT INTO edges (id) SELECT unnest(${ids as string[]}::text[]) ON CONFLICT (id) DO NOTHING`;
      // Edges left marked by replicas that are gone.
      await sql`UPDATE edges SET connected = false WHERE connected AND NOT EXISTS (
        SELECT 1 FROM hub_replicas r WHERE r.id = edges.replica
          AND r.seen_at > now() - make_interval(secs => ${staleSeconds}))`;
    },

    async storeBatch(edge, records, now, onConflict) {
      if (records.length === 0) return 0;
      const n = records.length;
      // Payloads go as their text, unparsed: PostgreSQL checks each is JSON when it casts it. A
      // payload that is not JSON fails the statement (nothing stored), and the batch goes again
      // with such payloads wrapped as {"_raw": text}; only then are payloads parsed here.
      let c = columns(records, (bytes) => utf8.decode(bytes));
      let added: number;
      try {
        added = await insertBatch(edge, c, now);
      } catch (error) {
        if ((error as { code?: string }).code !== "22P02") throw error;
        c = columns(records, payloadText);
        added = await insertBatch(edge, c, now);
      }
      if (added < n) {
        // Some ids were held already: a resend (same content) or a conflict. Only then is
        // anything compared, in one statement.
        // A held payload is compared with this one's text as stored (wrapped if not JSON).
        const { ids, devices, kinds, tss, topics } = c;
        const payloads = records.map((r) => payloadText(r.payload));
        const conflicts = await sql`
          SELECT u.id FROM unnest(${ids}::text[], ${devices}::text[], ${kinds}::text[], ${tss}::int8[],
            ${topics}::text[], ${payloads}::text[]) AS u(id, device, kind, ts, topic, payload)
          JOIN records r ON r.edge = ${edge}::text AND r.id = u.id
          WHERE r.device <> u.device OR r.kind <> u.kind OR r.ts <> u.ts OR r.topic IS DISTINCT FROM u.topic
            OR r.payload::text <> u.payload`;
        if (conflicts.length > 0) {
          await sql`UPDATE edges SET conflicts = conflicts + ${conflicts.length}::int8 WHERE id = ${edge}::text`;
          onConflict?.(conflicts.map((r) => r.id as string));
        }
      }
      return added;
    },

    async setConnected(edge, connected, now) {
      if (connected) {
        const [row] = await sql`UPDATE edges SET connected = true, replica = ${replica}::text,
            generation = generation + 1, connected_at = ${now}::int8, last_seen_at = ${now}::int8
          WHERE id = ${edge}::text RETURNING generation`;
        if (row !== undefined) generations.set(edge, Number(row.generation));
        return;
      }
      const generation = generations.get(edge);
      generations.delete(edge);
      if (generation === undefined) return;
      // Fenced: a replica that took the edge since has bumped the generation.
      await sql`UPDATE edges SET connected = false, last_seen_at = ${now}::int8
        WHERE id = ${edge}::text AND replica = ${replica}::text AND generation = ${generation}::int8`;
    },

    async touch(edge, now) {
      await db.update(t.edges).set({ lastSeenAt: now }).where(eq(t.edges.id, edge));
    },

    async saveReport(edge, type, body, now) {
      await db.update(t.edges).set({
        reports: dsql`jsonb_set(${t.edges.reports}, ARRAY[${type}::text], ${JSON.stringify(body)}::jsonb)`,
        lastSeenAt: now,
      }).where(eq(t.edges.id, edge));
    },

    async edges() {
      const rows = await db.select({
        id: t.edges.id,
        connected: dsql<boolean>`${t.edges.connected} AND ${live}`,
        connectedAt: t.edges.connectedAt,
        lastSeenAt: t.edges.lastSeenAt,
        records: t.edges.records,
        conflicts: t.edges.conflicts,
        reports: t.edges.reports,
      }).from(t.edges).orderBy(asc(t.edges.id));
      return rows.map((r) => ({ ...r, reports: r.reports as Record<string, unknown> }));
    },

    async records({ edge, device, after, limit }) {
      const upTo = await readHorizon();
      if (upTo <= after) return [];
      const rows = await sql`
        SELECT seq, id, edge, device, kind, ts, topic, payload, received_at FROM records
        WHERE seq > ${after}::int8 AND seq <= ${upTo}::int8
          AND (${edge ?? null}::text IS NULL OR edge = ${edge ?? null}::text)
          AND (${device ?? null}::text IS NULL OR device = ${device ?? null}::text)
        ORDER BY seq LIMIT ${limit}::int8`;
      return rows.map((r): StoredRecord => ({
        seq: Number(r.seq),
        id: r.id,
        edge: r.edge,
        device: r.device,
        kind: r.kind,
        ts: Number(r.ts),
        topic: r.topic ?? null,
        payload: r.payload,
        receivedAt: Number(r.received_at),
      }));
    },

    async insertCommand(c) {
      await db.insert(t.commands).values({
        id: c.id,
        edge: c.edge,
        device: c.device,
        method: c.method,
        params: JSON.stringify(c.params),
        timeoutMs: c.timeoutMs,
        status: c.status,
        createdAt: c.createdAt,
      });
    },

    async settleCommand(id, edge, status, payload, now) {
      const rows = await db.update(t.commands).set({ status, payload, completedAt: now })
        .where(and(eq(t.commands.id, id), eq(t.commands.edge, edge))).returning({ id: t.commands.id });
      return rows.length > 0;
    },

    async command(id) {
      const [r] = await db.select().from(t.commands).where(eq(t.commands.id, id));
      if (r === undefined) return undefined;
      return {
        id: r.id,
        edge: r.edge,
        device: r.device,
        method: r.method,
        params: JSON.parse(r.params),
        timeoutMs: r.timeoutMs,
        status: r.status as never,
        payload: r.payload === null ? null : JSON.parse(r.payload),
        createdAt: r.createdAt,
        completedAt: r.completedAt ?? null,
      };
    },

    async savePush(p) {
      await db.insert(t.pushes).values(p).onConflictDoUpdate({
        target: [t.pushes.edge, t.pushes.kind],
        set: { version: p.version, body: p.body, createdAt: p.createdAt },
      });
    },

    async dropPush(edge, kind) {
      await db.delete(t.pushes).where(and(eq(t.pushes.edge, edge), eq(t.pushes.kind, kind)));
    },

    async pushesOf(edge) {
      return (await db.select().from(t.pushes).where(eq(t.pushes.edge, edge)).orderBy(asc(t.pushes.kind)))
        .map(toPush);
    },

    async pushes() {
      return (await db.select().from(t.pushes).orderBy(asc(t.pushes.edge), asc(t.pushes.kind))).map(toPush);
    },

    async deleteBefore(before, limit) {
      // The oldest first, through the primary key (seq follows arrival); one bounded statement.
      const result = await sql`DELETE FROM records WHERE seq IN (
        SELECT seq FROM records WHERE received_at < ${before}::int8 ORDER BY seq LIMIT ${limit}::int8)`;
      return result.count;
    },

    async insertOperation(op) {
      await sql.begin(async (tx) => {
        await tx`INSERT INTO operations (id, replica, edge, kind, version, status, request, body, created_at,
            updated_at)
          VALUES (${op.id}::text, ${replica}::text, ${op.edge}::text, ${op.kind}::text, ${op.version}::text, ${op.status}::text,
            ${op.request === undefined ? null : JSON.stringify(op.request)}::text, ${op.body}::text,
            ${op.createdAt}::int8, ${op.createdAt}::int8)`;
        await tx`DELETE FROM operations WHERE edge = ${op.edge}::text AND status IN ('successful', 'failed')
          AND id IN (SELECT id FROM operations WHERE edge = ${op.edge}::text
            ORDER BY created_at DESC, n DESC OFFSET ${OPERATIONS_KEPT_PER_EDGE}::int8)`;
      });
    },

    async updateOperation(id, edge, next, now) {
      const result = next.result === undefined ? null : JSON.stringify(next.result);
      const answer = next.answer ?? null;
      const r = await sql`UPDATE operations SET status = ${next.status}::text,
          reason = coalesce(${next.reason ?? null}::text, reason), result = coalesce(${result}::text, result),
          updated_at = ${now}::int8,
          body = CASE WHEN ${answer}::text IS NOT NULL THEN ${answer}::text
            WHEN ${next.status}::text IN ('successful', 'failed') THEN NULL ELSE body END
        WHERE id = ${id}::text AND edge = ${edge}::text AND status IN ('pending', 'executing')`;
      return r.count > 0;
    },

    async takeOperationAnswer(id) {
      // The row's old body, read and cleared in one statement.
      const [r] = await sql`UPDATE operations o SET body = NULL FROM (
          SELECT id, body FROM operations WHERE id = ${id}::text FOR UPDATE) old
        WHERE o.id = old.id AND o.status IN ('successful', 'failed') AND old.body IS NOT NULL
        RETURNING old.body`;
      return r === undefined ? null : r.body as string;
    },

    async operation(id) {
      const [r] = await sql`SELECT ${sql.unsafe(OPERATION_COLUMNS)} FROM operations WHERE id = ${id}::text`;
      return r === undefined ? undefined : toOperation(r);
    },

    async operationsOf(edge, limit) {
      return (await sql`SELECT ${sql.unsafe(OPERATION_COLUMNS)} FROM operations WHERE edge = ${edge}::text
        ORDER BY created_at DESC, n DESC LIMIT ${limit}::int8`).map(toOperation);
    },

    async openOperations(edge) {
      return (await sql`SELECT ${sql.unsafe(OPERATION_COLUMNS)}, body FROM operations
        WHERE edge = ${edge}::text AND status IN ('pending', 'executing') AND body IS NOT NULL
        ORDER BY created_at, n`).map((r) => ({ ...toOperation(r), body: r.body as string }));
    },

    async openOperationOf(edge, kind, version) {
      const [r] = await sql`SELECT ${sql.unsafe(OPERATION_COLUMNS)} FROM operations
        WHERE edge = ${edge}::text AND kind = ${kind}::text AND version = ${version}::text
          AND status IN ('pending', 'executing') ORDER BY created_at DESC, n DESC LIMIT 1`;
      return r === undefined ? undefined : toOperation(r);
    },

    async countOpenOperations(edge) {
      const [r] = await sql`SELECT count(*)::int AS n FROM operations
        WHERE edge = ${edge}::text AND status IN ('pending', 'executing')`;
      return Number(r.n);
    },

    async failOperations(kind, reason, now, createdBefore = Number.MAX_SAFE_INTEGER) {
      // Also those whose replica (where a logs request waits) is no longer alive.
      const orphaned = sql`(created_at < ${createdBefore}::int8 OR (replica IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM hub_replicas r WHERE r.id = operations.replica
          AND r.seen_at > now() - make_interval(secs => ${staleSeconds}))))`;
      return await sql.begin(async (tx) => {
        const failed =
          await tx`UPDATE operations SET status = 'failed', reason = ${reason}::text, body = NULL,
            updated_at = ${now}::int8
          WHERE kind = ${kind}::text AND status IN ('pending', 'executing') AND ${orphaned}
          RETURNING id`;
        await tx`UPDATE operations SET body = NULL WHERE kind = ${kind}::text
          AND status IN ('successful', 'failed') AND body IS NOT NULL AND ${orphaned}`;
        return failed.map((r) => r.id as string);
      }) as string[];
    },

    async supersedeOperations(edge, kind, newer, reason, now) {
      await sql`UPDATE operations SET status = 'failed', reason = ${reason}::text, body = NULL,
          updated_at = ${now}::int8
        WHERE edge = ${edge}::text AND kind = ${kind}::text AND status IN ('pending', 'executing')
          AND n < (SELECT n FROM operations WHERE id = ${newer}::text)`;
    },

    async close() {
      if (heartbeat) clearInterval(heartbeat);
      heartbeat = undefined;
      try {
        await listening?.unlisten();
        // A clean stop hands its edges back at once instead of waiting for the heartbeat to age.
        await sql`UPDATE edges SET connected = false WHERE replica = ${replica}::text`;
        await sql`DELETE FROM hub_replicas WHERE id = ${replica}::text`;
      } catch (error) {
        log.warn("hub.store_unavailable", { error: errorMessage(error), what: "stop" });
      }
      await sql.end({ timeout: 2 });
    },
  };
}
