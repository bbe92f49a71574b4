/**
 * Runs a valibot schema and turns its issues into `Issue`s with JSON Pointer paths, every issue
 * at once, in one voice: what is wrong, the received value quoted.
 */
import * as v from "valibot";
import { type Issue, pointer, type Result } from "./errors.ts";

export function validate<S extends v.GenericSchema>(schema: S, input: unknown): Result<v.InferOutput<S>> {
  const result = v.safeParse(schema, input, { abortEarly: false, abortPipeEarly: true });
  if (result.success) return { ok: true, value: result.output };
  return { ok: false, issues: toIssues(result.issues) };
}

export function toIssues(issues: readonly v.BaseIssue<unknown>[]): Issue[] {
  const out: Issue[] = [];
  const seen = new Set<string>();
  for (const issue of issues) {
    const segments = (issue.path ?? []).map((p) => p.key as string | number);
    let message = issue.message;
    // A strict object reports an unknown key as "Invalid key: Expected never …".
    if (issue.kind === "schema" && issue.type === "strict_object" && issue.expected === "never") {
      message = "unknown key";
    } else if (issue.kind === "schema" && issue.received === "undefined") {
      message = "is required";
    } else if (issue.kind === "schema" && message.startsWith("Invalid ")) {
      // valibot's default "Invalid type: Expected number but received "a"" in our voice.
      message = `expected ${issue.expected}, received ${issue.received}`;
    }
    const line = `${pointer(segments)}\u0000${message}`;
    if (seen.has(line)) continue;
    seen.add(line);
    out.push({ path: pointer(segments), message });
  }
  return out;
}
