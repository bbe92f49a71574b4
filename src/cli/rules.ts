/**
 * `outpost rules check FILE`, `outpost rules test FILE --message JSON` and `outpost rules schema`.
 * Each answers an exit code (0 fine, 2 a user mistake) and writes through the `io` it is given,
 * so the CLI owns the process and tests own the text.
 */
import { readFile } from "node:fs/promises";
import { errorMessage, formatIssues, UsageError } from "../core/errors.ts";
import type { RoutedMessage } from "../core/message.ts";
import {
  type CompiledRules,
  parseRulesDocument,
  parseTestMessage,
  rulesJsonSchema,
  testRules,
  type TraceEntry,
} from "../rules/mod.ts";
import type { Io } from "./io.ts";

/** `outpost rules <action> [file] [--message JSON]`. */
export async function rulesCommand(
  action: string,
  file: string | undefined,
  o: { message?: string },
  io: Io,
): Promise<number> {
  if (action === "schema") {
    io.out(JSON.stringify(rulesJsonSchema(), null, 2));
    return 0;
  }
  if (action !== "check" && action !== "test") {
    throw new UsageError(`Unknown rules action "${action}": expected check, test or schema`);
  }
  if (!file) throw new UsageError(`outpost rules ${action} needs a FILE`);
  if (action === "check") return await runRulesCheck(file, io);
  if (o.message === undefined) throw new UsageError("outpost rules test needs --message JSON");
  return await runRulesTest(file, String(o.message), io);
}

function readProblem(error: unknown): string {
  const code = (error as { code?: unknown })?.code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "EISDIR") return "it is a directory";
  return errorMessage(error);
}

async function loadRules(file: string, io: Io): Promise<CompiledRules | undefined> {
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
    io.err(`Invalid JSON in rules file ${JSON.stringify(file)}: ${errorMessage(error)}`);
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
export async function runRulesCheck(file: string, io: Io): Promise<number> {
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
  io: Io,
  now?: number,
): Promise<number> {
  const rules = await loadRules(file, io);
  if (rules === undefined) return 2;
  let input: unknown;
  try {
    input = JSON.parse(messageJson);
  } catch (error) {
    io.err(`Invalid --message: not JSON: ${errorMessage(error)}`);
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
