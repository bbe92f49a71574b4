/**
 * The outbox against a simple in-memory model (a list of groups of records): the same random
 * operation scripts (seeded) applied to both, on a real libSQL file, must give the same claims,
 * records, acceptances and stats after every step. Operations: turns of concurrent enqueues
 * (group commit), acks (whole groups as the uplink sends them, and arbitrary ranges), claims as
 * the uplink makes them, time passing, and closing and reopening the file; under `reject` and
 * under `drop-oldest`, with small and default group limits.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import type * as grpc from "@grpc/grpc-js";
import { fromJSON } from "@grpc/proto-loader";
import type { Message } from "../../src/core/message.ts";
import { createOutbox, type Outbox, OutboxFullError, recordBytes } from "../../src/outbox/mod.ts";
import { agentMigrations, openDatabase } from "../../src/db/mod.ts";
import { encodeBatchFrame } from "../../src/proto/batch_codec.ts";
import { hubDescriptor } from "../../src/proto/hub_descriptor.gen.ts";
import { decodeRecords } from "../../src/proto/records_codec.ts";
import { removeDir, tempDir } from "../helpers/procs.ts";
import { Random } from "./rules/_random.ts";

function msg(device: string, n: number, pad = 0, topic?: string): Message {
  return {
    device,
    kind: "telemetry",
    ts: 1000 + n,
    payload: { n, pad: "x".repeat(pad) },
    source: "test",
    ...(topic === undefined ? {} : { topic }),
  };
}

const marker = (payload: string) => JSON.parse(payload).n as number;

interface ModelRecord {
  seq: number;
  /** The message's `n`. */
  n: number;
  bytes: number;
}

interface ModelGroup {
  records: ModelRecord[];
  bytes: number;
  createdAt: number;
}

const last = (g: ModelGroup) => g.records[g.records.length - 1].seq;
const first = (g: ModelGroup) => g.records[0].seq;

/** What the outbox promises, written as plainly as it can be. */
class Model {
  groups: ModelGroup[] = [];
  nextSeq = 1;
  dropped = 0;
  constructor(
    readonly maxBytes: number,
    readonly onFull: "reject" | "drop-oldest",
    readonly groupRecords: number,
    readonly groupBytes: number,
  ) {}

  get depth(): number {
    return this.groups.reduce((s, g) => s + g.records.length, 0);
  }
  get bytes(): number {
    return this.groups.reduce((s, g) => s + g.bytes, 0);
  }

  /** One transaction: the acks, then each call's messages in order; which calls were stored. */
  commit(acks: [number, number][], calls: { n: number; bytes: number }[][], createdAt: number): boolean[] {
    for (const [a, b] of acks) this.groups = this.groups.filter((g) => !(first(g) >= a && last(g) <= b));
    const stored: boolean[] = [];
    let waiting: ModelRecord[] = [];
    let refusing = false;
    for (const call of calls) {
      const size = call.reduce((s, m) => s + m.bytes, 0);
      if (refusing || size > this.maxBytes) {
        refusing = true;
        stored.push(false);
        continue;
      }
      const pending = waiting.reduce((s, r) => s + r.bytes, 0);
      if (size > 0 && this.bytes + pending + size > this.maxBytes) {
        if (this.onFull === "reject") {
          refusing = true;
          stored.push(false);
          continue;
        }
        this.store(waiting, createdAt);
        waiting = [];
        let freed = 0;
        const need = this.bytes + size - this.maxBytes;
        while (freed < need && this.groups.length > 0) {
          const g = this.groups.shift()!;
          freed += g.bytes;
          this.dropped += g.records.length;
        }
      }
      for (const m of call) waiting.push({ seq: 0, n: m.n, bytes: m.bytes });
      stored.push(true);
    }
    this.store(waiting, createdAt);
    return stored;
  }

  private store(records: ModelRecord[], createdAt: number): void {
    let group: ModelGroup | undefined;
    for (const r of records) {
      if (
        group === undefined || group.records.length === this.groupRecords ||
        group.bytes + r.bytes > this.groupBytes
      ) {
        group = { records: [], bytes: 0, createdAt };
        this.groups.push(group);
      }
      group.records.push({ ...r, seq: this.nextSeq++ });
      group.bytes += r.bytes;
    }
  }

  /** The uplink's claim: whole groups after `after` within the limits. */
  claim(after: number, maxRecords: number, maxBytes: number, atLeastOne: boolean) {
    const taken: ModelGroup[] = [];
    let n = 0;
    let bytes = 0;
    let full = false;
    for (const g of this.groups.filter((g) => last(g) > after)) {
      if (
        (taken.length > 0 || !atLeastOne) &&
        (n + g.records.length > maxRecords || bytes + g.bytes > maxBytes)
      ) {
        full = true;
        break;
      }
      taken.push(g);
      n += g.records.length;
      bytes += g.bytes;
    }
    return { groups: taken, full };
  }

  records(): ModelRecord[] {
    return this.groups.flatMap((g) => g.records);
  }
}

function compare(box: Outbox, model: Model, now: number, where: string): void {
  const s = box.stats();
  assert.equal(s.depth, model.depth, `${where}: depth`);
  assert.equal(s.bytes, model.bytes, `${where}: bytes`);
  assert.equal(s.dropped, model.dropped, `${where}: dropped`);
  const oldest = model.groups[0];
  assert.equal(
    s.oldestAgeSeconds,
    oldest ? Math.max(0, Math.round((now - oldest.createdAt) / 1000)) : 0,
    `${where}: oldest age`,
  );
  const records = box.claim(0, 1_000_000);
  const expected = model.records();
  assert.deepEqual(
    records.map((r) => [r.seq, marker(r.payload), r.bytes]),
    expected.map((r) => [r.seq, r.n, r.bytes]),
    where,
  );
  for (const r of records) assert.equal(r.id, `${box.epoch}-${r.seq}`, `${where}: id`);
}

/** How often the scripts reached the cases worth reaching (so that the test shows it did). */
const seen = { refused: 0, dropped: 0, full: 0, cut: 0, reopenedEmpty: 0, split: 0 };

/** One random script; `steps` operations, compared after each. */
async function script(seed: number, dir: string, steps: number): Promise<void> {
  const r = new Random(seed);
  const onFull = r.chance(0.5) ? "reject" as const : "drop-oldest" as const;
  const maxBytes = r.pick([8_000, 30_000, 1 << 30]);
  const small = r.chance(0.7);
  const groupRecords = small ? 1 + r.int(6) : 128;
  const groupBytes = small ? 600 + r.int(3000) : 128 * 1024;
  let now = 1_700_000_000_000;
  const path = join(dir, `s${seed}.db`);
  const open = () =>
    createOutbox({ path, maxBytes, onFull, groupRecords, groupBytes, now: () => now, synchronous: "normal" });
  let box = open();
  const model = new Model(maxBytes, onFull, groupRecords, groupBytes);
  let n = 0;
  // As the uplink: claims go on after the last group claimed; batches wait for their acks.
  let lastClaimed = 0;
  let inFlight: [number, number][] = [];
  try {
    for (let step = 0; step < steps; step++) {
      const where =
        `seed ${seed} (${onFull}, ${maxBytes}, groups ${groupRecords}/${groupBytes}) step ${step}`;
      const roll = r.int(100);
      if (roll < 40) {
        // One event-loop turn: several callers (and perhaps an ack) share one transaction.
        const acks: [number, number][] = inFlight.length > 0 && r.chance(0.3) ? [inFlight.shift()!] : [];
        const calls = Array.from(
          { length: 1 + r.int(4) },
          () =>
            Array.from(
              { length: 1 + r.int(8) },
              () =>
                msg(
                  `d${r.int(3)}`,
                  n++,
                  r.pick([0, 10, 200, 1500]),
                  r.chance(0.3) ? "devices/d/telemetry" : undefined,
                ),
            ),
        );
        const modelCalls = calls.map((c) =>
          c.map((m) => ({
            n: m.payload.n as number,
            bytes: recordBytes(m.device, m.topic, JSON.stringify(m.payload)),
          }))
        );
        const acked = acks.map(([a, b]) => box.ack(a, b));
        const results = await Promise.allSettled(calls.map((c) => box.enqueue(c)));
        await Promise.all(acked);
        const droppedBefore = model.dropped;
        const expected = model.commit(acks, modelCalls, now);
        if (model.dropped > droppedBefore) seen.dropped++;
        assert.deepEqual(results.map((x) => x.status === "fulfilled"), expected, `${where}: stored`);
        seen.refused += expected.filter((x) => !x).length;
        seen.split += calls.some((c) => c.length > groupRecords) ? 1 : 0;
        for (const x of results) {
          if (x.status === "rejected") {
            assert.ok(x.reason instanceof OutboxFullError, `${where}: ${x.reason}`);
          }
        }
      } else if (roll < 65) {
        const maxRecords = 1 + r.int(20);
        const limit = 500 + r.int(20_000);
        const atLeastOne = r.chance(0.7);
        const got = box.claimGroups(lastClaimed, maxRecords, limit, atLeastOne);
        const want = model.claim(lastClaimed, maxRecords, limit, atLeastOne);
        assert.deepEqual(
          got.groups.map((g) => [g.seq, g.n, g.bytes, g.createdAt]),
          want.groups.map((g) => [last(g), g.records.length, g.bytes, g.createdAt]),
          `${where}: claimed groups`,
        );
        assert.equal(got.full, want.full, `${where}: full`);
        if (got.full) seen.full++;
        assert.deepEqual(
          got.groups.flatMap((g) =>
            decodeRecords(g.records).map((d) => [d.id, marker(d.payload.toString())])
          ),
          want.groups.flatMap((g) => g.records.map((x) => [`${box.epoch}-${x.seq}`, x.n])),
          `${where}: claimed records`,
        );
        if (got.groups.length > 0) {
          const g0 = got.groups[0];
          lastClaimed = got.groups[got.groups.length - 1].seq;
          inFlight.push([g0.seq - g0.n + 1, lastClaimed]);
        }
      } else if (roll < 80) {
        // The hub acknowledges in order; now and then a range that cuts groups (kept whole).
        let range: [number, number];
        if (inFlight.length > 0 && r.chance(0.8)) range = inFlight.shift()!;
        else {
          const a = r.int(model.nextSeq + 2);
          range = [a, a + r.int(30)];
          seen.cut++;
        }
        await box.ack(range[0], range[1]);
        model.commit([range], [], now);
      } else if (roll < 88) {
        now += r.int(5_000);
      } else if (roll < 94) {
        // A reconnect: everything unacknowledged is claimed again, oldest first.
        lastClaimed = 0;
        inFlight = [];
      } else {
        if (model.depth === 0 && model.nextSeq > 1) seen.reopenedEmpty++;
        box.close();
        box = open();
        lastClaimed = 0;
        inFlight = [];
      }
      compare(box, model, now, where);
    }
  } finally {
    box.close();
  }
}

Deno.test("the outbox matches an in-memory model over random scripts (seeded): enqueue turns, claims, acks, drops, reopen", async () => {
  const dir = tempDir();
  try {
    for (let seed = 1; seed <= 24; seed++) await script(seed, dir, 150);
    for (const [what, times] of Object.entries(seen)) {
      assert.ok(times > 0, `the scripts never reached: ${what}`);
    }
  } finally {
    removeDir(dir);
  }
});

Deno.test("record ids are stable across reopen and never reused after deletes", async () => {
  const dir = tempDir();
  try {
    const path = join(dir, "o.db");
    let box = createOutbox({ path, maxBytes: 1 << 30, onFull: "reject" });
    await box.enqueue([msg("a", 1), msg("a", 2)]);
    const ids = box.claim(0, 10).map((r) => r.id);
    await box.ack(box.claim(0, 10)[0].seq, box.claim(0, 10)[1].seq);
    box.close();
    box = createOutbox({ path, maxBytes: 1 << 30, onFull: "reject" });
    await box.enqueue([msg("a", 3)]);
    const next = box.claim(0, 10)[0].id;
    assert.ok(!ids.includes(next), "a deleted record's id is never reused");
    assert.equal(next.split("-")[0], ids[0].split("-")[0], "same epoch after reopen");
    box.close();
  } finally {
    removeDir(dir);
  }
});

Deno.test("onFull reject: a batch that does not fit is refused whole, earlier records untouched", async () => {
  const dir = tempDir();
  try {
    const box = createOutbox({ path: join(dir, "o.db"), maxBytes: 65536, onFull: "reject" });
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < 100; i++) {
      try {
        await box.enqueue([msg("a", i, 1000)]);
        accepted++;
      } catch (e) {
        assert.ok(e instanceof OutboxFullError);
        refused++;
      }
    }
    assert.ok(accepted > 0 && refused > 0);
    assert.equal(box.stats().depth, accepted);
    assert.ok(box.stats().bytes <= 65536);
    assert.deepEqual(
      box.claim(0, 1000).map((r) => JSON.parse(r.payload).n),
      Array.from({ length: accepted }, (_, i) => i),
    );
    assert.equal(box.stats().dropped, 0);
    box.close();
  } finally {
    removeDir(dir);
  }
});

Deno.test("onFull drop-oldest: the oldest records make room, counted, newest kept in order", async () => {
  const dir = tempDir();
  try {
    const path = join(dir, "o.db");
    let box = createOutbox({ path, maxBytes: 65536, onFull: "drop-oldest" });
    for (let i = 0; i < 200; i++) await box.enqueue([msg("a", i, 1000)]);
    const s = box.stats();
    assert.ok(s.bytes <= 65536);
    assert.equal(s.depth + s.dropped, 200);
    const kept = box.claim(0, 1000).map((r) => JSON.parse(r.payload).n);
    assert.deepEqual(kept, Array.from({ length: s.depth }, (_, i) => 200 - s.depth + i));
    box.close();
    box = createOutbox({ path, maxBytes: 65536, onFull: "drop-oldest" });
    assert.equal(box.stats().dropped, s.dropped, "the dropped count survives a restart");
    box.close();
  } finally {
    removeDir(dir);
  }
});

Deno.test("group commit: concurrent enqueues share transactions and all resolve after commit", async () => {
  const dir = tempDir();
  try {
    const box = createOutbox({ path: join(dir, "o.db"), maxBytes: 1 << 30, onFull: "reject" });
    let commits = 0;
    box.onData(() => commits++);
    await Promise.all(Array.from({ length: 1000 }, (_, i) => box.enqueue([msg(`d${i % 8}`, i)])));
    assert.equal(box.stats().depth, 1000);
    assert.ok(commits < 10, `1000 concurrent enqueues took ${commits} commits`);
    box.close();
  } finally {
    removeDir(dir);
  }
});

Deno.test("the store prepares a fixed set of statements however much flows through it", async () => {
  const dir = tempDir();
  try {
    const box = createOutbox({ path: join(dir, "o.db"), maxBytes: 1 << 30, onFull: "drop-oldest" });
    for (let round = 0; round < 50; round++) {
      await box.enqueue(Array.from({ length: 1 + round }, (_, i) => msg("a", i)));
      const c = box.claim(0, 7 + round);
      await box.ack(c[0].seq, c[c.length - 1].seq);
      box.stats();
      box.peek(3);
    }
    assert.ok(box.db.statementCount() <= 12, `prepared ${box.db.statementCount()} statements`);
    box.close();
  } finally {
    removeDir(dir);
  }
});

Deno.test("an outbox stored by the previous schema (a row per record) is sent first, in order, with its ids and bytes", async () => {
  const dir = tempDir();
  try {
    const path = join(dir, "outbox.db");
    const epoch = "a1b2c3d4e5f6";
    // The file as the previous version left it: migrations up to 0007, one row per record in
    // `outbox`, the oldest acknowledged and gone, a hole, and commits of different times.
    const old = openDatabase(path, { migrations: agentMigrations.filter((m) => m.name < "0008") });
    old.raw.prepare("INSERT INTO meta (key, value) VALUES ('epoch', ?)").run(epoch);
    const insert = old.raw.prepare(
      "INSERT INTO outbox (device, kind, ts, topic, payload, bytes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    const rows: [string, string, number, string | null, string, number][] = [];
    old.raw.exec("BEGIN");
    for (let i = 1; i <= 700; i++) {
      const device = i % 7 === 0 ? "chaudière-é" : `d${i % 3}`;
      const topic = i % 2 === 0 ? `devices/${device}/telemetry` : null;
      const payload = JSON.stringify({ i, label: i % 5 === 0 ? "€中文😀" : "x" });
      const createdAt = 1_700_000_000_000 + Math.floor(i / 250) * 1000;
      insert.run(
        device,
        i % 4 === 0 ? "event" : "telemetry",
        1_600_000_000_000 + i,
        topic,
        payload,
        recordBytes(device, topic, payload),
        createdAt,
      );
      rows.push([
        device,
        i % 4 === 0 ? "event" : "telemetry",
        1_600_000_000_000 + i,
        topic,
        payload,
        createdAt,
      ]);
    }
    old.raw.exec("COMMIT");
    old.raw.exec("DELETE FROM outbox WHERE seq <= 20 OR seq BETWEEN 300 AND 304");
    old.close();
    const kept = rows.map((r, k) => ({ seq: k + 1, r })).filter(({ seq }) =>
      seq > 20 && (seq < 300 || seq > 304)
    );

    let box = createOutbox({ path, maxBytes: 1 << 30, onFull: "reject" });
    assert.equal(box.epoch, epoch);
    const s = box.stats();
    assert.equal(s.depth, kept.length);
    assert.equal(s.bytes, kept.reduce((sum, { r }) => sum + recordBytes(r[0], r[3], r[4]), 0));
    // The old table is gone; new records come after the old ones.
    assert.equal(
      (box.db.raw.prepare("SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'outbox'").get() as {
        n: number;
      }).n,
      0,
    );
    await box.enqueue([msg("new", 1)]);
    box.close();
    box = createOutbox({ path, maxBytes: 1 << 30, onFull: "reject" });
    const all = box.claim(0, 10_000);
    assert.deepEqual(all.map((x) => x.seq), [...kept.map((k) => k.seq), 701]);
    assert.deepEqual(all.map((x) => x.id), all.map((x) => `${epoch}-${x.seq}`));
    for (let k = 0; k < kept.length; k++) {
      const [device, kind, ts, topic, payload, createdAt] = kept[k].r;
      assert.deepEqual(
        {
          device: all[k].device,
          kind: all[k].kind,
          ts: all[k].ts,
          topic: all[k].topic,
          payload: all[k].payload,
          createdAt: all[k].createdAt,
        },
        { device, kind, ts, topic, payload, createdAt },
      );
    }

    // On the wire: the bytes the previous version sent for these records, through protobufjs as
    // proto-loader drives it (the hub link's generic serializer, from the same descriptor).
    const serialize = (fromJSON(hubDescriptor as any, {
      keepCase: false,
      longs: Number,
      enums: String,
      defaults: true,
      oneofs: true,
    })["outpost.v1.Hub"] as grpc.ServiceDefinition).Connect.requestSerialize;
    let after = 0;
    let seq = 1;
    let sent = 0;
    for (;;) {
      const { groups } = box.claimGroups(after, 500, 1 << 20);
      if (groups.length === 0) break;
      const records = box.claim(after, groups.reduce((n, g) => n + g.n, 0));
      const expected = serialize({
        batch: {
          seq,
          records: records.map((x) => ({
            id: x.id,
            device: x.device,
            kind: x.kind,
            ts: x.ts,
            payload: Buffer.from(x.payload),
            topic: x.topic ?? "",
          })),
        },
      });
      const bytes = encodeBatchFrame({
        frame: "batch",
        batch: { seq, encoded: groups.map((g) => g.records) },
      });
      assert.deepEqual(bytes, Buffer.from(expected));
      sent += records.length;
      after = groups[groups.length - 1].seq;
      seq++;
    }
    assert.equal(sent, kept.length + 1);
    assert.ok(seq > 2, "more than one batch");
    box.close();
  } finally {
    removeDir(dir);
  }
});

Deno.test("after everything was acknowledged, an upgraded outbox goes on after the old table's highest seq", async () => {
  const dir = tempDir();
  try {
    const path = join(dir, "outbox.db");
    const old = openDatabase(path, { migrations: agentMigrations.filter((m) => m.name < "0008") });
    old.raw.prepare("INSERT INTO meta (key, value) VALUES ('epoch', 'feedfacecafe')").run();
    const insert = old.raw.prepare(
      "INSERT INTO outbox (device, kind, ts, topic, payload, bytes, created_at) VALUES ('d', 'telemetry', 1, NULL, '{}', 51, 1)",
    );
    for (let i = 0; i < 42; i++) insert.run();
    old.raw.exec("DELETE FROM outbox");
    old.close();
    const box = createOutbox({ path, maxBytes: 1 << 30, onFull: "reject" });
    assert.equal(box.stats().depth, 0);
    await box.enqueue([msg("d", 1), msg("d", 2)]);
    assert.deepEqual(box.claim(0, 10).map((r) => r.id), ["feedfacecafe-43", "feedfacecafe-44"]);
    box.close();
  } finally {
    removeDir(dir);
  }
});
