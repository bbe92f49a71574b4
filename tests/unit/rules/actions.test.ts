/**
 * Each action, matching and routing, with an injected clock: `now` is a number passed in,
 * nothing sleeps.
 */
import assert from "node:assert/strict";
import { createRuleEngine } from "../../../src/rules/mod.ts";
import { frozen, load, msg } from "./_helpers.ts";

// --- set / rename / remove / keep / drop --------------------------------------------------------

Deno.test("set converts units and creates nested objects for dotted fields", () => {
  const engine = createRuleEngine(load([{
    id: "f2c",
    then: [{
      set: {
        temperature: { "/": [{ "*": [{ "-": [{ var: "temp_f" }, 32] }, 5] }, 9] },
        "meta.unit": "C",
        "meta.source.device": { var: "@device" },
      },
    }, { remove: ["temp_f"] }],
  }]));
  const input = frozen(msg({ temp_f: 212, meta: 5 }));
  const { outputs } = engine.process(input, 0);
  assert.deepStrictEqual(outputs.map((o) => o.payload), [{
    temperature: 100,
    meta: { unit: "C", source: { device: "boiler-1" } },
  }]);
  assert.deepStrictEqual(input.payload, { temp_f: 212, meta: 5 }); // the caller's message is untouched
});

Deno.test("set evaluates every field against the message before the set, then assigns", () => {
  const engine = createRuleEngine(
    load([{ id: "swap", then: [{ set: { a: { var: "b" }, b: { var: "a" } } }] }]),
  );
  assert.deepStrictEqual(engine.process(msg({ a: 1, b: 2 }), 0).outputs[0].payload, { a: 2, b: 1 });
});

Deno.test("set stores copies, JSON values only (NaN and Infinity become null)", () => {
  const engine = createRuleEngine(load([{
    id: "copy",
    then: [{ set: { copy: { var: "nested" }, nan: { "+": ["x"] }, inf: { "/": [1, 0] } } }, {
      set: { "copy.extra": true },
    }],
  }]));
  const out = engine.process(msg({ nested: { v: 1 } }), 0).outputs[0].payload;
  assert.deepStrictEqual(out, { nested: { v: 1 }, copy: { v: 1, extra: true }, nan: null, inf: null });
});

Deno.test("an unchanged message shares the caller's payload (no copy without a change)", () => {
  const engine = createRuleEngine(
    load([{ id: "r", if: { ">": [{ var: "t" }, 0] }, then: [{ route: ["hub"] }] }]),
  );
  const input = msg({ t: 5 });
  const out = engine.process(input, 0).outputs[0];
  assert.equal(out.payload, input.payload);
  assert.notEqual(out, input);
});

Deno.test("rename moves fields, dotted or not; a missing source is a no-op", () => {
  const engine = createRuleEngine(load([{
    id: "r",
    then: [{ rename: { t: "temperature", "env.h": "humidity", nope: "x", "a": "b.c" } }],
  }]));
  const input = frozen(msg({ t: 20, env: { h: 40, p: 1000 }, a: [1] }));
  assert.deepStrictEqual(engine.process(input, 0).outputs[0].payload, {
    temperature: 20,
    env: { p: 1000 },
    humidity: 40,
    b: { c: [1] },
  });
});

Deno.test("remove deletes fields and nested fields", () => {
  const engine = createRuleEngine(
    load([{ id: "r", then: [{ remove: ["debug", "env.raw", "nope", "x.y"] }] }]),
  );
  assert.deepStrictEqual(
    engine.process(frozen(msg({ t: 1, debug: "x", env: { raw: [1], ok: 1 }, x: 5 })), 0).outputs[0].payload,
    { t: 1, env: { ok: 1 }, x: 5 },
  );
});

Deno.test("keep keeps only the named fields, nested ones with their parents", () => {
  const engine = createRuleEngine(load([{ id: "r", then: [{ keep: ["t", "env.h", "nope"] }] }]));
  const input = frozen(msg({ t: 1, debug: "x", env: { h: 40, raw: [1] } }));
  const out = engine.process(input, 0).outputs[0].payload;
  assert.deepStrictEqual(out, { t: 1, env: { h: 40 } });
  assert.notEqual(out.env, input.payload.env);
});

Deno.test("drop sends the message nowhere and skips later rules", () => {
  const engine = createRuleEngine(load([
    { id: "drop-debug", match: { topic: "devices/+/debug/#" }, then: [{ drop: true }] },
    { id: "later", then: [{ set: { seen: true } }] },
  ]));
  const dropped = engine.process(msg({ t: 1 }, { topic: "devices/boiler-1/debug/trace" }), 0);
  assert.deepStrictEqual(dropped.outputs, []);
  assert.deepStrictEqual(dropped.trace, [{
    rule: "drop-debug",
    matched: true,
    actions: ["drop"],
    dropped: true,
  }]);
  const kept = engine.process(msg({ t: 1 }, { topic: "devices/boiler-1/telemetry" }), 0);
  assert.deepStrictEqual(kept.outputs[0].payload, { t: 1, seen: true });
});

// --- deadband / throttle ----------------------------------------------------------------------

Deno.test("deadband: first value passes, then only moves of at least delta from the last forwarded value", () => {
  const engine = createRuleEngine(load([{ id: "db", then: [{ deadband: { field: "t", delta: 0.5 } }] }]));
  const pass = (t: unknown, device = "boiler-1") =>
    engine.process(msg({ t }, { device }), 0).outputs.length === 1;
  assert.equal(pass(10), true); // first value always passes
  assert.equal(pass(10.4), false); // 0.4 < 0.5
  assert.equal(pass(10.2), false);
  assert.equal(pass(10.5), true); // exactly delta passes
  assert.equal(pass(10.9), false); // compared with 10.5 (last forwarded), not 10.2
  assert.equal(pass(10.0), true);
  assert.equal(pass(10.0, "boiler-2"), true); // per device
  assert.equal(pass(10.1, "boiler-2"), false);
});

Deno.test("deadband: a non-numeric or missing field passes unchanged and leaves the state alone", () => {
  const engine = createRuleEngine(load([{ id: "db", then: [{ deadband: { field: "env.t", delta: 1 } }] }]));
  const run = (payload: Record<string, unknown>) =>
    engine.process(msg(payload), 0).outputs.map((o) => o.payload);
  assert.deepStrictEqual(run({ env: { t: 20 } }), [{ env: { t: 20 } }]);
  assert.deepStrictEqual(run({ env: { t: "21" } }), [{ env: { t: "21" } }]);
  assert.deepStrictEqual(run({ other: 1 }), [{ other: 1 }]);
  assert.deepStrictEqual(run({ env: { t: null } }), [{ env: { t: null } }]);
  assert.deepStrictEqual(run({ env: { t: 20.5 } }), []); // still compared with 20
});

Deno.test("throttle: at most one message per device per interval, by the time passed in", () => {
  const engine = createRuleEngine(load([{ id: "th", then: [{ throttle: { interval: "10s" } }] }]));
  const pass = (now: number, device = "boiler-1") =>
    engine.process(msg({ t: 1 }, { device }), now).outputs.length;
  assert.equal(pass(100_000), 1);
  assert.equal(pass(105_000), 0);
  assert.equal(pass(109_999), 0);
  assert.equal(pass(105_000, "boiler-2"), 1);
  assert.equal(pass(110_000), 1); // a full interval after the last one let through
  assert.equal(pass(119_000), 0);
  assert.equal(pass(50_000), 1); // the clock went backwards: let through rather than block for long
});

Deno.test("throttle understands ms, s, m, h durations", () => {
  for (const [interval, ms] of [["500ms", 500], ["2s", 2_000], ["5m", 300_000], ["1h", 3_600_000]] as const) {
    const engine = createRuleEngine(load([{ id: "th", then: [{ throttle: { interval } }] }]));
    assert.equal(engine.process(msg({}), 0).outputs.length, 1);
    assert.equal(engine.process(msg({}), ms - 1).outputs.length, 0, interval);
    assert.equal(engine.process(msg({}), ms).outputs.length, 1, interval);
  }
});

// --- aggregate --------------------------------------------------------------------------------

const AGG = [{
  id: "avg",
  match: { kind: "telemetry" },
  then: [
    {
      aggregate: {
        window: "60s",
        fields: { t: ["avg", "min", "max", "sum", "count", "last"], state: ["last"] },
      },
    },
    { set: { window: "1m" } },
  ],
}, { id: "after", then: [{ route: ["hub", "mqtt:agg/out"] }] }];

Deno.test("aggregate replaces raw messages by one per device per window, emitted by the next message", () => {
  const engine = createRuleEngine(load(AGG));
  const at = (now: number, t: unknown, device = "boiler-1", state?: string) =>
    engine.process(msg(state === undefined ? { t } : { t, state }, { device, ts: now - 5 }), now);
  assert.deepStrictEqual(at(120_000, 10).outputs, []); // window [120000, 180000)
  const absorbed = at(130_000, 20, "boiler-1", "ok");
  assert.deepStrictEqual(absorbed.outputs, []);
  assert.deepStrictEqual(absorbed.trace[0], {
    rule: "avg",
    matched: true,
    actions: ["aggregate"],
    dropped: true,
  });
  assert.deepStrictEqual(at(179_999, "n/a").outputs, []); // non-numeric: only `last` sees it
  assert.deepStrictEqual(at(150_000, 99, "boiler-2").outputs, []); // another device's window
  assert.equal(engine.nextDeadline(), 180_000);

  const closing = at(185_000, 30); // first message of the next window closes the previous one
  assert.equal(closing.outputs.length, 1);
  assert.deepStrictEqual(closing.outputs[0], {
    device: "boiler-1",
    kind: "telemetry",
    ts: 120_000, // the window start
    payload: {
      t_avg: 15,
      t_min: 10,
      t_max: 20,
      t_sum: 30,
      t_count: 2,
      t_last: "n/a",
      state_last: "ok",
      window: "1m",
    },
    source: "rules",
    route: ["hub", "mqtt:agg/out"], // continued with the rest of its rule and the later rules
  });
  assert.deepStrictEqual(closing.trace.filter((t) => t.origin !== undefined), [
    { rule: "avg", matched: true, actions: ["set"], origin: "aggregate avg" },
    { rule: "after", matched: true, actions: ["route"], origin: "aggregate avg" },
  ]);
});

Deno.test("aggregate windows close by tick(now) when no further message comes", () => {
  const engine = createRuleEngine(load(AGG));
  assert.equal(engine.nextDeadline(), undefined);
  engine.process(msg({ t: 1 }), 60_500);
  engine.process(msg({ t: 3 }, { device: "boiler-2" }), 61_000);
  engine.process(msg({ t: 5 }), 62_000);
  assert.equal(engine.nextDeadline(), 120_000);
  assert.deepStrictEqual(engine.tick(119_999), []);
  const emitted = engine.tick(120_000);
  assert.deepStrictEqual(emitted.map((m) => [m.device, m.ts, m.payload.t_avg, m.payload.t_count, m.route]), [
    ["boiler-1", 60_000, 3, 2, ["hub", "mqtt:agg/out"]],
    ["boiler-2", 60_000, 3, 1, ["hub", "mqtt:agg/out"]],
  ]);
  assert.equal(engine.nextDeadline(), undefined);
  assert.deepStrictEqual(engine.tick(500_000), []);
});

Deno.test("aggregate of a window with no numeric value reports null avg/min/max and zero sum/count", () => {
  const engine = createRuleEngine(load([{
    id: "a",
    then: [{
      aggregate: { window: "10s", fields: { "env.t": ["avg", "min", "max", "sum", "count", "last"] } },
    }],
  }]));
  engine.process(msg({ env: { t: "x" } }), 0);
  assert.deepStrictEqual(engine.tick(10_000)[0].payload, {
    env: { t_avg: null, t_min: null, t_max: null, t_sum: 0, t_count: 0, t_last: "x" },
  });
});

// --- alarm ------------------------------------------------------------------------------------

const OVERHEAT = [{
  id: "overheat",
  match: { kind: "telemetry", device: "boiler-*" },
  if: { ">": [{ var: "temperature" }, 90] },
  then: [{ alarm: { type: "overheat", severity: "critical", clear: { "<": [{ var: "temperature" }, 80] } } }],
}];

Deno.test("alarm: raised once while the condition holds, cleared when `clear` holds", () => {
  const engine = createRuleEngine(load(OVERHEAT));
  const at = (temperature: number, ts: number) => engine.process(msg({ temperature }, { ts }), ts).outputs;

  const raised = at(95, 1_000);
  assert.equal(raised.length, 2);
  assert.deepStrictEqual(raised[0].payload, { temperature: 95 }); // the original message continues
  assert.deepStrictEqual(raised[1], {
    device: "boiler-1",
    kind: "alarm",
    ts: 1_000,
    payload: {
      type: "overheat",
      severity: "critical",
      status: "active",
      rule: "overheat",
      raisedAt: 1_000,
      trigger: { temperature: 95 },
    },
    source: "rules",
  });
  assert.equal(at(99, 2_000).length, 1); // still active: not raised again
  assert.equal(at(85, 3_000).length, 1); // condition no longer holds, but clear does not yet: hysteresis
  assert.equal(at(92, 4_000).length, 1); // still the same active alarm
  const cleared = at(75, 5_000);
  assert.equal(cleared.length, 2);
  assert.deepStrictEqual(cleared[1].payload, {
    type: "overheat",
    severity: "critical",
    status: "cleared",
    rule: "overheat",
    raisedAt: 1_000,
    clearedAt: 5_000,
    clearedBy: "overheat",
    trigger: { temperature: 75 },
  });
  assert.equal(at(70, 6_000).length, 1); // nothing to clear any more
  assert.equal(at(91, 7_000).length, 2); // raised again
});

Deno.test("alarm without `clear`: cleared as soon as the rule's condition stops holding", () => {
  const engine = createRuleEngine(load([{
    id: "low-battery",
    if: { "<": [{ var: "battery" }, 10] },
    then: [{ alarm: { type: "battery", severity: "warning" } }],
  }]));
  const statuses = (battery: number, device = "s1") =>
    engine.process(msg({ battery }, { device }), 0).outputs.filter((o) => o.kind === "alarm").map((o) =>
      o.payload.status
    );
  assert.deepStrictEqual(statuses(5), ["active"]);
  assert.deepStrictEqual(statuses(4), []);
  assert.deepStrictEqual(statuses(50, "s2"), []); // another device has no alarm to clear
  assert.deepStrictEqual(statuses(6, "s2"), ["active"]); // per device
  assert.deepStrictEqual(statuses(50), ["cleared"]);
  assert.deepStrictEqual(statuses(50), []);
});

Deno.test("alarm state survives a restart through exportState()", () => {
  const first = createRuleEngine(load(OVERHEAT));
  assert.equal(first.process(msg({ temperature: 95 }), 0).outputs.length, 2);
  const saved = JSON.parse(JSON.stringify(first.exportState()));
  assert.deepStrictEqual(saved.alarms, [{
    device: "boiler-1",
    type: "overheat",
    severity: "critical",
    rule: "overheat",
    raisedAt: 1_000,
  }]);
  const second = createRuleEngine(load(OVERHEAT), saved); // "restart"
  assert.equal(second.process(msg({ temperature: 96 }), 0).outputs.length, 1); // not raised twice
  const cleared = second.process(msg({ temperature: 70 }), 0).outputs;
  assert.deepStrictEqual(cleared.map((o) => o.payload.status), [undefined, "cleared"]);
  assert.equal(cleared[1].payload.raisedAt, 1_000);
});

Deno.test("alarm messages continue through the later rules (e.g. to be routed)", () => {
  const engine = createRuleEngine(load([
    ...OVERHEAT,
    { id: "alarms-to-mqtt", match: { kind: "alarm" }, then: [{ route: ["hub", "mqtt:alarms/boiler"] }] },
  ]));
  const { outputs, trace } = engine.process(msg({ temperature: 95 }), 0);
  assert.deepStrictEqual(outputs.map((o) => [o.kind, o.route]), [["telemetry", undefined], ["alarm", [
    "hub",
    "mqtt:alarms/boiler",
  ]]]);
  assert.deepStrictEqual(trace, [
    { rule: "overheat", matched: true, actions: ["alarm"] },
    { rule: "alarms-to-mqtt", matched: false },
    { rule: "alarms-to-mqtt", matched: true, actions: ["route"], origin: "alarm overheat active" },
  ]);
});

// --- route / stop / match ---------------------------------------------------------------------

Deno.test("route sets the destinations; without it the message goes to the hub (no route)", () => {
  const engine = createRuleEngine(load([
    { id: "local", match: { device: "pump-*" }, then: [{ route: ["mqtt:local/pumps"] }] },
    { id: "both", match: { device: "pump-7" }, then: [{ route: ["hub", "mqtt:local/pump-7"] }] },
  ]));
  assert.deepStrictEqual(engine.process(msg({}, { device: "boiler-1" }), 0).outputs[0].route, undefined);
  assert.deepStrictEqual(engine.process(msg({}, { device: "pump-1" }), 0).outputs[0].route, [
    "mqtt:local/pumps",
  ]);
  assert.deepStrictEqual(engine.process(msg({}, { device: "pump-7" }), 0).outputs[0].route, [
    "hub",
    "mqtt:local/pump-7",
  ]);
  assert.deepStrictEqual(createRuleEngine(load([])).process(msg({ a: 1 }), 0).outputs, [msg({ a: 1 })]);
});

Deno.test("stop: a matched rule with stop ends evaluation; an unmatched one does not", () => {
  const engine = createRuleEngine(load([
    { id: "first", if: { var: "urgent" }, then: [{ set: { tagged: 1 } }], stop: true },
    { id: "second", then: [{ set: { second: true } }] },
  ]));
  const urgent = engine.process(msg({ urgent: true }), 0);
  assert.deepStrictEqual(urgent.outputs[0].payload, { urgent: true, tagged: 1 });
  assert.deepStrictEqual(urgent.trace.map((t) => t.rule), ["first"]);
  const normal = engine.process(msg({ urgent: false }), 0);
  assert.deepStrictEqual(normal.outputs[0].payload, { urgent: false, second: true });
});

Deno.test("match: kind equality, device glob with * and ?, MQTT topic filter with + and #", () => {
  const engine = createRuleEngine(load([
    { id: "kind", match: { kind: "event" }, then: [{ set: { kind: true } }] },
    { id: "glob", match: { device: "boiler-?-*" }, then: [{ set: { glob: true } }] },
    { id: "plus", match: { topic: "devices/+/telemetry" }, then: [{ set: { plus: true } }] },
    { id: "hash", match: { topic: "site/#" }, then: [{ set: { hash: true } }] },
    { id: "all", match: { kind: "telemetry", device: "*", topic: "#" }, then: [{ set: { all: true } }] },
  ]));
  const tags = (extra: Parameters<typeof msg>[1]) =>
    Object.keys(engine.process(msg({}, extra), 0).outputs[0].payload);
  assert.deepStrictEqual(tags({ kind: "event" }), ["kind"]);
  assert.deepStrictEqual(tags({ device: "boiler-1-a" }), ["glob"]);
  assert.deepStrictEqual(tags({ device: "boiler-12-a" }), []); // ? is exactly one character
  assert.deepStrictEqual(tags({ device: "boiler-1-" }), ["glob"]); // * may be empty
  assert.deepStrictEqual(tags({ topic: "devices/boiler-1/telemetry" }), ["plus", "all"]);
  assert.deepStrictEqual(tags({ topic: "devices/a/b/telemetry" }), ["all"]); // + is one level
  assert.deepStrictEqual(tags({ topic: "devices//telemetry" }), ["plus", "all"]); // an empty level
  assert.deepStrictEqual(tags({ topic: "site" }), ["hash", "all"]); // site/# matches its parent
  assert.deepStrictEqual(tags({ topic: "site/a/b" }), ["hash", "all"]);
  assert.deepStrictEqual(tags({ topic: "sites/a" }), ["all"]);
  assert.deepStrictEqual(tags({ topic: "$SYS/x" }), []); // a leading wildcard skips $ topics
  assert.deepStrictEqual(tags({}), []); // no topic: no topic filter matches
});

Deno.test("if can use @device, @kind, @ts and @topic; the payload cannot spoof them", () => {
  const engine = createRuleEngine(load([{
    id: "r",
    if: { and: [{ "==": [{ var: "@device" }, "pump-7"] }, { ">": [{ var: "@ts" }, 10] }] },
    then: [{ set: { who: { cat: [{ var: "@kind" }, "@", { var: "@topic" }] } } }],
  }]));
  assert.deepStrictEqual(
    engine.process(msg({ "@device": "pump-7" }, { device: "pump-7", ts: 11, topic: "t/1" }), 0).outputs[0]
      .payload,
    { "@device": "pump-7", who: "telemetry@t/1" },
  );
  assert.deepStrictEqual(engine.process(msg({ "@device": "pump-7" }), 0).outputs[0].payload, {
    "@device": "pump-7",
  });
});

Deno.test("alarm: a message without the deciding fields neither clears nor re-raises it", () => {
  const engine = createRuleEngine(load([
    ...OVERHEAT, // explicit clear: temperature < 80
    {
      id: "leak",
      if: { "==": [{ var: "water.leak" }, true] },
      then: [{ alarm: { type: "leak", severity: "major" } }],
    },
  ]));
  const alarms = (payload: Record<string, unknown>) =>
    engine.process(msg(payload), 0).outputs.filter((o) => o.kind === "alarm").map((o) =>
      `${o.payload.type} ${o.payload.status}`
    );
  assert.deepStrictEqual(alarms({ temperature: 95, water: { leak: true } }), [
    "overheat active",
    "leak active",
  ]);
  // A battery report reads as `temperature < 80` → `null < 80` → true in JsonLogic; it must not clear.
  assert.deepStrictEqual(alarms({ battery: 80 }), []);
  assert.deepStrictEqual(alarms({ temperature: null, water: { leak: null } }), []);
  assert.deepStrictEqual(alarms({ temperature: 70, water: { leak: false } }), [
    "overheat cleared",
    "leak cleared",
  ]);
});

Deno.test("paths through arrays: set writes into them, remove and rename do not take elements out", () => {
  const engine = createRuleEngine(load([{
    id: "r",
    then: [{ set: { "values.1": 9, "values.5": 1 } }, { rename: { "values.0": "first" } }, {
      remove: ["values.1"],
    }],
  }]));
  const input = frozen(msg({ values: [1, 2, 3] }));
  assert.deepStrictEqual(engine.process(input, 0).outputs[0].payload, { values: [1, 9, 3], first: 1 });
  assert.deepStrictEqual(input.payload, { values: [1, 2, 3] });
});

Deno.test("a payload key named __proto__ stays a plain key through every action", () => {
  const payload = JSON.parse('{"__proto__": {"polluted": true}, "a": {"__proto__": 1, "b": 2}, "t": 1}');
  const engine = createRuleEngine(load([{ id: "s", then: [{ alarm: { type: "t", severity: "minor" } }] }, {
    id: "r",
    match: { kind: "telemetry" },
    then: [{ set: { x: 1, "a.c": 3 } }, { remove: ["a.b"] }, { rename: { t: "temp" } }, {
      keep: ["__x", "a", "x", "temp"],
    }],
  }]));
  const { outputs } = engine.process(msg(payload), 0);
  const out = outputs[0].payload;
  assert.equal(Object.getPrototypeOf(out), Object.prototype);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.equal(Object.getPrototypeOf(out.a), Object.prototype);
  assert.ok(Object.hasOwn(out.a as object, "__proto__"));
  assert.deepStrictEqual(Object.keys(out), ["a", "x", "temp"]);
  const trigger = outputs[1].payload.trigger as Record<string, unknown>;
  assert.ok(Object.hasOwn(trigger, "__proto__") && Object.getPrototypeOf(trigger) === Object.prototype);
});

Deno.test("alarm: a message without the fields the condition reads does not raise it either", () => {
  // `0 <= null <= 10` holds in JsonLogic: without the presence rule, every message lacking
  // `battery` would raise a low-battery alarm.
  const engine = createRuleEngine(load([{
    id: "low-battery",
    if: { "<=": [0, { var: "battery" }, 10] },
    then: [{ set: { flagged: true } }, { alarm: { type: "battery", severity: "warning" } }],
  }]));
  const run = (payload: Record<string, unknown>) =>
    engine.process(msg(payload), 0).outputs.map((o) =>
      o.kind === "alarm" ? `alarm ${o.payload.status}` : o.payload
    );
  assert.deepStrictEqual(run({ temperature: 20 }), [{ temperature: 20, flagged: true }]); // the rule matched; no alarm
  assert.deepStrictEqual(run({ battery: 5 }), [{ battery: 5, flagged: true }, "alarm active"]);
  assert.deepStrictEqual(run({ temperature: 20 }), [{ temperature: 20, flagged: true }]); // nor cleared
  assert.deepStrictEqual(run({ battery: 50 }), [{ battery: 50 }, "alarm cleared"]);
});

Deno.test("alarm: `clear` is decided first, also for a message that matched without the raising fields", () => {
  const engine = createRuleEngine(load([{
    id: "door",
    if: { "<": [{ var: "closed_for" }, 5] }, // null < 5 holds: matches messages without the field
    then: [{ alarm: { type: "door", severity: "minor", clear: { "==": [{ var: "locked" }, true] } } }],
  }]));
  const statuses = (payload: Record<string, unknown>) =>
    engine.process(msg(payload), 0).outputs.filter((o) => o.kind === "alarm").map((o) => o.payload.status);
  assert.deepStrictEqual(statuses({ locked: false }), []); // matched, but carries no closed_for: no raise
  assert.deepStrictEqual(statuses({ closed_for: 1 }), ["active"]);
  assert.deepStrictEqual(statuses({ locked: true }), ["cleared"]); // matched without closed_for; clear holds
});
