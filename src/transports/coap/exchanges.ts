/**
 * Durable memory of stored CoAP requests (migrations/0007): which (peer, message id) were
 * committed, with a digest of what they carried. Written inside the outbox transaction that
 * stores the request's messages (`ingest.accept(…, {inTransaction})`), so a request is remembered
 * if and only if it was stored, whatever the moment of a crash. A retransmission of a stored
 * request (same peer, message id and digest, within EXCHANGE_LIFETIME) is answered 2.01 again and
 * not stored twice, also by a restarted agent.
 *
 * Bounded: rows older than the lifetime go, and past `maxRows` the oldest go first.
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import type { LocalDatabase } from "../../db/mod.ts";

export interface StoredExchanges {
  /** True when this exchange was stored with the same content within the lifetime. */
  seen(key: string, digest: string): boolean;
  /** Remembers a stored exchange; call inside the transaction that stores its messages. */
  write(key: string, digest: string): void;
  /** Forgets rows past the lifetime or the bound. */
  prune(): void;
}

/** SHA-256 of path and payload, the first 128 bits in hex. */
export function exchangeDigest(path: readonly string[], payload: Uint8Array): string {
  return createHash("sha256").update(path.join("/")).update(Buffer.from([0])).update(payload).digest("hex")
    .slice(
      0,
      32,
    );
}

export function createStoredExchanges(
  db: LocalDatabase,
  options: { lifetimeMs: number; maxRows?: number; now?: () => number },
): StoredExchanges {
  const now = options.now ?? Date.now;
  const maxRows = options.maxRows ?? 200_000;
  const get = db.prepare("SELECT digest, created_at FROM coap_exchanges WHERE key = ?");
  const put = db.prepare("INSERT OR REPLACE INTO coap_exchanges (key, digest, created_at) VALUES (?, ?, ?)");
  const old = db.prepare("DELETE FROM coap_exchanges WHERE created_at < ?");
  const count = db.prepare("SELECT COUNT(*) AS n FROM coap_exchanges");
  const oldest = db.prepare(
    "DELETE FROM coap_exchanges WHERE key IN (SELECT key FROM coap_exchanges ORDER BY created_at LIMIT ?)",
  );
  return {
    seen(key, digest) {
      const row = get.get(key) as { digest: string; created_at: number } | undefined;
      return row !== undefined && row.digest === digest && now() - row.created_at <= options.lifetimeMs;
    },
    write(key, digest) {
      put.run(key, digest, now());
    },
    prune() {
      db.transaction(() => {
        old.run(now() - options.lifetimeMs);
        const n = (count.get() as { n: number }).n;
        if (n > maxRows) oldest.run(n - maxRows);
      });
    },
  };
}
