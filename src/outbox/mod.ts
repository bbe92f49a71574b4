/**
 * The durable outbox: every accepted message waits here, oldest first, until the hub
 * acknowledges it. Invariants:
 * - `enqueue()` resolves only after the transaction holding its records has committed
 *   (group commit: every caller that arrives while a commit runs shares the next one).
 * - A record leaves only by `ack()` (delivered) or by `onFull: "drop-oldest"` (counted).
 * - Acknowledged deletes ride in the same transaction as the next inserts (one commit, one
 *   fsync, for both). A delete lost in a crash only means a resend, which the hub recognises.
 * - Group commit sizes itself by load: one transaction per event-loop turn holds everything that
 *   arrived meanwhile; a slow fsync (flash storage) makes turns, and so transactions, larger.
 * - `seq` never repeats (AUTOINCREMENT); with the store's random epoch it makes the record id
 *   the hub deduplicates on, stable across resends and restarts.
 * - Each distinct SQL text is prepared once (see src/db/mod.ts).
 */
import { asc, count, sql, sum } from "drizzle-orm";
import { randomBytes } from "node:crypto";
import { Buffer } from "node:buffer";
import { statfsSync } from "node:fs";
import { dirname } from "node:path";
import type { Message } from "../core/message.ts";
import { agentMigrations, type LocalDatabase, openDatabase, type Statement } from "../db/mod.ts";
import { meta, outbox } from "./tables.ts";
import { errorMessage } from "../core/errors.ts";

export interface OutboxRecord {
  seq: number;
  /** `<epoch>-<seq>`: unique per edge, stable across resends. */
  id: string;
  device: string;
  kind: string;
  ts: number;
  topic: string | null;
  /** JSON text. */
  payload: string;
  bytes: number;
  createdAt: number;
}

/** A record as the uplink sends it: the payload as its UTF-8 bytes, read as such from the store. */
export interface OutboxRecordBytes extends Omit<OutboxRecord, "payload"> {
  payload: Uint8Array;
}

export interface OutboxStats {
  depth: number;
  bytes: number;
  oldestAgeSeconds: number;
  dropped: number;
}

export interface OutboxOptions {
  /** The agent's database, opened and migrated by its owner (the agent), who also closes it. */
  db?: LocalDatabase;
  /** Without `db`: a database file the outbox opens, migrates and closes itself (tests, tools). */
  path?: string;
  maxBytes: number;
  onFull: "drop-oldest" | "reject";
  /**
   * Under `drop-oldest`, the outbox stops growing (new records replace the oldest) while the file
   * system holding it has less free space than this; 0 or absent: only `maxBytes` counts.
   */
  minFreeBytes?: number;
  synchronous?: "full" | "normal";
  now?: () => number;
  /** Called after records were dropped to make room (for logging and metrics). */
  /**
   * Called after each commit with the records it added (group commit: one commit per
   * transaction, however many callers it served).
   */
  onCommit?: (added: number) => void;
  onDropped?: (n: number) => void;
  /** Called when a background step fails (the data stays safe; this is for the operator). */
  onError?: (
    event: "outbox.listener_failed" | "outbox.statfs_failed" | "outbox.ack_failed",
    error: unknown,
  ) => void;
}

/** The outbox is full and `onFull` is `reject`: the caller answers 507 or withholds its ack. */
export class OutboxFullError extends Error {
  constructor(message = "Outbox is full") {
    super(message);
    this.name = "OutboxFullError";
  }
}

/** The outbox was closed (the agent is stopping): nothing was stored. */
export class OutboxClosedError extends Error {
  constructor() {
    super("Outbox is closed");
    this.name = "OutboxClosedError";
  }
}

/**
 * The file system holding the outbox is full (SQLITE_FULL, ENOSPC): nothing of the transaction
 * was stored. A kind of `OutboxFullError`, so callers answer 507 or withhold their ack.
 */
export class StorageFullError extends OutboxFullError {
  constructor(detail: string) {
    super(`storage full: ${detail}`);
    this.name = "StorageFullError";
  }
}

/** True for the errors a full disk gives (SQLite's SQLITE_FULL, a file system's ENOSPC/EDQUOT). */
export function isDiskFull(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown } | undefined;
  if (e === undefined || e === null) return false;
  const code = typeof e.code === "string" ? e.code : "";
  if (code === "SQLITE_FULL" || code === "ENOSPC" || code === "EDQUOT") return true;
  const message = typeof e.message === "string" ? e.message : "";
  return /database or disk is full|no space left on device|disk quota exceeded/i.test(message);
}

/** How often (at most) the free space is read, and after how many new bytes at the latest. */
const FREE_CHECK_MS = 1000;
const FREE_CHECK_BYTES = 1024 * 1024;

/** Options of `enqueue()`. */
export interface EnqueueOptions {
  /**
   * Runs inside the transaction that stores these records, on the outbox's connection, also when
   * there are none: a caller's own bookkeeping then commits atomically with its records (e.g. the
   * MQTT transports' memory of which publishes they stored). Must not throw.
   */
  inTransaction?: () => void;
  /**
   * Called, synchronously, when these records are not stored after all (refused as full, a failed
   * transaction, a closed outbox), before the promise rejects: the caller undoes what it did in
   * anticipation (the rule state, src/rules/engine.ts). Refusals come last-first: the groups of a
   * transaction are refused as a suffix, in reverse order of their `enqueue()` calls, and a
   * refused group's callback runs before any accepted group's `inTransaction`. Must not throw.
   */
  onRefused?: () => void;
}

interface Pending {
  rows: PreparedRow[];
  inTransaction?: () => void;
  onRefused?: () => void;
  /** onRefused has run. */
  undone?: boolean;
  bytes: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

type ClaimRow = [number, string, string, number, string | null, string | Uint8Array, number, number];

interface PreparedRow {
  device: string;
  kind: string;
  ts: number;
  topic: string | null;
  payload: string;
  bytes: number;
}

const INSERT_HEAD = "INSERT INTO outbox (device, kind, ts, topic, payload, bytes, created_at)";

/** Fixed per-record overhead counted against `maxBytes` (row header, index entry). */
const ROW_OVERHEAD = 48;

export function recordBytes(device: string, topic: string | null | undefined, payload: string): number {
  return Buffer.byteLength(payload) + device.length + (topic?.length ?? 0) + ROW_OVERHEAD;
}

export class Outbox {
  readonly db: LocalDatabase;
  private readonly ownsDb: boolean;
  readonly epoch: string;
  private readonly options: OutboxOptions;
  private readonly now: () => number;
  private pending: Pending[] = [];
  private flushScheduled = false;
  private depth = 0;
  private totalBytes = 0;
  private dropped = 0;
  private listeners = new Set<() => void>();
  private closed = false;
  private ackFrom: [number, number][] = [];
  private ackWaiters: (() => void)[] = [];
  /** The last free-space reading: bytes free, when, and the outbox's bytes then. */
  private free = { bytes: Infinity, at: -Infinity, outboxBytes: 0, failed: false };

  private readonly q;
  private readonly claimStatement;

  /** The configured capacity (`outbox.maxBytes`). */
  get maxBytes(): number {
    return this.options.maxBytes;
  }
  private readonly claimBytesStatement;

  constructor(options: OutboxOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
    this.ownsDb = options.db === undefined;
    this.db = options.db ??
      openDatabase(options.path!, { migrations: agentMigrations, synchronous: options.synchronous });
    const orm = this.db.orm;
    const p = sql.placeholder;
    this.q = {
      totals: orm.select({ n: count(), bytes: sum(outbox.bytes) }).from(outbox).prepare(),
      oldest: orm.select({ createdAt: outbox.createdAt }).from(outbox).orderBy(asc(outbox.seq)).limit(1)
        .prepare(),
      getMeta: orm.select({ value: meta.value }).from(meta).where(sql`${meta.key} = ${p("key")}`).prepare(),
      setMeta: orm.insert(meta).values({ key: p("key"), value: p("value") }).onConflictDoUpdate({
        target: meta.key,
        set: { value: sql`excluded.value` },
      }).prepare(),
    };
    this.claimStatement = this.db.prepare(
      "SELECT seq, device, kind, ts, topic, payload, bytes, created_at FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
    ).raw(true);
    this.claimBytesStatement = this.db.prepare(
      "SELECT seq, device, kind, ts, topic, CAST(payload AS BLOB), bytes, created_at FROM outbox " +
        "WHERE seq > ? ORDER BY seq LIMIT ?",
    ).raw(true);
    this.epoch = this.metaGet("epoch") ?? this.initEpoch();
    this.dropped = Number(this.metaGet("dropped") ?? 0);
    const totals = this.q.totals.get() as { n: number; bytes: number | string | null };
    this.depth = totals.n;
    this.totalBytes = Number(totals.bytes ?? 0);
  }

  private metaGet(key: string): string | undefined {
    return (this.q.getMeta.get({ key }) as { value: string } | undefined)?.value;
  }

  private metaSet(key: string, value: string): void {
    this.q.setMeta.run({ key, value });
  }

  private initEpoch(): string {
    const epoch = randomBytes(6).toString("hex");
    this.db.transaction(() => this.metaSet("epoch", epoch));
    return epoch;
  }

  /** Stores messages durably; resolves after commit. Rejects with `OutboxFullError` when full under `reject`. */
  enqueue(messages: readonly Message[], options: EnqueueOptions = {}): Promise<void> {
    if (this.closed) {
      options.onRefused?.();
      return Promise.reject(new OutboxClosedError());
    }
    if (messages.length === 0 && !options.inTransaction) return Promise.resolve();
    const rows: PreparedRow[] = new Array(messages.length);
    let bytes = 0;
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i];
      const payload = JSON.stringify(m.payload);
      const topic = m.topic ?? null;
      const b = recordBytes(m.device, topic, payload);
      bytes += b;
      rows[i] = { device: m.device, kind: m.kind, ts: m.ts, topic, payload, bytes: b };
    }
    return new Promise((resolve, reject) => {
      this.pending.push({
        rows,
        bytes,
        resolve,
        reject,
        inTransaction: options.inTransaction,
        onRefused: options.onRefused,
      });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /**
   * One transaction for everything that arrived since the last one: the acknowledged deletes
   * first (they make room), then every group's records (one multi-row INSERT run for all of them)
   * and their `inTransaction` callbacks.
   */
  private flush(): void {
    this.flushScheduled = false;
    const groups = this.pending;
    const ranges = this.ackFrom;
    const ackWaiters = this.ackWaiters;
    this.pending = [];
    this.ackFrom = [];
    this.ackWaiters = [];
    if (groups.length === 0 && ranges.length === 0) return;
    if (this.closed) {
      for (const w of ackWaiters) w();
      return;
    }
    const accepted: Pending[] = [];
    const refused: Pending[] = [];
    let added = 0;
    let addedBytes = 0;
    let droppedNow = 0;
    let droppedBytes = 0;
    let acked = { n: 0, bytes: 0 };
    const cap = groups.length > 0 ? this.capacity() : this.options.maxBytes;
    try {
      this.db.transaction(() => {
        acked = this.deleteRanges(ranges);
        const createdAt = this.now();
        const base = this.totalBytes - acked.bytes;
        let rows: PreparedRow[] = [];
        for (const group of groups) {
          // Once one group is refused, every later one is too: callers' state computed after the
          // refused group (rule state) would not hold, and a device's order is kept.
          if (refused.length > 0 || group.bytes > this.options.maxBytes) {
            refused.push(group);
            continue;
          }
          const wouldBe = base + addedBytes - droppedBytes + group.bytes;
          if (group.bytes > 0 && wouldBe > cap) {
            if (this.options.onFull === "reject") {
              refused.push(group);
              continue;
            }
            // The oldest may be records of this very transaction: store what is waiting first.
            this.insertRows(rows, createdAt);
            rows = [];
            const freed = this.dropOldest(wouldBe - cap);
            droppedNow += freed.n;
            droppedBytes += freed.bytes;
          }
          for (const r of group.rows) rows.push(r);
          added += group.rows.length;
          addedBytes += group.bytes;
          accepted.push(group);
        }
        this.insertRows(rows, createdAt);
        undo(refused);
        for (const group of accepted) group.inTransaction?.();
        if (droppedNow > 0) this.metaSet("dropped", String(this.dropped + droppedNow));
      });
    } catch (error) {
      const failure = isDiskFull(error)
        ? new StorageFullError(
          `${errorMessage(error)} (the outbox holds ${this.totalBytes} bytes in ${this.depth} records; ` +
            `free disk space or set outbox.minFreeBytes with onFull "drop-oldest")`,
        )
        : error;
      undo(groups);
      for (const g of groups) g.reject(failure);
      // The deletes must not wait on inserts that fail (a full disk, say): alone, they may pass.
      if (ranges.length > 0) this.flushAcks(ranges, ackWaiters);
      return;
    }
    this.options.onCommit?.(added);
    this.depth += added - droppedNow - acked.n;
    this.totalBytes += addedBytes - droppedBytes - acked.bytes;
    if (droppedNow > 0) {
      this.dropped += droppedNow;
      this.options.onDropped?.(droppedNow);
    }
    for (const w of ackWaiters) w();
    for (const g of accepted) g.resolve();
    for (const g of refused) {
      g.reject(
        new OutboxFullError(
          g.bytes > this.options.maxBytes
            ? `Message batch of ${g.bytes} bytes is larger than the outbox (${this.options.maxBytes} bytes)`
            : `Outbox is full (${this.totalBytes} of ${this.options.maxBytes} bytes)`,
        ),
      );
    }
    if (added > 0) {
      for (const listener of this.listeners) {
        try {
          listener();
        } catch (error) {
          this.options.onError?.("outbox.listener_failed", error);
        }
      }
    }
  }

  /**
   * The bytes the outbox may hold now: `maxBytes`, or under `drop-oldest` with `minFreeBytes`
   * less when the file system runs short: what it holds plus the free space above
   * `minFreeBytes` (so at worst it stops growing and new records replace the oldest; rows deleted
   * leave pages SQLite reuses). The free space is read at most once per `FREE_CHECK_MS`, or after
   * `FREE_CHECK_BYTES` of growth, and estimated in between.
   */
  private capacity(): number {
    const max = this.options.maxBytes;
    const minFree = this.options.minFreeBytes ?? 0;
    if (this.options.onFull !== "drop-oldest" || minFree <= 0 || this.db.path === ":memory:") return max;
    const t = this.now();
    const f = this.free;
    if (t - f.at >= FREE_CHECK_MS || this.totalBytes - f.outboxBytes >= FREE_CHECK_BYTES) {
      f.at = t;
      f.outboxBytes = this.totalBytes;
      try {
        const s = statfsSync(dirname(this.db.path));
        f.bytes = Number(s.bavail) * Number(s.bsize);
        f.failed = false;
      } catch (error) {
        if (!f.failed) this.options.onError?.("outbox.statfs_failed", error);
        f.failed = true;
        f.bytes = Infinity;
      }
    }
    const free = f.bytes - Math.max(0, this.totalBytes - f.outboxBytes);
    if (free >= minFree + max) return max;
    return Math.min(max, this.totalBytes + Math.max(0, free - minFree));
  }

  /** Deletes acknowledged ranges (inside a transaction); how many records and bytes went. */
  private deleteRanges(ranges: readonly [number, number][]): { n: number; bytes: number } {
    if (ranges.length === 0) return { n: 0, bytes: 0 };
    // An aggregate and a plain DELETE: no row per deleted record crosses into JavaScript.
    const measure = this.db.prepare(
      "SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS bytes FROM outbox WHERE seq BETWEEN ? AND ?",
    ).raw(true);
    const del = this.db.prepare("DELETE FROM outbox WHERE seq BETWEEN ? AND ?");
    let n = 0;
    let bytes = 0;
    for (const [a, b] of ranges) {
      const row = measure.get(a, b) as [number, number];
      if (row[0] === 0) continue;
      n += row[0];
      bytes += row[1];
      del.run(a, b);
    }
    return { n, bytes };
  }

  /** Inserts rows with multi-row INSERTs (`LocalDatabase.insertRows`). */
  private insertRows(rows: readonly PreparedRow[], createdAt: number): void {
    const values: unknown[] = new Array(rows.length * 7);
    for (let k = 0; k < rows.length; k++) {
      const r = rows[k];
      const o = k * 7;
      values[o] = r.device;
      values[o + 1] = r.kind;
      values[o + 2] = r.ts;
      values[o + 3] = r.topic;
      values[o + 4] = r.payload;
      values[o + 5] = r.bytes;
      values[o + 6] = createdAt;
    }
    this.db.insertRows(INSERT_HEAD, 7, values);
  }

  /** Deletes the oldest records until at least `need` bytes are free; inside a transaction. */
  private dropOldest(need: number): { n: number; bytes: number } {
    const pick = this.db.prepare("SELECT seq, bytes FROM outbox ORDER BY seq LIMIT 512");
    const del = this.db.prepare("DELETE FROM outbox WHERE seq <= ?");
    let n = 0;
    let bytes = 0;
    while (bytes < need) {
      const rows = pick.all() as { seq: number; bytes: number }[];
      if (rows.length === 0) break;
      let last = 0;
      for (const r of rows) {
        n++;
        bytes += r.bytes;
        last = r.seq;
        if (bytes >= need) break;
      }
      del.run(last);
    }
    return { n, bytes };
  }

  /** The oldest records after `afterSeq`, at most `limit` of them and about `maxBytes` (at least one). */
  claim(afterSeq: number, limit: number, maxBytes = Infinity): OutboxRecord[] {
    return this.read<string>(this.claimStatement, afterSeq, limit, maxBytes);
  }

  /**
   * `claim()` with each payload as its UTF-8 bytes, straight from SQLite (`CAST(… AS BLOB)`): what
   * the uplink puts on the wire, without a string and a re-encoding per record.
   */
  claimBytes(afterSeq: number, limit: number, maxBytes = Infinity): OutboxRecordBytes[] {
    return this.read<Uint8Array>(this.claimBytesStatement, afterSeq, limit, maxBytes);
  }

  private read<P extends string | Uint8Array>(
    statement: Statement,
    afterSeq: number,
    limit: number,
    maxBytes: number,
  ): (Omit<OutboxRecord, "payload"> & { payload: P })[] {
    // A raw statement returning arrays: this runs for every batch sent, and drizzle's per-row
    // mapping cost more than the query.
    const rows = statement.all(afterSeq, limit) as unknown as ClaimRow[];
    const out: (Omit<OutboxRecord, "payload"> & { payload: P })[] = [];
    let bytes = 0;
    for (const r of rows) {
      const b = r[6];
      if (out.length > 0 && bytes + b > maxBytes) break;
      bytes += b;
      out.push({
        seq: r[0],
        id: `${this.epoch}-${r[0]}`,
        device: r[1],
        kind: r[2],
        ts: r[3],
        topic: r[4],
        payload: r[5] as P,
        bytes: b,
        createdAt: r[7],
      });
    }
    return out;
  }

  /**
   * Deletes the records `firstSeq..lastSeq` (inclusive) once the hub has acknowledged them.
   * Acks arriving together share one transaction, with the inserts waiting then if any; the
   * promise resolves after it commits.
   */
  ack(firstSeq: number, lastSeq: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.ackFrom.push([firstSeq, lastSeq]);
    return new Promise((resolve) => {
      this.ackWaiters.push(resolve);
      this.schedule();
    });
  }

  /** Deletes acknowledged ranges in a transaction of their own. */
  private flushAcks(ranges: [number, number][], waiters: (() => void)[]): void {
    try {
      const gone = this.db.transaction(() => this.deleteRanges(ranges));
      this.depth -= gone.n;
      this.totalBytes -= gone.bytes;
    } catch (error) {
      // The records stay and are sent again after the next reconnect; the hub stores each once.
      this.options.onError?.("outbox.ack_failed", error);
    }
    for (const w of waiters) w();
  }

  /** The oldest `limit` records, read-only (for the control API). */
  peek(limit: number): OutboxRecord[] {
    return this.claim(0, limit);
  }

  stats(): OutboxStats {
    const oldest = this.depth > 0 ? (this.q.oldest.get() as { createdAt: number } | undefined) : undefined;
    return {
      depth: this.depth,
      bytes: this.totalBytes,
      oldestAgeSeconds: oldest ? Math.max(0, Math.round((this.now() - oldest.createdAt) / 1000)) : 0,
      dropped: this.dropped,
    };
  }

  /** Calls `listener` after every commit that added records; returns an unsubscribe function. */
  onData(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Flushes what is pending; closes the database if the outbox opened it. Idempotent. */
  close(): void {
    if (this.closed) return;
    if (this.pending.length > 0 || this.ackFrom.length > 0) this.flush();
    this.closed = true;
    this.listeners.clear();
    if (this.ownsDb) this.db.close();
  }
}

/** Calls the groups' `onRefused` once each, last group first. */
function undo(groups: readonly Pending[]): void {
  for (let i = groups.length - 1; i >= 0; i--) {
    const g = groups[i];
    if (g.undone) continue;
    g.undone = true;
    g.onRefused?.();
  }
}

export function createOutbox(options: OutboxOptions): Outbox {
  return new Outbox(options);
}
