/**
 * What a rule engine remembers between messages, as plain JSON, so that a host can keep it
 * across restarts and rule replacements (`exportState()` → `createRuleEngine(rules, state)`).
 * Per-action state is keyed by rule id and action index and is carried over only to an action
 * of the same kind and configuration; active alarms are always carried over.
 */
import type { AlarmSeverity } from "./schema.ts";

export interface RuleState {
  /** The shape of this object; bumped on incompatible changes. */
  format: 1;
  /** Alarms raised and not yet cleared, one per (device, type). */
  alarms: ActiveAlarm[];
  /** Last forwarded value per device, for each `deadband` action. */
  deadband: { rule: string; action: number; field: string; last: [device: string, value: number][] }[];
  /** Time (ms) of the last message let through per device, for each `throttle` action. */
  throttle: { rule: string; action: number; interval: number; last: [device: string, at: number][] }[];
  /** Open aggregate windows per device, for each `aggregate` action. */
  windows: { rule: string; action: number; signature: string; open: OpenWindow[] }[];
}

export interface ActiveAlarm {
  device: string;
  type: string;
  severity: AlarmSeverity;
  /** The id of the rule that raised it. */
  rule: string;
  /** `ts` of the message that raised it. */
  raisedAt: number;
}

export interface OpenWindow {
  device: string;
  /** Window start (ms since the epoch, a multiple of the window length). */
  start: number;
  kind: string;
  topic?: string;
  /** Running figures per aggregated field; `min`/`max` are `null` while `count` is 0. */
  fields: Record<
    string,
    { count: number; sum: number; min: number | null; max: number | null; last?: unknown }
  >;
}

/** A state with nothing in it. */
export function emptyRuleState(): RuleState {
  return { format: 1, alarms: [], deadband: [], throttle: [], windows: [] };
}
