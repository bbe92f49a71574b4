/**
 * Rule state changes only with a committed outbox transaction (SPEC §14): a message refused
 * because the outbox is full leaves throttle, deadband, alarm and aggregate state as it was, so
 * its retry is judged as if it were the first try; committed state is in the database with the
 * records. A real libSQL file, the real outbox, ingest and rules host.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { IngestKind, Message } from "../../src/core/message.ts";
import { DeviceRegistry } from "../../src/devices/mod.ts";
import { type Accepted, createIngest } from "../../src/ingest/mod.ts";
import { createOutbox, type Outbox, OutboxFullError } from "../../src/outbox/mod.ts";
import { createRuleEngine, parseRulesDocument, type RuleEngine } from "../../src/rules/mod.ts";
import { createLogger, createTelemetry } from "../../src/telemetry/mod.ts";
import { RulesHost } from "../../src/agent/rules_host.ts";
import { removeDir, tempDir } from "../helpers/procs.ts";
import { Random, randomDocument, randomMessage } from "./rules/_random.ts";

const T0 = 1_700_000_000_000;

function msg(device: string, payload: Record<string, unknown>, kind: IngestKind = "telemetry"): Message {
  return { device, kind, ts: T0, payload, source: "test" } as Message;
}

function setup(rules: unknown[]) {
  const dir = tempDir("outpost-rule-state-");
  let now = T0;
  const outbox = createOutbox({ path: join(dir, "outbox.db"), maxBytes: 65_536, onFull: "reject" });
  const telemetry = createTelemetry(createLogger("error", () => {}));
  const devices = new DeviceRegistry(outbox.db);
  const ref: { host?: RulesHost } = {};
  const ingest = createIngest({
    outbox,
    devices,
    telemetry,
    rules: () => ref.host!.processor,
    now: () => now,
  });
  const host = ref.host = new RulesHost({
    source: { version: 1, rules },
    dataDir: dir,
    telemetry,
    db: outbox.db,
    emit: (produce) => ingest.emitFrom!(produce),
    now: () => now,
  });
  assert.equal(host.start().ok, true);
  return {
    dir,
    outbox,
    ingest,
    host,
    advance(ms: number) {
      now += ms;
    },
    /** Fills the outbox to within a few bytes of full; returns the filler's seq range. */
    async fill(): Promise<[number, number]> {
      const filler = { device: "filler", kind: "telemetry" as const, ts: T0, source: "test" };
      const big = "x".repeat(4_000);
      while (outbox.stats().bytes < 65_536 - 4_200) {
        await outbox.enqueue([{ ...filler, payload: { big } }]);
      }
      // Then the smallest records there are, until not even one more fits.
      for (;;) {
        try {
          await outbox.enqueue([{ ...filler, device: "f", payload: {} }]);
        } catch (error) {
          if (error instanceof OutboxFullError) break;
          throw error;
        }
      }
      const rows = outbox.peek(10_000).filter((r) => r.device === "filler" || r.device === "f");
      return [rows[0].seq, rows[rows.length - 1].seq];
    },
    close() {
      host.stop();
      outbox.close();
      removeDir(dir);
    },
  };
}

function records(outbox: Outbox, device: string) {
  return outbox.peek(10_000).filter((r) => r.device === device).map((r) => ({
    kind: r.kind,
    payload: JSON.parse(r.payload),
  }));
}

/** An `accept()` that must store (`{ok: true}`). */
async function mustStore(answer: Promise<Accepted>): Promise<void> {
  const a = await answer;
  assert.equal(a.ok, true, JSON.stringify(a));
}

/** An `accept()` that must be refused, for this reason. */
async function mustRefuse(answer: Promise<Accepted>, reason: string): Promise<void> {
  const a = await answer;
  assert.equal(a.ok ? "stored" : a.reason, reason);
}

async function refusedThenRetried(
  rules: unknown[],
  before: Message[],
  retried: Message,
): Promise<{ stored: { kind: string; payload: any }[]; t: ReturnType<typeof setup> }> {
  const t = setup(rules);
  for (const m of before) await mustStore(t.ingest.accept([m]));
  const [first, last] = await t.fill();
  await mustRefuse(t.ingest.accept([retried]), "full");
  await t.outbox.ack(first, last); // room again
  await mustStore(t.ingest.accept([retried]));
  return { stored: records(t.outbox, retried.device), t };
}

Deno.test("throttle: a refused message did not use up the interval; its retry passes", async () => {
  const { stored, t } = await refusedThenRetried(
    [{ id: "th", then: [{ throttle: { interval: "1h" } }] }],
    [],
    msg("d1", { n: 1 }),
  );
  try {
    assert.deepEqual(stored.map((r) => r.payload), [{ n: 1 }]);
  } finally {
    t.close();
  }
});

Deno.test("deadband: a refused value is not the last forwarded one; its retry passes", async () => {
  const { stored, t } = await refusedThenRetried(
    [{ id: "db", then: [{ deadband: { field: "v", delta: 5 } }] }],
    [msg("d1", { v: 0 })],
    msg("d1", { v: 10 }),
  );
  try {
    assert.deepEqual(stored.map((r) => r.payload), [{ v: 0 }, { v: 10 }]);
  } finally {
    t.close();
  }
});

Deno.test("alarm: a refused message did not raise the alarm; its retry raises it exactly once", async () => {
  const { stored, t } = await refusedThenRetried(
    [{
      id: "hot",
      if: { ">": [{ var: "t" }, 90] },
      then: [{ alarm: { type: "overheat", severity: "critical" } }],
    }],
    [],
    msg("d1", { t: 95 }),
  );
  try {
    assert.deepEqual(stored.map((r) => [r.kind, r.payload.status ?? r.payload.t]), [["telemetry", 95], [
      "alarm",
      "active",
    ]]);
  } finally {
    t.close();
  }
});

Deno.test(
  "aggregate: what a window absorbed is stored with it, also while the outbox is full (no record needed); " +
    "a message refused while stopping is not counted; the closed window counts each accepted message once",
  async () => {
    const rules = [{ id: "avg", then: [{ aggregate: { window: "60s", fields: { v: ["count", "sum"] } } }] }];
    const t = setup(rules);
    try {
      await mustStore(t.ingest.accept([msg("d1", { v: 1 })]));
      await mustStore(t.ingest.accept([msg("d1", { v: 2 })]));
      await t.fill();
      await mustStore(t.ingest.accept([msg("d1", { v: 4 })])); // absorbed: only the window changes
      const stored = () =>
        (t.outbox.db.prepare("SELECT key, value FROM rule_state").all() as { key: string; value: string }[])
          .map((r) => JSON.parse(r.value).fields.v);
      assert.deepEqual(stored(), [{ count: 3, sum: 7, min: 1, max: 4, last: 4 }]);
      // The window closes a minute later: one message with every accepted value once, and its row goes.
      t.advance(61_000);
      await t.outbox.ack(1, 1_000_000); // room for the closed window's message
      await t.ingest.emitFrom!(() => (t.host as any).engine.tick(T0 + 61_000));
      assert.deepEqual(records(t.outbox, "d1").map((r) => r.payload), [{ v_count: 3, v_sum: 7 }]);
      assert.deepEqual(stored(), []);
      // A new window; then the outbox closes (stopping) and a message is refused: not counted.
      await mustStore(t.ingest.accept([msg("d1", { v: 10 })]));
      const engine = (t.host as any).engine as RuleEngine;
      const before = JSON.stringify(engine.exportState());
      t.outbox.close();
      await mustRefuse(t.ingest.accept([msg("d1", { v: 20 })]), "stopping");
      assert.equal(JSON.stringify(engine.exportState()), before);
    } finally {
      t.host.stop();
      removeDir(t.dir);
    }
  },
);

Deno.test("the journal: undoing refused segments restores exactly the state of an engine that never saw them", () => {
  const r = new Random(20261205);
  for (let round = 0; round < 60; round++) {
    const parsed = parseRulesDocument(randomDocument(r));
    if (!parsed.ok) continue;
    const engine: RuleEngine = createRuleEngine(parsed.value);
    const reference: RuleEngine = createRuleEngine(parsed.value);
    let now = T0;
    for (let step = 0; step < 40; step++) {
      now += r.int(20_000);
      const batch = Array.from({ length: 1 + r.int(3) }, () => randomMessage(r, now));
      const tick = r.int(2) === 0;
      const mark = engine.mark();
      for (const m of batch) engine.process(m, now, { trace: false });
      if (tick) engine.tick(now);
      if (r.int(3) === 0) {
        engine.undoTo(mark); // refused: the reference never sees it
      } else {
        engine.release();
        for (const m of batch) reference.process(m, now, { trace: false });
        if (tick) reference.tick(now);
      }
      assert.deepEqual(engine.exportState(), reference.exportState(), `round ${round}, step ${step}`);
      assert.equal(engine.nextDeadline(), reference.nextDeadline(), `round ${round}, step ${step}`);
    }
  }
});
