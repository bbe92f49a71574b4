/**
 * `aggregate`: takes each message into a per-device window of `window` length (aligned to the
 * epoch) and sends one message with the chosen figures of each field when the window closes:
 * when a later message starts the next window, or at `tick()` once its end has passed. State:
 * the open window per device, and how many windows end at each time (for the next deadline).
 */
import type { JsonObject, MessageKind } from "../../core/message.ts";
import type { ActionSpec } from "../compile.ts";
import { cloneJson, getField, setField } from "../_fields.ts";
import {
  ABSENT,
  type ActionContext,
  CONSUMED,
  type FieldAcc,
  type Flight,
  isRecord,
  type RtAction,
  type RtRule,
  type Spawn,
  type StateGroup,
  type Window,
} from "../runtime.ts";
import type { OpenWindow, RuleState } from "../state.ts";

type Spec = Extract<ActionSpec, { type: "aggregate" }>;

/** Built once per action: the output path of each (field, function). */
export function aggregateOutputs(spec: Spec): RtAction["outputs"] {
  const outputs: RtAction["outputs"] = [];
  spec.fields.forEach((field, fi) => {
    for (const fn of field.fns) {
      const segments = [...field.segments];
      segments[segments.length - 1] += `_${fn}`;
      outputs.push({ field: fi, fn, segments });
    }
  });
  return outputs;
}

export function runAggregate(ctx: ActionContext, rule: RtRule, a: RtAction, f: Flight): number {
  const g = a.spec as Spec;
  const start = windowStart(ctx.now, g.window);
  let window = a.windows.get(f.device);
  if (window !== undefined && start > window.start) {
    ctx.spawn(closeWindow(ctx, rule, a, f.device, window));
    window = undefined;
  }
  if (window === undefined) {
    window = { start, kind: f.kind, topic: f.topic, acc: g.fields.map(newAcc), seg: ctx.segment };
    ctx.journal(a.windows as Map<string, unknown>, f.device, ABSENT);
    a.windows.set(f.device, window);
    increment(a.ends, start + g.window);
  } else {
    ctx.journalWindow(a, f.device, window);
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

/** At `tick(now)`: closes every window of this action whose end has passed. */
export function closeDue(ctx: ActionContext, rule: RtRule, a: RtAction, out: Spawn[]): void {
  if (a.windows.size === 0) return;
  const length = (a.spec as Spec).window;
  if (minKey(a.ends)! > ctx.now) return;
  for (const [device, window] of a.windows) {
    if (window.start + length <= ctx.now) out.push(closeWindow(ctx, rule, a, device, window));
  }
}

/** When the earliest open window of this action ends, if any is open. */
export function nextEnd(a: RtAction): number | undefined {
  return minKey(a.ends);
}

export function closeWindow(
  ctx: ActionContext,
  rule: RtRule,
  a: RtAction,
  device: string,
  window: Window,
): Spawn {
  const spec = a.spec as Spec;
  ctx.journal(a.windows as Map<string, unknown>, device, window);
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

/** After windows were restored by an undo: the end counts again from the open windows. */
export function recountEnds(a: RtAction): void {
  a.ends.clear();
  const length = (a.spec as Spec).window;
  for (const w of a.windows.values()) increment(a.ends, w.start + length);
}

/** Where its windows are stored: kept across rule changes while rule id, position and signature match. */
export function aggregateGroup(rule: string, a: RtAction): StateGroup {
  return { prefix: ["w", rule, a.index, (a.spec as Spec).signature], kind: "window", action: a };
}

/** One open window as stored (`OpenWindow`). */
export function openWindow(a: RtAction, device: string, w: Window): OpenWindow {
  const spec = a.spec as Spec;
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

export function exportAggregate(rule: string, a: RtAction): RuleState["windows"][number] | undefined {
  if (a.windows.size === 0) return undefined;
  const open: OpenWindow[] = [];
  for (const [device, w] of a.windows) open.push(openWindow(a, device, w));
  return { rule, action: a.index, signature: (a.spec as Spec).signature, open };
}

export function importAggregate(a: RtAction, entry: Record<string, unknown>): void {
  const spec = a.spec as Spec;
  if (spec.signature !== entry.signature) return;
  for (const ow of Array.isArray(entry.open) ? entry.open : []) {
    if (!isRecord(ow) || typeof ow.device !== "string" || typeof ow.start !== "number") continue;
    const fields = isRecord(ow.fields) ? ow.fields : {};
    const window: Window = {
      start: ow.start,
      kind: (typeof ow.kind === "string" ? ow.kind : "telemetry") as MessageKind,
      topic: typeof ow.topic === "string" ? ow.topic : undefined,
      seg: 0,
      acc: spec.fields.map((field) => {
        const f = Object.hasOwn(fields, field.name) && isRecord(fields[field.name]) ? fields[field.name] : {};
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

function windowStart(now: number, length: number): number {
  return now - (((now % length) + length) % length);
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
