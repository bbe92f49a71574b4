/**
 * `alarm`: raises an alarm of a type per device when the rule matches and `raise` fields are
 * there, clears it when `clear` holds (or when the rule stops matching); each change is an
 * `alarm` message. State: the active alarms per type, shared by every action naming the type.
 */
import type { JsonObject } from "../../core/message.ts";
import type { ActionSpec } from "../compile.ts";
import { shallowCopy } from "../_fields.ts";
import { truthy } from "../jsonlogic.ts";
import {
  ABSENT,
  type ActionContext,
  carries,
  CONTINUE,
  type Flight,
  isRecord,
  type RtAction,
  type RtRule,
  type Spawn,
  type StateGroup,
} from "../runtime.ts";
import type { ActiveAlarm, RuleState } from "../state.ts";
import type { AlarmSeverity } from "../schema.ts";

type Spec = Extract<ActionSpec, { type: "alarm" }>;

export function runAlarm(ctx: ActionContext, rule: RtRule, a: RtAction, f: Flight): number {
  const al = a.spec as Spec;
  const active = a.active.get(f.device);
  // Clearing wins; a message without the fields a condition reads says nothing about it.
  if (al.clear !== undefined && carries(f.payload, al.clearNeeds) && truthy(al.clear(f.payload, f))) {
    if (active !== undefined) clearAlarm(ctx, rule, a, f, active);
  } else if (active === undefined && carries(f.payload, al.raiseNeeds)) {
    const alarm: ActiveAlarm = {
      device: f.device,
      type: al.alarmType,
      severity: al.severity,
      rule: rule.id,
      raisedAt: f.ts,
    };
    ctx.change(a.active as Map<string, unknown>, f.device, ABSENT);
    a.active.set(f.device, alarm);
    ctx.spawn(alarmMessage(rule, f, alarm, "active"));
  }
  return CONTINUE;
}

/** The rule's condition does not hold: whether this alarm clears for the message's device. */
export function clearsWhenUnmatched(a: RtAction, f: Flight): ActiveAlarm | undefined {
  const active = a.active.get(f.device);
  if (active === undefined) return undefined;
  const { clear, clearNeeds } = a.spec as Spec;
  // A message without the fields that decide says nothing about the alarm.
  if (!carries(f.payload, clearNeeds)) return undefined;
  return clear === undefined || truthy(clear(f.payload, f)) ? active : undefined;
}

export function clearAlarm(
  ctx: ActionContext,
  rule: RtRule,
  a: RtAction,
  f: Flight,
  active: ActiveAlarm,
): void {
  ctx.change(a.active as Map<string, unknown>, f.device, active);
  a.active.delete(f.device);
  ctx.spawn(alarmMessage(rule, f, active, "cleared"));
}

/** Whether any of these alarm actions has an active alarm for the device (cheap when none). */
export function hasActive(alarms: readonly RtAction[], device: string): boolean {
  for (let i = 0; i < alarms.length; i++) {
    const active = alarms[i].active;
    if (active.size !== 0 && active.has(device)) return true;
  }
  return false;
}

function alarmMessage(rule: RtRule, f: Flight, alarm: ActiveAlarm, status: "active" | "cleared"): Spawn {
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

/** Where the active alarms of a type are stored. */
export function alarmGroup(type: string): StateGroup {
  return { prefix: ["a", type, 0, ""], kind: "alarm" };
}

export function exportAlarms(types: Map<string, Map<string, ActiveAlarm>>): RuleState["alarms"] {
  const out: RuleState["alarms"] = [];
  for (const active of types.values()) for (const alarm of active.values()) out.push({ ...alarm });
  return out;
}

/** Restores stored active alarms into their type's map (made when no rule names the type yet). */
export function importAlarms(types: Map<string, Map<string, ActiveAlarm>>, list: unknown): void {
  if (!Array.isArray(list)) return;
  for (const a of list) {
    if (!isRecord(a) || typeof a.device !== "string" || typeof a.type !== "string") continue;
    const active = types.get(a.type) ?? new Map<string, ActiveAlarm>();
    types.set(a.type, active);
    active.set(a.device, {
      device: a.device,
      type: a.type,
      severity: (typeof a.severity === "string" ? a.severity : "indeterminate") as AlarmSeverity,
      rule: typeof a.rule === "string" ? a.rule : "",
      raisedAt: typeof a.raisedAt === "number" ? a.raisedAt : 0,
    });
  }
}
