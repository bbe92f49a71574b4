/**
 * A small seeded generator for the property tests: JsonLogic expressions, payloads, rules
 * documents (mostly valid, some broken on purpose) and messages. Deterministic for a seed, so a
 * failure names the seed that reproduces it.
 */
import type { Message } from "../../../src/core/message.ts";

export class Random {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  /** mulberry32 */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
}

const KEYS = ["a", "b", "c", "x", "temp", "0", "1", "length", "current", "accumulator"];
const STRINGS = ["", "0", "1", "abc", "a1", " 12 ", "-3.5", "apple", "a", "true", "null", "1e3", "Infinity"];
const NUMBERS = [0, -0, 1, -1, 2, 3, 0.5, -2.5, 10, 100, 1e21, 42];

/** A random JSON value (no `indexOf` keys, no prototype names: see jsonlogic.ts deviations). */
export function randomValue(r: Random, depth = 0): unknown {
  const roll = r.int(depth > 2 ? 6 : 9);
  switch (roll) {
    case 0:
      return null;
    case 1:
      return r.chance(0.5);
    case 2:
    case 3:
      return r.pick(NUMBERS);
    case 4:
    case 5:
      return r.pick(STRINGS);
    case 6:
    case 7: {
      const n = r.int(4);
      return Array.from({ length: n }, () => randomValue(r, depth + 1));
    }
    default: {
      const o: Record<string, unknown> = {};
      const n = r.int(4);
      for (let i = 0; i < n; i++) o[r.pick(KEYS)] = randomValue(r, depth + 1);
      return o;
    }
  }
}

function randomPath(r: Random): unknown {
  const roll = r.int(10);
  if (roll === 0) return "";
  if (roll === 1) return r.int(3);
  if (roll === 2) return `${r.pick(KEYS)}.${r.pick(KEYS)}`;
  if (roll === 3) return null;
  return r.pick(KEYS);
}

/** Literals that are never read as logic: primitives and arrays of primitives. */
function randomLiteral(r: Random): unknown {
  if (r.chance(0.15)) return Array.from({ length: r.int(4) }, () => randomLiteral(r));
  return r.chance(0.5) ? r.pick(NUMBERS) : r.chance(0.7) ? r.pick(STRINGS) : r.pick([null, true, false]);
}

type Gen = (r: Random, d: number) => unknown;

const ARITY: Record<string, [number, number]> = {
  "==": [2, 2],
  "===": [2, 2],
  "!=": [2, 2],
  "!==": [2, 2],
  ">": [2, 2],
  ">=": [2, 2],
  "<": [2, 3],
  "<=": [2, 3],
  "!": [1, 1],
  "!!": [1, 1],
  "and": [1, 4],
  "or": [1, 4],
  "if": [0, 6],
  "?:": [3, 3],
  "in": [2, 2],
  "cat": [0, 4],
  "substr": [2, 3],
  "+": [0, 4],
  "-": [1, 2],
  "*": [1, 4],
  "/": [2, 2],
  "%": [2, 2],
  "min": [0, 4],
  "max": [0, 4],
  "merge": [0, 4],
};

/** A random, valid JsonLogic expression over every operator. */
export function randomExpression(r: Random, depth = 0): unknown {
  if (depth > 4 || r.chance(0.3)) {
    if (r.chance(0.5)) return randomLiteral(r);
    return r.chance(0.8) ? { var: randomPath(r) } : { var: [randomPath(r), randomLiteral(r)] };
  }
  const special: Gen[] = [
    (r, d) => ({ var: [randomExpression(r, d + 1)] }),
    (r) => ({ missing: Array.from({ length: r.int(3) }, () => r.pick(KEYS)) }),
    (r) => ({ missing: r.pick(KEYS) }),
    (r) => ({ missing_some: [r.int(3), Array.from({ length: r.int(4) }, () => r.pick(KEYS))] }),
    (r, d) => ({
      [r.pick(["map", "filter", "all", "some", "none"])]: [
        randomExpression(r, d + 1),
        randomExpression(r, d + 1),
      ],
    }),
    (r, d) => ({ map: [{ var: r.pick(KEYS) }, randomExpression(r, d + 1)] }),
    (r, d) =>
      r.chance(0.5)
        ? { reduce: [randomExpression(r, d + 1), randomExpression(r, d + 1)] }
        : { reduce: [randomExpression(r, d + 1), randomExpression(r, d + 1), randomExpression(r, d + 1)] },
  ];
  if (r.chance(0.2)) return r.pick(special)(r, depth);
  const op = r.pick(Object.keys(ARITY));
  const [min, max] = ARITY[op];
  const n = min + r.int(max - min + 1);
  const args = Array.from({ length: n }, () => randomExpression(r, depth + 1));
  // The unary shorthand `{"!": x}` for one non-array operand.
  if (n === 1 && !Array.isArray(args[0]) && r.chance(0.3)) return { [op]: args[0] };
  return { [op]: args };
}

// --- rules documents and messages --------------------------------------------------------------

const DEVICES = ["boiler-1", "boiler-2", "pump-7", "", "dev?", "x*"];
const TOPICS = ["devices/boiler-1/telemetry", "devices/pump-7/events", "debug/x", "$SYS/a", "a//b"];

function randomAction(r: Random): unknown {
  const field = () => r.pick(["temp", "a", "a.b", "x.y.z", "0", "values.0"]);
  const bad = r.chance(0.1);
  switch (r.int(11)) {
    case 0:
      return { set: { [field()]: randomExpression(r, 2) } };
    case 1:
      return { rename: { [field()]: field() } };
    case 2:
      return { remove: [field()] };
    case 3:
      return { keep: [field(), field()] };
    case 4:
      return { drop: bad ? false : true };
    case 5:
      return { deadband: { field: field(), delta: bad ? "x" : r.pick([0, 0.5, 2]) } };
    case 6:
      return { throttle: { interval: bad ? "10 s" : r.pick(["500ms", "10s", "1m"]) } };
    case 7:
      return {
        aggregate: {
          window: r.pick(["1s", "60s", "5m"]),
          fields: {
            [field()]: bad
              ? []
              : ["avg", "min", "max", "sum", "count", "last"].filter(() => r.chance(0.5)).concat("last"),
          },
        },
      };
    case 8: {
      const alarm: Record<string, unknown> = {
        type: r.pick(["overheat", "low"]),
        severity: bad ? "loud" : "major",
      };
      if (r.chance(0.5)) alarm.clear = randomExpression(r, 3);
      return { alarm };
    }
    case 9:
      return { route: bad ? [] : [r.pick(["hub", "mqtt:out/a", "mqtt:x/#"])] };
    default:
      return bad ? { set: {}, drop: true } : { [r.pick(["sett", "log", "stop"])]: randomValue(r) };
  }
}

/** A random rules document: usually valid, sometimes with a few mistakes of every kind. */
export function randomDocument(r: Random): unknown {
  if (r.chance(0.03)) return randomValue(r);
  const rules = Array.from({ length: r.int(6) }, (_, i) => {
    const rule: Record<string, unknown> = { id: r.chance(0.05) ? "dup" : `r${i}` };
    if (r.chance(0.5)) {
      const match: Record<string, unknown> = {};
      if (r.chance(0.5)) match.kind = r.pick(["telemetry", "event", "alarm", "bogus"]);
      if (r.chance(0.4)) match.device = r.pick(["boiler-*", "*", "pump-?", "x"]);
      if (r.chance(0.4)) match.topic = r.pick(["devices/+/telemetry", "#", "debug/#", "a/#/b", "devices/+x"]);
      rule.match = match;
    }
    if (r.chance(0.7)) rule.if = r.chance(0.05) ? { frobnicate: [1] } : randomExpression(r, 1);
    rule.then = Array.from({ length: r.int(4) }, () => randomAction(r));
    if (r.chance(0.2)) rule.stop = r.chance(0.9) ? true : "yes";
    if (r.chance(0.03)) rule.extra = 1;
    return rule;
  });
  return r.chance(0.03) ? { version: 2, rules } : { version: 1, rules };
}

/** A random message, with payloads that stress coercion and paths. */
export function randomMessage(r: Random, ts: number): Message {
  const payload: Record<string, unknown> = {};
  for (let i = r.int(5); i > 0; i--) payload[r.pick(["temp", "a", "x", "values", "0"])] = randomValue(r);
  if (r.chance(0.3)) payload.temp = r.int(200) - 50;
  // Data that makes JavaScript's coercions throw (an object without a callable toString).
  if (r.chance(0.1)) payload[r.pick(["a", "x", "temp"])] = { toString: 1, valueOf: 2 };
  const m: Message = {
    device: r.pick(DEVICES),
    kind: r.pick(["telemetry", "attributes", "event"] as const),
    ts,
    payload,
    source: "test",
  };
  if (r.chance(0.6)) m.topic = r.pick(TOPICS);
  return m;
}
