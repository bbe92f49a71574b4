/**
 * Engine-wide promises: a rule that fails on some data leaves the message (and every state) as
 * the rule found it; state survives a restart and a rules replacement; the trace can be turned off.
 */
import assert from "node:assert/strict";
import { createRuleEngine } from "../../../src/rules/mod.ts";
import { frozen, load, msg } from "./_helpers.ts";

/** `cat` of an object whose `toString` is not a function throws in JavaScript (and json-logic-js). */
const BOMB = { cat: [{ var: "bad" }] };

Deno.test("a rule that fails at run time leaves the message unchanged; the error is counted and traced", () => {
  const engine = createRuleEngine(load([
    { id: "before", then: [{ set: { before: true } }] },
    { id: "broken", then: [{ set: { ok: 1 } }, { route: ["mqtt:x"] }, { set: { label: BOMB } }], stop: true },
    { id: "after", then: [{ set: { after: true } }] },
  ]));
  const input = frozen(msg({ bad: { toString: 1 } }));
  const result = engine.process(input, 0);
  assert.equal(result.errors, 1);
  assert.deepStrictEqual(result.outputs.map((o) => [o.payload, o.route]), [[
    { bad: { toString: 1 }, before: true, after: true }, // no "ok", no route: the broken rule is undone
    undefined,
  ]]);
  assert.deepStrictEqual(result.trace[1].rule, "broken");
  assert.deepStrictEqual(result.trace[1].actions, ["set", "route", "set"]);
  assert.match(result.trace[1].error!, /^TypeError: /);
  assert.equal(result.trace[2].rule, "after"); // a failed rule's stop does not apply
  assert.equal(engine.stats().errors, 1);

  const fine = engine.process(msg({ bad: "fine" }), 0);
  assert.equal(fine.errors, 0);
  assert.deepStrictEqual(fine.outputs[0].route, ["mqtt:x"]);
  assert.deepStrictEqual(fine.outputs[0].payload, { bad: "fine", before: true, ok: 1, label: "fine" });
});

Deno.test("a failing `if` counts as not matched, with the error traced", () => {
  const engine = createRuleEngine(load([{ id: "r", if: { "==": [BOMB, "x"] }, then: [{ drop: true }] }]));
  const result = engine.process(msg({ bad: { toString: 1 } }), 0);
  assert.equal(result.errors, 1);
  assert.equal(result.outputs.length, 1);
  assert.equal(result.trace[0].matched, false);
  assert.match(result.trace[0].error!, /TypeError/);
});

Deno.test("a failed rule undoes its deadband, throttle and alarm changes", () => {
  const engine = createRuleEngine(load([{
    id: "r",
    then: [
      { deadband: { field: "t", delta: 5 } },
      { throttle: { interval: "1h" } },
      { alarm: { type: "seen", severity: "minor" } },
      { set: { label: BOMB } },
    ],
  }]));
  const failed = engine.process(msg({ t: 1, bad: { toString: 1 } }), 0);
  assert.equal(failed.errors, 1);
  assert.deepStrictEqual(failed.outputs.map((o) => o.kind), ["telemetry"]); // no alarm message
  assert.deepStrictEqual(engine.exportState(), {
    format: 1,
    alarms: [],
    deadband: [],
    throttle: [],
    windows: [],
  });
  // The next good message is treated as the first one: it passes deadband and throttle, raises the alarm.
  const ok = engine.process(msg({ t: 1, bad: "x" }), 0);
  assert.deepStrictEqual(ok.outputs.map((o) => o.kind), ["telemetry", "alarm"]);
});

Deno.test("a failing `clear` keeps the alarm active and counts the error", () => {
  const engine = createRuleEngine(load([{
    id: "r",
    if: { ">": [{ var: "t" }, 10] },
    then: [{ alarm: { type: "hot", severity: "major", clear: { "==": [BOMB, "x"] } } }],
  }]));
  assert.equal(engine.process(msg({ t: 20, bad: "" }), 0).outputs.length, 2);
  const result = engine.process(msg({ t: 1, bad: { toString: 1 } }), 0);
  assert.equal(result.errors, 1);
  assert.equal(result.outputs.length, 1);
  assert.equal(engine.exportState().alarms.length, 1);
});

Deno.test("exportState() is JSON and a new engine resumes deadband, throttle and open windows from it", () => {
  const rules = load([
    { id: "db", match: { kind: "telemetry" }, then: [{ deadband: { field: "t", delta: 1 } }] },
    { id: "th", match: { kind: "event" }, then: [{ throttle: { interval: "10s" } }] },
    {
      id: "agg",
      match: { kind: "attributes" },
      then: [{ aggregate: { window: "1m", fields: { v: ["avg", "last"] } } }],
    },
  ]);
  const first = createRuleEngine(rules);
  first.process(msg({ t: 20 }), 1_000);
  first.process(msg({}, { kind: "event" }), 1_000);
  first.process(msg({ v: 2 }, { kind: "attributes", topic: "a/b" }), 1_000);
  first.process(msg({ v: [4] }, { kind: "attributes", topic: "a/b" }), 2_000);
  const saved = JSON.parse(JSON.stringify(first.exportState()));

  const second = createRuleEngine(rules, saved);
  assert.equal(second.process(msg({ t: 20.5 }), 3_000).outputs.length, 0); // deadband remembers 20
  assert.equal(second.process(msg({}, { kind: "event" }), 5_000).outputs.length, 0); // throttle remembers 1000
  assert.equal(second.nextDeadline(), 60_000);
  second.process(msg({ v: 6 }, { kind: "attributes", topic: "a/b" }), 3_000);
  assert.deepStrictEqual(second.tick(60_000), [{
    device: "boiler-1",
    kind: "attributes",
    ts: 0,
    payload: { v_avg: 4, v_last: 6 },
    source: "rules",
    topic: "a/b",
  }]);
  assert.deepStrictEqual(second.exportState(), {
    format: 1,
    alarms: [],
    deadband: [{ rule: "db", action: 0, field: "t", last: [["boiler-1", 20]] }],
    throttle: [{ rule: "th", action: 0, interval: 10_000, last: [["boiler-1", 1_000]] }],
    windows: [],
  });
});

Deno.test("a state that does not fit the rules is ignored, never an error", () => {
  const rules = load([{ id: "db", then: [{ deadband: { field: "t", delta: 1 } }] }]);
  for (
    const junk of [null, 5, "x", { alarms: "no" }, {
      deadband: [{ rule: "db", action: 0, field: "other", last: [["d", 1]] }],
    }, {
      deadband: [{ rule: "db", action: 7 }, null, { rule: 1 }],
      windows: [{ rule: "db", action: 0, signature: "?", open: [{}] }],
    }]
  ) {
    const engine = createRuleEngine(rules, junk as never);
    assert.equal(engine.process(msg({ t: 1 }, { device: "d" }), 0).outputs.length, 1);
  }
});

Deno.test("replace() swaps the rules atomically and carries over the state that still fits", () => {
  const engine = createRuleEngine(load([
    { id: "db", then: [{ deadband: { field: "t", delta: 1 } }] },
    { id: "hot", if: { ">": [{ var: "t" }, 50] }, then: [{ alarm: { type: "hot", severity: "major" } }] },
    { id: "agg", match: { kind: "event" }, then: [{ aggregate: { window: "1m", fields: { n: ["sum"] } } }] },
  ]));
  engine.process(msg({ t: 60 }), 0);
  engine.process(msg({ n: 1 }, { kind: "event" }), 0);
  const before = engine.rules.version;

  engine.replace(load([
    { id: "db", then: [{ deadband: { field: "t", delta: 1 } }] }, // unchanged: keeps its last value
    { id: "agg", match: { kind: "event" }, then: [{ aggregate: { window: "5m", fields: { n: ["sum"] } } }] }, // changed
    { id: "tag", then: [{ set: { v: 2 } }] },
  ]));
  assert.notEqual(engine.rules.version, before);
  assert.equal(engine.process(msg({ t: 60.5 }), 0).outputs.length, 0);
  assert.equal(engine.nextDeadline(), undefined); // the changed aggregate's open window was dropped
  assert.deepStrictEqual(engine.exportState().alarms.map((a) => a.type), ["hot"]); // alarms are kept
  assert.deepStrictEqual(engine.process(msg({ t: 99 }), 0).outputs[0].payload, { t: 99, v: 2 });
});

Deno.test("process with {trace: false} builds no trace; the result is otherwise the same", () => {
  const engine = createRuleEngine(
    load([{ id: "r", if: { ">": [{ var: "t" }, 1] }, then: [{ set: { hi: true } }] }]),
  );
  const fast = engine.process(msg({ t: 2 }), 0, { trace: false });
  assert.deepStrictEqual(fast.trace, []);
  assert.deepStrictEqual(fast.outputs, engine.process(msg({ t: 2 }), 0).outputs);
});

Deno.test("stats() counts processed, emitted, dropped and errors", () => {
  const engine = createRuleEngine(load([
    { id: "d", if: { var: "drop" }, then: [{ drop: true }] },
    { id: "x", if: { var: "boom" }, then: [{ set: { y: BOMB } }] },
  ]));
  engine.process(msg({ drop: true }), 0);
  engine.process(msg({}), 0);
  engine.process(msg({ boom: 1, bad: { toString: 1 } }), 0);
  assert.deepStrictEqual(engine.stats(), { processed: 3, emitted: 2, dropped: 1, errors: 1 });
});

Deno.test("alarm messages are seen only by rules that match kind alarm; chains of created messages end", () => {
  const engine = createRuleEngine(load([
    { id: "a1", then: [{ alarm: { type: "any", severity: "warning" } }] },
    { id: "a2", match: { kind: "alarm" }, then: [{ alarm: { type: "meta", severity: "warning" } }] },
    // Without `match: {kind: "alarm"}` these never see alarm messages (a missing field reads as
    // null, and `null < 10` holds in JsonLogic: alarms would raise more alarms).
    { id: "low", if: { "<": [{ var: "battery" }, 10] }, then: [{ set: { low: true } }] },
    { id: "agg", then: [{ aggregate: { window: "1s", fields: { battery: ["last"] } } }] },
  ]));
  const first = engine.process(msg({ battery: 50 }), 0).outputs;
  assert.deepStrictEqual(first.map((o) => [o.kind, o.payload.type, o.payload.low]), [
    ["alarm", "any", undefined],
    ["alarm", "meta", undefined],
  ]);
  const closed = engine.process(msg({ battery: 40 }), 1_000).outputs;
  assert.deepStrictEqual(closed.map((o) => [o.kind, o.payload]), [["telemetry", { battery_last: 50 }]]);
});
