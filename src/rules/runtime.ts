/**
 * The engine's run-time shapes, shared by the engine (src/rules/engine.ts) and the stateful
 * actions (src/rules/actions/): a message in flight, a built rule and action, an open window,
 * and what an action may ask of the engine while it runs (`ActionContext`).
 */
import type { JsonObject, MessageKind } from "../core/message.ts";
import type { Evaluator, MessageFields } from "./jsonlogic.ts";
import type { ActionSpec } from "./compile.ts";
import { getField } from "./_fields.ts";
import type { Predicate } from "./match.ts";
import type { ActiveAlarm } from "./state.ts";
import type { AggregateFunction } from "./schema.ts";

/** A message on its way through the rules. */
export interface Flight extends MessageFields {
  device: string;
  kind: MessageKind;
  ts: number;
  topic: string | undefined;
  source: string;
  payload: JsonObject;
  /** The payload is the engine's own copy (may be changed in place). */
  owned: boolean;
  /** The transaction that made the copy. */
  ownerTx: number;
  route: readonly string[] | undefined;
  origin: string | undefined;
}

export const SET = 0,
  RENAME = 1,
  REMOVE = 2,
  KEEP = 3,
  DROP = 4,
  DEADBAND = 5,
  THROTTLE = 6,
  AGGREGATE = 7,
  ALARM = 8,
  ROUTE = 9;

export const CODES: Record<ActionSpec["type"], number> = {
  set: SET,
  rename: RENAME,
  remove: REMOVE,
  keep: KEEP,
  drop: DROP,
  deadband: DEADBAND,
  throttle: THROTTLE,
  aggregate: AGGREGATE,
  alarm: ALARM,
  route: ROUTE,
};

/** What an action tells the engine: go on, the message stops (dropped, or taken into state), or it threw. */
export const CONTINUE = 0, DROPPED = 1, CONSUMED = 2, FAILED = 3;
/** "No entry" as a previous value in the undo log and the journal. */
export const ABSENT = Symbol("absent");

export interface FieldAcc {
  count: number;
  sum: number;
  min: number;
  max: number;
  last: unknown;
  hasLast: boolean;
}

export interface Window {
  start: number;
  kind: MessageKind;
  topic: string | undefined;
  acc: FieldAcc[];
  /** The journal segment in which it was last copied for undo (see `journalWindow`). */
  seg: number;
}

export interface RtAction {
  readonly code: number;
  readonly name: string;
  readonly spec: ActionSpec;
  readonly index: number;
  /** set: scratch space for values (evaluate all, then assign). */
  readonly values: unknown[];
  /** deadband: last forwarded value; throttle: last time let through. */
  readonly last: Map<string, number>;
  /** aggregate: open window per device, and how many windows end at each time. */
  readonly windows: Map<string, Window>;
  readonly ends: Map<number, number>;
  /** aggregate: output path per (field, function). */
  readonly outputs: { field: number; fn: AggregateFunction; segments: readonly string[] }[];
  /** alarm: the active alarms of this type, shared by every action naming it. */
  readonly active: Map<string, ActiveAlarm>;
}

export interface RtRule {
  readonly id: string;
  readonly index: number;
  readonly seesAlarms: boolean;
  /** The kind/device part of `match` (decided once per device and kind). */
  readonly kindDevice: Predicate | undefined;
  /** The topic part of `match` (decided per message). */
  readonly topic: ((topic: string) => boolean) | undefined;
  readonly condition: Evaluator | undefined;
  readonly actions: readonly RtAction[];
  readonly alarms: readonly RtAction[];
  readonly stop: boolean;
  /** A payload change is followed by an action that can throw: copy per transaction. */
  readonly snapshot: boolean;
}

/** A message created by a rule, continuing from rule `rule`, action `action`. */
export interface Spawn {
  flight: Flight;
  rule: number;
  action: number;
}

/** Where a state map's entries are stored (`rule_state` keys: prefix + device). */
export interface StateGroup {
  prefix: readonly unknown[];
  kind: "last" | "window" | "alarm";
  action?: RtAction;
}

/** What a stateful action may ask of the engine while it runs one message. */
export interface ActionContext {
  /** The time of this call (`process(…, now)`, `tick(now)`). */
  readonly now: number;
  /** The journal segment open now (a window is copied for undo once per segment). */
  readonly segment: number;
  /** A state change inside the rule's transaction: undone if a later action throws, and journaled. */
  change(map: Map<string, unknown>, key: string, previous: unknown): void;
  /** A state change that is journaled only (it is not undone with the rule's transaction). */
  journal(map: Map<string, unknown>, key: string, previous: unknown): void;
  /** Before a window's figures change in place. */
  journalWindow(a: RtAction, device: string, w: Window): void;
  /** A message created by this action, sent on if the rule's transaction commits. */
  spawn(s: Spawn): void;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Whether the payload has a non-null value at every one of the paths. */
export function carries(payload: JsonObject, paths: readonly (readonly string[])[]): boolean {
  for (let i = 0; i < paths.length; i++) {
    const v = getField(payload, paths[i]);
    if (v === undefined || v === null) return false;
  }
  return true;
}

/** `[device, number]` pairs of a stored state entry, whatever else the list holds. */
export function pairs(list: unknown): [string, number][] {
  return Array.isArray(list)
    ? list.filter((p): p is [string, number] =>
      Array.isArray(p) && typeof p[0] === "string" && typeof p[1] === "number"
    )
    : [];
}
