/**
 * The MQTT intake: acknowledge after commit, backpressure on a full outbox, bad input
 * dead-lettered, resends of committed publishes recognised (also across a restart).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Message } from "../../../src/core/message.ts";
import { agentMigrations, type LocalDatabase, openDatabase } from "../../../src/db/mod.ts";
import { DeadLetters, type Ingest } from "../../../src/ingest/mod.ts";
import { OutboxFullError } from "../../../src/outbox/mod.ts";
import { createLogger, createTelemetry } from "../../../src/telemetry/mod.ts";
import { createRedelivery, payloadDigest, type PublishKey } from "../../../src/transports/mqtt/dedupe.ts";
import { createIntake, type InboundPublish } from "../../../src/transports/mqtt/intake.ts";
import { removeDir, tempDir } from "../../helpers/procs.ts";

const enc = new TextEncoder();

/** Stands in for ingest + outbox: `inTransaction` runs in a transaction of `db`, as the outbox runs it. */
function fakeIngest(options: { fullTimes?: number; db?: LocalDatabase } = {}) {
  const calls: Message[][] = [];
  let full = options.fullTimes ?? 0;
  const ingest: Ingest = {
    accept(messages, accept) {
      calls.push([...messages]);
      if (full > 0) {
        full--;
        return Promise.resolve({ ok: false, reason: "full", message: new OutboxFullError().message });
      }
      if (accept?.inTransaction) options.db!.transaction(accept.inTransaction);
      return Promise.resolve({ ok: true, accepted: messages.length });
    },
    emit: () => Promise.resolve(),
  };
  return { ingest, calls };
}

function publish(device: string, body: string, key?: Omit<PublishKey, "digest">): InboundPublish {
  const topic = `devices/${device}/telemetry`;
  const payload = enc.encode(body);
  return {
    topic,
    payload,
    target: { type: "device", device, kind: "telemetry" },
    key: key && { ...key, digest: payloadDigest(topic, payload) },
  };
}

function setup(options: { fullTimes?: number; dir?: string } = {}) {
  const telemetry = createTelemetry(createLogger("error", () => {}));
  const deadLetters = new DeadLetters(10);
  const db = options.dir
    ? openDatabase(join(options.dir, "agent.db"), { migrations: agentMigrations })
    : undefined;
  const { ingest, calls } = fakeIngest({ ...options, db });
  const redelivery = db ? createRedelivery(db) : undefined;
  const intake = createIntake({
    ingest,
    telemetry,
    deadLetters,
    redelivery,
    maxPayloadBytes: 64,
    retry: { firstMs: 10, maxMs: 20 },
  });
  return { intake, calls, telemetry, deadLetters, redelivery, db };
}

Deno.test("a batch goes to accept() in one call, in order, and is reported accepted only after it resolved", async () => {
  const { intake, calls } = setup();
  const result = await intake.submit(
    [
      publish("d1", '{"n":1}'),
      publish("d1", '[{"n":2},{"n":3}]'),
      publish("d1", '{"ts":5,"values":{"n":4}}'),
    ],
    "mqtt",
    () => true,
  );
  assert.deepEqual(result, { ok: true, outcomes: ["accepted", "accepted", "accepted"] });
  assert.equal(calls.length, 1);
  assert.deepEqual(calls[0].map((m) => m.payload.n), [1, 2, 3, 4]);
  assert.equal(calls[0][3].ts, 5);
  assert.equal(calls[0][0].topic, "devices/d1/telemetry");
});

Deno.test("a full outbox withholds the acknowledgement and retries until there is room", async () => {
  const { intake, calls, telemetry } = setup({ fullTimes: 3 });
  const result = await intake.submit([publish("d1", '{"n":1}')], "mqtt", () => true);
  assert.deepEqual(result, { ok: true, outcomes: ["accepted"] });
  assert.equal(calls.length, 4, "three refusals, then stored");
  assert.equal(telemetry.counts().rejected, 0, "backpressure is not a rejection");
});

Deno.test("a full outbox: a sender that went away, or stop(), ends the wait without an acknowledgement", async () => {
  const gone = setup({ fullTimes: 1000 });
  assert.deepEqual(await gone.intake.submit([publish("d1", "{}")], "mqtt", () => false), {
    ok: false,
    why: "gone",
  });
  const stopping = setup({ fullTimes: 1000 });
  const pending = stopping.intake.submit([publish("d1", "{}")], "mqtt", () => true);
  await new Promise((r) => setTimeout(r, 30));
  stopping.intake.stop();
  assert.deepEqual(await pending, { ok: false, why: "stopped" });
});

Deno.test("bad input is acknowledged, dead-lettered and counted, and does not hold back the rest", async () => {
  const { intake, calls, telemetry, deadLetters } = setup();
  const result = await intake.submit(
    [
      publish("d1", "{oops"),
      publish("d1", '{"ok":1}'),
      publish("d1", "42"),
      publish("d1", JSON.stringify({ big: "x".repeat(100) })),
      {
        topic: "x/y",
        payload: enc.encode("{}"),
        target: { type: "invalid", reason: "unmapped-topic", message: "no device" },
      },
    ],
    "mqtt",
    () => true,
  );
  assert.deepEqual(result, {
    ok: true,
    outcomes: ["rejected", "accepted", "rejected", "rejected", "rejected"],
  });
  assert.deepEqual(calls.map((c) => c.map((m) => m.payload)), [[{ ok: 1 }]]);
  assert.deepEqual(deadLetters.list().map((d) => d.reason), [
    "invalid-json",
    "not-object",
    "too-large",
    "unmapped-topic",
  ]);
  assert.equal(telemetry.counts().rejected, 4);
});

Deno.test("a resend of a committed publish is acknowledged without a second store, also after a restart", async () => {
  const dir = tempDir("outpost-mqtt-intake-");
  try {
    let s = setup({ dir });
    const key = { session: "broker:dev-1", packetId: 7, conn: "c1", dup: false };
    assert.deepEqual((await s.intake.submit([publish("d1", '{"n":1}', key)], "mqtt", () => true)).ok, true);
    // Same connection, DUP: a resend.
    let r = await s.intake.submit([publish("d1", '{"n":1}', { ...key, dup: true })], "mqtt", () => true);
    assert.deepEqual(r, { ok: true, outcomes: ["duplicate"] });
    // Same connection, not DUP: the sender reused the id after its PUBACK, so it is new.
    r = await s.intake.submit([publish("d1", '{"n":1}', key)], "mqtt", () => true);
    assert.deepEqual(r, { ok: true, outcomes: ["accepted"] });
    // Different payload under the same id: new.
    r = await s.intake.submit([publish("d1", '{"n":2}', { ...key, conn: "c2" })], "mqtt", () => true);
    assert.deepEqual(r, { ok: true, outcomes: ["accepted"] });
    assert.equal(s.calls.length, 3);
    s.db!.close();

    // A restart: the agent died after the commit, before the PUBACK; the device resends.
    s = setup({ dir });
    r = await s.intake.submit(
      [
        publish("d1", '{"n":2}', { ...key, conn: "c3" }),
        publish("d1", '{"n":3}', { ...key, packetId: 8, conn: "c3" }),
      ],
      "mqtt",
      () => true,
    );
    assert.deepEqual(r, { ok: true, outcomes: ["duplicate", "accepted"] });
    assert.deepEqual(s.calls.map((c) => c.map((m) => m.payload.n)), [[3]]);
    const metrics = s.telemetry.metrics.render();
    assert.match(metrics, /outpost_mqtt_resends_total 1\n/);
    s.db!.close();
  } finally {
    removeDir(dir);
  }
});

Deno.test("a resend arriving while the original is still being stored waits for it", async () => {
  const dir = tempDir("outpost-mqtt-intake-");
  try {
    const s = setup({ dir, fullTimes: 2 });
    const key = { session: "broker:dev-1", packetId: 9, conn: "c1", dup: false };
    const first = s.intake.submit([publish("d1", '{"n":1}', key)], "mqtt", () => true);
    const again = s.intake.submit([publish("d1", '{"n":1}', { ...key, conn: "c2" })], "mqtt", () => true);
    assert.deepEqual(await first, { ok: true, outcomes: ["accepted"] });
    assert.deepEqual(await again, { ok: true, outcomes: ["duplicate"] });
    assert.equal(s.calls.filter((c) => c.length > 0).length, 3, "two refusals and one store");
    s.db!.close();
  } finally {
    removeDir(dir);
  }
});

Deno.test("the redelivery memory keeps a bounded window per session", () => {
  const dir = tempDir("outpost-mqtt-dedupe-");
  try {
    const path = join(dir, "agent.db");
    let db = openDatabase(path, { migrations: agentMigrations });
    const r = createRedelivery(db, { window: 10 });
    const k = (id: number): PublishKey => ({
      session: "s",
      packetId: id,
      digest: `d${id}`,
      conn: "c1",
      dup: false,
    });
    for (let id = 1; id <= 35; id++) db.transaction(() => r.write([k(id)]));
    const remembered = Array.from({ length: 35 }, (_, i) => i + 1).filter((id) =>
      r.isResend({ ...k(id), conn: "c2" })
    );
    assert.ok(remembered.length >= 10 && remembered.length < 20, `kept ${remembered.length}`);
    assert.deepEqual(remembered.slice(-10), [26, 27, 28, 29, 30, 31, 32, 33, 34, 35]);
    r.setNote("subs", "a\nb");
    // A write whose transaction rolls back is not remembered.
    assert.throws(() =>
      db.transaction(() => {
        r.write([k(99)]);
        throw new Error("the outbox transaction failed");
      })
    );
    assert.ok(!r.isResend({ ...k(99), conn: "c2" }));
    db.close();
    db = openDatabase(path, { migrations: agentMigrations });
    const again = createRedelivery(db, { window: 10 });
    assert.equal(again.note("subs"), "a\nb");
    assert.ok(again.isResend({ ...k(35), conn: "c9" }));
    again.prune(-1);
    assert.ok(!again.isResend({ ...k(35), conn: "c9" }), "pruned by age");
    db.close();
  } finally {
    removeDir(dir);
  }
});

Deno.test("the redelivery memory: DUP, later connections, and an older connection's late write", () => {
  const dir = tempDir("outpost-mqtt-dedupe-");
  try {
    const db = openDatabase(join(dir, "agent.db"), { migrations: agentMigrations });
    const r = createRedelivery(db, { window: 16 });
    const k = (id: number, conn: string, dup = false): PublishKey => ({
      session: "s",
      packetId: id,
      digest: `d${id}`,
      conn,
      dup,
    });
    db.transaction(() => r.write([k(1, "c1"), k(2, "c1")]));
    assert.ok(!r.isResend(k(1, "c1")), "a same-connection non-DUP match is a new message");
    assert.ok(r.isResend(k(1, "c1", true)), "DUP on the same connection is a resend");
    assert.ok(r.isResend(k(2, "c2")), "a later connection's match is a resend");
    assert.ok(!r.isResend({ ...k(2, "c2"), digest: "other" }), "another payload is not");
    assert.ok(!r.isResend(k(3, "c2")), "an id never stored is not");
    // c2 is the session's connection now; c1's publish 4 commits late, then c2 reuses id 4.
    db.transaction(() => r.write([k(4, "c1")]));
    assert.ok(r.isResend(k(4, "c2")), "an older connection's late write is known to the newer one");
    // c2 stores its own publish 5; the same id again without DUP on c2 is a new message.
    db.transaction(() => r.write([k(5, "c2")]));
    assert.ok(!r.isResend(k(5, "c2")));
    db.close();
  } finally {
    removeDir(dir);
  }
});

Deno.test("migration 0005 carries the redelivery memory over into the ring", () => {
  const dir = tempDir("outpost-mqtt-dedupe-");
  try {
    const path = join(dir, "agent.db");
    const upTo4 = agentMigrations.filter((m) => m.name < "0005");
    let db = openDatabase(path, { migrations: upTo4 });
    const put = db.prepare(
      "INSERT INTO mqtt_redelivery (session, packet_id, digest, conn, n, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    );
    db.transaction(() => {
      put.run("s", 7, "d7", "old-1", 1, Date.now());
      // n 1025 falls into the same slot as n 1 (1025 % 1024): the newer one stays.
      put.run("s", 9, "d9", "old-1", 1025, Date.now());
    });
    db.close();
    db = openDatabase(path, { migrations: agentMigrations });
    const r = createRedelivery(db);
    assert.ok(r.isResend({ session: "s", packetId: 9, digest: "d9", conn: "new-1", dup: false }));
    assert.ok(!r.isResend({ session: "s", packetId: 7, digest: "d7", conn: "new-1", dup: false }));
    db.close();
  } finally {
    removeDir(dir);
  }
});

Deno.test("payloadDigest is SHA-256 of topic NUL payload (stored digests stay comparable)", () => {
  // Computed independently: printf 'devices/d1/telemetry\0{"t":1}' | sha256sum | cut -c1-32
  assert.equal(
    payloadDigest("devices/d1/telemetry", enc.encode('{"t":1}')),
    "acda469d0c330d01c98b8895f1166e89",
  );
});

Deno.test("the redelivery memory packs one write per session into one row, and finds each publish in it", () => {
  const dir = tempDir("outpost-mqtt-dedupe-");
  try {
    const path = join(dir, "agent.db");
    let db = openDatabase(path, { migrations: agentMigrations });
    const r = createRedelivery(db, { window: 4 });
    const k = (id: number, digest: string, session = "s"): PublishKey => ({
      session,
      packetId: id,
      digest,
      conn: "c1",
      dup: false,
    });
    // One transaction: five publishes of s (id 3 twice, the later one newer), two of t.
    db.transaction(() =>
      r.write([k(1, "a"), k(2, "b"), k(3, "c"), k(30, "d"), k(3, "e"), k(7, "f", "t"), k(8, "g", "t")])
    );
    const rows = db.prepare(
      "SELECT session, COUNT(*) AS n FROM mqtt_seen_packs GROUP BY session ORDER BY session",
    )
      .all() as { session: string; n: number }[];
    assert.deepEqual(rows.map((x) => [x.session, x.n]), [["s", 1], ["t", 1]]);
    db.close();
    db = openDatabase(path, { migrations: agentMigrations });
    const again = createRedelivery(db, { window: 4 });
    const later = (key: PublishKey) => again.isResend({ ...key, conn: "c2" });
    assert.ok(later(k(1, "a")) && later(k(2, "b")) && later(k(30, "d")) && later(k(8, "g", "t")));
    assert.ok(later(k(3, "e")), "the newest publish of an id within a pack counts");
    assert.ok(!later(k(3, "c")), "an older publish of that id does not");
    assert.ok(!later(k(13, "c")) && !later(k(0, "a")), "ids that only share digits are not matched");
    // Four more writes of s push its first pack out of the ring (window 4).
    for (let i = 0; i < 4; i++) db.transaction(() => again.write([{ ...k(100 + i, "x"), conn: "c2" }]));
    const next = createRedelivery(db, { window: 4 });
    assert.ok(!next.isResend({ ...k(1, "a"), conn: "c3" }), "a pack overwritten in the ring is forgotten");
    assert.ok(next.isResend({ ...k(103, "x"), conn: "c3" }));
    db.close();
  } finally {
    removeDir(dir);
  }
});

Deno.test("migration 0009 packs the ring's rows, and their publishes are still known", () => {
  const dir = tempDir("outpost-mqtt-dedupe-");
  try {
    const path = join(dir, "agent.db");
    let db = openDatabase(path, { migrations: agentMigrations.filter((m) => m.name < "0009") });
    const put = db.prepare(
      "INSERT INTO mqtt_seen (session, slot, packet_id, digest, conn, n, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    db.transaction(() => {
      put.run("s", 1, 11, "d11", "old-1", 1, Date.now());
      put.run("s", 2, 12, "d12", "old-1", 2, Date.now());
    });
    db.close();
    db = openDatabase(path, { migrations: agentMigrations });
    const r = createRedelivery(db);
    const key = (id: number, digest: string): PublishKey => ({
      session: "s",
      packetId: id,
      digest,
      conn: "new-1",
      dup: false,
    });
    assert.ok(r.isResend(key(11, "d11")) && r.isResend(key(12, "d12")));
    assert.ok(!r.isResend(key(12, "d11")));
    // The session's packs continue after the migrated ones: nothing migrated is overwritten.
    db.transaction(() => r.write([{ ...key(13, "d13"), conn: "new-1" }]));
    assert.ok(createRedelivery(db).isResend({ ...key(11, "d11"), conn: "new-2" }));
    db.close();
  } finally {
    removeDir(dir);
  }
});
