/**
 * Loading: `parseRulesDocument` validates an untrusted rules document (valibot, strict objects)
 * and compiles it (match predicates, JsonLogic closures, action specs) in one pass that reports
 * every problem with its JSON Pointer. Nothing here keeps state: a `CompiledRules` is immutable
 * and can back any number of engines.
 */
import * as v from "valibot";
import { createHash } from "node:crypto";
import type { Issue, Result } from "../core/errors.ts";
import { pointer } from "../core/errors.ts";
import type { Evaluator } from "./jsonlogic.ts";
import { compileExpression, fieldsRead } from "./jsonlogic.ts";
import { cloneJson, deepFreeze, splitPath } from "./_fields.ts";
import type { CompiledMatch } from "./match.ts";
import { compileMatch } from "./match.ts";
import { parseDuration } from "./_duration.ts";
import type { ActionName, AggregateFunction, AlarmSeverity, RuleMatch, RulesDocument } from "./schema.ts";
import { ACTION_NAMES, ACTION_SCHEMAS, DocumentShape, RuleShape, toIssues } from "./schema.ts";

/** A validated, compiled rules document, ready for `createRuleEngine`. Immutable. */
export interface CompiledRules {
  /** The document as it was given (a frozen copy). */
  readonly document: RulesDocument;
  /** A short content hash of the canonical JSON of the document (12 hex digits). */
  readonly version: string;
  /** How many rules the document holds. */
  readonly count: number;
}

// --- the compiled program (internal) ----------------------------------------------------------

export type ActionSpec =
  | { type: "set"; fields: { segments: readonly string[]; fn: Evaluator }[] }
  | { type: "rename"; pairs: { from: readonly string[]; to: readonly string[] }[] }
  | { type: "remove"; fields: (readonly string[])[] }
  | { type: "keep"; fields: (readonly string[])[] }
  | { type: "drop" }
  | { type: "deadband"; field: string; segments: readonly string[]; delta: number }
  | { type: "throttle"; interval: number }
  | {
    type: "aggregate";
    window: number;
    fields: { name: string; segments: readonly string[]; fns: readonly AggregateFunction[] }[];
    /** Identifies the configuration, so that open windows survive only an unchanged action. */
    signature: string;
  }
  | {
    type: "alarm";
    alarmType: string;
    severity: AlarmSeverity;
    clear: Evaluator | undefined;
    /** Fields a message must carry to raise the alarm (read by the rule's `if`). */
    raiseNeeds: readonly (readonly string[])[];
    /** Fields a message must carry to clear the alarm (read by `clear`, else by `if`). */
    clearNeeds: readonly (readonly string[])[];
  }
  | { type: "route"; route: readonly string[] };

export interface CompiledRule {
  readonly id: string;
  /** Whether the rule's match names kind "alarm": only such rules see alarm messages. */
  readonly seesAlarms: boolean;
  readonly match: CompiledMatch;
  readonly condition: Evaluator | undefined;
  readonly actions: readonly ActionSpec[];
  readonly stop: boolean;
}

const programs = new WeakMap<CompiledRules, readonly CompiledRule[]>();

/** The compiled rules behind a `CompiledRules` (only this module family creates them). */
export function programOf(rules: CompiledRules): readonly CompiledRule[] {
  const program = programs.get(rules);
  if (program === undefined) throw new TypeError("Not a CompiledRules value: use parseRulesDocument()");
  return program;
}

// --- parsing ----------------------------------------------------------------------------------

/**
 * Validates and compiles a rules document. Answers every problem at once, each with a JSON
 * Pointer (`/rules/0/then/1/deadband/delta`), or the compiled rules. Never throws for any input.
 */
export function parseRulesDocument(input: unknown): Result<CompiledRules> {
  try {
    return parse(input);
  } catch (error) {
    if (error instanceof RangeError) {
      return {
        ok: false,
        issues: [{ path: "", message: "Invalid rules document: it is nested too deeply" }],
      };
    }
    throw error;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function describe(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "Array" : typeof value;
}

function parse(input: unknown): Result<CompiledRules> {
  const issues: Issue[] = [];
  const push = (segments: readonly (string | number)[], message: string) =>
    issues.push({ path: pointer(segments), message });

  if (!isRecord(input)) {
    push([], `Invalid rules document: expected an object, received ${describe(input)}`);
    return { ok: false, issues };
  }
  const top = v.safeParse(DocumentShape, input, { abortEarly: false, abortPipeEarly: true });
  if (!top.success) { for (const i of toIssues(top.issues, [])) push(i.segments, i.message); }

  const compiled: CompiledRule[] = [];
  const seen = new Map<string, number>();
  const rules = Array.isArray(input.rules) ? input.rules : [];
  rules.forEach((rule: unknown, index: number) => {
    const at = ["rules", index];
    if (!isRecord(rule)) {
      push(at, `Invalid rule: expected an object, received ${describe(rule)}`);
      return;
    }
    const before = issues.length;
    const shape = v.safeParse(RuleShape, rule, { abortEarly: false, abortPipeEarly: true });
    if (!shape.success) { for (const i of toIssues(shape.issues, at)) push(i.segments, i.message); }

    if (typeof rule.id === "string" && rule.id !== "") {
      const first = seen.get(rule.id);
      if (first !== undefined) {
        push([...at, "id"], `Duplicate rule id ${JSON.stringify(rule.id)}: already used by /rules/${first}`);
      } else seen.set(rule.id, index);
    }
    const condition = Object.hasOwn(rule, "if")
      ? compileExpression(rule.if, [...at, "if"], issues)
      : undefined;
    const actions: ActionSpec[] = [];
    if (Array.isArray(rule.then)) {
      rule.then.forEach((action: unknown, j: number) => {
        const spec = compileAction(action, [...at, "then", j], issues, rule.if);
        if (spec !== undefined) actions.push(spec);
      });
    }
    if (issues.length > before) return;
    compiled.push({
      id: rule.id as string,
      seesAlarms: (rule.match as RuleMatch | undefined)?.kind === "alarm",
      match: compileMatch(rule.match as RuleMatch | undefined),
      condition,
      actions,
      stop: rule.stop === true,
    });
  });
  if (issues.length > 0) return { ok: false, issues };

  const document = deepFreeze(cloneJson(input)) as unknown as RulesDocument;
  const value: CompiledRules = Object.freeze({
    document,
    version: contentVersion(input),
    count: compiled.length,
  });
  programs.set(value, Object.freeze(compiled));
  return { ok: true, value };
}

function compileAction(
  action: unknown,
  at: (string | number)[],
  issues: Issue[],
  condition: unknown,
): ActionSpec | undefined {
  const expected = `expected an object with one key: ${ACTION_NAMES.join(", ")}`;
  if (!isRecord(action)) {
    issues.push({ path: pointer(at), message: `Invalid action: ${expected}, received ${describe(action)}` });
    return undefined;
  }
  const keys = Object.keys(action);
  if (keys.length !== 1) {
    const got = keys.length === 0 ? "none" : keys.map((k) => JSON.stringify(k)).join(", ");
    issues.push({ path: pointer(at), message: `Invalid action: ${expected}; received ${got}` });
    return undefined;
  }
  const name = keys[0];
  if (!(ACTION_NAMES as string[]).includes(name)) {
    issues.push({
      path: pointer([...at, name]),
      message: `Unknown action ${JSON.stringify(name)}: expected one of ${ACTION_NAMES.join(", ")}`,
    });
    return undefined;
  }
  const before = issues.length;
  const value = action[name];
  const result = v.safeParse(ACTION_SCHEMAS[name as ActionName], value, {
    abortEarly: false,
    abortPipeEarly: true,
  });
  if (!result.success) {
    for (const i of toIssues(result.issues, [...at, name])) {
      issues.push({ path: pointer(i.segments), message: i.message });
    }
  }
  // Expressions are compiled even when the shape has problems, so that all errors show at once.
  const fields: { segments: readonly string[]; fn: Evaluator }[] = [];
  if (name === "set" && isRecord(value)) {
    for (const [field, expression] of Object.entries(value)) {
      fields.push({
        segments: splitPath(field),
        fn: compileExpression(expression, [...at, name, field], issues),
      });
    }
  }
  let clear: Evaluator | undefined;
  if (name === "alarm" && isRecord(value) && Object.hasOwn(value, "clear")) {
    clear = compileExpression(value.clear, [...at, name, "clear"], issues);
  }
  if (issues.length > before) return undefined;

  switch (name as ActionName) {
    case "set":
      return { type: "set", fields };
    case "rename":
      return {
        type: "rename",
        pairs: Object.entries(value as Record<string, string>).map(([from, to]) => ({
          from: splitPath(from),
          to: splitPath(to),
        })),
      };
    case "remove":
      return { type: "remove", fields: (value as string[]).map(splitPath) };
    case "keep":
      return { type: "keep", fields: (value as string[]).map(splitPath) };
    case "drop":
      return { type: "drop" };
    case "deadband": {
      const d = value as { field: string; delta: number };
      return { type: "deadband", field: d.field, segments: splitPath(d.field), delta: d.delta };
    }
    case "throttle": {
      const interval = parseDuration((value as { interval: string }).interval);
      if (interval === undefined) {
        issues.push({
          path: pointer([...at, name, "interval"]),
          message: "Invalid duration: it is too long",
        });
        return undefined;
      }
      return { type: "throttle", interval };
    }
    case "aggregate": {
      const a = value as { window: string; fields: Record<string, AggregateFunction[]> };
      const window = parseDuration(a.window);
      if (window === undefined) {
        issues.push({ path: pointer([...at, name, "window"]), message: "Invalid duration: it is too long" });
        return undefined;
      }
      return {
        type: "aggregate",
        window,
        fields: Object.entries(a.fields).map(([field, fns]) => ({
          name: field,
          segments: splitPath(field),
          fns: Object.freeze([...fns]),
        })),
        signature: canonicalJson({ window, fields: a.fields }),
      };
    }
    case "alarm": {
      const a = value as { type: string; severity: AlarmSeverity; clear?: unknown };
      const deciding = clear !== undefined ? a.clear : condition;
      return {
        type: "alarm",
        alarmType: a.type,
        severity: a.severity,
        clear,
        raiseNeeds: fieldsRead(condition).map(splitPath),
        clearNeeds: fieldsRead(deciding).map(splitPath),
      };
    }
    case "route":
      return { type: "route", route: Object.freeze([...(value as string[])]) };
  }
}

// --- version ----------------------------------------------------------------------------------

/** JSON with object keys sorted at every level: the same document always gives the same text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) {
    return `[${value.map((x) => canonicalJson(x === undefined ? null : x)).join(",")}]`;
  }
  if (typeof value === "object" && value !== null) {
    const keys = Object.keys(value).filter((k) => (value as Record<string, unknown>)[k] !== undefined).sort();
    return `{${
      keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(
        ",",
      )
    }}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** The first 12 hex digits of the SHA-256 of the canonical JSON. */
export function contentVersion(document: unknown): string {
  return createHash("sha256").update(canonicalJson(document)).digest("hex").slice(0, 12);
}
