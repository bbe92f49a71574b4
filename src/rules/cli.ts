/**
 * The rules half of the command line: `outpost rules check FILE` and
 * `outpost rules test FILE --message JSON`. Each answers an exit code (0 fine, 2 a user mistake)
 * and writes through the `io` it is given, so the CLI owns the process and tests own the text.
 * This is the one file of the folder that does I/O (it reads the rules file).
 */
import * as v from "valibot";
import { readFile } from "node:fs/promises";
import type { Result } from "../core/errors.ts";
import { formatIssues } from "../core/errors.ts";
import type { JsonObject, Message, RoutedMessage } from "../core/message.ts";
import { MESSAGE_KINDS } from "../core/message.ts";
import type { CompiledRules } from "./compile.ts";
import { parseRulesDocument } from "./compile.ts";
import type { ProcessResult, TraceEntry } from "./engine.ts";
import { createRuleEngine } from "./engine.ts";
import { toIssues } from "./schema.ts";
import { pointer } from "../core/errors.ts";

/** Where command output goes: `out` for results, `err` for problems. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

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

function readProblem(error: unknown): string {
  const code = (error as { code?: unknown })?.code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "EISDIR") return "it is a directory";
  return error instanceof Error ? error.message : String(error);
}

async function loadRules(file: string, io: CliIo): Promise<CompiledRules | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    io.err(`Cannot read rules file ${JSON.stringify(file)}: ${readProblem(error)}`);
    return undefined;
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    io.err(`Invalid JSON in rules file ${JSON.stringify(file)}: ${(error as Error).message}`);
    return undefined;
  }
  const parsed = parseRulesDocument(document);
  if (!parsed.ok) {
    io.err(formatIssues(parsed.issues));
    return undefined;
  }
  return parsed.value;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/**
 * `outpost rules check FILE`: exit 0 with a one-line summary, or 2 with every problem as
 * `<pointer>: <message>` (an unreadable file or invalid JSON is one clear line).
 */
export async function runRulesCheck(file: string, io: CliIo): Promise<number> {
  const rules = await loadRules(file, io);
  if (rules === undefined) return 2;
  io.out(`OK: ${file}: ${plural(rules.count, "rule")}, version ${rules.version}`);
  return 0;
}

function describeTrace(entry: TraceEntry): string {
  let text = entry.matched ? "matched" : "not matched";
  if (entry.actions !== undefined) text += `: ${entry.actions.join(", ")}`;
  if (entry.dropped) text += " (message stops here)";
  if (entry.error !== undefined) text += ` — error, rule skipped: ${entry.error}`;
  return text;
}

function describeOutput(m: RoutedMessage, index: number): string {
  const to = (m.route ?? ["hub"]).join(", ");
  const topic = m.topic !== undefined ? ` topic ${m.topic}` : "";
  return `  ${index + 1}. ${m.kind} from ${m.device} at ${m.ts}${topic} → ${to}\n     ${
    JSON.stringify(m.payload)
  }`;
}

/**
 * `outpost rules test FILE --message JSON`: runs one message through the rules and prints what
 * each rule did and what would be emitted. Exit 0, or 2 for bad rules or a bad message.
 * `now` defaults to the current time (this is the edge of the program, where a clock is read).
 */
export async function runRulesTest(
  file: string,
  messageJson: string,
  io: CliIo,
  now?: number,
): Promise<number> {
  const rules = await loadRules(file, io);
  if (rules === undefined) return 2;
  let input: unknown;
  try {
    input = JSON.parse(messageJson);
  } catch (error) {
    io.err(`Invalid --message: not JSON: ${(error as Error).message}`);
    return 2;
  }
  const at = now ?? Date.now();
  const parsed = parseTestMessage(input, at);
  if (!parsed.ok) {
    io.err(`Invalid --message:\n${formatIssues(parsed.issues)}`);
    return 2;
  }
  const message = parsed.value;
  const result = testRules(rules, message, at);
  const width = Math.max(0, ...result.trace.map((t) => t.rule.length));
  const lines = [
    `Rules ${file} (version ${rules.version}, ${
      plural(rules.count, "rule")
    }) on a ${message.kind} message from ${message.device}:`,
  ];
  for (const entry of result.trace) {
    const origin = entry.origin !== undefined ? ` [${entry.origin}]` : "";
    lines.push(`  ${entry.rule.padEnd(width)}  ${describeTrace(entry)}${origin}`);
  }
  if (result.trace.length === 0) lines.push("  (no rules)");
  lines.push(
    result.outputs.length === 0
      ? "Would emit nothing."
      : `Would emit ${plural(result.outputs.length, "message")}:`,
  );
  result.outputs.forEach((m, i) => lines.push(describeOutput(m, i)));
  if (result.errors > 0) lines.push(`${plural(result.errors, "rule")} failed on this message.`);
  io.out(lines.join("\n"));
  return 0;
}
