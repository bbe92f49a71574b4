/**
 * Redelivery memory: which QoS 1/2 publishes were already committed, so that a resend is
 * acknowledged without being stored twice.
 *
 * Why: a publish is PUBACKed only after its outbox commit. If the agent dies (or the connection
 * drops) between the commit and the PUBACK reaching the sender, the sender resends the same
 * packet after reconnecting, and without this memory the hub would receive it twice.
 *
 * What is remembered, per MQTT session (client id, or the external connection): the packet id,
 * a digest of topic and payload, and the connection it came on. A publish is a resend of a
 * remembered one when packet id and digest match and it is flagged DUP or arrives on a later
 * connection (a sender reuses a packet id on the same connection only after it has received the
 * PUBACK, so a same-connection non-DUP match is a new message). The last `window` publishes per
 * session are kept.
 *
 * The memory lives in the agent's database and is written by `write()` inside the very outbox
 * transaction that stores the messages (`ingest.accept(…, {inTransaction})`): a message is
 * remembered if and only if it was stored, whatever the moment of a crash.
 *
 * Cost per publish (this runs for every QoS 1 message): the table is a ring per session (slot =
 * n % window, migrations/0005), written with multi-row INSERTs, one B-tree write per publish.
 * Reads are avoided: a new publish (no DUP flag) can only be a resend of a remembered one from an
 * *earlier* connection, so when a connection's first publish arrives the packet ids the session
 * holds from before are loaded once (a sorted Uint16Array, 2 bytes each); a publish is looked
 * up in the database only when it is flagged DUP or its packet id is in that set. A fresh
 * session, or one whose earlier ids do not come round again, never reads.
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
  /** Forgets entries older than `maxAgeMs`. */
  prune(maxAgeMs: number): void;
  /** A small durable note (e.g. the filters an external session is subscribed to). */
  note(key: string): string | undefined;
  setNote(key: string, value: string): void;
  /** Stops using the database (which belongs to the outbox: it is not closed here). */
  close(): void;
}

export interface RedeliveryOptions {
  /** Packet ids remembered per session. */
  window?: number;
  now?: () => number;
}

const WRITE_HEAD = "INSERT OR REPLACE INTO mqtt_seen (session, slot, packet_id, digest, conn, n, created_at)";

/** What is known in memory of one session. */
interface SessionState {
  /** The connection its latest publish came on. */
  conn: string;
  /** The sequence number of its last remembered publish (slot = n % window). */
  n: number;
  /** Packet ids remembered from earlier connections, sorted; undefined when there are none. */
  earlier: Uint16Array | undefined;
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

export function createRedelivery(db: LocalDatabase, options: RedeliveryOptions = {}): Redelivery {
  // Tables: migrations/0005_mqtt_seen_ring.sql (mqtt_seen) and 0003 (mqtt_notes).
  const window = options.window ?? 1024;
  const now = options.now ?? Date.now;
  const latest = db.prepare(
    "SELECT digest, conn FROM mqtt_seen WHERE session = ? AND packet_id = ? ORDER BY n DESC LIMIT 1",
  );
  const held = db.prepare("SELECT packet_id, n FROM mqtt_seen WHERE session = ?").raw(true);
  const old = db.prepare("DELETE FROM mqtt_seen WHERE created_at < ?");
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
    const rows = held.all(session) as [number, number][];
    let n = state?.n ?? 0;
    let earlier: Uint16Array | undefined;
    if (rows.length > 0) {
      const ids = new Uint16Array(rows.length);
      for (let i = 0; i < rows.length; i++) {
        ids[i] = rows[i][0];
        if (rows[i][1] > n) n = rows[i][1];
      }
      earlier = ids.sort();
    }
    state = { conn, n, earlier };
    sessions.set(session, state);
    return state;
  }

  return {
    isResend(key) {
      if (closed) return false;
      const state = stateFor(key.session, key.conn);
      if (!key.dup && (state.earlier === undefined || !hasId(state.earlier, key.packetId))) return false;
      const row = latest.get(key.session, key.packetId) as { digest: string; conn: string } | undefined;
      if (row === undefined || row.digest !== key.digest) return false;
      return key.dup || row.conn !== key.conn;
    },
    write(keys) {
      if (closed || keys.length === 0) return;
      const t = now();
      const params: unknown[] = [];
      for (const k of keys) {
        const state = sessions.get(k.session) ?? stateFor(k.session, k.conn);
        // A publish of an older connection stored after a newer one began: it is "earlier" now.
        if (state.conn !== k.conn) state.earlier = withId(state.earlier, k.packetId);
        const n = ++state.n;
        params.push(k.session, n % window, k.packetId, k.digest, k.conn, n, t);
      }
      db.insertRows(WRITE_HEAD, 7, params);
    },
    prune(maxAgeMs) {
      if (closed) return;
      db.transaction(() => old.run(now() - maxAgeMs));
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
