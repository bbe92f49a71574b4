import assert from "node:assert/strict";
import type { Message, MessageKind } from "../../../src/core/message.ts";
import { parseRulesDocument } from "../../../src/rules/mod.ts";
import type { CompiledRules } from "../../../src/rules/mod.ts";

/** Compiles a document that must be valid. */
export function load(rules: unknown[]): CompiledRules {
  const parsed = parseRulesDocument({ version: 1, rules });
  if (!parsed.ok) assert.fail(`rules did not load: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

/** A telemetry message from boiler-1 unless told otherwise. */
export function msg(
  payload: Record<string, unknown>,
  extra: { device?: string; kind?: MessageKind; ts?: number; topic?: string } = {},
): Message {
  const m: Message = {
    device: extra.device ?? "boiler-1",
    kind: extra.kind ?? "telemetry",
    ts: extra.ts ?? 1_000,
    payload,
    source: "mqtt",
  };
  if (extra.topic !== undefined) m.topic = extra.topic;
  return m;
}

/** Freezes a value deeply, to prove the engine never writes to its input. */
export function frozen<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const v of Object.values(value)) frozen(v);
    Object.freeze(value);
  }
  return value;
}
