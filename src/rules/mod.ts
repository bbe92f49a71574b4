/**
 * The rules engine: declarative JSON rules (SPEC §5, docs/rules.md) compiled once and run for
 * every message. Pure: time is passed in, nothing here reads a clock, the environment or the
 * network (`outpost rules`, in src/cli/rules.ts, reads the file it is given).
 *
 * Typical host use:
 * ```ts
 * const parsed = parseRulesDocument(JSON.parse(text));
 * if (!parsed.ok) return reportIssues(parsed.issues); // never replaces the rules in force
 * const engine = createRuleEngine(parsed.value, savedState);
 * const { outputs } = engine.process(message, Date.now(), { trace: false });
 * // one timer: at engine.nextDeadline(), enqueue engine.tick(Date.now())
 * // on new rules: engine.replace(newRules) (atomic; state carried over)
 * // on shutdown: save engine.exportState()
 * ```
 * @module
 */

export type { CompiledRules } from "./compile.ts";
/**
 * Validates and compiles a rules document: `{ok: true, value: CompiledRules}` or
 * `{ok: false, issues}` with every problem and its JSON Pointer. Never throws.
 */
export { parseRulesDocument } from "./compile.ts";

export type { ProcessOptions, ProcessResult, RuleEngine, RuleEngineStats, TraceEntry } from "./engine.ts";
/**
 * `createRuleEngine(rules, state?)`: an engine with `process(message, now, options?)`,
 * `tick(now)`, `nextDeadline()`, `exportState()`, `replace(rules)` and `stats()`.
 */
export { createRuleEngine, ruleStateFromRows, type StateRow } from "./engine.ts";

export type { ActiveAlarm, OpenWindow, RuleState } from "./state.ts";
export { emptyRuleState } from "./state.ts";

export type {
  Action,
  ActionName,
  AggregateFunction,
  AlarmSeverity,
  JsonLogicExpression,
  Rule,
  RuleMatch,
  RulesDocument,
} from "./schema.ts";
/** The JSON Schema (draft-07) of a rules document, generated from the valibot schemas. */
export { rulesJsonSchema } from "./schema.ts";

export type { Evaluator, MessageFields } from "./jsonlogic.ts";
/** Compiles one JsonLogic expression on its own (tests, tools). */
export { compileJsonLogic, truthy } from "./jsonlogic.ts";

/** A dry run: `parseTestMessage(input, now)` and `testRules(rules, message, now)`. */
export { parseTestMessage, testRules } from "./dry_run.ts";
