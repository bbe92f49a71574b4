/**
 * The durable outbox: every accepted message waits here, oldest first, until the hub
 * acknowledges it. Invariants:
 * - `enqueue()` resolves only after the transaction holding its records has committed
 *   (group commit: every caller that arrives while a commit runs shares the next one).
 * - Records are stored as the hub link sends them: a transaction's records become groups of at
 *   most `groupRecords` records and `groupBytes` counted bytes (a larger record is a group alone),
 *   one row each, holding the records encoded as on the wire (src/proto/records_codec.ts). The
 *   uplink sends whole groups as they are (`claimGroups`), an ack deletes whole groups, and
 *   `drop-oldest` drops whole groups. People and tests read decoded records (`peek`, `claim`).
 * - A record leaves only by `ack()` (delivered) or by `onFull: "drop-oldest"` (counted).
 * - Acknowledged deletes ride in the same transaction as the next inserts (one commit, one
 *   fsync, for both). A delete lost in a crash only means a resend, which the hub recognises.
 * - Group commit sizes itself by load: one transaction per event-loop turn holds everything that
 *   arrived meanwhile; a slow fsync (flash storage) makes turns, and so transactions, larger.
 * - `seq` goes up by one per stored record, in commit order, and never repeats: not across
 *   restarts, nor after everything was acknowledged or dropped (AUTOINCREMENT keeps the highest
 *   ever stored; a failed transaction's seqs are used again, as nothing saw them). With the
 *   store's random epoch it makes the record id `<epoch>-<seq>` the hub deduplicates on, stable
 *   across resends and restarts; seq order is the order records are sent in.
 * - Records an older version stored one row each (the `outbox` table) are converted into groups
 *   when the outbox opens, keeping their seqs, ids and times, before anything new is stored.
 * - Each distinct SQL text is prepared once (see src/db/mod.ts).
 */
import { sql } from "drizzle-orm";
import { randomBytes } from "node:crypto";
import { Buffer } from "node:buffer";
import { statfsSync } from "node:fs";
import { dirname } from "node:path";
import type { Message } from "../core/message.ts";
import { agentMigrations, type LocalDatabase, openDatabase } from "../db/mod.ts";
import { decodeRecords, encodeRecords, type PreparedRecord, prepareRecord } from "../proto/mod.ts";
import { meta } from "./tables.ts";
import { errorMessage } from "../core/errors.ts";

/** A record decoded for people (the control API) and tests. */
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

/** A stored group: the records `seq - n + 1 … seq`, committed together, encoded as on the wire. */
export interface OutboxGroup {
  /** The seq of its last record. */
  seq: number;
  /** How many records it holds. */
  n: number;
  /** What its records count against `maxBytes`. */
  bytes: number;
  createdAt: number;
  /** The records as `Record records = 2` fields of a Batch, end to end (src/proto/records_codec.ts). */
  records: Uint8Array;
}

/** What `claimGroups` found. */
export interface ClaimedGroups {
  groups: OutboxGroup[];
  /** A next group exists and did not fit the limits: the caller's batch is as full as it gets. */
  full: boolean;
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
  /**
   * Records per stored group at most (default 128); `limitGroups` lowers it to the uplink's batch
   * size, so that a batch always takes whole groups.
   */
  groupRecords?: number;
  /** Counted bytes per stored group at most (default 128 KiB); a larger record is a group alone. */
  groupBytes?: number;
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
  records: PreparedRecord[];
  inTransaction?: () => void;
  onRefused?: () => void;
  /** onRefused has run. */
  undone?: boolean;
  bytes: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** A group's row without its records: seq, n, bytes, created_at. */
type GroupRow = [number, number, number, number];

/** Fixed per-record overhead counted against `maxBytes` (row header, index entry). */
const ROW_OVERHEAD = 48;

const GROUP_RECORDS = 128;
const GROUP_BYTES = 128 * 1024;
/** Groups read per query when decoding for people, and dropped per step by `drop-oldest`. */
const PAGE_GROUPS = 64;
/** Old one-row-per-record rows converted per transaction at open. */
const CONVERT_ROWS = 4096;

export function recordBytes(device: string, topic: string | null | undefined, payload: string): number {
  return Buffer.byteLength(payload) + device.length + (topic?.length ?? 0) + ROW_OVERHEAD;
}

/** `recordBytes` of a prepared record (its lengths are measured already). */
function countedBytes(r: PreparedRecord): number {
  return r.payloadLength + r.device.length + r.topic.length + ROW_OVERHEAD;
}

export class Outbox {
  readonly db: LocalDatabase;
  private readonly ownsDb: boolean;
  readonly epoch: string;
  /** `<epoch>-`: every record id starts with it. */
  private readonly idPrefix: string;
  private readonly options: OutboxOptions;
  private readonly now: () => number;
  private pending: Pending[] = [];
  private flushScheduled = false;
  private depth = 0;
  private totalBytes = 0;
  private dropped = 0;
  /** The seq the next stored record gets. */
  private nextSeq = 1;
  private groupRecords: number;
  private groupBytes: number;
  private listeners = new Set<() => void>();
  private closed = false;
  private ackFrom: [number, number][] = [];
  private ackWaiters: (() => void)[] = [];
  /** The last free-space reading: bytes free, when, and the outbox's bytes then. */
  private free = { bytes: Infinity, at: -Infinity, outboxBytes: 0, failed: false };

  private readonly q;
  /** Every prepared statement of the outbox (raw ones return arrays: no per-row mapping). */
  private readonly s;

  /** The configured capacity (`outbox.maxBytes`). */
  get maxBytes(): number {
    return this.options.maxBytes;
  }

  constructor(options: OutboxOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
    this.groupRecords = Math.max(1, options.groupRecords ?? GROUP_RECORDS);
    this.groupBytes = Math.max(1, options.groupBytes ?? GROUP_BYTES);
    this.ownsDb = options.db === undefined;
    this.db = options.db ??
      openDatabase(options.path!, { migrations: agentMigrations, synchronous: options.synchronous });
    const orm = this.db.orm;
    const p = sql.placeholder;
    this.q = {
      getMeta: orm.select({ value: meta.value }).from(meta).where(sql`${meta.key} = ${p("key")}`).prepare(),
      setMeta: orm.insert(meta).values({ key: p("key"), value: p("value") }).onConflictDoUpdate({
        target: meta.key,
        set: { value: sql`excluded.value` },
      }).prepare(),
    };
    const db = this.db;
    this.s = {
      /** Records, bytes, the highest seq ever stored, and whether the old table is still there. */
      state: db.prepare(
        "SELECT (SELECT COALESCE(SUM(n), 0) FROM outbox_groups), " +
          "(SELECT COALESCE(SUM(bytes), 0) FROM outbox_groups), " +
          "(SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'outbox_groups'), " +
          "(SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'outbox')",
      ).raw(true),
      /** Groups after a seq, oldest first, without their records (the blob is never read). */
      groups: db.prepare(
        "SELECT seq, n, bytes, created_at FROM outbox_groups WHERE seq > ? ORDER BY seq LIMIT ?",
      ).raw(true),
      /** The records of the groups in a range of seqs, oldest first. */
      records: db.prepare(
        "SELECT records FROM outbox_groups WHERE seq > ? AND seq <= ? ORDER BY seq",
      ).raw(true),
      insert: db.prepare(
        "INSERT INTO outbox_groups (seq, n, bytes, created_at, records) VALUES (?, ?, ?, ?, ?)",
      ),
      measure: db.prepare(
        "SELECT COALESCE(SUM(n), 0), COALESCE(SUM(bytes), 0) FROM outbox_groups " +
          "WHERE seq BETWEEN ? AND ? AND seq - n + 1 >= ?",
      ).raw(true),
      deleteRange: db.prepare("DELETE FROM outbox_groups WHERE seq BETWEEN ? AND ? AND seq - n + 1 >= ?"),
      deleteUpTo: db.prepare("DELETE FROM outbox_groups WHERE seq <= ?"),
    };
    this.epoch = this.metaGet("epoch") ?? this.initEpoch();
    this.idPrefix = `${this.epoch}-`;
    this.dropped = Number(this.metaGet("dropped") ?? 0);
    if (this.readState()[3] > 0) this.convertOldTable();
    const [n, bytes, lastSeq] = this.readState();
    this.depth = n;
    this.totalBytes = bytes;
    this.nextSeq = lastSeq + 1;
  }

  private readState(): [number, number, number, number] {
    return (this.s.state.get() as number[]).map(Number) as [number, number, number, number];
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

  /**
   * Converts what an older version stored, one row per record in the `outbox` table, into groups
   * (records of one commit with consecutive seqs), keeping each record's seq, id and time, then
   * drops that table. Each step moves rows in one transaction: a crash in between leaves the rest
   * for the next start, in order, and the seqs carry on after the old table's (migration 0008).
   */
  private convertOldTable(): void {
    const read = this.db.prepare(
      "SELECT seq, device, kind, ts, topic, payload, created_at FROM outbox ORDER BY seq LIMIT ?",
    ).raw(true);
    const remove = this.db.prepare("DELETE FROM outbox WHERE seq <= ?");
    for (;;) {
      const rows = read.all(CONVERT_ROWS) as [
        number,
        string,
        string,
        number,
        string | null,
        string,
        number,
      ][];
      if (rows.length === 0) break;
      this.db.transaction(() => {
        let k = 0;
        while (k < rows.length) {
          const first = rows[k][0];
          const createdAt = rows[k][6];
          const group: PreparedRecord[] = [];
          let bytes = 0;
          while (k < rows.length && group.length < this.groupRecords) {
            const [seq, device, kind, ts, topic, payload, at] = rows[k];
            if (group.length > 0 && (seq !== first + group.length || at !== createdAt)) break;
            const record = prepareRecord(device, kind, ts, topic, payload);
            const b = countedBytes(record);
            if (group.length > 0 && bytes + b > this.groupBytes) break;
            group.push(record);
            bytes += b;
            k++;
          }
          const records = encodeRecords(group, 0, group.length, this.idPrefix, first);
          this.s.insert.run(first + group.length - 1, group.length, bytes, createdAt, records);
        }
        remove.run(rows[rows.length - 1][0]);
      });
    }
    this.db.transaction(() => this.db.raw.exec("DROP TABLE outbox"));
  }

  /**
   * Stores no group larger than this from now on: the uplink's batch limits, so that a batch can
   * always be made of whole groups.
   */
  limitGroups(records: number, bytes: number): void {
    this.groupRecords = Math.max(1, Math.min(this.groupRecords, records));
    this.groupBytes = Math.max(1, Math.min(this.groupBytes, bytes));
  }

  /** Stores messages durably; resolves after commit. Rejects with `OutboxFullError` when full under `reject`. */
  enqueue(messages: readonly Message[], options: EnqueueOptions = {}): Promise<void> {
    if (this.closed) {
      options.onRefused?.();
      return Promise.reject(new OutboxClosedError());
    }
    if (messages.length === 0 && !options.inTransaction) return Promise.resolve();
    const records: PreparedRecord[] = new Array(messages.length);
    let bytes = 0;
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i];
      const payload = JSON.stringify(m.payload);
      if (typeof payload !== "string") {
        options.onRefused?.();
        return Promise.reject(new TypeError(`A message's payload is not JSON (device "${m.device}")`));
      }
      const record = prepareRecord(m.device, m.kind, m.ts, m.topic, payload);
      bytes += countedBytes(record);
      records[i] = record;
    }
    return new Promise((resolve, reject) => {
      this.pending.push({
        records,
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
   * first (they make room), then every group's records (as few rows as the group limits allow)
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
    const firstSeq = this.nextSeq;
    try {
      this.db.transaction(() => {
        acked = this.deleteRanges(ranges);
        const createdAt = this.now();
        const base = this.totalBytes - acked.bytes;
        let records: PreparedRecord[] = [];
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
            this.store(records, createdAt);
            records = [];
            const freed = this.dropOldest(wouldBe - cap);
            droppedNow += freed.n;
            droppedBytes += freed.bytes;
          }
          for (const r of group.records) records.push(r);
          added += group.records.length;
          addedBytes += group.bytes;
          accepted.push(group);
        }
        this.store(records, createdAt);
        undo(refused);
        for (const group of accepted) group.inTransaction?.();
        if (droppedNow > 0) this.metaSet("dropped", String(this.dropped + droppedNow));
      });
    } catch (error) {
      // Nothing of it was stored, and no one saw its seqs.
      this.nextSeq = firstSeq;
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
   * Stores records (inside a transaction) as groups of at most `groupRecords` records and
   * `groupBytes` counted bytes, numbered from `nextSeq` on: one row, one encoding pass each.
   */
  private store(records: readonly PreparedRecord[], createdAt: number): void {
    let from = 0;
    while (from < records.length) {
      let to = from;
      let bytes = 0;
      while (to < records.length && to - from < this.groupRecords) {
        const b = countedBytes(records[to]);
        if (to > from && bytes + b > this.groupBytes) break;
        bytes += b;
        to++;
      }
      const first = this.nextSeq;
      const last = first + (to - from) - 1;
      this.s.insert.run(
        last,
        to - from,
        bytes,
        createdAt,
        encodeRecords(records, from, to, this.idPrefix, first),
      );
      this.nextSeq = last + 1;
      from = to;
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

  /**
   * Deletes the groups lying wholly in the acknowledged ranges (inside a transaction); how many
   * records and bytes went. The uplink sends whole groups, so a batch's range covers each of its
   * groups; a group only partly in a range stays (and is sent again: at least once, never lost).
   */
  private deleteRanges(ranges: readonly [number, number][]): { n: number; bytes: number } {
    if (ranges.length === 0) return { n: 0, bytes: 0 };
    let n = 0;
    let bytes = 0;
    for (const [a, b] of ranges) {
      // An aggregate and a plain DELETE: no row per deleted group crosses into JavaScript.
      const row = this.s.measure.get(a, b, a) as [number, number];
      if (row[0] === 0) continue;
      n += row[0];
      bytes += row[1];
      this.s.deleteRange.run(a, b, a);
    }
    return { n, bytes };
  }

  /** Deletes the oldest groups until at least `need` bytes are free; inside a transaction. */
  private dropOldest(need: number): { n: number; bytes: number } {
    let n = 0;
    let bytes = 0;
    while (bytes < need) {
      const rows = this.s.groups.all(0, PAGE_GROUPS) as GroupRow[];
      if (rows.length === 0) break;
      let last = 0;
      for (const r of rows) {
        n += r[1];
        bytes += r[2];
        last = r[0];
        if (bytes >= need) break;
      }
      this.s.deleteUpTo.run(last);
    }
    return { n, bytes };
  }

  /**
   * The oldest groups after `afterSeq` (the last seq a caller has), as stored: at most
   * `maxRecords` records and `maxBytes` counted bytes in all, whole groups only, and with
   * `atLeastOne` the first group whatever its size (a group larger than the limits goes alone).
   */
  claimGroups(afterSeq: number, maxRecords: number, maxBytes: number, atLeastOne = true): ClaimedGroups {
    // Each group holds a record at least: more rows than records could not fit.
    const rows = this.s.groups.all(afterSeq, Math.min(Math.max(maxRecords, 1), 4096) + 1) as GroupRow[];
    let n = 0;
    let bytes = 0;
    let taken = 0;
    let full = false;
    for (const r of rows) {
      if ((taken > 0 || !atLeastOne) && (n + r[1] > maxRecords || bytes + r[2] > maxBytes)) {
        full = true;
        break;
      }
      n += r[1];
      bytes += r[2];
      taken++;
    }
    if (taken === 0) return { groups: [], full };
    const blobs = this.s.records.all(afterSeq, rows[taken - 1][0]) as [Uint8Array][];
    if (blobs.length !== taken) {
      throw new Error(`outbox changed while claimed (${blobs.length} of ${taken} groups)`);
    }
    const groups: OutboxGroup[] = new Array(taken);
    for (let k = 0; k < taken; k++) {
      const r = rows[k];
      groups[k] = { seq: r[0], n: r[1], bytes: r[2], createdAt: r[3], records: blobs[k][0] };
    }
    return { groups, full };
  }

  /** The oldest `limit` records after `afterSeq`, decoded (for people and tests; the uplink sends groups). */
  claim(afterSeq: number, limit: number): OutboxRecord[] {
    const out: OutboxRecord[] = [];
    let after = afterSeq;
    while (out.length < limit) {
      const rows = this.s.groups.all(after, PAGE_GROUPS) as GroupRow[];
      if (rows.length === 0) break;
      const last = rows[rows.length - 1][0];
      const blobs = this.s.records.all(after, last) as [Uint8Array][];
      for (let k = 0; k < rows.length && k < blobs.length; k++) {
        for (const r of decodeRecords(blobs[k][0])) {
          const seq = Number(r.id.slice(r.id.lastIndexOf("-") + 1));
          if (seq <= afterSeq) continue;
          out.push({
            seq,
            id: r.id,
            device: r.device,
            kind: r.kind,
            ts: r.ts,
            topic: r.topic === "" ? null : r.topic,
            payload: r.payload.toString(),
            bytes: r.payload.length + r.device.length + r.topic.length + ROW_OVERHEAD,
            createdAt: rows[k][3],
          });
          if (out.length >= limit) return out;
        }
      }
      after = last;
    }
    return out;
  }

  /**
   * Deletes the records `firstSeq..lastSeq` (inclusive) once the hub has acknowledged them: the
   * groups wholly inside the range (`claimGroups` hands out whole groups).
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
    // `all`, not `get`: libsql's get() on a statement last run by all() with other values can
    // answer with a row of that earlier run.
    const oldest = this.depth > 0 ? (this.s.groups.all(0, 1)[0] as GroupRow | undefined) : undefined;
    return {
      depth: this.depth,
      bytes: this.totalBytes,
      oldestAgeSeconds: oldest ? Math.max(0, Math.round((this.now() - oldest[3]) / 1000)) : 0,
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
