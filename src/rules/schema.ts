/**
 * The rules document as data: TypeScript types and the valibot schemas that validate it.
 * Objects are strict (unknown keys are errors). JsonLogic expressions are typed loosely here
 * (any JSON) and checked by the compiler; actions are checked one key at a time (see
 * `compile.ts`) so that every error names its exact place. `rulesJsonSchema()` turns the same
 * schemas into a JSON Schema for editors.
 */
import * as v from "valibot";
import { toJsonSchema } from "@valibot/to-json-schema";
import { MESSAGE_KINDS } from "../core/message.ts";
import type { MessageKind } from "../core/message.ts";
import { fieldPathProblem } from "./_fields.ts";
import { topicFilterProblem } from "./match.ts";
import { DURATION_PATTERN } from "./_duration.ts";

/** A JsonLogic expression (jsonlogic.com): any JSON value. */
export type JsonLogicExpression = unknown;

export const AGGREGATE_FUNCTIONS = ["avg", "min", "max", "sum", "count", "last"] as const;
export type AggregateFunction = typeof AGGREGATE_FUNCTIONS[number];

export const ALARM_SEVERITIES = ["critical", "major", "minor", "warning", "indeterminate"] as const;
export type AlarmSeverity = typeof ALARM_SEVERITIES[number];

/** Which messages a rule looks at; every given part must hold. */
export interface RuleMatch {
  /** Equality on the message kind. */
  kind?: MessageKind;
  /** A glob on the device id: `*` any run of characters, `?` exactly one. */
  device?: string;
  /** An MQTT topic filter (`+` one level, `#` the rest); a message without a topic never matches. */
  topic?: string;
}

export type Action =
  | { set: Record<string, JsonLogicExpression> }
  | { rename: Record<string, string> }
  | { remove: string[] }
  | { keep: string[] }
  | { drop: true }
  | { deadband: { field: string; delta: number } }
  | { throttle: { interval: string } }
  | { aggregate: { window: string; fields: Record<string, AggregateFunction[]> } }
  | { alarm: { type: string; severity: AlarmSeverity; clear?: JsonLogicExpression } }
  | { route: string[] };

export type ActionName =
  | "set"
  | "rename"
  | "remove"
  | "keep"
  | "drop"
  | "deadband"
  | "throttle"
  | "aggregate"
  | "alarm"
  | "route";

export interface Rule {
  id: string;
  description?: string;
  match?: RuleMatch;
  if?: JsonLogicExpression;
  then: Action[];
  stop?: boolean;
}

export interface RulesDocument {
  $schema?: string;
  version: 1;
  rules: Rule[];
}

// --- schemas ----------------------------------------------------------------------------------

const JsonLogic = v.pipe(
  v.unknown(),
  v.description(
    "A JsonLogic expression (jsonlogic.com); `var` reads the payload, `@device`, `@kind`, " +
      "`@ts` and `@topic` the message.",
  ),
);

const FieldPath = v.pipe(
  v.string(),
  v.regex(/^[^.]+(\.[^.]+)*$/, (i) => fieldPathProblem(String(i.input)) ?? "Invalid field path"),
  v.check(
    (s) => fieldPathProblem(s) === undefined,
    (i) => fieldPathProblem(String(i.input)) ?? "Invalid field path",
  ),
  v.description("A payload field; dots name nested fields (`env.temperature`)."),
);

const Duration = v.pipe(
  v.string(),
  v.regex(
    DURATION_PATTERN,
    (i) =>
      `Invalid duration ${
        JSON.stringify(i.input)
      }: expected a whole number and a unit, like 500ms, 10s, 5m, 1h`,
  ),
  v.description("A duration: a whole number and ms, s, m, h or d."),
);

function nonEmptyRecord<T extends Record<string, unknown>>(what: string) {
  return v.check<T, string>((o) => Object.keys(o).length > 0, `Invalid ${what}: it names no field`);
}

const Destination = v.pipe(
  v.string(),
  v.regex(
    /^(hub|mqtt:[^+#]+)$/,
    (i) =>
      `Invalid destination ${JSON.stringify(i.input)}: expected "hub" or "mqtt:<topic>" without wildcards`,
  ),
);

/** The value schema of each action, keyed by the action's one key. */
export const ACTION_SCHEMAS = {
  set: v.pipe(
    v.record(FieldPath, JsonLogic),
    nonEmptyRecord("set"),
    v.description("Sets payload fields to computed values."),
  ),
  rename: v.pipe(
    v.record(FieldPath, FieldPath),
    nonEmptyRecord("rename"),
    v.description("Renames payload fields: {from: to}."),
  ),
  remove: v.pipe(v.array(FieldPath), v.minLength(1, "Invalid remove: it names no field")),
  keep: v.pipe(v.array(FieldPath), v.minLength(1, "Invalid keep: it names no field")),
  drop: v.literal(true, "Invalid drop: expected true"),
  deadband: v.strictObject({
    field: FieldPath,
    delta: v.pipe(
      v.number(),
      v.finite(),
      v.minValue(0, (i) => `Invalid delta ${i.input}: expected 0 or more`),
    ),
  }),
  throttle: v.strictObject({ interval: Duration }),
  aggregate: v.strictObject({
    window: Duration,
    fields: v.pipe(
      v.record(
        FieldPath,
        v.pipe(
          v.array(v.picklist(AGGREGATE_FUNCTIONS)),
          v.minLength(1, "Invalid aggregate field: it names no function"),
          v.check((a) => new Set(a).size === a.length, "Invalid aggregate field: a function is named twice"),
        ),
      ),
      nonEmptyRecord("aggregate"),
    ),
  }),
  alarm: v.strictObject({
    type: v.pipe(v.string(), v.minLength(1, "Invalid alarm type: it is empty")),
    severity: v.picklist(ALARM_SEVERITIES),
    clear: v.optional(JsonLogic),
  }),
  route: v.pipe(v.array(Destination), v.minLength(1, "Invalid route: it names no destination")),
} as const;

export const ACTION_NAMES = Object.keys(ACTION_SCHEMAS) as ActionName[];

const Match = v.strictObject({
  kind: v.optional(v.picklist([...MESSAGE_KINDS, "alarm"])),
  device: v.optional(v.pipe(v.string(), v.minLength(1, "Invalid device glob: it is empty"))),
  topic: v.optional(
    v.pipe(
      v.string(),
      v.check((t) => topicFilterProblem(t) === undefined, (i) => topicFilterProblem(String(i.input)) ?? ""),
    ),
  ),
});

function ruleSchema<A extends v.GenericSchema>(action: A) {
  return v.strictObject({
    id: v.pipe(v.string(), v.minLength(1, "Invalid rule id: it is empty")),
    description: v.optional(v.string()),
    match: v.optional(Match),
    if: v.optional(JsonLogic),
    then: v.array(action),
    stop: v.optional(v.boolean()),
  });
}

function documentSchema<R extends v.GenericSchema>(rule: R) {
  return v.strictObject({
    $schema: v.optional(v.string()),
    version: v.literal(1, (i) => `Unsupported version ${JSON.stringify(i.input)}: expected 1`),
    rules: v.array(rule),
  });
}

/** The document with each rule left unchecked (rules are checked one by one, in order). */
export const DocumentShape = documentSchema(v.unknown());
/** One rule with each action left unchecked (actions are dispatched on their one key). */
export const RuleShape = ruleSchema(v.unknown());

/** The whole document, actions as a union: the source of the JSON Schema. */
function fullDocumentSchema() {
  const actions = v.union(
    ACTION_NAMES.map((name) =>
      v.strictObject({ [name]: ACTION_SCHEMAS[name] } as Record<string, v.GenericSchema>)
    ),
  );
  return documentSchema(ruleSchema(actions));
}

/** JSON Schema (draft-07) of a rules document, for editors and `outpost rules schema`. */
export function rulesJsonSchema(): Record<string, unknown> {
  const schema = toJsonSchema(fullDocumentSchema(), { errorMode: "ignore" }) as Record<string, unknown>;
  return {
    $schema: schema.$schema,
    title: "outpost rules document",
    description: "Declarative rules evaluated in order for every message (docs/rules.md).",
    ...schema,
  };
}

// --- issues -----------------------------------------------------------------------------------

/** Converts valibot issues into `Issue`s with JSON Pointers under `prefix`. */
export function toIssues(
  issues: readonly v.BaseIssue<unknown>[],
  prefix: readonly (string | number)[],
): { segments: (string | number)[]; message: string }[] {
  return issues.map((issue) => {
    const segments = [...prefix, ...(issue.path ?? []).map((p) => p.key as string | number)];
    let message = issue.message;
    if (issue.type === "strict_object") {
      message = issue.expected === "never"
        ? `Unknown key ${issue.received}`
        : `Missing required key ${issue.expected}`;
    } else {
      const m = /^Invalid type: Expected (.*) but received (.*)$/.exec(message);
      if (m !== null) message = `Invalid type: expected ${m[1]}, received ${m[2]}`;
      const k = /^Invalid length: Expected (.*) but received (.*)$/.exec(message);
      if (k !== null) message = `Invalid length: expected ${k[1]}, received ${k[2]}`;
    }
    return { segments, message };
  });
}
