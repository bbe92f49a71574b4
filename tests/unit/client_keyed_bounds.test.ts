/**
 * Durable structures keyed by ids a client chooses stay bounded (SPEC §14): the devices a
 * SUBSCRIBE names as command targets, and the MQTT redelivery memory per client id.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { CommandStore } from "../../src/device_commands/store.ts";
import { agentMigrations, openDatabase } from "../../src/db/mod.ts";
import { createRedelivery } from "../../src/transports/mqtt/dedupe.ts";
import { removeDir, tempDir } from "../helpers/procs.ts";

Deno.test("command_devices keeps the most recently seen devices, at most the bound", () => {
  const dir = tempDir("outpost-bounds-");
  const db = openDatabase(join(dir, "agent.db"), { migrations: agentMigrations });
  try {
    const store = new CommandStore(db);
    for (let i = 0; i < 50; i++) store.addDevices([`invented-${i}`], 1_000 + i, 20);
    const known = store.knownDevices().sort();
    assert.equal(known.length, 20);
    assert.deepEqual(known, Array.from({ length: 20 }, (_, i) => `invented-${30 + i}`).sort());
  } finally {
    db.close();
    removeDir(dir);
  }
});

Deno.test("the redelivery memory keeps rows of the most recently active sessions only", () => {
  const dir = tempDir("outpost-bounds-");
  const db = openDatabase(join(dir, "agent.db"), { migrations: agentMigrations });
  try {
    let t = 1_000;
    const r = createRedelivery(db, { window: 8, maxSessions: 10, now: () => t });
    for (let i = 0; i < 30; i++) {
      t++;
      db.transaction(() =>
        r.write([{
          session: `client-${i}`,
          packetId: 1,
          digest: "d",
          conn: "c",
          dup: false,
          persistent: true,
        }])
      );
    }
    r.prune(7 * 24 * 3600 * 1000);
    const sessions =
      (db.prepare("SELECT DISTINCT session FROM mqtt_seen_packs").all() as { session: string }[])
        .map((x) => x.session).sort();
    assert.deepEqual(sessions, Array.from({ length: 10 }, (_, i) => `client-${20 + i}`).sort());
  } finally {
    db.close();
    removeDir(dir);
  }
});
