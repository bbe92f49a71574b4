/** `outpost rules check` and `outpost rules test`, through the helpers the CLI wires in. */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runRulesCheck, runRulesTest } from "../../../src/cli/rules.ts";
import { parseTestMessage, testRules } from "../../../src/rules/mod.ts";
import { load } from "./_helpers.ts";

function capture() {
  const out: string[] = [], err: string[] = [];
  return { io: { out: (s: string) => out.push(s), err: (s: string) => err.push(s) }, out, err };
}

async function withFiles(files: Record<string, string>, f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "outpost-rules-"));
  try {
    for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
    await f(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const RULES = JSON.stringify({
  version: 1,
  rules: [
    {
      id: "f2c",
      if: { "!!": [{ var: "temp_f" }] },
      then: [{ set: { t: { "-": [{ var: "temp_f" }, 32] } } }],
    },
    { id: "hot", if: { ">": [{ var: "t" }, 90] }, then: [{ alarm: { type: "hot", severity: "major" } }] },
    { id: "debug", match: { topic: "debug/#" }, then: [{ drop: true }] },
  ],
});

Deno.test("rules check: exit 0 and a one-line summary for a valid file", async () => {
  await withFiles({ "rules.json": RULES }, async (dir) => {
    const c = capture();
    assert.equal(await runRulesCheck(join(dir, "rules.json"), c.io), 0);
    assert.equal(c.out.length, 1);
    assert.match(c.out[0], /^OK: .*rules\.json: 3 rules, version [0-9a-f]{12}$/);
    assert.deepStrictEqual(c.err, []);
  });
});

Deno.test("rules check: exit 2 with every problem as <pointer>: <message>", async () => {
  const bad = JSON.stringify({
    version: 1,
    rules: [{ id: "a", then: [{ drop: 1 }] }, { id: "a", then: [], if: { x: 1 } }],
  });
  await withFiles({ "bad.json": bad }, async (dir) => {
    const c = capture();
    assert.equal(await runRulesCheck(join(dir, "bad.json"), c.io), 2);
    assert.deepStrictEqual(c.err.join("\n").split("\n"), [
      "/rules/0/then/0/drop: Invalid drop: expected true",
      '/rules/1/id: Duplicate rule id "a": already used by /rules/0',
      '/rules/1/if: Unknown operator "x"',
    ]);
    assert.deepStrictEqual(c.out, []);
  });
});

Deno.test("rules check: an unreadable file or invalid JSON is exit 2 with one clear line", async () => {
  await withFiles({ "broken.json": "{ version: 1," }, async (dir) => {
    let c = capture();
    assert.equal(await runRulesCheck(join(dir, "missing.json"), c.io), 2);
    assert.match(c.err.join("\n"), /^Cannot read rules file ".*missing\.json": no such file$/);
    c = capture();
    assert.equal(await runRulesCheck(dir, c.io), 2);
    assert.match(c.err.join("\n"), /^Cannot read rules file ".*": it is a directory$/);
    c = capture();
    assert.equal(await runRulesCheck(join(dir, "broken.json"), c.io), 2);
    assert.match(c.err.join("\n"), /^Invalid JSON in rules file ".*broken\.json": /);
    assert.ok(!c.err.join("\n").includes("    at "), "no stack trace");
  });
});

Deno.test("rules test: prints what each rule did and what would be emitted", async () => {
  await withFiles({ "rules.json": RULES }, async (dir) => {
    const c = capture();
    const code = await runRulesTest(
      join(dir, "rules.json"),
      JSON.stringify({
        device: "boiler-1",
        kind: "telemetry",
        payload: { temp_f: 200 },
        topic: "devices/boiler-1/telemetry",
      }),
      c.io,
      5_000,
    );
    assert.equal(code, 0);
    const text = c.out.join("\n");
    assert.match(text, /f2c +matched: set\n/);
    assert.match(text, /hot +matched: alarm\n/);
    assert.match(text, /debug +not matched\n/);
    assert.match(text, /Would emit 2 messages:/);
    assert.match(
      text,
      /1\. telemetry from boiler-1 at 5000 topic devices\/boiler-1\/telemetry → hub\n +\{"temp_f":200,"t":168\}/,
    );
    assert.match(text, /2\. alarm from boiler-1 at 5000 → hub/);
  });
});

Deno.test("rules test: a dropped message says so; a bad --message is exit 2 naming the problem", async () => {
  await withFiles({ "rules.json": RULES }, async (dir) => {
    const file = join(dir, "rules.json");
    let c = capture();
    assert.equal(
      await runRulesTest(file, '{"device":"d","kind":"event","payload":{},"topic":"debug/x"}', c.io, 0),
      0,
    );
    assert.match(c.out.join("\n"), /debug +matched: drop \(message stops here\)\nWould emit nothing\./);

    c = capture();
    assert.equal(await runRulesTest(file, "{not json", c.io, 0), 2);
    assert.match(c.err.join("\n"), /^Invalid --message: not JSON: /);

    c = capture();
    assert.equal(await runRulesTest(file, '{"kind":"weather","payload":[],"x":1}', c.io, 0), 2);
    assert.deepStrictEqual(c.err.join("\n").split("\n"), [
      "Invalid --message:",
      '/device: Missing required key "device"',
      '/kind: Invalid type: expected ("telemetry" | "attributes" | "event" | "alarm"), received "weather"',
      "/payload: Invalid type: expected Object, received Array",
      '/x: Unknown key "x"',
    ]);
  });
});

Deno.test("parseTestMessage and testRules serve POST /api/v1/rules/test", () => {
  const parsed = parseTestMessage({ device: "d", kind: "telemetry", payload: { t: 95 } }, 42);
  assert.ok(parsed.ok);
  assert.deepStrictEqual(parsed.value, {
    device: "d",
    kind: "telemetry",
    ts: 42,
    payload: { t: 95 },
    source: "test",
  });
  const rules = load([{
    id: "hot",
    if: { ">": [{ var: "t" }, 90] },
    then: [{ alarm: { type: "hot", severity: "major" } }],
  }]);
  const result = testRules(rules, parsed.value, 42);
  assert.deepStrictEqual(result.outputs.map((o) => o.kind), ["telemetry", "alarm"]);
  assert.deepStrictEqual(result.trace, [{ rule: "hot", matched: true, actions: ["alarm"] }]);
  // A fresh engine each time: testing never disturbs the alarms of the engine in force.
  assert.equal(testRules(rules, parsed.value, 43).outputs.length, 2);
});
