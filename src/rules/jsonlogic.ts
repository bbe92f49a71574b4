/**
 * The JsonLogic compiler: turns a JsonLogic expression (jsonlogic.com) into nested closures once,
 * so that evaluating it per message walks no JSON tree, looks no operator up and never calls
 * `eval` or `new Function`.
 *
 * Semantics follow json-logic-js 2.0.5 operator for operator (its truthiness, where `[]` is falsy
 * and `"0"` is truthy; `==` as JavaScript's loose equality; `+` and `*` through `parseFloat`;
 * `all` of an empty array is false; …). The deliberate differences, all about data that could
 * otherwise reach JavaScript internals or make an expression throw, are:
 *  - `var` reads only a value's own properties: `{"var": "constructor"}` is `null`, not a
 *    function, and no path reaches a prototype;
 *  - `in` whose second operand is neither a string nor an array is `false` (json-logic-js calls
 *    an `indexOf` property if the data has one);
 *  - `var` names `@device`, `@kind`, `@ts` and `@topic` read the message's own fields;
 *  - an operator whose arity is fixed rejects another number of operands at compile time, and
 *    `and`, `or` and `*` need at least one operand (json-logic-js answers `undefined` or throws).
 *
 * Invariants: compiling never throws for any JSON input (problems become `Issue`s with JSON
 * Pointer paths); a compiled evaluator never mutates its data; literal objects it returns are
 * frozen, array literals are fresh arrays on every evaluation (as in json-logic-js).
 * Evaluating can still throw on pathological data (an object whose `toString` key is not a
 * function, met by `cat`, `==`, …) exactly where json-logic-js would; the rule engine catches that.
 */
import type { Issue } from "../core/errors.ts";
import { pointer } from "../core/errors.ts";

/** The message fields an expression can read through `@device`, `@kind`, `@ts` and `@topic`. */
export interface MessageFields {
  readonly device: string;
  readonly kind: string;
  readonly ts: number;
  readonly topic?: string | undefined;
}

/** A compiled expression: `data` is what `var` reads (the payload, or the current element). */
export type Evaluator = (data: unknown, message: MessageFields) => unknown;

/** The deepest nesting of operators a document may use (the compiler recurses once per level). */
export const MAX_EXPRESSION_DEPTH = 64;

/** Every operator the compiler knows, in jsonlogic.com's order. */
export const JSONLOGIC_OPERATORS = [
  "var",
  "missing",
  "missing_some",
  "if",
  "?:",
  "==",
  "===",
  "!=",
  "!==",
  "!",
  "!!",
  "or",
  "and",
  ">",
  ">=",
  "<",
  "<=",
  "max",
  "min",
  "+",
  "-",
  "*",
  "/",
  "%",
  "map",
  "filter",
  "reduce",
  "all",
  "none",
  "some",
  "merge",
  "in",
  "cat",
  "substr",
] as const;

/** JsonLogic's truthiness: JavaScript's, except that an empty array is falsy. */
export function truthy(value: unknown): boolean {
  return value ? (Array.isArray(value) ? value.length !== 0 : true) : false;
}

/**
 * Compiles one expression. `path` is where the expression sits in its document, so that issues
 * name the exact place (`/rules/0/if/and/1`). Issues are appended to `issues`; when any was
 * added the returned evaluator must not be used.
 */
export function compileExpression(
  expression: unknown,
  path: readonly (string | number)[],
  issues: Issue[],
): Evaluator {
  return compileNode(expression, [...path], issues, 0).fn;
}

/** Compiles a standalone expression: a `Result` holding the evaluator, or every issue. */
export function compileJsonLogic(
  expression: unknown,
): { ok: true; value: Evaluator } | { ok: false; issues: Issue[] } {
  const issues: Issue[] = [];
  const fn = compileExpression(expression, [], issues);
  return issues.length === 0 ? { ok: true, value: fn } : { ok: false, issues };
}

// ---------------------------------------------------------------------------------------------

interface Node {
  fn: Evaluator;
  /** True when `fn` always returns `value` whatever the data. */
  constant: boolean;
  value: unknown;
  /** Set when the node is `{"var": key}` on one own-property-safe key with a constant default. */
  field?: { key: string; notFound: unknown };
}

type Path = (string | number)[];

const NULL_NODE: Node = constantNode(null);

function constantNode(value: unknown): Node {
  // json-logic-js builds a new array each time it evaluates an array literal, and identity is
  // observable (`===`), so an array constant answers a fresh copy; objects stay one reference.
  if (Array.isArray(value)) return { fn: () => freshArray(value), constant: true, value };
  return { fn: () => value, constant: true, value };
}

function freshArray(value: readonly unknown[]): unknown[] {
  const out = new Array(value.length);
  for (let i = 0; i < value.length; i++) {
    const v = value[i];
    out[i] = Array.isArray(v) ? freshArray(v) : v;
  }
  return out;
}

function isLogic(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  let n = 0;
  for (const key in value) {
    if (Object.hasOwn(value, key) && ++n > 1) return false;
  }
  return n === 1;
}

/** A frozen deep copy of a literal, so that no caller can change a compiled constant. */
function freezeLiteral(value: unknown): unknown {
  if (typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) return Object.freeze(value.map(freezeLiteral));
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    Object.defineProperty(out, key, {
      value: freezeLiteral((value as Record<string, unknown>)[key]),
      enumerable: true,
    });
  }
  return Object.freeze(out);
}

function compileNode(expr: unknown, path: Path, issues: Issue[], depth: number): Node {
  if (depth > MAX_EXPRESSION_DEPTH) {
    issues.push({
      path: pointer(path),
      message: `Expression nested too deeply: more than ${MAX_EXPRESSION_DEPTH} levels`,
    });
    return NULL_NODE;
  }
  if (Array.isArray(expr)) {
    // JsonLogic evaluates every element of an array in logic position.
    const items = expr.map((item, i) => compileNode(item, [...path, i], issues, depth + 1));
    if (items.every((n) => n.constant)) return constantNode(Object.freeze(items.map((n) => n.value)));
    const fns = items.map((n) => n.fn);
    const len = fns.length;
    return dynamic((d, m) => {
      const out = new Array(len);
      for (let i = 0; i < len; i++) out[i] = fns[i](d, m);
      return out;
    });
  }
  if (!isLogic(expr)) {
    if (typeof expr === "function" || typeof expr === "symbol" || typeof expr === "bigint") {
      issues.push({ path: pointer(path), message: `Invalid expression: ${typeof expr} is not JSON` });
      return NULL_NODE;
    }
    if (typeof expr === "number" && !Number.isFinite(expr)) {
      issues.push({ path: pointer(path), message: `Invalid expression: ${expr} is not a JSON number` });
      return NULL_NODE;
    }
    return constantNode(freezeLiteral(expr));
  }
  const op = Object.keys(expr)[0];
  const spec = Object.hasOwn(OPERATORS, op) ? OPERATORS[op] : undefined;
  if (spec === undefined) {
    issues.push({ path: pointer(path), message: `Unknown operator ${JSON.stringify(op)}` });
    return NULL_NODE;
  }
  const operand = expr[op];
  // `{"var": "x"}` is shorthand for `{"var": ["x"]}`.
  const raw = Array.isArray(operand) ? operand : [operand];
  const argPath = (i: number): Path => Array.isArray(operand) ? [...path, op, i] : [...path, op];
  const [min, max] = spec.arity;
  if (raw.length < min || raw.length > max) {
    issues.push({ path: pointer([...path, op]), message: arityMessage(op, min, max, raw.length) });
    return NULL_NODE;
  }
  const before = issues.length;
  const args = raw.map((a, i) => compileNode(a, argPath(i), issues, depth + 1));
  if (issues.length > before) return NULL_NODE;
  return spec.build(args);
}

function arityMessage(op: string, min: number, max: number, got: number): string {
  const want = min === max
    ? `${min} argument${min === 1 ? "" : "s"}`
    : max === Infinity
    ? `at least ${min} argument${min === 1 ? "" : "s"}`
    : `${min} to ${max} arguments`;
  return `Operator ${JSON.stringify(op)} expects ${want}, received ${got}`;
}

function dynamic(fn: Evaluator): Node {
  return { fn, constant: false, value: undefined };
}

interface OperatorSpec {
  arity: readonly [number, number];
  build(args: Node[]): Node;
}

const ANY = Infinity;

// The operand types are `unknown` on purpose: JsonLogic applies JavaScript's own coercions.
// deno-lint-ignore no-explicit-any
type Loose = any;

/** `parseFloat` as json-logic-js applies it, without the string round trip for numbers. */
function toFloat(v: unknown): number {
  if (typeof v === "number") return v === 0 ? 0 : v; // parseFloat(-0) is 0
  return parseFloat(v as string);
}

function binary(f: (a: Loose, b: Loose) => unknown): (args: Node[]) => Node {
  return ([a, b]) => {
    const fa = a.fn, fb = b.fn;
    if (b.constant) {
      const cb = b.value;
      return dynamic((d, m) => f(fa(d, m), cb));
    }
    return dynamic((d, m) => f(fa(d, m), fb(d, m)));
  };
}

type ComparisonOp = "==" | "===" | "!=" | "!==" | ">" | ">=" | "<" | "<=";

/**
 * `{op: [{"var": key}, constant]}`, the commonest condition, as one closure: the field is read
 * inline (same semantics as the `var` node: null or the default when absent).
 */
function fieldAgainstConstant(op: ComparisonOp, key: string, nf: unknown, c: Loose): Node {
  switch (op) {
    case "==":
      return dynamic((d) => {
        const v = d === null || d === undefined ? undefined : (d as Loose)[key];
        // deno-lint-ignore eqeqeq
        return (v === undefined ? nf : v) == c;
      });
    case "===":
      return dynamic((d) => {
        const v = d === null || d === undefined ? undefined : (d as Loose)[key];
        return (v === undefined ? nf : v) === c;
      });
    case "!=":
      return dynamic((d) => {
        const v = d === null || d === undefined ? undefined : (d as Loose)[key];
        // deno-lint-ignore eqeqeq
        return (v === undefined ? nf : v) != c;
      });
    case "!==":
      return dynamic((d) => {
        const v = d === null || d === undefined ? undefined : (d as Loose)[key];
        return (v === undefined ? nf : v) !== c;
      });
    case ">":
      return dynamic((d) => {
        const v = d === null || d === undefined ? undefined : (d as Loose)[key];
        return (v === undefined ? nf : v) > c;
      });
    case ">=":
      return dynamic((d) => {
        const v = d === null || d === undefined ? undefined : (d as Loose)[key];
        return (v === undefined ? nf : v) >= c;
      });
    case "<":
      return dynamic((d) => {
        const v = d === null || d === undefined ? undefined : (d as Loose)[key];
        return (v === undefined ? nf : v) < c;
      });
    case "<=":
      return dynamic((d) => {
        const v = d === null || d === undefined ? undefined : (d as Loose)[key];
        return (v === undefined ? nf : v) <= c;
      });
  }
}

function comparison(op: ComparisonOp): (args: Node[]) => Node {
  // Written out per operator so that each closure is monomorphic and cheap.
  return ([a, b]) => {
    const fa = a.fn, fb = b.fn;
    if (a.field !== undefined && b.constant && !Array.isArray(b.value)) {
      return fieldAgainstConstant(op, a.field.key, a.field.notFound, b.value);
    }
    if (b.constant) {
      const c: Loose = b.value;
      switch (op) {
        case "==":
          // deno-lint-ignore eqeqeq
          return dynamic((d, m) => fa(d, m) == c);
        case "===":
          return dynamic((d, m) => fa(d, m) === c);
        case "!=":
          // deno-lint-ignore eqeqeq
          return dynamic((d, m) => fa(d, m) != c);
        case "!==":
          return dynamic((d, m) => fa(d, m) !== c);
        case ">":
          return dynamic((d, m) => (fa(d, m) as Loose) > c);
        case ">=":
          return dynamic((d, m) => (fa(d, m) as Loose) >= c);
        case "<":
          return dynamic((d, m) => (fa(d, m) as Loose) < c);
        case "<=":
          return dynamic((d, m) => (fa(d, m) as Loose) <= c);
      }
    }
    switch (op) {
      case "==":
        // deno-lint-ignore eqeqeq
        return dynamic((d, m) => fa(d, m) == fb(d, m));
      case "===":
        return dynamic((d, m) => fa(d, m) === fb(d, m));
      case "!=":
        // deno-lint-ignore eqeqeq
        return dynamic((d, m) => fa(d, m) != fb(d, m));
      case "!==":
        return dynamic((d, m) => fa(d, m) !== fb(d, m));
      case ">":
        return dynamic((d, m) => (fa(d, m) as Loose) > (fb(d, m) as Loose));
      case ">=":
        return dynamic((d, m) => (fa(d, m) as Loose) >= (fb(d, m) as Loose));
      case "<":
        return dynamic((d, m) => (fa(d, m) as Loose) < (fb(d, m) as Loose));
      case "<=":
        return dynamic((d, m) => (fa(d, m) as Loose) <= (fb(d, m) as Loose));
    }
  };
}

/** `<` and `<=` with three operands: `a < b < c` ("between"). */
function between(strict: boolean): (args: Node[]) => Node {
  return (args) => {
    if (args.length === 2) return comparison(strict ? "<" : "<=")(args);
    const [lo, mid, hi] = args;
    if (
      mid.field !== undefined && lo.constant && hi.constant && !Array.isArray(lo.value) &&
      !Array.isArray(hi.value)
    ) {
      // `{"<": [0, {"var": "x"}, 100]}` on one field with constant bounds.
      const { key, notFound } = mid.field;
      const a: Loose = lo.value, c: Loose = hi.value;
      if (c === undefined) return comparison(strict ? "<" : "<=")([lo, mid]);
      return dynamic((d) => {
        const raw = d === null || d === undefined ? undefined : (d as Loose)[key];
        const b: Loose = raw === undefined ? notFound : raw;
        return strict ? a < b && b < c : a <= b && b <= c;
      });
    }
    const [fa, fb, fc] = args.map((n) => n.fn);
    return dynamic((d, m) => {
      const a: Loose = fa(d, m), b: Loose = fb(d, m), c: Loose = fc(d, m);
      if (c === undefined) return strict ? a < b : a <= b;
      return strict ? a < b && b < c : a <= b && b <= c;
    });
  };
}

function evalAll(fns: Evaluator[], d: unknown, m: MessageFields): unknown[] {
  const out = new Array(fns.length);
  for (let i = 0; i < fns.length; i++) out[i] = fns[i](d, m);
  return out;
}

function variadic(f: (values: unknown[]) => unknown): (args: Node[]) => Node {
  return (args) => {
    const fns = args.map((n) => n.fn);
    return dynamic((d, m) => f(evalAll(fns, d, m)));
  };
}

// --- var ------------------------------------------------------------------------------------

const MESSAGE_FIELDS = new Set(["@device", "@kind", "@ts", "@topic"]);

/** Keys that plain property access would resolve on a prototype of some JSON value. */
function inheritedSomewhere(key: string): boolean {
  return key in Object.prototype || key in Array.prototype || key in String.prototype ||
    key in Number.prototype || key in Boolean.prototype;
}

/** json-logic-js's `var` walk, reading own properties only. */
function lookup(data: unknown, segments: readonly string[], notFound: unknown): unknown {
  let cur: Loose = data;
  for (let i = 0; i < segments.length; i++) {
    if (cur === null || cur === undefined) return notFound;
    const key = segments[i];
    if (!Object.hasOwn(Object(cur), key)) return notFound;
    cur = cur[key];
    if (cur === undefined) return notFound;
  }
  return cur;
}

function messageField(m: MessageFields, name: string): unknown {
  switch (name) {
    case "@device":
      return m.device;
    case "@kind":
      return m.kind;
    case "@ts":
      return m.ts;
    default:
      return m.topic;
  }
}

/** `var` with a path only known at run time (the same rules as a literal path). */
export function readVar(data: unknown, m: MessageFields, path: unknown, notFound: unknown): unknown {
  if (path === undefined || path === "" || path === null) return data;
  const name = String(path);
  if (MESSAGE_FIELDS.has(name)) {
    const v = messageField(m, name);
    return v === undefined ? notFound : v;
  }
  return lookup(data, name.split("."), notFound);
}

function buildVar(args: Node[]): Node {
  if (args.length === 0) return dynamic((d) => d);
  const [pathNode, defNode] = args;
  // An array default must be a fresh array each time, so it goes through its evaluator.
  const defConst = defNode === undefined || (defNode.constant && !Array.isArray(defNode.value));
  const nf: unknown = defNode === undefined || defNode.value === undefined ? null : defNode.value;
  const fdef = defNode?.fn;
  if (!pathNode.constant) {
    const fpath = pathNode.fn;
    return dynamic((d, m) => {
      const p = fpath(d, m);
      const dv = defConst ? nf : fdef!(d, m);
      return readVar(d, m, p, dv === undefined ? null : dv);
    });
  }
  const raw = pathNode.value;
  if (raw === undefined || raw === "" || raw === null) return dynamic((d) => d);
  const name = String(raw);
  if (MESSAGE_FIELDS.has(name)) {
    return dynamic((d, m) => {
      const v = messageField(m, name);
      if (v !== undefined) return v;
      if (defConst) return nf;
      const dv = fdef!(d, m);
      return dv === undefined ? null : dv;
    });
  }
  const segments = name.split(".");
  const safe = segments.every((s) => !inheritedSomewhere(s));
  if (!defConst) {
    return dynamic((d, m) => {
      const v = lookup(d, segments, undefined);
      if (v !== undefined) return v;
      const dv = fdef!(d, m);
      return dv === undefined ? null : dv;
    });
  }
  if (safe && segments.length === 1) {
    // The hot path: `{"var": "temperature"}`.
    const k = segments[0];
    const node = dynamic((d) => {
      if (d === null || d === undefined) return nf;
      const v = (d as Loose)[k];
      return v === undefined ? nf : v;
    });
    node.field = { key: k, notFound: nf };
    return node;
  }
  if (safe && segments.length === 2) {
    const k0 = segments[0], k1 = segments[1];
    return dynamic((d) => {
      if (d === null || d === undefined) return nf;
      const v0 = (d as Loose)[k0];
      if (v0 === null || v0 === undefined) return nf;
      const v1 = v0[k1];
      return v1 === undefined ? nf : v1;
    });
  }
  return dynamic((d) => lookup(d, segments, nf));
}

// --- missing ----------------------------------------------------------------------------------

function missingOf(data: unknown, m: MessageFields, args: readonly unknown[]): unknown[] {
  const keys: readonly unknown[] = Array.isArray(args[0]) ? args[0] : args;
  const missing: unknown[] = [];
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    // json-logic-js applies `{"var": key}`: an array key is `var`'s [path, default] pair.
    const value = Array.isArray(key)
      ? readVar(data, m, key[0], key[1] === undefined ? null : key[1])
      : readVar(data, m, key, null);
    if (value === null || value === "") missing.push(key);
  }
  return missing;
}

// --- strings ----------------------------------------------------------------------------------

function toIntegerOrInfinity(x: unknown): number {
  const n = Number(x);
  if (Number.isNaN(n) || n === 0) return 0;
  return Math.trunc(n);
}

/** `String.prototype.substr` (ECMA-262 Annex B), which json-logic-js relies on. */
function substrJs(s: string, start: unknown, length: unknown): string {
  const size = s.length;
  let from = toIntegerOrInfinity(start);
  if (from === -Infinity) from = 0;
  else if (from < 0) from = Math.max(size + from, 0);
  else from = Math.min(from, size);
  const len = length === undefined ? size : Math.min(Math.max(toIntegerOrInfinity(length), 0), size);
  return s.substring(from, Math.min(from + len, size));
}

function substr(source: unknown, start: unknown, end: Loose): string {
  if (end < 0) {
    // A negative length counts from the end, as in PHP.
    const temp = substrJs(String(source), start, undefined);
    return substrJs(temp, 0, (temp.length as Loose) + end);
  }
  return substrJs(String(source), start, end);
}

function cat(values: unknown[]): string {
  let s = "";
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    s += v === null || v === undefined ? "" : typeof v === "string" ? v : String(v);
  }
  return s;
}

function inOp(a: unknown, b: unknown): boolean {
  if (!b) return false;
  if (typeof b === "string") return b.indexOf(a as string) !== -1;
  if (Array.isArray(b)) return b.indexOf(a) !== -1;
  return false;
}

// --- arithmetic -------------------------------------------------------------------------------

function plus(args: Node[]): Node {
  const fns = args.map((n) => n.fn);
  if (fns.length === 1) {
    const [fa] = fns;
    return dynamic((d, m) => 0 + toFloat(fa(d, m)));
  }
  if (fns.length === 2) {
    const [fa, fb] = fns;
    return dynamic((d, m) => 0 + toFloat(fa(d, m)) + toFloat(fb(d, m)));
  }
  return dynamic((d, m) => {
    let sum = 0;
    for (let i = 0; i < fns.length; i++) sum = sum + toFloat(fns[i](d, m));
    return sum;
  });
}

function times(args: Node[]): Node {
  const fns = args.map((n) => n.fn);
  // Array.prototype.reduce without a seed: one operand is returned as it is, uncoerced.
  if (fns.length === 1) return args[0];
  if (fns.length === 2) {
    const [fa, fb] = fns;
    return dynamic((d, m) => toFloat(fa(d, m)) * toFloat(fb(d, m)));
  }
  return dynamic((d, m) => {
    let acc: unknown = fns[0](d, m);
    for (let i = 1; i < fns.length; i++) acc = toFloat(acc) * toFloat(fns[i](d, m));
    return acc;
  });
}

function minus(args: Node[]): Node {
  const [fa, fb] = args.map((n) => n.fn);
  if (fb === undefined) return dynamic((d, m) => -(fa(d, m) as Loose));
  return dynamic((d, m) => {
    const a: Loose = fa(d, m), b: Loose = fb(d, m);
    return b === undefined ? -a : a - b;
  });
}

function merge(values: unknown[]): unknown[] {
  const out: unknown[] = [];
  for (const v of values) {
    if (Array.isArray(v)) { for (let i = 0; i < v.length; i++) out.push(v[i]); }
    else out.push(v);
  }
  return out;
}

// --- control flow -----------------------------------------------------------------------------

function buildIf(args: Node[]): Node {
  const fns = args.map((n) => n.fn);
  const n = fns.length;
  if (n === 0) return NULL_NODE;
  if (n === 1) return args[0];
  if (n === 3) {
    const [c, t, e] = fns;
    return dynamic((d, m) => truthy(c(d, m)) ? t(d, m) : e(d, m));
  }
  return dynamic((d, m) => {
    let i = 0;
    for (; i < n - 1; i += 2) {
      if (truthy(fns[i](d, m))) return fns[i + 1](d, m);
    }
    return n === i + 1 ? fns[i](d, m) : null;
  });
}

function buildAnd(args: Node[]): Node {
  const fns = args.map((n) => n.fn);
  if (fns.length === 1) return args[0];
  if (fns.length === 2) {
    const [fa, fb] = fns;
    return dynamic((d, m) => {
      const a = fa(d, m);
      return truthy(a) ? fb(d, m) : a;
    });
  }
  return dynamic((d, m) => {
    let cur: unknown;
    for (let i = 0; i < fns.length; i++) {
      cur = fns[i](d, m);
      if (!truthy(cur)) return cur;
    }
    return cur;
  });
}

function buildOr(args: Node[]): Node {
  const fns = args.map((n) => n.fn);
  if (fns.length === 1) return args[0];
  if (fns.length === 2) {
    const [fa, fb] = fns;
    return dynamic((d, m) => {
      const a = fa(d, m);
      return truthy(a) ? a : fb(d, m);
    });
  }
  return dynamic((d, m) => {
    let cur: unknown;
    for (let i = 0; i < fns.length; i++) {
      cur = fns[i](d, m);
      if (truthy(cur)) return cur;
    }
    return cur;
  });
}

// --- arrays -----------------------------------------------------------------------------------

type Scoped = (items: unknown[], f: Evaluator, m: MessageFields) => unknown;

function scoped(onNonArray: () => unknown, body: Scoped): (args: Node[]) => Node {
  return ([source, logic]) => {
    const fs = source.fn, f = logic.fn;
    return dynamic((d, m) => {
      const items = fs(d, m);
      return Array.isArray(items) ? body(items, f, m) : onNonArray();
    });
  };
}

const OPERATORS: Record<string, OperatorSpec> = {
  "var": { arity: [0, 2], build: buildVar },
  "missing": {
    arity: [0, ANY],
    build: (args) => {
      if (args.every((n) => n.constant && typeof n.value === "string" && !MESSAGE_FIELDS.has(n.value))) {
        // The usual form, `{"missing": ["a", "b.c"]}`: paths split once.
        const keys = args.map((n) => n.value as string);
        const paths = keys.map((k) => (k === "" ? undefined : k.split(".")));
        return dynamic((d) => {
          let missing: unknown[] | undefined;
          for (let i = 0; i < keys.length; i++) {
            const path = paths[i];
            const v = path === undefined ? d : lookup(d, path, null);
            if (v === null || v === "") (missing ??= []).push(keys[i]);
          }
          return missing ?? [];
        });
      }
      const fns = args.map((n) => n.fn);
      return dynamic((d, m) => missingOf(d, m, evalAll(fns, d, m)));
    },
  },
  "missing_some": {
    arity: [2, 2],
    build: ([need, options]) => {
      const fneed = need.fn, fopt = options.fn;
      return dynamic((d, m) => {
        const n: Loose = fneed(d, m);
        const opts: Loose = fopt(d, m);
        const missing = missingOf(d, m, Array.isArray(opts) ? opts : [opts]);
        return opts.length - missing.length >= n ? [] : missing;
      });
    },
  },
  "if": { arity: [0, ANY], build: buildIf },
  "?:": { arity: [0, ANY], build: buildIf },
  "==": { arity: [2, 2], build: comparison("==") },
  "===": { arity: [2, 2], build: comparison("===") },
  "!=": { arity: [2, 2], build: comparison("!=") },
  "!==": { arity: [2, 2], build: comparison("!==") },
  ">": { arity: [2, 2], build: comparison(">") },
  ">=": { arity: [2, 2], build: comparison(">=") },
  "<": { arity: [2, 3], build: between(true) },
  "<=": { arity: [2, 3], build: between(false) },
  "!": {
    arity: [1, 1],
    build: ([a]) => {
      if (a.field !== undefined) {
        const { key, notFound } = a.field;
        return dynamic((d) => {
          const v = d === null || d === undefined ? undefined : (d as Loose)[key];
          return !truthy(v === undefined ? notFound : v);
        });
      }
      const fa = a.fn;
      return dynamic((d, m) => !truthy(fa(d, m)));
    },
  },
  "!!": {
    arity: [1, 1],
    build: ([a]) => {
      if (a.field !== undefined) {
        const { key, notFound } = a.field;
        return dynamic((d) => {
          const v = d === null || d === undefined ? undefined : (d as Loose)[key];
          return truthy(v === undefined ? notFound : v);
        });
      }
      const fa = a.fn;
      return dynamic((d, m) => truthy(fa(d, m)));
    },
  },
  "and": { arity: [1, ANY], build: buildAnd },
  "or": { arity: [1, ANY], build: buildOr },
  "max": { arity: [0, ANY], build: variadic((v) => Math.max(...(v as number[]))) },
  "min": { arity: [0, ANY], build: variadic((v) => Math.min(...(v as number[]))) },
  "+": { arity: [0, ANY], build: plus },
  "-": { arity: [1, 2], build: minus },
  "*": { arity: [1, ANY], build: times },
  "/": { arity: [2, 2], build: binary((a, b) => a / b) },
  "%": { arity: [2, 2], build: binary((a, b) => a % b) },
  "map": {
    arity: [2, 2],
    build: scoped(() => [], (items, f, m) => {
      const out = new Array(items.length);
      for (let i = 0; i < items.length; i++) out[i] = f(items[i], m);
      return out;
    }),
  },
  "filter": {
    arity: [2, 2],
    build: scoped(() => [], (items, f, m) => {
      const out: unknown[] = [];
      for (let i = 0; i < items.length; i++) if (truthy(f(items[i], m))) out.push(items[i]);
      return out;
    }),
  },
  "reduce": {
    arity: [2, 3],
    build: ([source, logic, initial]) => {
      const fs = source.fn, f = logic.fn, fi = initial?.fn;
      return dynamic((d, m) => {
        const items = fs(d, m);
        let acc = fi === undefined ? null : fi(d, m);
        if (!Array.isArray(items)) return acc;
        for (let i = 0; i < items.length; i++) {
          if (!(i in items)) continue; // Array.prototype.reduce skips holes
          acc = f({ current: items[i], accumulator: acc }, m);
        }
        return acc;
      });
    },
  },
  "all": {
    arity: [2, 2],
    build: scoped(() => false, (items, f, m) => {
      if (items.length === 0) return false;
      for (let i = 0; i < items.length; i++) if (!truthy(f(items[i], m))) return false;
      return true;
    }),
  },
  "none": {
    arity: [2, 2],
    build: scoped(() => true, (items, f, m) => {
      for (let i = 0; i < items.length; i++) if (truthy(f(items[i], m))) return false;
      return true;
    }),
  },
  "some": {
    arity: [2, 2],
    build: scoped(() => false, (items, f, m) => {
      for (let i = 0; i < items.length; i++) if (truthy(f(items[i], m))) return true;
      return false;
    }),
  },
  "merge": { arity: [0, ANY], build: variadic(merge) },
  "in": {
    arity: [2, 2],
    build: (args) => {
      const [a, b] = args;
      const list = b.value;
      if (
        b.constant && Array.isArray(list) && list.every((x) => x === null || typeof x !== "object") &&
        !list.some((x) => Number.isNaN(x))
      ) {
        // `{"in": [x, ["a", "b", …]]}`: a Set answers what indexOf would (primitives, no NaN).
        const set = new Set(list);
        const fa = a.fn;
        if (list.length === 0) return dynamic((d, m) => (fa(d, m), false));
        return dynamic((d, m) => set.has(fa(d, m)));
      }
      return binary(inOp)(args);
    },
  },
  "cat": { arity: [0, ANY], build: variadic(cat) },
  "substr": {
    arity: [2, 3],
    build: ([s, start, end]) => {
      const fs = s.fn, fstart = start.fn, fend = end?.fn;
      return dynamic((d, m) => substr(fs(d, m), fstart(d, m), fend === undefined ? undefined : fend(d, m)));
    },
  },
};

// --- static analysis --------------------------------------------------------------------------

const SCOPED = new Set(["map", "filter", "reduce", "all", "some", "none"]);

/**
 * The payload fields an expression reads with a literal `var` path and no default, outside the
 * per-element part of map/filter/reduce/all/some/none: what a message must carry for the
 * expression to say something about it. (`@` names, computed paths and defaults are left out.)
 */
export function fieldsRead(expression: unknown): string[] {
  const found = new Set<string>();
  const walk = (e: unknown, depth: number): void => {
    if (depth > MAX_EXPRESSION_DEPTH) return;
    if (Array.isArray(e)) {
      for (const item of e) walk(item, depth + 1);
      return;
    }
    if (!isLogic(e)) return;
    const op = Object.keys(e)[0];
    const operand = e[op];
    const args = Array.isArray(operand) ? operand : [operand];
    if (op === "var") {
      const [path, fallback] = args;
      if (args.length === 1 || fallback === undefined) {
        if (
          (typeof path === "string" && path !== "" && !MESSAGE_FIELDS.has(path)) || typeof path === "number"
        ) {
          found.add(String(path));
        }
      }
      if (isLogic(path) || Array.isArray(path)) walk(path, depth + 1);
      return;
    }
    if (op === "missing" || op === "missing_some") return;
    if (SCOPED.has(op)) {
      walk(args[0], depth + 1);
      if (op === "reduce") walk(args[2], depth + 1);
      return;
    }
    for (const a of args) walk(a, depth + 1);
  };
  walk(expression, 0);
  return [...found];
}
