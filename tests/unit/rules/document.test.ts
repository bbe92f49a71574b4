/**
 * Loading a rules document: every problem in one answer with its JSON Pointer, the version hash,
 * the frozen copy, and the generated JSON Schema.
 */
import assert from "node:assert/strict";
import { parseRulesDocument, rulesJsonSchema } from "../../../src/rules/mod.ts";

const GOOD = {
  $schema: "./rules.schema.json",
  version: 1,
  rules: [
    {
      id: "overheat",
      description: "Boilers above 90 °C",
      match: { kind: "telemetry", device: "boiler-*", topic: "devices/+/telemetry" },
      if: { ">": [{ var: "temperature" }, 90] },
      then: [{
        alarm: { type: "overheat", severity: "critical", clear: { "<": [{ var: "temperature" }, 80] } },
      }],
      stop: false,
    },
    {
      id: "everything",
      then: [
        { set: { "a.b": 1 } },
        { rename: { a: "b" } },
        { remove: ["x"] },
        { keep: ["b", "t"] },
        { deadband: { field: "t", delta: 0.5 } },
        { throttle: { interval: "500ms" } },
        { aggregate: { window: "1m", fields: { t: ["avg", "last"] } } },
        { route: ["hub", "mqtt:out/t"] },
        { drop: true },
      ],
    },
  ],
};

Deno.test("a valid document loads, with its rule count and a 12-hex-digit content version", () => {
  const parsed = parseRulesDocument(GOOD);
  assert.ok(parsed.ok);
  assert.equal(parsed.value.count, 2);
  assert.match(parsed.value.version, /^[0-9a-f]{12}$/);
  assert.deepStrictEqual(parsed.value.document, GOOD);
  assert.ok(Object.isFrozen(parsed.value.document.rules[0]));
});

Deno.test("the version hashes canonical JSON: key order does not matter, content does", () => {
  const a = parseRulesDocument({ version: 1, rules: [{ id: "x", if: { "==": [1, 1] }, then: [] }] });
  const b = parseRulesDocument({ rules: [{ then: [], if: { "==": [1, 1] }, id: "x" }], version: 1 });
  const c = parseRulesDocument({ version: 1, rules: [{ id: "y", if: { "==": [1, 1] }, then: [] }] });
  assert.ok(a.ok && b.ok && c.ok);
  assert.equal(a.value.version, b.value.version);
  assert.notEqual(a.value.version, c.value.version);
});

Deno.test("every error of a broken document is reported at once, each with its JSON Pointer", () => {
  const parsed = parseRulesDocument({
    version: 2,
    extra: true,
    rules: [
      {
        id: "r0",
        match: { kind: "metrics", device: "", topic: "a/#/b", colour: "red" },
        if: { "===": [{ var: "t" }] },
        then: [
          { set: { "": 1, "a.__proto__": 2, "@device": 3, ok: { nope: [] } } },
          { deadband: { field: "t", delta: -1 } },
          { deadband: { field: "t" } },
          { throttle: { interval: "10 seconds" } },
          { aggregate: { window: "1m", fields: { t: ["avg", "median"], u: [], v: ["min", "min"] } } },
          { alarm: { type: "", severity: "loud", clear: { "!": [] } } },
          { route: ["hub", "mqtt:a/+/b", "kafka:x"] },
          { route: [] },
          { drop: false },
          { sett: { a: 1 } },
          { set: { a: 1 }, drop: true },
          {},
          "drop",
        ],
        stop: "yes",
      },
      { id: "r0", then: {} },
      { then: [] },
      null,
    ],
  });
  assert.ok(!parsed.ok);
  assert.deepStrictEqual(parsed.issues, [
    { path: "/version", message: "Unsupported version 2: expected 1" },
    { path: "/extra", message: 'Unknown key "extra"' },
    {
      path: "/rules/0/match/kind",
      message: 'Invalid type: expected ("telemetry" | "attributes" | "event" | "alarm"), received "metrics"',
    },
    { path: "/rules/0/match/device", message: "Invalid device glob: it is empty" },
    {
      path: "/rules/0/match/topic",
      message: 'Invalid topic filter "a/#/b": "#" must be a whole level and the last one',
    },
    { path: "/rules/0/match/colour", message: 'Unknown key "colour"' },
    { path: "/rules/0/stop", message: 'Invalid type: expected boolean, received "yes"' },
    { path: "/rules/0/if/===", message: 'Operator "===" expects 2 arguments, received 1' },
    { path: "/rules/0/then/0/set/", message: "Invalid field path: it is empty" },
    {
      path: "/rules/0/then/0/set/a.__proto__",
      message: 'Invalid field path "a.__proto__": "__proto__" is not allowed',
    },
    {
      path: "/rules/0/then/0/set/@device",
      message: 'Invalid field path "@device": @device is a message field, not a payload field',
    },
    { path: "/rules/0/then/0/set/ok", message: 'Unknown operator "nope"' },
    { path: "/rules/0/then/1/deadband/delta", message: "Invalid delta -1: expected 0 or more" },
    { path: "/rules/0/then/2/deadband/delta", message: 'Missing required key "delta"' },
    {
      path: "/rules/0/then/3/throttle/interval",
      message: 'Invalid duration "10 seconds": expected a whole number and a unit, like 500ms, 10s, 5m, 1h',
    },
    {
      path: "/rules/0/then/4/aggregate/fields/t/1",
      message: 'Invalid type: expected ("avg" | "min" | "max" | "sum" | "count" | "last"), received "median"',
    },
    { path: "/rules/0/then/4/aggregate/fields/u", message: "Invalid aggregate field: it names no function" },
    {
      path: "/rules/0/then/4/aggregate/fields/v",
      message: "Invalid aggregate field: a function is named twice",
    },
    { path: "/rules/0/then/5/alarm/type", message: "Invalid alarm type: it is empty" },
    {
      path: "/rules/0/then/5/alarm/severity",
      message:
        'Invalid type: expected ("critical" | "major" | "minor" | "warning" | "indeterminate"), received "loud"',
    },
    { path: "/rules/0/then/5/alarm/clear/!", message: 'Operator "!" expects 1 argument, received 0' },
    {
      path: "/rules/0/then/6/route/1",
      message: 'Invalid destination "mqtt:a/+/b": expected "hub" or "mqtt:<topic>" without wildcards',
    },
    {
      path: "/rules/0/then/6/route/2",
      message: 'Invalid destination "kafka:x": expected "hub" or "mqtt:<topic>" without wildcards',
    },
    { path: "/rules/0/then/7/route", message: "Invalid route: it names no destination" },
    { path: "/rules/0/then/8/drop", message: "Invalid drop: expected true" },
    {
      path: "/rules/0/then/9/sett",
      message:
        'Unknown action "sett": expected one of set, rename, remove, keep, drop, deadband, throttle, aggregate, alarm, route',
    },
    {
      path: "/rules/0/then/10",
      message:
        'Invalid action: expected an object with one key: set, rename, remove, keep, drop, deadband, throttle, aggregate, alarm, route; received "set", "drop"',
    },
    {
      path: "/rules/0/then/11",
      message:
        "Invalid action: expected an object with one key: set, rename, remove, keep, drop, deadband, throttle, aggregate, alarm, route; received none",
    },
    {
      path: "/rules/0/then/12",
      message:
        "Invalid action: expected an object with one key: set, rename, remove, keep, drop, deadband, throttle, aggregate, alarm, route, received string",
    },
    { path: "/rules/1/then", message: "Invalid type: expected Array, received Object" },
    { path: "/rules/1/id", message: 'Duplicate rule id "r0": already used by /rules/0' },
    { path: "/rules/2/id", message: 'Missing required key "id"' },
    { path: "/rules/3", message: "Invalid rule: expected an object, received null" },
  ]);
});

Deno.test("the shape of the document itself is checked", () => {
  const issues = (input: unknown) => {
    const parsed = parseRulesDocument(input);
    return parsed.ok ? [] : parsed.issues;
  };
  assert.deepStrictEqual(issues(null), [{
    path: "",
    message: "Invalid rules document: expected an object, received null",
  }]);
  assert.deepStrictEqual(issues([]), [{
    path: "",
    message: "Invalid rules document: expected an object, received Array",
  }]);
  assert.deepStrictEqual(issues({}), [
    { path: "/version", message: 'Missing required key "version"' },
    { path: "/rules", message: 'Missing required key "rules"' },
  ]);
  assert.deepStrictEqual(issues({ version: 1, rules: "none" }), [
    { path: "/rules", message: 'Invalid type: expected Array, received "none"' },
  ]);
  assert.deepStrictEqual(issues({ version: 1, rules: [] }), []);
});

Deno.test("pointers escape / and ~ in keys (RFC 6901)", () => {
  const parsed = parseRulesDocument({
    version: 1,
    rules: [{ id: "r", then: [{ set: { "a/b~c": { "/": [1] } } }] }],
  });
  assert.ok(!parsed.ok);
  assert.deepStrictEqual(parsed.issues, [
    { path: "/rules/0/then/0/set/a~1b~0c/~1", message: 'Operator "/" expects 2 arguments, received 1' },
  ]);
});

Deno.test("absurd input is an issue, never an exception", () => {
  let deep: unknown = 1;
  for (let i = 0; i < 100_000; i++) deep = [deep];
  for (
    const input of [
      { version: 1, rules: [{ id: "r", if: deep, then: [] }] },
      { version: 1, rules: [{ id: "r", then: [{ set: { a: deep } }] }] },
      { version: 1, rules: deep },
      deep,
      "text",
      Symbol("s"),
      () => 1,
      { version: 1, rules: [{ id: "r", if: { var: [() => 1] }, then: [] }] },
    ]
  ) {
    const parsed = parseRulesDocument(input);
    assert.ok(!parsed.ok);
    assert.ok(parsed.issues.length > 0);
  }
});

Deno.test("rulesJsonSchema() describes the document for editors", () => {
  const schema = rulesJsonSchema() as Record<string, any>;
  assert.equal(schema.$schema, "http://json-schema.org/draft-07/schema#");
  assert.equal(schema.type, "object");
  assert.equal(schema.additionalProperties, false);
  assert.deepStrictEqual(schema.required, ["version", "rules"]);
  const rule = schema.properties.rules.items;
  assert.deepStrictEqual(rule.required, ["id", "then"]);
  assert.equal(rule.additionalProperties, false);
  const actions = rule.properties.then.items.anyOf as Record<string, any>[];
  assert.deepStrictEqual(actions.map((a) => Object.keys(a.properties)[0]), [
    "set",
    "rename",
    "remove",
    "keep",
    "drop",
    "deadband",
    "throttle",
    "aggregate",
    "alarm",
    "route",
  ]);
  assert.deepStrictEqual(actions[5].properties.deadband.required, ["field", "delta"]);
  assert.ok(JSON.parse(JSON.stringify(schema)));
});
