/**
 * JsonLogic conformance: every operator's examples from jsonlogic.com, the truthiness and
 * coercion corner cases, compile errors with paths, and a differential check against
 * json-logic-js (a fixed table and 20,000 random expressions over random data).
 */
import assert from "node:assert/strict";
import jsonLogic from "json-logic-js";
import { compileJsonLogic, truthy } from "../../../src/rules/mod.ts";
import type { MessageFields } from "../../../src/rules/mod.ts";
import { Random, randomExpression, randomValue } from "./_random.ts";

const MSG: MessageFields = {
  device: "boiler-1",
  kind: "telemetry",
  ts: 1700000000000,
  topic: "devices/boiler-1/t",
};

function run(expr: unknown, data: unknown = null, message: MessageFields = MSG): unknown {
  const compiled = compileJsonLogic(expr);
  if (!compiled.ok) throw new Error(`compile failed: ${JSON.stringify(compiled.issues)}`);
  return compiled.value(data, message);
}

/** [expression, data, expected] straight from the jsonlogic.com operator pages. */
const DOC_EXAMPLES: [unknown, unknown, unknown][] = [
  // Accessing data
  [{ var: ["a"] }, { a: 1, b: 2 }, 1],
  [{ var: "a" }, { a: 1, b: 2 }, 1],
  [{ var: ["z", 26] }, { a: 1, b: 2 }, 26],
  [{ var: "champ.name" }, {
    champ: { name: "Fezzig", height: 223 },
    challenger: { name: "Dread Pirate Roberts" },
  }, "Fezzig"],
  [{ var: 1 }, ["zero", "one", "two"], "one"],
  [{ var: "" }, 42, 42],
  [{ cat: ["Hello, ", { var: "" }] }, "Dolly", "Hello, Dolly"],
  [
    { and: [{ "<": [{ var: "temp" }, 110] }, { "==": [{ var: "pie.filling" }, "apple"] }] },
    { temp: 100, pie: { filling: "apple" } },
    true,
  ],
  [{ missing: ["a", "b", "c"] }, { a: "apple", c: "carrot" }, ["b"]],
  [
    { if: [{ missing: ["a", "b"] }, "Not enough fruit", "OK to proceed"] },
    { a: "apple", b: "banana" },
    "OK to proceed",
  ],
  [{ missing_some: [1, ["a", "b", "c"]] }, { a: "apple" }, []],
  [{ missing_some: [2, ["a", "b", "c"]] }, { a: "apple" }, ["b", "c"]],
  [
    {
      if: [
        {
          merge: [{ missing: ["first_name", "last_name"] }, {
            missing_some: [1, ["cell_phone", "home_phone"]],
          }],
        },
        "We require first name, last name, and one phone number.",
        "OK to proceed",
      ],
    },
    { first_name: "Bruce", last_name: "Wayne" },
    "We require first name, last name, and one phone number.",
  ],
  // Logic and boolean operations
  [{ if: [true, "yes", "no"] }, null, "yes"],
  [{ "==": [1, 1] }, null, true],
  [{ "==": [1, "1"] }, null, true],
  [{ "==": [0, false] }, null, true],
  [{ "===": [1, 1] }, null, true],
  [{ "===": [1, "1"] }, null, false],
  [{ "!=": [1, 2] }, null, true],
  [{ "!=": [1, "1"] }, null, false],
  [{ "!==": [1, 2] }, null, true],
  [{ "!==": [1, "1"] }, null, true],
  [{ "!": [true] }, null, false],
  [{ "!": true }, null, false],
  [{ "!!": [[]] }, null, false],
  [{ "!!": ["0"] }, null, true],
  [{ or: [true, false] }, null, true],
  [{ or: [false, "a"] }, null, "a"],
  [{ or: [false, 0, "a"] }, null, "a"],
  [{ and: [true, false] }, null, false],
  [{ and: [true, "a", 3] }, null, 3],
  [{ and: [true, "", 3] }, null, ""],
  // Numeric operations
  [{ ">": [2, 1] }, null, true],
  [{ ">=": [1, 1] }, null, true],
  [{ "<": [1, 2] }, null, true],
  [{ "<=": [1, 1] }, null, true],
  [{ "<": [1, 2, 3] }, null, true],
  [{ "<": [1, 1, 3] }, null, false],
  [{ "<": [1, 4, 3] }, null, false],
  [{ "<=": [1, 1, 3] }, null, true],
  [{ "<=": [1, 4, 3] }, null, false],
  [{ "<": [0, { var: "temp" }, 100] }, { temp: 37 }, true],
  [{ max: [1, 2, 3] }, null, 3],
  [{ min: [1, 2, 3] }, null, 1],
  [{ "+": [4, 2] }, null, 6],
  [{ "-": [4, 2] }, null, 2],
  [{ "*": [4, 2] }, null, 8],
  [{ "/": [4, 2] }, null, 2],
  [{ "+": [2, 2, 2, 2, 2] }, null, 10],
  [{ "*": [2, 2, 2, 2, 2] }, null, 32],
  [{ "-": 2 }, null, -2],
  [{ "-": -2 }, null, 2],
  [{ "+": "3.14" }, null, 3.14],
  [{ "%": [101, 2] }, null, 1],
  // Array operations
  [{ map: [{ var: "integers" }, { "*": [{ var: "" }, 2] }] }, { integers: [1, 2, 3, 4, 5] }, [
    2,
    4,
    6,
    8,
    10,
  ]],
  [{ filter: [{ var: "integers" }, { "%": [{ var: "" }, 2] }] }, { integers: [1, 2, 3, 4, 5] }, [1, 3, 5]],
  [
    { reduce: [{ var: "integers" }, { "+": [{ var: "current" }, { var: "accumulator" }] }, 0] },
    { integers: [1, 2, 3, 4, 5] },
    15,
  ],
  [{ all: [[1, 2, 3], { ">": [{ var: "" }, 0] }] }, null, true],
  [{ some: [[-1, 0, 1], { ">": [{ var: "" }, 0] }] }, null, true],
  [{ none: [[-3, -2, -1], { ">": [{ var: "" }, 0] }] }, null, true],
  [
    { some: [{ var: "pies" }, { "==": [{ var: "filling" }, "apple"] }] },
    {
      pies: [{ filling: "pumpkin", temp: 110 }, { filling: "rhubarb", temp: 210 }, {
        filling: "apple",
        temp: 310,
      }],
    },
    true,
  ],
  [{ merge: [[1, 2], [3, 4]] }, null, [1, 2, 3, 4]],
  [{ merge: [1, 2, [3, 4]] }, null, [1, 2, 3, 4]],
  [
    { missing: { merge: ["vin", { if: [{ var: "financing" }, ["apr"], []] }] } },
    { financing: true },
    ["vin", "apr"],
  ],
  [{ missing: { merge: ["vin", { if: [{ var: "financing" }, ["apr"], []] }] } }, { financing: false }, [
    "vin",
  ]],
  [{ in: ["Ringo", ["John", "Paul", "George", "Ringo"]] }, null, true],
  // String operations
  [{ in: ["Spring", "Springfield"] }, null, true],
  [{ cat: ["I love", " pie"] }, null, "I love pie"],
  [{ cat: ["I love ", { var: "filling" }, " pie"] }, { filling: "apple", temp: 110 }, "I love apple pie"],
  [{ substr: ["jsonlogic", 4] }, null, "logic"],
  [{ substr: ["jsonlogic", -5] }, null, "logic"],
  [{ substr: ["jsonlogic", 1, 3] }, null, "son"],
  [{ substr: ["jsonlogic", 4, -2] }, null, "log"],
];

Deno.test("every operator answers the jsonlogic.com examples", () => {
  for (const [expr, data, expected] of DOC_EXAMPLES) {
    assert.deepStrictEqual(run(expr, data), expected, JSON.stringify(expr));
  }
});

Deno.test("if chains else-ifs like the FizzBuzz example", () => {
  const fizzbuzz = {
    if: [
      { "==": [{ "%": [{ var: "i" }, 15] }, 0] },
      "fizzbuzz",
      { "==": [{ "%": [{ var: "i" }, 3] }, 0] },
      "fizz",
      { "==": [{ "%": [{ var: "i" }, 5] }, 0] },
      "buzz",
      { var: "i" },
    ],
  };
  const got = Array.from({ length: 15 }, (_, k) => run(fizzbuzz, { i: k + 1 }));
  assert.deepStrictEqual(got, [
    1,
    2,
    "fizz",
    4,
    "buzz",
    "fizz",
    7,
    8,
    "fizz",
    "buzz",
    11,
    "fizz",
    13,
    14,
    "fizzbuzz",
  ]);
  assert.equal(run({ if: [] }), null);
  assert.equal(run({ if: ["apple"] }), "apple");
  assert.equal(run({ if: [false, "apple"] }), null);
  assert.equal(run({ if: [false, "a", false, "b"] }), null);
  assert.equal(run({ "?:": [true, 1, 2] }), 1);
  assert.equal(run({ "?:": [[], 1, 2] }), 2);
});

Deno.test('truthiness is JsonLogic\'s: [] and "" are falsy, "0" and [0] are truthy', () => {
  const table: [unknown, boolean][] = [
    [0, false],
    [-0, false],
    [1, true],
    [-1, true],
    [NaN, false],
    [[], false],
    [[0], true],
    [[1, 2], true],
    ["", false],
    ["anything", true],
    ["0", true],
    ["false", true],
    [null, false],
    [true, true],
    [false, false],
    [{}, true],
  ];
  for (const [value, expected] of table) {
    assert.equal(truthy(value), expected, `truthy(${JSON.stringify(value)})`);
    assert.equal(run({ "!!": [{ var: "v" }] }, { v: value }), expected);
    assert.equal(run({ "!": [{ var: "v" }] }, { v: value }), !expected);
    assert.equal(run({ if: [{ var: "v" }, "y", "n"] }, { v: value }), expected ? "y" : "n");
  }
});

Deno.test("and/or return the deciding value and short-circuit", () => {
  // The second operand would throw if evaluated: an object whose toString is not a function.
  const bomb = { cat: [{ var: "bad" }] };
  const data = { bad: { toString: 1 } };
  assert.throws(() => run(bomb, data));
  assert.equal(run({ and: [0, bomb] }, data), 0);
  assert.equal(run({ or: ["x", bomb] }, data), "x");
  assert.deepStrictEqual(run({ and: [[], bomb] }, data), []);
  assert.equal(run({ if: [true, 1, bomb] }, data), 1);
  assert.equal(run({ or: [0, "", null] }), null);
  assert.deepStrictEqual(run({ and: [1, "a", [1]] }), [1]);
});

Deno.test("var: paths, defaults, indexes, whole data, own properties only", () => {
  const data = { a: { b: { c: 3 } }, list: [10, 20, { x: "y" }], n: null, zero: 0, empty: "" };
  assert.equal(run({ var: "a.b.c" }, data), 3);
  assert.equal(run({ var: "list.1" }, data), 20);
  assert.equal(run({ var: "list.2.x" }, data), "y");
  assert.equal(run({ var: ["a.b.z", "dflt"] }, data), "dflt");
  assert.equal(run({ var: ["n", "dflt"] }, data), null); // present but null: no default, as json-logic-js
  assert.equal(run({ var: ["zero", 5] }, data), 0);
  assert.equal(run({ var: "missing.deep.path" }, data), null);
  assert.deepStrictEqual(run({ var: "" }, data), data);
  assert.deepStrictEqual(run({ var: null }, data), data);
  assert.deepStrictEqual(run({ var: [] }, data), data);
  assert.equal(run({ var: "list.length" }, data), 3);
  assert.equal(run({ var: "0" }, "abc"), "a");
  assert.equal(run({ var: [{ cat: ["a", ".b", ".c"] }] }, data), 3); // computed path
  assert.equal(run({ var: ["nope", { "+": [1, 2] }] }, data), 3); // computed default
  // Own properties only: no prototype reaches the data.
  assert.equal(run({ var: "constructor" }, {}), null);
  assert.equal(run({ var: "a.__proto__" }, data), null);
  assert.equal(run({ var: "toString" }, "abc"), null);
  assert.equal(run({ var: [{ cat: ["construct", "or"] }] }, {}), null);
});

Deno.test("var: @device, @kind, @ts and @topic read the message, not the payload", () => {
  const payload = { "@device": "spoof", "@ts": 1 };
  assert.equal(run({ var: "@device" }, payload), "boiler-1");
  assert.equal(run({ var: "@kind" }, payload), "telemetry");
  assert.equal(run({ var: "@ts" }, payload), 1700000000000);
  assert.equal(run({ var: "@topic" }, payload), "devices/boiler-1/t");
  assert.equal(run({ var: ["@topic", "none"] }, payload, { device: "d", kind: "event", ts: 0 }), "none");
  assert.equal(run({ var: "@topic" }, payload, { device: "d", kind: "event", ts: 0 }), null);
  // Inside map/filter, plain var is relative to the element; @-names still read the message.
  assert.deepStrictEqual(
    run({ map: [{ var: "xs" }, { cat: [{ var: "@device" }, ":", { var: "" }] }] }, { xs: [1, 2] }),
    [
      "boiler-1:1",
      "boiler-1:2",
    ],
  );
  assert.deepStrictEqual(
    run({ missing: ["@device", "@topic", "x"] }, {}, { device: "d", kind: "event", ts: 0 }),
    [
      "@topic",
      "x",
    ],
  );
  assert.equal(run({ var: [{ cat: ["@", "kind"] }] }, {}), "telemetry");
});

Deno.test("comparison and arithmetic coerce like JavaScript, as JsonLogic does", () => {
  const cases: [unknown, unknown][] = [
    [{ "==": [null, 0] }, false],
    [{ "==": [null, null] }, true],
    [{ "==": [[], false] }, true],
    [{ "==": ["", 0] }, true],
    [{ "==": ["1", [1]] }, true],
    [{ "!=": [null, false] }, true],
    [{ "===": [null, null] }, true],
    [{ "<": ["10", "9"] }, true], // both strings: compared as strings
    [{ "<": ["10", 9] }, false], // one number: numeric
    [{ ">": [null, -1] }, true],
    [{ ">=": [[2], 2] }, true],
    [{ "<": [1, 2, "3"] }, true],
    [{ "+": ["1", "1"] }, 2],
    [{ "+": [" 12abc", 1] }, 13], // parseFloat
    [{ "+": [null] }, NaN],
    [{ "+": [] }, 0],
    [{ "+": [[3, 4]] }, 3],
    [{ "+": [-0] }, 0],
    [{ "*": ["3"] }, "3"], // one operand is returned uncoerced, as json-logic-js does
    [{ "*": ["3", "4"] }, 12],
    [{ "*": [-1, 0, 1] }, 0],
    [{ "-": ["5"] }, -5],
    [{ "-": [null] }, -0],
    [{ "-": ["7", "2"] }, 5],
    [{ "/": [1, 0] }, Infinity],
    [{ "/": ["9", "3"] }, 3],
    [{ "%": [5, 0] }, NaN],
    [{ "%": [-7, 3] }, -1],
    [{ max: [] }, -Infinity],
    [{ min: [] }, Infinity],
    [{ max: ["3", 2] }, 3],
    [{ min: [1, "x"] }, NaN],
    [{ cat: [null, [1, 2], true, 1.5] }, "1,2true1.5"],
    [{ cat: [] }, ""],
    [{ cat: "solo" }, "solo"],
    [{ in: [1, "a1"] }, true],
    [{ in: [null, "null"] }, true],
    [{ in: ["x", null] }, false],
    [{ in: ["x", 5] }, false],
    [{ in: [1, [1, 2]] }, true],
    [{ in: ["1", [1, 2]] }, false], // arrays compare strictly
    [{ substr: ["abc", "1"] }, "bc"],
    [{ substr: [12345, 1, 2] }, "23"],
    [{ substr: ["abc", 0, null] }, ""],
    [{ substr: ["abc", 10] }, ""],
    [{ substr: ["abc", -10, 2] }, "ab"],
    [{ substr: ["jsonlogic", -5, -2] }, "log"],
    [{ substr: ["abc", 1, "-1"] }, ""], // json-logic-js concatenates the string length: "2-1"
    [{ merge: [] }, []],
    [{ merge: [[1], [[2]]] }, [1, [2]]],
    [{ missing: [] }, []],
    [{ missing: "a" }, ["a"]],
    [{ missing_some: [0, []] }, []],
    [{ all: [[], true] }, false],
    [{ some: [[], true] }, false],
    [{ none: [[], true] }, true],
    [{ all: ["nope", true] }, false],
    [{ none: [null, true] }, true],
    [{ map: [5, 1] }, []],
    [{ filter: [null, 1] }, []],
    [{ reduce: ["x", 1, 7] }, 7],
    [{ reduce: [[1, 2], { var: "accumulator" }] }, null],
    [{ reduce: [[], 1] }, null],
  ];
  for (const [expr, expected] of cases) {
    assert.deepStrictEqual(run(expr, {}), expected, JSON.stringify(expr));
    // ... and json-logic-js agrees on every one of them.
    assert.deepStrictEqual(
      jsonLogic.apply(expr as never, {}),
      expected,
      `json-logic-js ${JSON.stringify(expr)}`,
    );
  }
});

Deno.test("literals are copies of the document; array literals are fresh on every evaluation", () => {
  const doc = { if: [true, [1, [2]], 0] };
  const compiled = compileJsonLogic(doc);
  assert.ok(compiled.ok);
  const first = compiled.value({}, MSG) as unknown[];
  (doc.if[1] as unknown[]).push(3);
  first.push("mine");
  assert.deepStrictEqual(compiled.value({}, MSG), [1, [2]]);
  assert.notEqual(compiled.value({}, MSG), compiled.value({}, MSG)); // json-logic-js builds a new array each time
  // ... which is observable: the same literal met twice inside reduce is two arrays.
  const twice = {
    reduce: [{ map: [[1, 2], [[3]]] }, { "===": [{ var: "current" }, { var: "accumulator" }] }, null],
  };
  assert.equal(run(twice), jsonLogic.apply(twice as never, null));
  assert.equal(run({ "===": [{ missing: "b" }, { missing: ["a"] }] }, { a: 1, b: 1 }), false);
  const object = run({ if: [true, { a: 1, b: [2] }, 0] }); // multi-key objects are literals
  assert.ok(Object.isFrozen(object));
  assert.equal(run({ "==": [{ a: 1, b: 2 }, { a: 1, b: 2 }] }), false);
});

Deno.test("compile errors: unknown operators and wrong arity, each with its JSON Pointer", () => {
  const expr = {
    and: [
      { frobnicate: [1] },
      { "==": [1] },
      { if: [true, { "!": [1, 2] }] },
      { map: [[1], { "<": [1] }, 3] },
      { substr: "abc" },
      { "/": [{ var: "x" }, { "a.b": 1 }] },
      { log: "x" },
    ],
  };
  const result = compileJsonLogic(expr);
  assert.ok(!result.ok);
  assert.deepStrictEqual(result.issues, [
    { path: "/and/0", message: 'Unknown operator "frobnicate"' },
    { path: "/and/1/==", message: 'Operator "==" expects 2 arguments, received 1' },
    { path: "/and/2/if/1/!", message: 'Operator "!" expects 1 argument, received 2' },
    { path: "/and/3/map", message: 'Operator "map" expects 2 arguments, received 3' },
    { path: "/and/4/substr", message: 'Operator "substr" expects 2 to 3 arguments, received 1' },
    { path: "/and/5/~1/1", message: 'Unknown operator "a.b"' },
    { path: "/and/6", message: 'Unknown operator "log"' },
  ]);
  const empty = compileJsonLogic({ and: [] });
  assert.ok(!empty.ok);
  assert.equal(empty.issues[0].message, 'Operator "and" expects at least 1 argument, received 0');
  assert.ok(!compileJsonLogic({ "*": [] }).ok);
  // A one-key object is always an operator, like in json-logic-js (which throws at run time).
  assert.ok(!compileJsonLogic({ "==": [{ a: 1 }, 1] }).ok);
  let deep: unknown = 1;
  for (let i = 0; i < 200; i++) deep = { "!": [deep] };
  const tooDeep = compileJsonLogic(deep);
  assert.ok(!tooDeep.ok);
  assert.match(tooDeep.issues[0].message, /nested too deeply/);
});

// --- differential testing against json-logic-js -----------------------------------------------

function outcome(f: () => unknown): { value?: unknown; threw?: true } {
  try {
    return { value: f() };
  } catch {
    return { threw: true };
  }
}

const TABLE_DATA: unknown[] = [
  null,
  {},
  { a: 1, b: "2", c: [1, 2, 3], temp: 21.5, x: { y: { z: "deep" } } },
  { a: "", b: null, c: [], temp: "0", x: [] },
  { a: [true, false], b: { c: 0 }, temp: -40, list: [{ v: 1 }, { v: 2 }, { v: 3 }] },
  [1, "two", [3]],
  "a string",
  7,
];

const TABLE_EXPRESSIONS: unknown[] = [
  { var: "a" },
  { var: "b.c" },
  { var: "x.y.z" },
  { var: ["nope", "fallback"] },
  { var: 1 },
  { var: "c.1" },
  { "==": [{ var: "a" }, 1] },
  { "==": [{ var: "b" }, "2"] },
  { "===": [{ var: "b" }, "2"] },
  { "!=": [{ var: "a" }, null] },
  { "!==": [{ var: "a" }, null] },
  { ">": [{ var: "temp" }, 20] },
  { ">=": [{ var: "temp" }, "21.5"] },
  { "<": [-50, { var: "temp" }, 50] },
  { "<=": [{ var: "a" }, { var: "b" }, 5] },
  { "!": { var: "c" } },
  { "!!": { var: "c" } },
  { and: [{ var: "a" }, { var: "b" }, { var: "c" }] },
  { or: [{ var: "nope" }, { var: "c" }, "last"] },
  { if: [{ var: "a" }, "has a", { var: "b" }, "has b", "neither"] },
  { "?:": [{ var: "temp" }, { var: "temp" }, 0] },
  { in: [{ var: "a" }, { var: "c" }] },
  { in: ["str", { var: "" }] },
  { cat: [{ var: "a" }, "-", { var: "b" }, "-", { var: "c" }] },
  { substr: [{ var: "x.y.z" }, 1] },
  { substr: [{ cat: ["abc", { var: "a" }] }, -3, -1] },
  { "+": [{ var: "a" }, { var: "b" }, { var: "temp" }] },
  { "+": { var: "b" } },
  { "-": [{ var: "temp" }, { var: "a" }] },
  { "-": { var: "temp" } },
  { "*": [{ var: "a" }, { var: "b" }, 2] },
  { "*": { var: "b" } },
  { "/": [{ var: "temp" }, { var: "a" }] },
  { "%": [{ var: "temp" }, 7] },
  { min: [{ var: "a" }, { var: "temp" }, 3] },
  { max: [{ var: "a" }, { var: "temp" }, 3] },
  { missing: ["a", "b", "x.y.z", "nope"] },
  { missing_some: [2, ["a", "b", "c", "nope"]] },
  { missing: { merge: ["a", { if: [{ var: "temp" }, ["b"], []] }] } },
  { map: [{ var: "c" }, { "*": [{ var: "" }, 2] }] },
  { map: [{ var: "list" }, { var: "v" }] },
  { filter: [{ var: "list" }, { ">": [{ var: "v" }, 1] }] },
  { reduce: [{ var: "c" }, { "+": [{ var: "current" }, { var: "accumulator" }] }, 0] },
  { reduce: [{ var: "list" }, { cat: [{ var: "accumulator" }, { var: "current.v" }] }, ""] },
  { all: [{ var: "c" }, { ">": [{ var: "" }, 0] }] },
  { some: [{ var: "list" }, { "==": [{ var: "v" }, 2] }] },
  { none: [{ var: "a" }, { var: "" }] },
  { merge: [{ var: "c" }, { var: "a" }, [[1]]] },
  { merge: { var: "c" } },
  { var: "" },
  { var: [{ var: "b" }] },
  [{ var: "a" }, 1, { "+": [1, 1] }],
];

Deno.test("a table of expressions × data gives json-logic-js's exact results", () => {
  let compared = 0;
  for (const expr of TABLE_EXPRESSIONS) {
    const compiled = compileJsonLogic(expr);
    assert.ok(compiled.ok, JSON.stringify(expr));
    for (const data of TABLE_DATA) {
      const ours = outcome(() => compiled.value(data, MSG));
      const theirs = outcome(() => jsonLogic.apply(expr as never, data as never));
      assert.deepStrictEqual(ours, theirs, `${JSON.stringify(expr)} on ${JSON.stringify(data)}`);
      compared++;
    }
  }
  assert.equal(compared, TABLE_EXPRESSIONS.length * TABLE_DATA.length);
});

Deno.test("20,000 random expressions on random data agree with json-logic-js (seeded)", () => {
  const seed = 20240601;
  const r = new Random(seed);
  let agreed = 0;
  for (let i = 0; i < 20_000; i++) {
    const expr = randomExpression(r);
    const data = r.chance(0.8) ? randomValue(r) : { a: randomValue(r), b: randomValue(r), c: randomValue(r) };
    const compiled = compileJsonLogic(expr);
    assert.ok(compiled.ok, `seed ${seed} case ${i}: ${JSON.stringify(expr)} ${JSON.stringify(compiled)}`);
    const ours = outcome(() => compiled.value(data, MSG));
    const theirs = outcome(() => jsonLogic.apply(expr as never, data as never));
    assert.deepStrictEqual(
      ours,
      theirs,
      `seed ${seed} case ${i}: ${JSON.stringify(expr)} on ${JSON.stringify(data)}`,
    );
    agreed++;
  }
  assert.equal(agreed, 20_000);
});
