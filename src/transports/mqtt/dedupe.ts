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
 * PUBACK, so a same-connection non-DUP match is a new message). The last `window` packet ids per
 * session are kept.
 *
 * The memory lives in the agent's database and is written by `write()` inside the very outbox
 * transaction that stores the messages (`ingest.accept(…, {inTransaction})`): a message is
 * remembered if and only if it was stored, whatever the moment of a crash.
 */
import { createHash } from "node:crypto";
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

export function payloadDigest(topic: string, payload: Uint8Array): string {
  return createHash("sha256").update(topic).update("\0").update(payload).digest("hex").slice(0, 32);
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

export function createRedelivery(db: LocalDatabase, options: RedeliveryOptions = {}): Redelivery {
  // Tables: migrations/0003_mqtt_redelivery.sql.
  const window = options.window ?? 1024;
  const now = options.now ?? Date.now;
  const get = db.prepare("SELECT digest, conn FROM mqtt_redelivery WHERE session = ? AND packet_id = ?");
  const put = db.prepare(
    "INSERT INTO mqtt_redelivery (session, packet_id, digest, conn, n, created_at) VALUES (?, ?, ?, ?, ?, ?) " +
      "ON CONFLICT (session, packet_id) DO UPDATE SET digest = excluded.digest, conn = excluded.conn, " +
      "n = excluded.n, created_at = excluded.created_at",
  );
  const maxN = db.prepare("SELECT MAX(n) AS n FROM mqtt_redelivery WHERE session = ?");
  const trim = db.prepare("DELETE FROM mqtt_redelivery WHERE session = ? AND n <= ?");
  const old = db.prepare("DELETE FROM mqtt_redelivery WHERE created_at < ?");
  const getNote = db.prepare("SELECT value FROM mqtt_notes WHERE key = ?");
  const putNote = db.prepare(
    "INSERT INTO mqtt_notes (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
  );
  /** The last sequence number per session, loaded on first use. */
  const counters = new Map<string, number>();
  let closed = false;

  function counter(session: string): number {
    let n = counters.get(session);
    if (n === undefined) {
      n = Number((maxN.get(session) as { n: number | null }).n ?? 0);
      counters.set(session, n);
    }
    return n;
  }

  return {
    isResend(key) {
      if (closed) return false;
      const row = get.get(key.session, key.packetId) as { digest: string; conn: string } | undefined;
      if (row === undefined || row.digest !== key.digest) return false;
      return key.dup || row.conn !== key.conn;
    },
    write(keys) {
      if (closed || keys.length === 0) return;
      const t = now();
      const touched = new Map<string, number>();
      for (const k of keys) {
        const n = (touched.get(k.session) ?? counter(k.session)) + 1;
        touched.set(k.session, n);
        put.run(k.session, k.packetId, k.digest, k.conn, n, t);
      }
      for (const [session, n] of touched) {
        const before = counter(session);
        counters.set(session, n);
        // Trim in steps, not on every message: between `window` and 2 × `window` entries stay.
        if (Math.floor(n / window) !== Math.floor(before / window)) trim.run(session, n - window);
      }
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
