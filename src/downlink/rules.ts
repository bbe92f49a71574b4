/** A rules document pushed by the hub: applied like `PUT /api/v1/rules`, the outcome reported. */
import { Buffer } from "node:buffer";
import { errorMessage, type Issue } from "../core/errors.ts";
import type { EdgeFrame, RulesFrame } from "../proto/mod.ts";
import { report } from "./report.ts";

/** What holds the rules in force (the agent's rules host). */
export interface RulesTarget {
  apply(
    document: unknown,
    origin: "api" | "hub",
  ): { ok: true; version: string; count: number } | { ok: false; issues: Issue[] };
}

/** Applies a pushed document; the answer is the `report` frame to send back. */
export function applyRulesPush(rules: RulesTarget, frame: RulesFrame): EdgeFrame {
  const offered = frame.version;
  let document: unknown;
  try {
    document = JSON.parse(Buffer.from(frame.document).toString("utf8"));
  } catch (error) {
    return report("rules", {
      version: offered,
      status: "refused",
      errors: [{ path: "", message: `Rules document is not valid JSON: ${errorMessage(error)}` }],
    });
  }
  const result = rules.apply(document, "hub");
  return report(
    "rules",
    result.ok
      ? { version: offered, status: "applied", rulesVersion: result.version, count: result.count }
      : { version: offered, status: "refused", errors: result.issues },
  );
}
