/**
 * Durable memory of stored CoAP requests (migrations/0007): which (peer, message id) were
 * committed, with a digest of what they carried. Written inside the outbox transaction that
 * stores the request's messages (`ingest.accept(…, {inTransaction})`), so a request is remembered
 * if and only if it was stored, whatever the moment of a crash. A retransmission of a stored
 * request (same peer, message id and digest, within the lifetime) is answered 2.01 again and not
 * stored twice, also by a restarted agent.
 *
 * Bounded without bulk work: writing row n deletes row n - `rows` (both by primary key), so the
 * table keeps the newest `rows` and nothing blocks for long. With the default 200,000 rows, a
 * request is remembered for the whole lifetime (247 s) up to about 800 stored requests a second;
 * beyond that rate, for 200,000 requests. Start-up reads the newest row only.
 *
 * Reads are rare: nearly every request is new, and the database is asked only when it may hold
 * the key. Until the rows an earlier process wrote are past the lifetime, that is any key; after
 * that, a filter of the keys this process wrote (two Bloom filters of 512 KiB, each covering a
 * lifetime, so no key written within the lifetime is ever missed) answers without the database
 * for all but a few percent of new requests.
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

/** Bits of one Bloom filter generation, and hashes per key. */
const FILTER_BITS = 1 << 22;
const FILTER_HASHES = 5;

/** 32-bit FNV-1a of `key`, from `seed`. */
function fnv(key: string, seed: number): number {
  let h = seed;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

/** Two generations of a Bloom filter: a key added is found for at least `spanMs`. */
class RecentKeys {
  private current = new Uint8Array(FILTER_BITS / 8);
  private previous = new Uint8Array(FILTER_BITS / 8);
  private since: number;
  private readonly spanMs: number;
  constructor(spanMs: number, now: number) {
    this.spanMs = spanMs;
    this.since = now;
  }
  private rotate(now: number): void {
    if (now - this.since < this.spanMs) return;
    // A key added at t is in `current` until the rotation after t, then in `previous` for a span.
    [this.previous, this.current] = [this.current, this.previous];
    this.current.fill(0);
    this.since = now;
  }
  private readonly positions = new Uint32Array(FILTER_HASHES);
  /** The key's bit positions (double hashing), in `positions`. */
  private hash(key: string): Uint32Array {
    const h1 = fnv(key, 2166136261);
    const h2 = fnv(key, 0x9747b28c) | 1;
    for (let i = 0; i < FILTER_HASHES; i++) {
      this.positions[i] = ((h1 + Math.imul(i, h2)) >>> 0) & (FILTER_BITS - 1);
    }
    return this.positions;
  }
  add(key: string, now: number): void {
    this.rotate(now);
    const p = this.hash(key);
    for (let i = 0; i < FILTER_HASHES; i++) this.current[p[i] >> 3] |= 1 << (p[i] & 7);
  }
  mayHave(key: string, now: number): boolean {
    this.rotate(now);
    const p = this.hash(key);
    let inCurrent = true;
    let inPrevious = true;
    for (let i = 0; i < FILTER_HASHES; i++) {
      const mask = 1 << (p[i] & 7);
      if ((this.current[p[i] >> 3] & mask) === 0) inCurrent = false;
      if ((this.previous[p[i] >> 3] & mask) === 0) inPrevious = false;
    }
    return inCurrent || inPrevious;
  }
}

export function createStoredExchanges(
  db: LocalDatabase,
  options: { lifetimeMs: number; rows?: number; now?: () => number },
): StoredExchanges {
  const now = options.now ?? Date.now;
  const rows = options.rows ?? 200_000;
  const get = db.prepare(
    "SELECT digest, created_at FROM coap_exchanges WHERE key = ? ORDER BY n DESC LIMIT 1",
  );
  const put = db.prepare("INSERT INTO coap_exchanges (n, key, digest, created_at) VALUES (?, ?, ?, ?)");
  const drop = db.prepare("DELETE FROM coap_exchanges WHERE n <= ?");
  const newest = db.prepare("SELECT n, created_at FROM coap_exchanges ORDER BY n DESC LIMIT 1").get() as
    | { n: number; created_at: number }
    | undefined;
  let n = (newest?.n ?? -1) + 1;
  // Until the newest row an earlier process wrote is past the lifetime, any key may be in the
  // table (a request stored just before a crash, retransmitted now): ask the database. After
  // that, only keys this process wrote can count, and the filter knows them.
  const earlierUntil = (newest?.created_at ?? -Infinity) + options.lifetimeMs;
  const recent = new RecentKeys(options.lifetimeMs, now());
  return {
    seen(key, digest) {
      const t = now();
      if (t > earlierUntil && !recent.mayHave(key, t)) return false;
      const row = get.get(key) as { digest: string; created_at: number } | undefined;
      return row !== undefined && row.digest === digest && t - row.created_at <= options.lifetimeMs;
    },
    write(key, digest) {
      const t = now();
      put.run(n, key, digest, t);
      if (n >= rows) drop.run(n - rows);
      n++;
      recent.add(key, t);
    },
  };
}
