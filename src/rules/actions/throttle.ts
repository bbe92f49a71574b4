/**
 * `throttle`: at most one message per `interval` per device passes. State: when the last one
 * passed, per device.
 */
import type { ActionSpec } from "../compile.ts";
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

type Spec = Extract<ActionSpec, { type: "throttle" }>;

export function runThrottle(ctx: ActionContext, a: RtAction, f: Flight): number {
  const interval = (a.spec as Spec).interval;
  const now = ctx.now;
  const last = a.last.get(f.device);
  // A clock that went backwards reopens the throttle rather than closing it for long.
  if (last !== undefined && now >= last && now - last < interval) return DROPPED;
  ctx.change(a.last as Map<string, unknown>, f.device, last ?? ABSENT);
  a.last.set(f.device, now);
  return CONTINUE;
}

/** Where its state is stored: kept across rule changes while rule id, position and interval match. */
export function throttleGroup(rule: string, a: RtAction): StateGroup {
  return { prefix: ["t", rule, a.index, (a.spec as Spec).interval], kind: "last" };
}

export function exportThrottle(rule: string, a: RtAction): RuleState["throttle"][number] | undefined {
  if (a.last.size === 0) return undefined;
  return { rule, action: a.index, interval: (a.spec as Spec).interval, last: [...a.last] };
}

export function importThrottle(a: RtAction, entry: Record<string, unknown>): void {
  if ((a.spec as Spec).interval !== entry.interval) return;
  for (const [device, at] of pairs(entry.last)) a.last.set(device, at);
}
