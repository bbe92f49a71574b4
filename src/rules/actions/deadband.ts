/**
 * `deadband`: a message passes only when its field moved at least `delta` from the last value
 * that passed, per device. State: the last value that passed, per device.
 */
import type { ActionSpec } from "../compile.ts";
import { getField } from "../_fields.ts";
import {
  ABSENT,
  type ActionContext,
  CONTINUE,
  DROPPED,
  type Flight,
  pairs,
  type RtAction,
  type StateGroup,
} from "../runtime.ts";
import type { RuleState } from "../state.ts";

type Spec = Extract<ActionSpec, { type: "deadband" }>;

export function runDeadband(ctx: ActionContext, a: RtAction, f: Flight): number {
  const d = a.spec as Spec;
  const value = getField(f.payload, d.segments);
  // Not a number: nothing to compare, the message passes and the state is unchanged.
  if (typeof value !== "number" || !Number.isFinite(value)) return CONTINUE;
  const last = a.last.get(f.device);
  if (last !== undefined && Math.abs(value - last) < d.delta) return DROPPED;
  ctx.change(a.last as Map<string, unknown>, f.device, last ?? ABSENT);
  a.last.set(f.device, value);
  return CONTINUE;
}

/** Where its state is stored: kept across rule changes while rule id, position and field match. */
export function deadbandGroup(rule: string, a: RtAction): StateGroup {
  return { prefix: ["d", rule, a.index, (a.spec as Spec).field], kind: "last" };
}

export function exportDeadband(rule: string, a: RtAction): RuleState["deadband"][number] | undefined {
  if (a.last.size === 0) return undefined;
  return { rule, action: a.index, field: (a.spec as Spec).field, last: [...a.last] };
}

export function importDeadband(a: RtAction, entry: Record<string, unknown>): void {
  if ((a.spec as Spec).field !== entry.field) return;
  for (const [device, value] of pairs(entry.last)) a.last.set(device, value);
}
