/**
 * Expected failures are data, in two shapes:
 * - `Result<T>`: bad input, `{ok: false, issues}` with a JSON Pointer path for each problem;
 * - `Refused<R>`: a well-formed request that cannot be done now, `{ok: false, reason, message}`
 *   (a full outbox, a stopping agent), which a transport turns into its own status.
 * Exceptions are for bugs and unexpected I/O; `UsageError` marks a user mistake the CLI reports
 * without a stack trace. `errorMessage()` is the one way an error becomes text.
 */

/** One validation problem: `path` is a JSON Pointer (`/rules/0/then/1`), `""` for the root. */
export interface Issue {
  path: string;
  message: string;
}

export type Result<T> = { ok: true; value: T } | { ok: false; issues: Issue[] };

/** A request refused for an expected reason; `message` says it to a person. */
export interface Refused<R extends string> {
  ok: false;
  reason: R;
  message: string;
}

/** The one way an error becomes text: an `Error`'s message, anything else as a string. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

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
