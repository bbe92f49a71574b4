/**
 * Expected failures are data: `Issue` lists with JSON Pointer paths. Exceptions are for bugs and
 * unexpected I/O; `UsageError` marks a user mistake the CLI reports without a stack trace.
 */

/** One validation problem: `path` is a JSON Pointer (`/rules/0/then/1`), `""` for the root. */
export interface Issue {
  path: string;
  message: string;
}

export type Result<T> = { ok: true; value: T } | { ok: false; issues: Issue[] };

/** Formats issues for a terminal: one `path: message` line each. */
export function formatIssues(issues: readonly Issue[]): string {
  return issues.map((i) => `${i.path || "/"}: ${i.message}`).join("\n");
}

/** A user mistake (bad flag, bad config, failed validation): exit code 2, no stack trace. */
export class UsageError extends Error {
  readonly issues: Issue[];
  constructor(message: string, options?: { issues?: Issue[]; cause?: unknown }) {
    super(message, { cause: options?.cause });
    this.name = "UsageError";
    this.issues = options?.issues ?? [];
  }
}

/** Escapes one JSON Pointer reference token (RFC 6901). */
export function pointerToken(key: string | number): string {
  return String(key).replaceAll("~", "~0").replaceAll("/", "~1");
}

/** Builds a JSON Pointer from path segments. */
export function pointer(segments: readonly (string | number)[]): string {
  return segments.length === 0 ? "" : "/" + segments.map(pointerToken).join("/");
}
