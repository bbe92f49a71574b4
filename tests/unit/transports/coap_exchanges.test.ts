/**
 * The durable memory of stored CoAP requests: the newest rows only (bounded without bulk deletes), that
 * recognises a stored exchange by its key and digest within the lifetime, and goes on after a
 * restart where it left off.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { agentMigrations, openDatabase } from "../../../src/db/mod.ts";
import { createStoredExchanges, exchangeDigest } from "../../../src/transports/coap/mod.ts";
import { removeDir, tempDir } from "../../helpers/procs.ts";

Deno.test("stored exchanges: recognised by key and digest within the lifetime; the newest rows only; kept across a reopen", () => {
  const dir = tempDir("outpost-coap-exchanges-");
  try {
    const file = join(dir, "outbox.db");
    let t = 1_000_000;
    let db = openDatabase(file, { migrations: agentMigrations });
    let stored = createStoredExchanges(db, { lifetimeMs: 247_000, rows: 3, now: () => t });
    const d = exchangeDigest(["api", "v1", "tok", "telemetry"], new TextEncoder().encode('{"n":1}'));
    assert.notEqual(
      d,
      exchangeDigest(["api", "v1", "tok", "telemetry"], new TextEncoder().encode('{"n":2}')),
    );
    db.transaction(() => stored.write("127.0.0.1|5000|1", d));
    assert.ok(stored.seen("127.0.0.1|5000|1", d));
    assert.ok(!stored.seen("127.0.0.1|5000|1", "other"), "same message id, other content: a new request");
    assert.ok(!stored.seen("127.0.0.1|5001|1", d), "another peer");
    t += 247_001;
    assert.ok(!stored.seen("127.0.0.1|5000|1", d), "past the lifetime");

    for (let i = 2; i <= 4; i++) db.transaction(() => stored.write(`127.0.0.1|5000|${i}`, d));
    assert.equal((db.prepare("SELECT COUNT(*) AS n FROM coap_exchanges").get() as { n: number }).n, 3);
    db.close();

    // Reopened (a restart): rows go on after the last one, the newest are still known.
    db = openDatabase(file, { migrations: agentMigrations });
    stored = createStoredExchanges(db, { lifetimeMs: 247_000, rows: 3, now: () => t });
    assert.ok(stored.seen("127.0.0.1|5000|4", d));
    db.transaction(() => stored.write("127.0.0.1|5000|5", d));
    assert.ok(!stored.seen("127.0.0.1|5000|2", d), "the oldest row went");
    assert.ok(stored.seen("127.0.0.1|5000|3", d) && stored.seen("127.0.0.1|5000|5", d));
    assert.equal((db.prepare("SELECT COUNT(*) AS n FROM coap_exchanges").get() as { n: number }).n, 3);
    db.close();
  } finally {
    removeDir(dir);
  }
});

Deno.test("stored exchanges after the first lifetime: keys this process wrote are recognised for a whole lifetime, across the filter's rotation; others are new", () => {
  const dir = tempDir("outpost-coap-exchanges-");
  try {
    let t = 5_000_000;
    const db = openDatabase(join(dir, "outbox.db"), { migrations: agentMigrations });
    const stored = createStoredExchanges(db, { lifetimeMs: 247_000, now: () => t });
    t += 300_000; // past the first lifetime: the database is asked only for keys this process wrote
    db.transaction(() => stored.write("a", "d1"));
    t += 200_000;
    db.transaction(() => stored.write("b", "d2"));
    assert.ok(stored.seen("a", "d1"));
    t += 100_000; // the filter rotates; "b" (100 s old) must still be found
    assert.ok(stored.seen("b", "d2"));
    assert.ok(!stored.seen("a", "d1"), "300 s old: past the lifetime");
    for (let i = 0; i < 1000; i++) assert.ok(!stored.seen(`never-${i}`, "d"));
    db.close();
  } finally {
    removeDir(dir);
  }
});
