/**
 * The rule engine: runs messages through compiled rules, in order, and keeps the per-device state
 * that deadband, throttle, aggregate and alarm need: each of those in its own file under
 * ./actions/ (how it is built, how it runs, how its state is stored and restored); the engine
 * holds the transactions, the undo log and the batch journal they share (./runtime.ts,
 * `ActionContext`). Pure: time is passed in (`now`), nothing here reads a clock, the
 * environment or the network.
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
import { truthy } from "./jsonlogic.ts";
import type { ActionSpec, CompiledRule, CompiledRules } from "./compile.ts";
import { programOf } from "./compile.ts";
import { getField, setField, shallowCopy, toJsonValue, withoutField } from "./_fields.ts";
import type { ActiveAlarm, OpenWindow, RuleState } from "./state.ts";
import { errorMessage } from "../core/errors.ts";
import {
  ABSENT,
  type ActionContext,
  AGGREGATE,
  ALARM,
  CODES,
  CONSUMED,
  CONTINUE,
  DEADBAND,
  DROP,
  DROPPED,
  FAILED,
  type Flight,
  isRecord,
  KEEP,
  REMOVE,
  RENAME,
  ROUTE,
  type RtAction,
  type RtRule,
  SET,
  type Spawn,
  type StateGroup,
  THROTTLE,
  type Window,
} from "./runtime.ts";
import { deadbandGroup, exportDeadband, importDeadband, runDeadband } from "./actions/deadband.ts";
import { exportThrottle, importThrottle, runThrottle, throttleGroup } from "./actions/throttle.ts";
import {
  aggregateGroup,
  aggregateOutputs,
  closeDue,
  exportAggregate,
  importAggregate,
  nextEnd,
  openWindow,
  recountEnds,
  runAggregate,
} from "./actions/aggregate.ts";
import {
  alarmGroup,
  clearAlarm,
  clearsWhenUnmatched,
  exportAlarms,
  hasActive,
  importAlarms,
  runAlarm,
} from "./actions/alarm.ts";

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
function errorText(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  try {
    return errorMessage(error);
  } catch {
    return "unknown error";
  }
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
  /** What the stateful actions (./actions/) may do while they run. */
  readonly #ctx: ActionContext = this.#context();

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
    for (const { rule, action } of this.#aggregates) closeDue(this.#ctx, rule, action, this.#queue);
    if (this.#queue.length > 0) this.#drain();
    return outputs;
  }

  nextDeadline(): number | undefined {
    let next: number | undefined;
    for (const { action } of this.#aggregates) {
      const m = nextEnd(action);
      if (m !== undefined && (next === undefined || m < next)) next = m;
    }
    return next;
  }

  exportState(): RuleState {
    const state: RuleState = {
      format: 1,
      alarms: exportAlarms(this.#alarmTypes),
      deadband: [],
      throttle: [],
      windows: [],
    };
    for (const rule of this.#rules) {
      for (const a of rule.actions) {
        if (a.code === DEADBAND) push(state.deadband, exportDeadband(rule.id, a));
        else if (a.code === THROTTLE) push(state.throttle, exportThrottle(rule.id, a));
        else if (a.code === AGGREGATE) push(state.windows, exportAggregate(rule.id, a));
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
      for (const a of windows) recountEnds(a);
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
      return { key, value: JSON.stringify(openWindow(group.action!, device, value as Window)) };
    }
    return { key, value: JSON.stringify(value) };
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

  #context(): ActionContext {
    // deno-lint-ignore no-this-alias
    const engine = this;
    return {
      get now() {
        return engine.#now;
      },
      get segment() {
        return engine.#jSegment;
      },
      change: (map, key, previous) => {
        this.#remember(map, key, previous);
        this.#journal(map, key, previous);
      },
      journal: (map, key, previous) => this.#journal(map, key, previous),
      journalWindow: (a, device, w) => this.#journalWindow(a, device, w),
      spawn: (spawned) => {
        this.#pending.push(spawned);
      },
    };
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
        const map = (action.code === AGGREGATE ? action.windows : action.last) as Map<string, unknown>;
        if (action.code === DEADBAND) this.#groups.set(map, deadbandGroup(rule.id, action));
        else if (action.code === THROTTLE) this.#groups.set(map, throttleGroup(rule.id, action));
        else if (action.code === AGGREGATE) {
          this.#aggregates.push({ rule, action });
          this.#groups.set(map, aggregateGroup(rule.id, action));
        }
      }
    }
  }

  /** Registers every alarm type's map for the store (types of the rules and of imported alarms). */
  #registerAlarms(): void {
    for (const [type, active] of this.#alarmTypes) {
      this.#groups.set(active as Map<string, unknown>, alarmGroup(type));
    }
  }

  #buildRule(rule: CompiledRule, index: number): RtRule {
    const actions = rule.actions.map((spec, i): RtAction => {
      let active = EMPTY_ALARMS;
      if (spec.type === "alarm") {
        active = this.#alarmTypes.get(spec.alarmType) ?? new Map();
        this.#alarmTypes.set(spec.alarmType, active);
      }
      const outputs = spec.type === "aggregate" ? aggregateOutputs(spec) : [];
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
    importAlarms(this.#alarmTypes, state.alarms);
    const find = (entry: unknown, code: number): [RtAction, Record<string, unknown>] | undefined => {
      if (!isRecord(entry) || typeof entry.rule !== "string" || typeof entry.action !== "number") {
        return undefined;
      }
      const rule = this.#rules.find((r) => r.id === entry.rule);
      const action = rule?.actions[entry.action];
      return action?.code === code ? [action, entry] : undefined;
    };
    const list = (v: unknown): unknown[] => Array.isArray(v) ? v : [];
    for (const e of list(state.deadband)) {
      const found = find(e, DEADBAND);
      if (found) importDeadband(...found);
    }
    for (const e of list(state.throttle)) {
      const found = find(e, THROTTLE);
      if (found) importThrottle(...found);
    }
    for (const e of list(state.windows)) {
      const found = find(e, AGGREGATE);
      if (found) importAggregate(...found);
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
      case DEADBAND:
        return runDeadband(this.#ctx, a, f);
      case THROTTLE:
        return runThrottle(this.#ctx, a, f);
      case AGGREGATE:
        return runAggregate(this.#ctx, rule, a, f);
      case ALARM:
        return runAlarm(this.#ctx, rule, a, f);
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

  /** The rule's condition does not hold: clear its active alarms whose `clear` holds (or that have none). */
  #clearAlarms(rule: RtRule, f: Flight): void {
    const names: string[] | undefined = this.#trace !== null ? [] : undefined;
    this.#begin(rule);
    try {
      for (const a of rule.alarms) {
        const active = clearsWhenUnmatched(a, f);
        if (active === undefined) continue;
        names?.push(a.name);
        clearAlarm(this.#ctx, rule, a, f, active);
      }
    } catch (error) {
      this.#rollback();
      this.#fail(rule, f, false, names, error);
      return;
    }
    this.#commit();
    if (this.#trace !== null) this.#note(rule, f, false, names);
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

function push<T>(list: T[], item: T | undefined): void {
  if (item !== undefined) list.push(item);
}

/**
 * Creates a rule engine for compiled rules, optionally resuming from an exported state (active
 * alarms, deadband values, throttle times, open aggregate windows).
 */
export function createRuleEngine(rules: CompiledRules, state?: RuleState): RuleEngine {
  return new Engine(rules, state);
}
