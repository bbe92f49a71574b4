/**
 * The outbox against a tiny in-memory model: the same operation scripts applied to both must
 * leave the same records, in the same order.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Message } from "../../src/core/message.ts";
import { createOutbox, OutboxFullError } from "../../src/outbox/mod.ts";
import { removeDir, tempDir } from "../helpers/procs.ts";

function msg(device: string, n: number, pad = 0): Message {
  return { device, kind: "telemetry", ts: 1000 + n, payload: { n, pad: "x".repeat(pad) }, source: "test" };
}

/** A seeded PRNG so a failing script can be replayed. */
function rng(seed: number) {
  return () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
}

Deno.test("outbox matches an in-memory model over random enqueue/claim/ack/reopen scripts", async () => {
  const dir = tempDir();
  try {
    for (let seed = 1; seed <= 5; seed++) {
      const path = join(dir, `s${seed}.db`);
      const random = rng(seed);
      let box = createOutbox({ path, maxBytes: 1 << 30, onFull: "reject" });
      const model: number[] = []; // the n of each record, oldest first
      let n = 0;
      for (let step = 0; step < 200; step++) {
        const r = random();
        if (r < 0.5) {
          const k = 1 + Math.floor(random() * 20);
          const batch = Array.from({ length: k }, () => msg(`d${n % 3}`, n++));
          await box.enqueue(batch);
          model.push(...batch.map((m) => m.payload.n as number));
        } else if (r < 0.85) {
          const k = 1 + Math.floor(random() * 30);
          const claimed = box.claim(0, k);
          assert.deepEqual(claimed.map((c) => JSON.parse(c.payload).n), model.slice(0, k));
          if (claimed.length) {
            await box.ack(claimed[0].seq, claimed[claimed.length - 1].seq);
            model.splice(0, claimed.length);
          }
        } else {
          box.close();
          box = createOutbox({ path, maxBytes: 1 << 30, onFull: "reject" });
        }
        assert.equal(box.stats().depth, model.length);
      }
      assert.deepEqual(box.claim(0, 100000).map((c) => JSON.parse(c.payload).n), model);
      box.close();
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
