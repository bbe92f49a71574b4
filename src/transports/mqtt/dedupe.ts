/**
 * Redelivery memory: which QoS 1/2 publishes were already committed, so that a resend is
 * acknowledged without being stored twice.
 *
 * Why: a publish is PUBACKed only after its outbox commit. If the agent dies (or the connection
 * drops) between the commit and the PUBACK reaching the sender, the sender resends the same
 * packet after reconnecting, and without this memory the hub would receive it twice.
 *
 * What counts as a resend is decided by MQTT's rules (3.1.1 §4.4, §3.3.1.1), never by content
 * alone. A publish is a resend only when
 * - it carries DUP=1 (a sender marks every re-delivery so), or
 * - it arrives on a persistent session (clean session 0) with a packet id that was still
 *   unacknowledged when the session's previous connection ended (a sender that forgets DUP);
 * and, in both cases, the memory holds a stored publish of that session with the same packet id
 * and the same digest of topic and payload. Anything else is a new message and is stored, even
 * when topic and payload repeat an earlier one: mosquitto_pub, libmosquitto, Paho embedded C and
 * many microcontroller stacks restart packet ids at 1 on every connection, and sensors repeat
 * payloads ("door open", heartbeats). A clean session has no resends without DUP.
 *
 * "Unacknowledged at the disconnect" is known exactly for connections of this process: a stored
 * publish is unacknowledged until its transport reports the PUBACK written (`acked()`). For a
 * session last connected to an earlier process (the agent restarted, or was killed between a
 * commit and its PUBACK), every packet id the memory holds from that connection counts as
 * possibly unacknowledged: that is the crash the memory exists for.
 *
 * What is remembered, per MQTT session (client id, or the external connection): the packet id,
 * the digest, and the connection it came on, for the publishes of the session's last `window`
 * writes. The memory lives in the agent's database and is written by `write()` inside the very
 * outbox transaction that stores the messages (`ingest.accept(…, {inTransaction})`): a message is
 * remembered if and only if it was stored, whatever the moment of a crash.
 *
 * Cost per publish (this runs for every QoS 1 message): one `write()` stores one row per session
 * and connection, a "pack" of its publishes' `,<packet id>:<digest>` entries (migrations/0009),
 * in a ring per session (slot = n % window, n counting the session's packs). Under load a session
 * stores several publishes per commit, so there are fewer rows than publishes. The database is
 * read only for a DUP publish, or a persistent session's publish whose packet id is in the small
 * set of ids unacknowledged at its previous connection's end; that read finds the newest pack
 * holding the id with `instr()` inside SQLite. A pack holds at most what the session had in
 * flight at once, so the memory stays bounded per session. The sessions known in memory are
 * bounded (`maxSessions`, least recently used forgotten first; a forgotten session is treated as
 * one from an earlier process).
 */
import { Buffer } from "node:buffer";
import * as crypto from "node:crypto";
import type { LocalDatabase } from "../../db/mod.ts";

/** One QoS 1/2 publish as the dedupe memory sees it. */
export interface PublishKey {
  session: string;
  packetId: number;
  digest: string;
  /** The connection it arrived on (unique per process and connection). */
  conn: string;
  dup: boolean;
  /**
   * The session outlives its connection (MQTT clean session 0). Both transports set it; absent,
   * the session is taken as persistent.
   */
  persistent?: boolean;
}

/** One-shot hashing where the runtime has it (a third cheaper than a hash object under Bun). */
const oneShot = (crypto as { hash?: (algorithm: string, data: Uint8Array, encoding: "hex") => string }).hash;

/** SHA-256 of `topic \0 payload`, the first 128 bits in hex. */
export function payloadDigest(topic: string, payload: Uint8Array): string {
  const topicBytes = Buffer.byteLength(topic);
  const bytes = Buffer.allocUnsafe(topicBytes + 1 + payload.length);
  bytes.write(topic, 0, "utf8");
  bytes[topicBytes] = 0;
  bytes.set(payload, topicBytes + 1);
  const hex = oneShot
    ? oneShot("sha256", bytes, "hex")
    : crypto.createHash("sha256").update(bytes).digest("hex");
  return hex.slice(0, 32);
}

export interface Redelivery {
  /** True when this publish was already committed (a resend). */
  isResend(key: PublishKey): boolean;
  /** Remembers stored publishes; call inside the transaction that stores them. */
  write(keys: readonly PublishKey[]): void;
  /** The PUBACKs of these stored publishes were written to their connection. */
  acked(keys: readonly PublishKey[]): void;
  /** Forgets entries older than `maxAgeMs`, and sessions beyond the `maxSessions` most recent. */
  prune(maxAgeMs: number): void;
  /** A small durable note (e.g. the filters an external session is subscribed to). */
  note(key: string): string | undefined;
  setNote(key: string, value: string): void;
  /** Stops using the database (which belongs to the outbox: it is not closed here). */
  close(): void;
}

export interface RedeliveryOptions {
  /** Writes (packs of publishes) remembered per session. */
  window?: number;
  /** Sessions whose connection state is kept in memory (least recently used forgotten first). */
  maxSessions?: number;
  now?: () => number;
}

const WRITE_HEAD = "INSERT OR REPLACE INTO mqtt_seen_packs (session, slot, n, conn, created_at, entries)";

/** What is known in memory of one session. */
interface SessionState {
  /** The connection its latest publish came on. */
  conn: string;
  /** The sequence number of its last pack (slot = n % window). */
  n: number;
  /**
   * Packet ids that may be unacknowledged from earlier connections, sorted; undefined when there
   * are none.
   */
  earlier: Uint16Array | undefined;
  /** Packet ids stored on the current connection whose PUBACK is not yet written. */
  unacked: Set<number>;
}

function hasId(ids: Uint16Array, id: number): boolean {
  let lo = 0;
  let hi = ids.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const v = ids[mid];
    if (v === id) return true;
    if (v < id) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

function withId(ids: Uint16Array | undefined, id: number): Uint16Array {
  if (ids && hasId(ids, id)) return ids;
  const next = new Uint16Array((ids?.length ?? 0) + 1);
  if (ids) next.set(ids);
  next[next.length - 1] = id;
  return next.sort();
}

/** The entries of a pack: `,<packet id>:<digest>` each, in the order they were stored. */
function* parseEntries(entries: string): Generator<{ packetId: number; digest: string }> {
  for (const entry of entries.split(",")) {
    const colon = entry.indexOf(":");
    if (colon <= 0) continue;
    yield { packetId: Number(entry.slice(0, colon)), digest: entry.slice(colon + 1) };
  }
}

export function createRedelivery(db: LocalDatabase, options: RedeliveryOptions = {}): Redelivery {
  // Tables: migrations/0009_mqtt_seen_packs.sql (mqtt_seen_packs) and 0003 (mqtt_notes).
  const window = options.window ?? 1024;
  const maxSessions = options.maxSessions ?? 10_000;
  const now = options.now ?? Date.now;
  // The newest pack of the session holding the packet id (`?` is ",<id>:").
  const latest = db.prepare(
    "SELECT conn, entries FROM mqtt_seen_packs WHERE session = ? AND instr(entries, ?) > 0 " +
      "ORDER BY n DESC LIMIT 1",
  ).raw(true);
  const held = db.prepare("SELECT entries, n FROM mqtt_seen_packs WHERE session = ?").raw(true);
  const old = db.prepare("DELETE FROM mqtt_seen_packs WHERE created_at < ?");
  // Client ids are the client's choice: beyond the most recently active sessions, rows go.
  const sessionCount = db.prepare("SELECT COUNT(DISTINCT session) AS n FROM mqtt_seen_packs");
  const extraSessions = db.prepare(
    "DELETE FROM mqtt_seen_packs WHERE session NOT IN " +
      "(SELECT session FROM mqtt_seen_packs GROUP BY session ORDER BY MAX(created_at) DESC LIMIT ?)",
  );
  const getNote = db.prepare("SELECT value FROM mqtt_notes WHERE key = ?");
  const putNote = db.prepare(
    "INSERT INTO mqtt_notes (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
  );
  const sessions = new Map<string, SessionState>();
  let closed = false;

  /** The session's state as of a publish on `conn`: on a new connection, what it held before. */
  function stateFor(session: string, conn: string): SessionState {
    let state = sessions.get(session);
    if (state !== undefined && state.conn === conn) return state;
    let n = state?.n ?? 0;
    let earlier: Uint16Array | undefined;
    if (state !== undefined) {
      // A connection of this process ended: exactly the ids it had not acknowledged.
      sessions.delete(session);
      if (state.unacked.size > 0) earlier = Uint16Array.from(state.unacked).sort();
    } else {
      // Last connected to an earlier process (or forgotten): whatever the memory holds may be
      // unacknowledged.
      const rows = held.all(session) as [string, number][];
      if (rows.length > 0) {
        const ids = new Set<number>();
        for (const [entries, packN] of rows) {
          for (const entry of parseEntries(entries)) ids.add(entry.packetId);
          if (packN > n) n = packN;
        }
        earlier = Uint16Array.from(ids).sort();
      }
    }
    state = { conn, n, earlier, unacked: new Set() };
    if (sessions.size >= maxSessions) sessions.delete(sessions.keys().next().value!);
    sessions.set(session, state);
    return state;
  }

  return {
    isResend(key) {
      if (closed) return false;
      const state = stateFor(key.session, key.conn);
      if (!key.dup) {
        // Without DUP only a persistent session's publish under an id left unacknowledged.
        if (key.persistent === false || state.earlier === undefined || !hasId(state.earlier, key.packetId)) {
          return false;
        }
      }
      const row = latest.get(key.session, `,${key.packetId}:`) as [string, string] | undefined;
      if (row === undefined) return false;
      // Within a pack the last entry of an id is its newest publish.
      let digest: string | undefined;
      for (const entry of parseEntries(row[1])) if (entry.packetId === key.packetId) digest = entry.digest;
      if (digest !== key.digest) return false;
      return key.dup || row[0] !== key.conn;
    },
    write(keys) {
      if (closed || keys.length === 0) return;
      const t = now();
      const params: unknown[] = [];
      // One pack per run of keys of the same session and connection (one, unless several
      // sessions' publishes are written together).
      let i = 0;
      while (i < keys.length) {
        const first = keys[i];
        const state = sessions.get(first.session) ?? stateFor(first.session, first.conn);
        // A publish of an older connection stored after a newer one began: it is "earlier" now.
        const late = state.conn !== first.conn;
        let entries = "";
        for (; i < keys.length && keys[i].session === first.session && keys[i].conn === first.conn; i++) {
          const k = keys[i];
          if (late) state.earlier = withId(state.earlier, k.packetId);
          else state.unacked.add(k.packetId);
          entries += `,${k.packetId}:${k.digest}`;
        }
        const n = ++state.n;
        params.push(first.session, n % window, n, first.conn, t, entries);
      }
      db.insertRows(WRITE_HEAD, 6, params);
    },
    acked(keys) {
      for (const k of keys) {
        const state = sessions.get(k.session);
        if (state !== undefined && state.conn === k.conn) state.unacked.delete(k.packetId);
      }
    },
    prune(maxAgeMs) {
      if (closed) return;
      db.transaction(() => {
        old.run(now() - maxAgeMs);
        if ((sessionCount.get() as { n: number }).n > maxSessions) extraSessions.run(maxSessions);
      });
    },
    note(key) {
      if (closed) return undefined;
      return (getNote.get(key) as { value: string } | undefined)?.value;
    },
    setNote(key, value) {
      if (closed) return;
      db.transaction(() => putNote.run(key, value));
    },
    close() {
      closed = true;
    },
  };
}
