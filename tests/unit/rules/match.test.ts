/** Device globs and MQTT topic filters, checked against reference regular expressions. */
import assert from "node:assert/strict";
import { compileGlob, compileTopicFilter, globMatch, topicFilterProblem } from "../../../src/rules/match.ts";
import { Random } from "./_random.ts";

function globRegExp(glob: string): RegExp {
  const source = glob.split("").map((c) =>
    c === "*" ? "[^]*" : c === "?" ? "[^]" : c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
  )
    .join("");
  return new RegExp(`^${source}$`, "u");
}

Deno.test("globs: * is any run (also empty), ? exactly one character", () => {
  const cases: [string, string, boolean][] = [
    ["boiler-*", "boiler-1", true],
    ["boiler-*", "boiler-", true],
    ["boiler-*", "boile", false],
    ["*-7", "pump-7", true],
    ["pump-?", "pump-7", true],
    ["pump-?", "pump-17", false],
    ["*a*b*", "xxaxxbxx", true],
    ["*a*b*", "xxbxxaxx", false],
    ["a*a*a", "aaaa", true],
    ["?", "", false],
    ["*", "", true],
    ["exact", "exact", true],
    ["exact", "exactly", false],
  ];
  for (const [glob, value, expected] of cases) {
    assert.equal(compileGlob(glob)(value), expected, `${glob} ~ ${value}`);
    assert.equal(globMatch(glob, value), expected, `${glob} ~ ${value}`);
  }
  const r = new Random(99);
  const alphabet = ["a", "b", "-", "*", "?"];
  for (let i = 0; i < 5_000; i++) {
    const glob = Array.from({ length: r.int(7) }, () => r.pick(alphabet)).join("");
    const value = Array.from({ length: r.int(7) }, () => r.pick(["a", "b", "-"])).join("");
    assert.equal(compileGlob(glob)(value), globRegExp(glob).test(value), `${glob} ~ ${value}`);
  }
});

/** The MQTT matching rules written out plainly over split levels: the reference. */
function topicReference(filter: string): (t: string) => boolean {
  const f = filter.split("/");
  return (topic) => {
    if ((f[0] === "+" || f[0] === "#") && topic.startsWith("$")) return false;
    const t = topic.split("/");
    for (let i = 0; i < f.length; i++) {
      if (f[i] === "#") return true; // the rest, including nothing (`a/#` matches `a`)
      if (i >= t.length) return false;
      if (f[i] !== "+" && f[i] !== t[i]) return false;
    }
    return f.length === t.length;
  };
}

Deno.test("topic filters follow MQTT: + one level, # the rest and the parent, $ topics apart", () => {
  const cases: [string, string, boolean][] = [
    ["devices/+/telemetry", "devices/b1/telemetry", true],
    ["devices/+/telemetry", "devices//telemetry", true],
    ["devices/+/telemetry", "devices/b1/x/telemetry", false],
    ["devices/+/telemetry", "devices/b1/telemetry/x", false],
    ["devices/+/telemetry", "devices/b1", false],
    ["sport/#", "sport", true],
    ["sport/#", "sport/", true],
    ["sport/#", "sports", false],
    ["sport/tennis/#", "sport/tennis/player1/ranking", true],
    ["#", "anything/at/all", true],
    ["#", "$SYS/broker", false],
    ["+/x", "$SYS/x", false],
    ["$SYS/#", "$SYS/broker", true],
    ["+", "a", true],
    ["+", "a/b", false],
    ["+", "", true],
    ["+/+", "/", true],
    ["a/+", "a", false],
  ];
  for (const [filter, topic, expected] of cases) {
    assert.equal(topicFilterProblem(filter), undefined, filter);
    assert.equal(compileTopicFilter(filter)(topic), expected, `${filter} ~ ${topic}`);
  }
  const r = new Random(7);
  for (let i = 0; i < 5_000; i++) {
    const filter = Array.from({ length: 1 + r.int(4) }, () =>
      r.pick(["a", "b", "+", "", "$x", "a.b", "(x)"])).join("/") +
      (r.chance(0.3) ? "/#" : "");
    const topic = Array.from({ length: r.int(5) }, () => r.pick(["a", "b", "", "$x", "a.b", "axb", "(x)"]))
      .join("/");
    assert.equal(compileTopicFilter(filter)(topic), topicReference(filter)(topic), `${filter} ~ ${topic}`);
  }
});

Deno.test("malformed topic filters are named", () => {
  assert.match(topicFilterProblem("a/#/b")!, /must be a whole level and the last one/);
  assert.match(topicFilterProblem("a/b#")!, /must be a whole level/);
  assert.match(topicFilterProblem("a/+b")!, /"\+" must be a whole level/);
  assert.match(topicFilterProblem("")!, /empty/);
});
