/**
 * The rule engine: runs messages through compiled rules, in order, and keeps the per-device state
 * that deadband, throttle, aggregate and alarm need. Pure: time is passed in (`now`), nothing
 * here reads a clock, the environment or the network.
 *
 * Invariants:
 *  - the caller's message is never mutated: the first action that changes a payload makes a
 *    one-level copy, nested objects are replaced along written paths, never changed in place,
 *    and outputs share whatever was not changed with the caller's message;
 *  - each rule is a transaction: when it throws on some data, the message continues exactly as
 *    it entered the rule, its state changes and alarms are undone, the error is counted;
 *  - messages created by rules (alarms, aggregate windows) continue from where they were created,
 *    so the pipeline always moves forward and always ends.
 */
import type { JsonObject, MessageKind, RoutedMessage } from "../core/message.ts";
import type { Message } from "../core/message.ts";
import type { Evaluator, MessageFields } from "./jsonlogic.ts";
import { truthy } from "./jsonlogic.ts";
import type { ActionSpec, CompiledRule, CompiledRules } from "./compile.ts";
import { programOf } from "./compile.ts";
import { cloneJson, getField, setField, shallowCopy, toJsonValue, withoutField } from "./_fields.ts";
import type { Predicate } from "./match.ts";
import type { ActiveAlarm, OpenWindow, RuleState } from "./state.ts";
import type { AggregateFunction, AlarmSeverity } from "./schema.ts";
import { errorMessage } from "../core/errors.ts";

/** What one rule did with one message (`POST /api/v1/rules/test`, `outpost rules test`). */
export interface TraceEntry {
  rule: string;
  /** Whether `match` and `if` both held. */
  matched: boolean;
  /** The actions that ran, in order (an alarm clear on a non-matching rule shows as `alarm`). */
  actions?: string[];
  /** The message stopped here (drop, deadband, throttle, or absorbed by aggregate). */
  dropped?: boolean;
  /** The rule failed on this message: it was left unchanged by the rule. */
  error?: string;
  /** Set for messages created by rules: `alarm <type> active|cleared`, `aggregate <rule>`. */
  origin?: string;
}

export interface ProcessResult {
  /** The messages leaving the rules, payloads after every action; treat them as read-only. */
  outputs: RoutedMessage[];
  /** One entry per rule evaluated, in evaluation order (an empty frozen array with `{trace: false}`). */
  trace: TraceEntry[];
  /** How many rules failed on this message (see `TraceEntry.error`). */
  errors: number;
}

export interface ProcessOptions {
  /** Build the trace (default true). The ingest hot path passes `false`. */
  trace?: boolean;
}

export interface RuleEngineStats {
  /** Messages given to `process`. */
  processed: number;
  /** Messages that left the rules (from `process` and `tick`). */
  emitted: number;
  /** Messages that a rule dropped or absorbed into an aggregate window. */
  dropped: number;
  /** Rule failures on data, in total (`process` and `tick`). */
  errors: number;
}

export interface RuleEngine {
  /** The rules in force. */
  readonly rules: CompiledRules;
  /** Runs one message through the rules at time `now` (ms since the epoch). */
  process(message: Message, now: number, options?: ProcessOptions): ProcessResult;
  /** Closes the aggregate windows that ended at or before `now` and returns what they emit. */
  tick(now: number): RoutedMessage[];
  /** When `tick` next has work (the earliest open window end), or `undefined`. */
  nextDeadline(): number | undefined;
  /** The state worth keeping across a restart or a rules replacement, as plain JSON. */
  exportState(): RuleState;
  /** Replaces the rules in force atomically, carrying the state over (see `RuleState`). */
  replace(rules: CompiledRules): void;
  /** Counters since the engine was created. */
  stats(): RuleEngineStats;
  /**
   * Starts a journal segment: every state change from here on can be undone by `undoTo(mark)`
   * until the segment is released. Segments nest in order (SPEC §14: rule state changes only
   * with a committed outbox transaction; see docs/decisions/0005-rule-state-in-the-outbox-transaction.md).
   */
  mark(): number;
  /** Undoes every state change since `mark` (the latest segments first) and ends that segment. */
  undoTo(mark: number): void;
  /** Ends a segment whose changes are kept (committed). */
  release(): void;
  /** Whether any state changed since `mark` (within its open segment). */
  changedSince(mark: number): boolean;
  /** The state entries changed since the last call, as rows to store (`value` null: delete). */
  takeDirty(): StateRow[];
  /** Every state entry, as rows (to rewrite the store after a rules replacement). */
  stateRows(): StateRow[];
}

/** One entry of the rule state as stored: `key` is a JSON array naming it, `value` JSON. */
export interface StateRow {
  key: string;
  value: string | null;
}

/** The state described by stored rows (the inverse of `stateRows()`); unreadable rows are skipped. */
export function ruleStateFromRows(rows: readonly StateRow[]): RuleState {
  const state: RuleState = { format: 1, alarms: [], deadband: [], throttle: [], windows: [] };
  const deadband = new Map<string, RuleState["deadband"][number]>();
  const throttle = new Map<string, RuleState["throttle"][number]>();
  const windows = new Map<string, RuleState["windows"][number]>();
  for (const row of rows) {
    if (row.value === null) continue;
    let key: unknown[];
    let value: unknown;
    try {
      key = JSON.parse(row.key);
      value = JSON.parse(row.value);
    } catch {
      continue;
    }
    if (!Array.isArray(key)) continue;
    const [kind, a, b, c, device] = key as [string, string, number, unknown, string];
    const group = JSON.stringify([kind, a, b, c]);
    if (kind === "a" && isRecord(value)) {
      state.alarms.push(value as unknown as ActiveAlarm);
    } else if (kind === "d" && typeof value === "number") {
      let e = deadband.get(group);
      if (!e) deadband.set(group, e = { rule: a, action: b, field: String(c), last: [] });
      e.last.push([device, value]);
    } else if (kind === "t" && typeof value === "number") {
      let e = throttle.get(group);
      if (!e) throttle.set(group, e = { rule: a, action: b, interval: Number(c), last: [] });
      e.last.push([device, value]);
    } else if (kind === "w" && isRecord(value)) {
      let e = windows.get(group);
      if (!e) windows.set(group, e = { rule: a, action: b, signature: String(c), open: [] });
      e.open.push(value as unknown as OpenWindow);
    }
  }
  state.deadband = [...deadband.values()];
  state.throttle = [...throttle.values()];
  state.windows = [...windows.values()];
  return state;
}

/** Where a state map's entries are stored: the key prefix (a JSON array) and how values read. */
interface StateGroup {
  prefix: readonly unknown[];
  kind: "last" | "window" | "alarm";
  action?: RtAction;
}

// --- runtime structures -----------------------------------------------------------------------

interface Flight extends MessageFields {
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

const SET = 0,
  RENAME = 1,
  REMOVE = 2,
  KEEP = 3,
  DROP = 4,
  DEADBAND = 5,
  THROTTLE = 6,
  AGGREGATE = 7,
  ALARM = 8,
  ROUTE = 9;

const CODES: Record<ActionSpec["type"], number> = {
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

interface FieldAcc {
  count: number;
  sum: number;
  min: number;
  max: number;
  last: unknown;
  hasLast: boolean;
}

interface Window {
  start: number;
  kind: MessageKind;
  topic: string | undefined;
  acc: FieldAcc[];
  /** The journal segment in which it was last copied for undo (see `#journalWindow`). */
  seg: number;
}

interface RtAction {
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

interface RtRule {
  readonly id: string;
  readonly index: number;
  readonly seesAlarms: boolean;
  /** The kind/device part of `match` (decided once per device and kind, see #plan). */
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

const CONTINUE = 0, DROPPED = 1, CONSUMED = 2, FAILED = 3;
const ABSENT = Symbol("absent");

interface Spawn {
  flight: Flight;
  rule: number;
  action: number;
}

function errorText(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  try {
    return errorMessage(error);
  } catch {
    return "unknown error";
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function windowStart(now: number, length: number): number {
  return now - (((now % length) + length) % length);
}

// --- the engine -------------------------------------------------------------------------------

class Engine implements RuleEngine {
  #compiled!: CompiledRules;
  #rules: RtRule[] = [];
  /**
   * Per device, per kind: the rules whose kind/device part of `match` holds, in order. Rules
   * are immutable, so a plan never goes stale; the map is bounded (cleared when full).
   */
  #plans = new Map<string, (RtRule[] | undefined)[]>();
  #aggregates: { rule: RtRule; action: RtAction }[] = [];
  #alarmTypes = new Map<string, Map<string, ActiveAlarm>>();

  // Per call.
  #now = 0;
  #outputs: RoutedMessage[] = [];
  #trace: TraceEntry[] | null = null;
  #errors = 0;
  #tx = 0;
  #snapshotting = false;
  // Undo log of the running transaction: (map, key, previous value), the first #undoCount
  // entries. Slots are overwritten, never truncated (truncating arrays is costly).
  #undoMaps: Map<string, unknown>[] = [];
  #undoKeys: string[] = [];
  #undoValues: unknown[] = [];
  #undoCount = 0;
  #pending: Spawn[] = [];
  #queue: Spawn[] = [];
  readonly #main: Flight = {
    device: "",
    kind: "telemetry",
    ts: 0,
    topic: undefined,
    source: "",
    payload: {},
    owned: false,
    ownerTx: 0,
    route: undefined,
    origin: undefined,
  };
  readonly #stats: RuleEngineStats = { processed: 0, emitted: 0, dropped: 0, errors: 0 };
  // Batch journal (mark/undoTo/release): every state change while a segment is open, as (map,
  // key, previous value); slots are overwritten, not truncated, like the undo log above.
  #jOpen = 0;
  #jSegment = 1;
  #jMaps: Map<string, unknown>[] = [];
  #jKeys: string[] = [];
  #jValues: unknown[] = [];
  #jCount = 0;
  /** State maps → where their entries are stored; and the keys changed since `takeDirty()`. */
  #groups = new Map<Map<string, unknown>, StateGroup>();
  #dirty = new Map<Map<string, unknown>, Set<string>>();

  constructor(rules: CompiledRules, state: RuleState | undefined) {
    this.#build(rules);
    if (state !== undefined) this.#import(state);
    this.#registerAlarms();
  }

  get rules(): CompiledRules {
    return this.#compiled;
  }

  process(message: Message, now: number, options?: ProcessOptions): ProcessResult {
    this.#now = now;
    const outputs: RoutedMessage[] = [];
    const trace: TraceEntry[] = options?.trace === false ? NO_TRACE : [];
    this.#outputs = outputs;
    this.#trace = trace === NO_TRACE ? null : trace;
    this.#errors = 0;
    const f = this.#main;
    f.device = message.device;
    f.kind = message.kind;
    f.ts = message.ts;
    f.topic = message.topic;
    f.source = message.source;
    f.payload = message.payload;
    f.owned = false;
    f.route = undefined;
    f.origin = undefined;
    this.#stats.processed++;
    this.#run(f, 0, 0);
    if (this.#queue.length > 0) this.#drain();
    return { outputs, trace, errors: this.#errors };
  }

  tick(now: number): RoutedMessage[] {
    this.#now = now;
    const outputs: RoutedMessage[] = [];
    this.#outputs = outputs;
    this.#trace = null;
    this.#errors = 0;
    for (const { rule, action } of this.#aggregates) {
      if (action.windows.size === 0) continue;
      const length = (action.spec as { window: number }).window;
      if (minKey(action.ends)! > now) continue;
      for (const [device, window] of action.windows) {
        if (window.start + length <= now) this.#queue.push(this.#closeWindow(rule, action, device, window));
      }
    }
    if (this.#queue.length > 0) this.#drain();
    return outputs;
  }

  nextDeadline(): number | undefined {
    let next: number | undefined;
    for (const { action } of this.#aggregates) {
      const m = minKey(action.ends);
      if (m !== undefined && (next === undefined || m < next)) next = m;
    }
    return next;
  }

  exportState(): RuleState {
    const state: RuleState = { format: 1, alarms: [], deadband: [], throttle: [], windows: [] };
    for (const active of this.#alarmTypes.values()) {
      for (const alarm of active.values()) state.alarms.push({ ...alarm });
    }
    for (const rule of this.#rules) {
      for (const a of rule.actions) {
        const spec = a.spec;
        if (spec.type === "deadband" && a.last.size > 0) {
          state.deadband.push({ rule: rule.id, action: a.index, field: spec.field, last: [...a.last] });
        } else if (spec.type === "throttle" && a.last.size > 0) {
          state.throttle.push({ rule: rule.id, action: a.index, interval: spec.interval, last: [...a.last] });
        } else if (spec.type === "aggregate" && a.windows.size > 0) {
          const open: OpenWindow[] = [];
          for (const [device, w] of a.windows) open.push(this.#openWindow(a, device, w));
          state.windows.push({ rule: rule.id, action: a.index, signature: spec.signature, open });
        }
      }
    }
    return state;
  }

  replace(rules: CompiledRules): void {
    // Build completely before swapping, so a failure leaves the engine as it was.
    const state = this.exportState();
    const next = new Engine(rules, state);
    this.#compiled = next.#compiled;
    this.#rules = next.#rules;
    this.#plans = next.#plans;
    this.#aggregates = next.#aggregates;
    this.#alarmTypes = next.#alarmTypes;
    this.#groups = next.#groups;
    // The host rewrites the whole store after a replacement (stateRows()); nothing older to undo.
    this.#dirty.clear();
    for (let i = 0; i < this.#jCount; i++) this.#jValues[i] = undefined;
    this.#jCount = 0;
  }

  stats(): RuleEngineStats {
    return { ...this.#stats };
  }

  mark(): number {
    this.#jOpen++;
    this.#jSegment++;
    return this.#jCount;
  }

  undoTo(mark: number): void {
    let windows: Set<RtAction> | undefined;
    for (let i = this.#jCount - 1; i >= mark; i--) {
      const map = this.#jMaps[i];
      const key = this.#jKeys[i];
      const value = this.#jValues[i];
      if (value === ABSENT) map.delete(key);
      else map.set(key, value);
      this.#markDirty(map, key);
      const group = this.#groups.get(map);
      if (group?.kind === "window") (windows ??= new Set()).add(group.action!);
      this.#jValues[i] = undefined;
    }
    if (mark < this.#jCount) this.#jCount = mark;
    // Window ends are counts derived from the open windows: recount where windows were restored.
    if (windows !== undefined) {
      for (const a of windows) {
        a.ends.clear();
        const length = (a.spec as { window: number }).window;
        for (const w of a.windows.values()) increment(a.ends, w.start + length);
      }
    }
    this.#jSegment++;
    this.release();
  }

  release(): void {
    if (this.#jOpen > 0) this.#jOpen--;
    if (this.#jOpen === 0 && this.#jCount > 0) {
      for (let i = 0; i < this.#jCount; i++) this.#jValues[i] = undefined;
      this.#jCount = 0;
    }
  }

  changedSince(mark: number): boolean {
    return this.#jCount > mark;
  }

  takeDirty(): StateRow[] {
    const rows: StateRow[] = [];
    for (const [map, keys] of this.#dirty) {
      const group = this.#groups.get(map);
      if (group === undefined) continue;
      for (const device of keys) rows.push(this.#row(group, device, map.get(device)));
    }
    this.#dirty.clear();
    return rows;
  }

  stateRows(): StateRow[] {
    const rows: StateRow[] = [];
    for (const [map, group] of this.#groups) {
      for (const [device, value] of map) rows.push(this.#row(group, device, value));
    }
    return rows;
  }

  #row(group: StateGroup, device: string, value: unknown): StateRow {
    const key = JSON.stringify([...group.prefix, device]);
    if (value === undefined) return { key, value: null };
    if (group.kind === "window") {
      return { key, value: JSON.stringify(this.#openWindow(group.action!, device, value as Window)) };
    }
    return { key, value: JSON.stringify(value) };
  }

  #openWindow(a: RtAction, device: string, w: Window): OpenWindow {
    const spec = a.spec as Extract<ActionSpec, { type: "aggregate" }>;
    const fields: OpenWindow["fields"] = {};
    spec.fields.forEach((field, i) => {
      const acc = w.acc[i];
      const entry: OpenWindow["fields"][string] = {
        count: acc.count,
        sum: acc.sum,
        min: acc.count > 0 ? acc.min : null,
        max: acc.count > 0 ? acc.max : null,
      };
      if (acc.hasLast) entry.last = cloneJson(acc.last);
      fields[field.name] = entry;
    });
    const ow: OpenWindow = { device, start: w.start, kind: w.kind, fields };
    if (w.topic !== undefined) ow.topic = w.topic;
    return ow;
  }

  #markDirty(map: Map<string, unknown>, key: string): void {
    let keys = this.#dirty.get(map);
    if (keys === undefined) this.#dirty.set(map, keys = new Set());
    keys.add(key);
  }

  /** Notes a state change: dirty for the store, and in the journal while a segment is open. */
  #journal(map: Map<string, unknown>, key: string, previous: unknown): void {
    this.#markDirty(map, key);
    if (this.#jOpen === 0) return;
    const i = this.#jCount++;
    this.#jMaps[i] = map;
    this.#jKeys[i] = key;
    this.#jValues[i] = previous;
  }

  /** Before a window's figures change in place: a copy for undo, once per journal segment. */
  #journalWindow(a: RtAction, device: string, w: Window): void {
    if (this.#jOpen === 0) return this.#markDirty(a.windows as Map<string, unknown>, device);
    if (w.seg === this.#jSegment) return;
    w.seg = this.#jSegment;
    const copy: Window = { ...w, acc: w.acc.map((x) => ({ ...x })) };
    this.#journal(a.windows as Map<string, unknown>, device, copy);
  }

  // --- building -------------------------------------------------------------------------------

  #build(compiled: CompiledRules): void {
    const program = programOf(compiled);
    this.#compiled = compiled;
    this.#rules = program.map((rule, index) => this.#buildRule(rule, index));
    this.#aggregates = [];
    this.#groups = new Map();
    for (const rule of this.#rules) {
      for (const action of rule.actions) {
        const spec = action.spec;
        if (action.code === AGGREGATE) this.#aggregates.push({ rule, action });
        if (spec.type === "deadband") {
          this.#groups.set(action.last as Map<string, unknown>, {
            prefix: ["d", rule.id, action.index, spec.field],
            kind: "last",
          });
        } else if (spec.type === "throttle") {
          this.#groups.set(action.last as Map<string, unknown>, {
            prefix: ["t", rule.id, action.index, spec.interval],
            kind: "last",
          });
        } else if (spec.type === "aggregate") {
          this.#groups.set(action.windows as Map<string, unknown>, {
            prefix: ["w", rule.id, action.index, spec.signature],
            kind: "window",
            action,
          });
        }
      }
    }
  }

  /** Registers every alarm type's map for the store (types of the rules and of imported alarms). */
  #registerAlarms(): void {
    for (const [type, active] of this.#alarmTypes) {
      this.#groups.set(active as Map<string, unknown>, { prefix: ["a", type, 0, ""], kind: "alarm" });
    }
  }

  #buildRule(rule: CompiledRule, index: number): RtRule {
    const actions = rule.actions.map((spec, i): RtAction => {
      let active = EMPTY_ALARMS;
      if (spec.type === "alarm") {
        active = this.#alarmTypes.get(spec.alarmType) ?? new Map();
        this.#alarmTypes.set(spec.alarmType, active);
      }
      const outputs: RtAction["outputs"] = [];
      if (spec.type === "aggregate") {
        spec.fields.forEach((field, fi) => {
          for (const fn of field.fns) {
            const segments = [...field.segments];
            segments[segments.length - 1] += `_${fn}`;
            outputs.push({ field: fi, fn, segments });
          }
        });
      }
      return {
        code: CODES[spec.type],
        name: spec.type,
        spec,
        index: i,
        values: spec.type === "set" ? new Array(spec.fields.length) : [],
        last: new Map(),
        windows: new Map(),
        ends: new Map(),
        outputs,
        active,
      };
    });
    const mutates = (a: RtAction) =>
      a.code === SET || a.code === RENAME || a.code === REMOVE || a.code === KEEP;
    const mayThrow = (a: RtAction) => a.code === SET || a.code === ALARM;
    const firstMutation = actions.findIndex(mutates);
    return {
      id: rule.id,
      index,
      seesAlarms: rule.seesAlarms,
      kindDevice: rule.match.kindDevice,
      topic: rule.match.topic,
      condition: rule.condition,
      actions,
      alarms: actions.filter((a) => a.code === ALARM),
      stop: rule.stop,
      snapshot: firstMutation >= 0 && actions.slice(firstMutation + 1).some(mayThrow),
    };
  }

  #import(state: RuleState): void {
    if (!isRecord(state)) return;
    if (Array.isArray(state.alarms)) {
      for (const a of state.alarms) {
        if (!isRecord(a) || typeof a.device !== "string" || typeof a.type !== "string") continue;
        const active = this.#alarmTypes.get(a.type) ?? new Map<string, ActiveAlarm>();
        this.#alarmTypes.set(a.type, active);
        active.set(a.device, {
          device: a.device,
          type: a.type,
          severity: (typeof a.severity === "string" ? a.severity : "indeterminate") as AlarmSeverity,
          rule: typeof a.rule === "string" ? a.rule : "",
          raisedAt: typeof a.raisedAt === "number" ? a.raisedAt : 0,
        });
      }
    }
    const find = (entry: unknown, type: ActionSpec["type"]): RtAction | undefined => {
      if (!isRecord(entry) || typeof entry.rule !== "string" || typeof entry.action !== "number") {
        return undefined;
      }
      const rule = this.#rules.find((r) => r.id === entry.rule);
      const action = rule?.actions[entry.action];
      return action?.spec.type === type ? action : undefined;
    };
    const pairs = (list: unknown): [string, number][] =>
      Array.isArray(list)
        ? list.filter((p): p is [string, number] =>
          Array.isArray(p) && typeof p[0] === "string" && typeof p[1] === "number"
        )
        : [];
    for (const entry of Array.isArray(state.deadband) ? state.deadband : []) {
      const a = find(entry, "deadband");
      if (a === undefined || (a.spec as { field: string }).field !== entry.field) continue;
      for (const [device, value] of pairs(entry.last)) a.last.set(device, value);
    }
    for (const entry of Array.isArray(state.throttle) ? state.throttle : []) {
      const a = find(entry, "throttle");
      if (a === undefined || (a.spec as { interval: number }).interval !== entry.interval) continue;
      for (const [device, at] of pairs(entry.last)) a.last.set(device, at);
    }
    for (const entry of Array.isArray(state.windows) ? state.windows : []) {
      const a = find(entry, "aggregate");
      if (a === undefined || a.spec.type !== "aggregate" || a.spec.signature !== entry.signature) continue;
      const spec = a.spec;
      for (const ow of Array.isArray(entry.open) ? entry.open : []) {
        if (!isRecord(ow) || typeof ow.device !== "string" || typeof ow.start !== "number") continue;
        const fields = isRecord(ow.fields) ? ow.fields : {};
        const window: Window = {
          start: ow.start,
          kind: (typeof ow.kind === "string" ? ow.kind : "telemetry") as MessageKind,
          topic: typeof ow.topic === "string" ? ow.topic : undefined,
          seg: 0,
          acc: spec.fields.map((field) => {
            const f = Object.hasOwn(fields, field.name) && isRecord(fields[field.name])
              ? fields[field.name]
              : {};
            const acc = newAcc();
            const { count, sum, min, max } = f as Record<string, unknown>;
            if (typeof count === "number" && count > 0 && typeof sum === "number") {
              acc.count = count;
              acc.sum = sum;
              acc.min = typeof min === "number" ? min : Infinity;
              acc.max = typeof max === "number" ? max : -Infinity;
            }
            if (Object.hasOwn(f as object, "last")) {
              acc.last = (f as Record<string, unknown>).last;
              acc.hasLast = true;
            }
            return acc;
          }),
        };
        const previous = a.windows.get(ow.device);
        if (previous !== undefined) decrement(a.ends, previous.start + spec.window);
        a.windows.set(ow.device, window);
        increment(a.ends, window.start + spec.window);
      }
    }
  }

  // --- running --------------------------------------------------------------------------------

  #drain(): void {
    const queue = this.#queue;
    for (let i = 0; i < queue.length; i++) {
      const s = queue[i];
      this.#run(s.flight, s.rule, s.action);
    }
    queue.length = 0;
  }

  /** Runs a message from rule `r`, action `a` (a > 0 resumes inside rule `r`) to its end. */
  #run(f: Flight, r: number, a: number): void {
    const rules = this.#rules;
    if (a > 0) {
      const rule = rules[r];
      const outcome = this.#actions(rule, f, a);
      if (outcome === DROPPED || outcome === CONSUMED) return;
      if (outcome === CONTINUE && rule.stop) return this.#emit(f);
      r++;
    }
    // Traced calls scan every rule, so the trace names each one; the hot path walks the plan
    // of the message's device and kind. Both decide exactly the same things.
    const traced = this.#trace !== null;
    const list = traced ? rules : this.#plan(f);
    let i = 0;
    if (r > 0) { while (i < list.length && list[i].index < r) i++; }
    // Alarm messages are seen only by the rules that ask for them (match kind "alarm").
    const alarm = f.kind === "alarm";
    for (; i < list.length; i++) {
      const rule = list[i];
      if (traced) {
        if (alarm && !rule.seesAlarms) continue;
        if (rule.kindDevice !== undefined && !rule.kindDevice(f)) {
          this.#note(rule, f, false);
          continue;
        }
      }
      if (rule.topic !== undefined && (f.topic === undefined || !rule.topic(f.topic))) {
        if (traced) this.#note(rule, f, false);
        continue;
      }
      if (rule.condition !== undefined) {
        let holds: unknown;
        try {
          holds = rule.condition(f.payload, f);
        } catch (error) {
          this.#fail(rule, f, false, undefined, error);
          continue;
        }
        if (holds !== true && (holds === false || !truthy(holds))) {
          if (rule.alarms.length > 0 && hasActive(rule.alarms, f.device)) this.#clearAlarms(rule, f);
          else if (traced) this.#note(rule, f, false);
          continue;
        }
      }
      if (rule.actions.length === 0) {
        if (traced) this.#note(rule, f, true);
        if (rule.stop) break;
        continue;
      }
      const outcome = this.#actions(rule, f, 0);
      if (outcome === DROPPED || outcome === CONSUMED) return;
      if (outcome === CONTINUE && rule.stop) break;
    }
    this.#emit(f);
  }

  /** The rules that can match messages of this device and kind (see #plans). */
  #plan(f: Flight): RtRule[] {
    let byKind = this.#plans.get(f.device);
    if (byKind === undefined) {
      if (this.#plans.size >= MAX_PLANNED_DEVICES) this.#plans.clear();
      byKind = [undefined, undefined, undefined, undefined, undefined];
      this.#plans.set(f.device, byKind);
    }
    const k = kindIndex(f.kind);
    let plan = byKind[k];
    if (plan === undefined) {
      const alarm = f.kind === "alarm";
      plan = this.#rules.filter((rule) =>
        (!alarm || rule.seesAlarms) && (rule.kindDevice === undefined || rule.kindDevice(f))
      );
      byKind[k] = plan;
    }
    return plan;
  }

  #emit(f: Flight): void {
    const out: RoutedMessage = {
      device: f.device,
      kind: f.kind,
      ts: f.ts,
      payload: f.payload,
      source: f.source,
    };
    if (f.topic !== undefined) out.topic = f.topic;
    if (f.route !== undefined) out.route = [...f.route];
    this.#outputs.push(out);
    this.#stats.emitted++;
  }

  #note(rule: RtRule, f: Flight, matched: boolean, actions?: string[], dropped?: boolean): void {
    const entry: TraceEntry = { rule: rule.id, matched };
    if (actions !== undefined && actions.length > 0) entry.actions = actions;
    if (dropped) entry.dropped = true;
    if (f.origin !== undefined) entry.origin = f.origin;
    this.#trace!.push(entry);
  }

  #fail(rule: RtRule, f: Flight, matched: boolean, actions: string[] | undefined, error: unknown): void {
    this.#errors++;
    this.#stats.errors++;
    if (this.#trace === null) return;
    const entry: TraceEntry = { rule: rule.id, matched };
    if (actions !== undefined && actions.length > 0) entry.actions = actions;
    entry.error = errorText(error);
    if (f.origin !== undefined) entry.origin = f.origin;
    this.#trace.push(entry);
  }

  #begin(rule: RtRule): void {
    this.#tx++;
    this.#snapshotting = rule.snapshot;
    this.#undoCount = 0;
  }

  /** Records the value `key` has in `map` before the transaction changes it. */
  #remember(map: Map<string, unknown>, key: string, previous: unknown): void {
    const i = this.#undoCount++;
    this.#undoMaps[i] = map;
    this.#undoKeys[i] = key;
    this.#undoValues[i] = previous;
  }

  #rollback(): void {
    for (let i = this.#undoCount - 1; i >= 0; i--) {
      const value = this.#undoValues[i];
      if (value === ABSENT) this.#undoMaps[i].delete(this.#undoKeys[i]);
      else this.#undoMaps[i].set(this.#undoKeys[i], value);
      this.#undoValues[i] = undefined; // do not keep old values alive
    }
    this.#undoCount = 0;
    if (this.#pending.length !== 0) this.#pending.length = 0;
  }

  #commit(): void {
    const pending = this.#pending;
    if (pending.length === 0) return;
    for (let i = 0; i < pending.length; i++) this.#queue.push(pending[i]);
    pending.length = 0;
  }

  /**
   * Makes the top level of the payload the engine's own before a change. One level is enough:
   * nested objects are never changed in place (see `_fields.ts`).
   */
  #own(f: Flight): void {
    if (f.owned && !(this.#snapshotting && f.ownerTx !== this.#tx)) return;
    f.payload = isRecord(f.payload) ? shallowCopy(f.payload) : {};
    f.owned = true;
    f.ownerTx = this.#tx;
  }

  /** Installs a payload the engine has just built. */
  #adopt(f: Flight, payload: JsonObject): void {
    f.payload = payload;
    f.owned = true;
    f.ownerTx = this.#tx;
  }

  /** Runs the actions of `rule` from `from` as one transaction. */
  #actions(rule: RtRule, f: Flight, from: number): number {
    const savedPayload = f.payload, savedOwned = f.owned, savedOwnerTx = f.ownerTx, savedRoute = f.route;
    const names: string[] | undefined = this.#trace !== null ? [] : undefined;
    const actions = rule.actions;
    let outcome = CONTINUE;
    this.#begin(rule);
    try {
      for (let i = from; i < actions.length && outcome === CONTINUE; i++) {
        const a = actions[i];
        if (names !== undefined) names.push(a.name);
        outcome = this.#action(rule, a, f);
      }
    } catch (error) {
      f.payload = savedPayload;
      f.owned = savedOwned;
      f.ownerTx = savedOwnerTx;
      f.route = savedRoute;
      this.#rollback();
      this.#fail(rule, f, true, names, error);
      return FAILED;
    }
    this.#commit();
    if (outcome !== CONTINUE) this.#stats.dropped++;
    if (this.#trace !== null) this.#note(rule, f, true, names, outcome !== CONTINUE);
    return outcome;
  }

  #action(rule: RtRule, a: RtAction, f: Flight): number {
    const code = a.code;
    if (code <= KEEP) return this.#change(a, f); // set, rename, remove, keep
    const spec = a.spec;
    switch (code) {
      case DROP:
        return DROPPED;
      case DEADBAND: {
        const d = spec as Extract<ActionSpec, { type: "deadband" }>;
        const value = getField(f.payload, d.segments);
        // Not a number: nothing to compare, the message passes and the state is unchanged.
        if (typeof value !== "number" || !Number.isFinite(value)) return CONTINUE;
        const last = a.last.get(f.device);
        if (last !== undefined && Math.abs(value - last) < d.delta) return DROPPED;
        this.#remember(a.last as Map<string, unknown>, f.device, last ?? ABSENT);
        this.#journal(a.last as Map<string, unknown>, f.device, last ?? ABSENT);
        a.last.set(f.device, value);
        return CONTINUE;
      }
      case THROTTLE: {
        const interval = (spec as Extract<ActionSpec, { type: "throttle" }>).interval;
        const now = this.#now;
        const last = a.last.get(f.device);
        // A clock that went backwards reopens the throttle rather than closing it for long.
        if (last !== undefined && now >= last && now - last < interval) return DROPPED;
        this.#remember(a.last as Map<string, unknown>, f.device, last ?? ABSENT);
        this.#journal(a.last as Map<string, unknown>, f.device, last ?? ABSENT);
        a.last.set(f.device, now);
        return CONTINUE;
      }
      case AGGREGATE: {
        const g = spec as Extract<ActionSpec, { type: "aggregate" }>;
        const start = windowStart(this.#now, g.window);
        let window = a.windows.get(f.device);
        if (window !== undefined && start > window.start) {
          this.#pending.push(this.#closeWindow(rule, a, f.device, window));
          window = undefined;
        }
        if (window === undefined) {
          window = { start, kind: f.kind, topic: f.topic, acc: g.fields.map(newAcc), seg: this.#jSegment };
          this.#journal(a.windows as Map<string, unknown>, f.device, ABSENT);
          a.windows.set(f.device, window);
          increment(a.ends, start + g.window);
        } else {
          this.#journalWindow(a, f.device, window);
        }
        const fields = g.fields;
        for (let i = 0; i < fields.length; i++) {
          const value = getField(f.payload, fields[i].segments);
          if (value === undefined || value === null) continue;
          const acc = window.acc[i];
          if (typeof value === "number" && Number.isFinite(value)) {
            acc.count++;
            acc.sum += value;
            if (value < acc.min) acc.min = value;
            if (value > acc.max) acc.max = value;
          }
          acc.last = value; // shared, never changed in place
          acc.hasLast = true;
        }
        return CONSUMED;
      }
      case ALARM: {
        const al = spec as Extract<ActionSpec, { type: "alarm" }>;
        const active = a.active.get(f.device);
        // Clearing wins; a message without the fields a condition reads says nothing about it.
        if (al.clear !== undefined && carries(f.payload, al.clearNeeds) && truthy(al.clear(f.payload, f))) {
          if (active !== undefined) this.#clear(rule, a, f, active);
        } else if (active === undefined && carries(f.payload, al.raiseNeeds)) {
          const alarm: ActiveAlarm = {
            device: f.device,
            type: al.alarmType,
            severity: al.severity,
            rule: rule.id,
            raisedAt: f.ts,
          };
          this.#remember(a.active as Map<string, unknown>, f.device, ABSENT);
          this.#journal(a.active as Map<string, unknown>, f.device, ABSENT);
          a.active.set(f.device, alarm);
          this.#pending.push(this.#alarmMessage(rule, f, alarm, "active"));
        }
        return CONTINUE;
      }
      case ROUTE:
        f.route = (spec as Extract<ActionSpec, { type: "route" }>).route;
        return CONTINUE;
    }
    return CONTINUE;
  }

  /** The actions that change the payload (codes SET..KEEP). */
  #change(a: RtAction, f: Flight): number {
    const spec = a.spec;
    switch (a.code) {
      case SET: {
        const fields = (spec as Extract<ActionSpec, { type: "set" }>).fields;
        if (fields.length === 1) {
          const value = toJsonValue(fields[0].fn(f.payload, f));
          this.#own(f);
          setField(f.payload, fields[0].segments, value);
          return CONTINUE;
        }
        const values = a.values;
        // Evaluate everything first: a set either happens completely or not at all.
        for (let i = 0; i < fields.length; i++) values[i] = toJsonValue(fields[i].fn(f.payload, f));
        this.#own(f);
        for (let i = 0; i < fields.length; i++) {
          setField(f.payload, fields[i].segments, values[i]);
          values[i] = undefined;
        }
        return CONTINUE;
      }
      case RENAME: {
        for (const { from, to } of (spec as Extract<ActionSpec, { type: "rename" }>).pairs) {
          const value = getField(f.payload, from);
          if (value === undefined) continue;
          const rest = withoutField(f.payload, from);
          // Not removable (inside an array): the value is copied rather than moved.
          if (rest !== f.payload) this.#adopt(f, rest);
          else this.#own(f);
          setField(f.payload, to, value);
        }
        return CONTINUE;
      }
      case REMOVE: {
        for (const segments of (spec as Extract<ActionSpec, { type: "remove" }>).fields) {
          const rest = withoutField(f.payload, segments);
          if (rest !== f.payload) this.#adopt(f, rest);
        }
        return CONTINUE;
      }
      case KEEP: {
        const kept: JsonObject = {};
        for (const segments of (spec as Extract<ActionSpec, { type: "keep" }>).fields) {
          const value = getField(f.payload, segments);
          if (value !== undefined) setField(kept, segments, value);
        }
        this.#adopt(f, kept);
        return CONTINUE;
      }
    }
    return CONTINUE;
  }

  #clear(rule: RtRule, a: RtAction, f: Flight, active: ActiveAlarm): void {
    this.#remember(a.active as Map<string, unknown>, f.device, active);
    this.#journal(a.active as Map<string, unknown>, f.device, active);
    a.active.delete(f.device);
    this.#pending.push(this.#alarmMessage(rule, f, active, "cleared"));
  }

  /** The rule's condition does not hold: clear its active alarms whose `clear` holds (or that have none). */
  #clearAlarms(rule: RtRule, f: Flight): void {
    const names: string[] | undefined = this.#trace !== null ? [] : undefined;
    this.#begin(rule);
    try {
      for (const a of rule.alarms) {
        const active = a.active.get(f.device);
        if (active === undefined) continue;
        const { clear, clearNeeds } = a.spec as Extract<ActionSpec, { type: "alarm" }>;
        // A message without the fields that decide says nothing about the alarm.
        if (!carries(f.payload, clearNeeds)) continue;
        if (clear === undefined || truthy(clear(f.payload, f))) {
          names?.push(a.name);
          this.#clear(rule, a, f, active);
        }
      }
    } catch (error) {
      this.#rollback();
      this.#fail(rule, f, false, names, error);
      return;
    }
    this.#commit();
    if (this.#trace !== null) this.#note(rule, f, false, names);
  }

  #alarmMessage(rule: RtRule, f: Flight, alarm: ActiveAlarm, status: "active" | "cleared"): Spawn {
    const payload: JsonObject = {
      type: alarm.type,
      severity: alarm.severity,
      status,
      rule: alarm.rule,
      raisedAt: alarm.raisedAt,
    };
    if (status === "cleared") {
      payload.clearedAt = f.ts;
      payload.clearedBy = rule.id;
    }
    payload.trigger = isRecord(f.payload) ? shallowCopy(f.payload) : {};
    const flight: Flight = {
      device: f.device,
      kind: "alarm",
      ts: f.ts,
      topic: undefined,
      source: "rules",
      payload,
      owned: true,
      ownerTx: 0,
      route: undefined,
      origin: `alarm ${alarm.type} ${status}`,
    };
    return { flight, rule: rule.index + 1, action: 0 };
  }

  #closeWindow(rule: RtRule, a: RtAction, device: string, window: Window): Spawn {
    const spec = a.spec as Extract<ActionSpec, { type: "aggregate" }>;
    this.#journal(a.windows as Map<string, unknown>, device, window);
    a.windows.delete(device);
    decrement(a.ends, window.start + spec.window);
    const payload: JsonObject = {};
    for (const out of a.outputs) {
      const acc = window.acc[out.field];
      let value: unknown;
      switch (out.fn) {
        case "avg":
          value = acc.count > 0 ? acc.sum / acc.count : null;
          break;
        case "min":
          value = acc.count > 0 ? acc.min : null;
          break;
        case "max":
          value = acc.count > 0 ? acc.max : null;
          break;
        case "sum":
          value = acc.sum;
          break;
        case "count":
          value = acc.count;
          break;
        case "last":
          value = acc.hasLast ? acc.last : null;
          break;
      }
      setField(payload, out.segments, value);
    }
    const flight: Flight = {
      device,
      kind: window.kind,
      ts: window.start,
      topic: window.topic,
      source: "rules",
      payload,
      owned: true,
      ownerTx: 0,
      route: undefined,
      origin: `aggregate ${rule.id}`,
    };
    return { flight, rule: rule.index, action: a.index + 1 };
  }
}

const EMPTY_ALARMS = new Map<string, ActiveAlarm>();

/** How many devices get a cached rule plan before the cache starts over. */
const MAX_PLANNED_DEVICES = 10_000;

function kindIndex(kind: MessageKind): number {
  switch (kind) {
    case "telemetry":
      return 0;
    case "attributes":
      return 1;
    case "event":
      return 2;
    case "alarm":
      return 3;
    default:
      // A kind no `match` can name (validation allows only the four): all such share a plan.
      return 4;
  }
}
/** The trace of a call made with `{trace: false}`: always empty. */
const NO_TRACE: TraceEntry[] = Object.freeze([]) as unknown as TraceEntry[];

/** Whether any of these alarm actions has an active alarm for the device (cheap when none). */
function hasActive(alarms: readonly RtAction[], device: string): boolean {
  for (let i = 0; i < alarms.length; i++) {
    const active = alarms[i].active;
    if (active.size !== 0 && active.has(device)) return true;
  }
  return false;
}

/** Whether the payload has a non-null value at every one of the paths. */
function carries(payload: JsonObject, paths: readonly (readonly string[])[]): boolean {
  for (let i = 0; i < paths.length; i++) {
    const v = getField(payload, paths[i]);
    if (v === undefined || v === null) return false;
  }
  return true;
}

function newAcc(): FieldAcc {
  return { count: 0, sum: 0, min: Infinity, max: -Infinity, last: undefined, hasLast: false };
}

function minKey(map: Map<number, number>): number | undefined {
  let min: number | undefined;
  for (const k of map.keys()) if (min === undefined || k < min) min = k;
  return min;
}

function increment(map: Map<number, number>, key: number): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

function decrement(map: Map<number, number>, key: number): void {
  const n = (map.get(key) ?? 0) - 1;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}

/**
 * Creates a rule engine for compiled rules, optionally resuming from an exported state (active
 * alarms, deadband values, throttle times, open aggregate windows).
 */
export function createRuleEngine(rules: CompiledRules, state?: RuleState): RuleEngine {
  return new Engine(rules, state);
}
