/**
 * Durable memory of stored CoAP requests (migrations/0007): which (peer, message id) were
 * committed, with a digest of what they carried. Written inside the outbox transaction that
 * stores the request's messages (`ingest.accept(…, {inTransaction})`), so a request is remembered
 * if and only if it was stored, whatever the moment of a crash. A retransmission of a stored
 * request (same peer, message id and digest, within the lifetime) is answered 2.01 again and not
 * stored twice, also by a restarted agent.
 *
 * Bounded without deletes: the table is a ring of `slots` rows (the n-th stored request goes to
 * slot n % slots, replacing what was there), one B-tree write per request and nothing that blocks
 * for long. With the default 200,000 slots, a request is remembered for the whole lifetime (247 s)
 * up to about 800 stored requests a second; beyond that rate, for 200,000 requests.
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import type { LocalDatabase } from "../../db/mod.ts";

export interface StoredExchanges {
  /** True when this exchange was stored with the same content within the lifetime. */
  seen(key: string, digest: string): boolean;
  /** Remembers a stored exchange; call inside the transaction that stores its messages. */
  write(key: string, digest: string): void;
}

/** SHA-256 of path and payload, the first 128 bits in hex. */
export function exchangeDigest(path: readonly string[], payload: Uint8Array): string {
  const hash = createHash("sha256").update(path.join("/")).update(Buffer.from([0])).update(payload);
  return hash.digest("hex").slice(0, 32);
}

export function createStoredExchanges(
  db: LocalDatabase,
  options: { lifetimeMs: number; slots?: number; now?: () => number },
): StoredExchanges {
  const now = options.now ?? Date.now;
  const slots = options.slots ?? 200_000;
  const get = db.prepare(
    "SELECT digest, created_at FROM coap_exchanges WHERE key = ? ORDER BY n DESC LIMIT 1",
  );
  const put = db.prepare(
    "INSERT OR REPLACE INTO coap_exchanges (slot, n, key, digest, created_at) VALUES (?, ?, ?, ?, ?)",
  );
  // Where the ring goes on: after the last row written (read once, at start).
  let n = ((db.prepare("SELECT MAX(n) AS n FROM coap_exchanges").get() as { n: number | null }).n ?? -1) + 1;
  return {
    seen(key, digest) {
      const row = get.get(key) as { digest: string; created_at: number } | undefined;
      return row !== undefined && row.digest === digest && now() - row.created_at <= options.lifetimeMs;
    },
    write(key, digest) {
      put.run(n % slots, n, key, digest, now());
      n++;
    },
  };
}
