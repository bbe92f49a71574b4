/**
 * A dry run: one message through the rules with a fresh engine (no state), and the untrusted
 * test message it takes. Used by `outpost rules test` and `POST /api/v1/rules/test`.
 */
import * as v from "valibot";
import { pointer, type Result } from "../core/errors.ts";
import type { JsonObject, Message } from "../core/message.ts";
import { MESSAGE_KINDS } from "../core/message.ts";
import type { CompiledRules } from "./compile.ts";
import type { ProcessResult } from "./engine.ts";
import { createRuleEngine } from "./engine.ts";
import { toIssues } from "./schema.ts";

const TestMessage = v.strictObject({
  device: v.pipe(v.string(), v.minLength(1, "Invalid device: it is empty")),
  kind: v.picklist([...MESSAGE_KINDS, "alarm"]),
  payload: v.custom<JsonObject>(
    (p) => typeof p === "object" && p !== null && !Array.isArray(p),
    (i) =>
      `Invalid type: expected Object, received ${Array.isArray(i.input) ? "Array" : JSON.stringify(i.input)}`,
  ),
  ts: v.optional(v.pipe(v.number(), v.finite())),
  topic: v.optional(v.string()),
  source: v.optional(v.string()),
});

/**
 * Turns an untrusted test message (`{device, kind, payload, ts?, topic?, source?}`, the body of
 * `POST /api/v1/rules/test`'s `message`) into a `Message`; `ts` defaults to `now`, `source` to
 * `"test"`.
 */
export function parseTestMessage(input: unknown, now: number): Result<Message> {
  const parsed = v.safeParse(TestMessage, input, { abortEarly: false, abortPipeEarly: true });
  if (!parsed.success) {
    return {
      ok: false,
      issues: toIssues(parsed.issues, []).map((i) => ({ path: pointer(i.segments), message: i.message })),
    };
  }
  const m = parsed.output;
  const message: Message = {
    device: m.device,
    kind: m.kind,
    ts: m.ts ?? now,
    payload: m.payload,
    source: m.source ?? "test",
  };
  if (m.topic !== undefined) message.topic = m.topic;
  return { ok: true, value: message };
}

/** Runs one message through the rules with a fresh engine (no state): what `rules test` shows. */
export function testRules(rules: CompiledRules, message: Message, now: number): ProcessResult {
  return createRuleEngine(rules).process(message, now);
}
