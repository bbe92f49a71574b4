/**
 * Hosts the rules in force: where they come from (the config's `rules` file or inline document,
 * `PUT /api/v1/rules`, the hub), replacing them atomically, the one timer that closes aggregate
 * windows, and the engine state (active alarms, deadband and window memory) that must survive a
 * restart. The engine itself is pure (src/rules); every effect is here.
 *
 * Precedence at start: the last document applied through the API or the hub (kept in
 * `<dataDir>/rules.json`) when it is newer than the config's rules file; else the config's.
 * A rules file named by the config is watched: a valid change replaces the rules, an invalid one
 * is logged with every error and changes nothing.
 */
import {
  existsSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unwatchFile,
  watchFile,
  writeFileSync,
} from "node:fs";
import type { LocalDatabase } from "../db/mod.ts";
import { join } from "node:path";
import { errorMessage, type Issue } from "../core/errors.ts";
import type { Message, RoutedMessage } from "../core/message.ts";
import type { MessageProcessor, RuleStateJournal } from "../ingest/mod.ts";
import {
  type CompiledRules,
  createRuleEngine,
  parseRulesDocument,
  parseTestMessage,
  type RuleEngine,
  type RuleState,
  ruleStateFromRows,
  type StateRow,
  testRules,
} from "../rules/mod.ts";
import type { Telemetry } from "../telemetry/mod.ts";

export interface RulesHostOptions {
  /** The config's `rules`: a path (already resolved) or an inline document. */
  source?: string | Record<string, unknown>;
  dataDir: string;
  telemetry: Telemetry;
  /** The agent's database (the outbox's): the rule state lives in its `rule_state` table. */
  db: LocalDatabase;
  /**
   * Stores what `produce` (closing aggregate windows) returns together with the state it changed
   * (ingest.emitFrom); rejects, with the state undone, when it cannot.
   */
  emit: (produce: () => RoutedMessage[]) => Promise<void>;
  now?: () => number;
}

export type ApplyResult =
  | { ok: true; version: string; count: number }
  /** `storage`: valid, but it could not be kept (a full disk). */
  | { ok: false; issues: Issue[]; storage?: boolean };

export class RulesHost {
  private readonly options: RulesHostOptions;
  private readonly now: () => number;
  private engine: RuleEngine | undefined;
  private origin = "none";
  private timer: ReturnType<typeof setTimeout> | undefined;
  private timerAt: number | undefined;
  /** After a failed store of closed windows: no new attempt before this time, and the next delay. */
  private retryAt = 0;
  private retryMs = 0;
  private readonly statePath: string;
  private readonly upsertState;
  private readonly deleteState;
  private readonly allState;
  private readonly clearState;
  private readonly appliedPath: string;
  private watching: string | undefined;

  /** What ingest calls for every message. */
  readonly processor: MessageProcessor;

  constructor(options: RulesHostOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
    this.statePath = join(options.dataDir, "rules-state.json");
    this.appliedPath = join(options.dataDir, "rules.json");
    const db = options.db;
    this.upsertState = db.prepare(
      "INSERT INTO rule_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    );
    this.deleteState = db.prepare("DELETE FROM rule_state WHERE key = ?");
    this.allState = db.prepare("SELECT key, value FROM rule_state");
    this.clearState = db.prepare("DELETE FROM rule_state");
    const journal: RuleStateJournal = {
      mark: () => this.engine?.mark() ?? 0,
      undoTo: (mark) => this.engine?.undoTo(mark),
      release: () => this.engine?.release(),
      changedSince: (mark) => this.engine?.changedSince(mark) ?? false,
      persist: () => {
        const engine = this.engine;
        if (engine) this.writeRows(engine.takeDirty());
      },
    };
    this.processor = {
      process: (message: Message, now: number) => {
        const engine = this.engine;
        if (!engine) return { outputs: [message], errors: 0 };
        const result = engine.process(message, now, { trace: false });
        this.armTimer();
        return result;
      },
      journal,
    };
  }

  /** Writes state rows (inside the caller's transaction). */
  private writeRows(rows: readonly StateRow[]): void {
    for (const row of rows) {
      if (row.value === null) this.deleteState.run(row.key);
      else this.upsertState.run(row.key, row.value);
    }
  }

  /** Rewrites the whole stored state from the engine (after a rules replacement). */
  private rewriteState(): void {
    const engine = this.engine;
    if (!engine) return;
    try {
      this.options.db.transaction(() => {
        this.clearState.run();
        this.writeRows(engine.stateRows());
        engine.takeDirty();
      });
    } catch (error) {
      // The rows of the replaced rules stay; at the next start only entries that still match an
      // action of the same kind and configuration are taken over.
      this.options.telemetry.log.error("rules.state_store_failed", { error: errorMessage(error) });
    }
  }

  /** Loads the rules in force; an invalid config document is a start-up error (exit 2 upstream). */
  start(): { ok: true } | { ok: false; issues: Issue[]; what: string } {
    const state = this.readState();
    const fromConfig = this.loadConfigSource();
    if (fromConfig && !fromConfig.ok) return { ok: false, issues: fromConfig.issues, what: fromConfig.what };
    const applied = this.readApplied();
    let chosen: { rules: CompiledRules; origin: string } | undefined = fromConfig?.ok
      ? { rules: fromConfig.rules, origin: fromConfig.what }
      : undefined;
    if (applied && (!chosen || applied.mtime > (fromConfig?.ok ? fromConfig.mtime : 0))) {
      chosen = { rules: applied.rules, origin: applied.origin };
    }
    if (chosen) {
      this.engine = createRuleEngine(chosen.rules, state);
      this.origin = chosen.origin;
      this.options.telemetry.log.info("rules.loaded", {
        version: chosen.rules.version,
        count: chosen.rules.count,
        from: chosen.origin,
      });
    }
    if (typeof this.options.source === "string") this.watch(this.options.source);
    if (this.upgradedFromFile) {
      // State kept by an earlier version in rules-state.json: into the table once, then gone.
      this.rewriteState();
      try {
        rmSync(this.statePath, { force: true });
      } catch { /* removed at the next start */ }
    }
    this.armTimer();
    return { ok: true };
  }

  status(): { version: string | null; count: number } {
    return { version: this.engine?.rules.version ?? null, count: this.engine?.rules.count ?? 0 };
  }

  document(): unknown {
    return this.engine?.rules.document ?? null;
  }

  /** Validates and applies a document atomically (API, hub); kept across restarts. */
  apply(document: unknown, origin: "api" | "hub"): ApplyResult {
    const parsed = parseRulesDocument(document);
    if (!parsed.ok) {
      this.options.telemetry.log.warn("rules.refused", { from: origin, errors: parsed.issues.length });
      return parsed;
    }
    try {
      this.persistApplied(parsed.value.document, origin);
    } catch (error) {
      // Not kept, so not applied (a full disk, say): the rules in force stay.
      const code = (error as NodeJS.ErrnoException).code;
      const message = code === "ENOSPC"
        ? `storage full: cannot keep the rules (${code}); the rules in force are unchanged`
        : `cannot keep the rules: ${errorMessage(error)}; the rules in force are unchanged`;
      this.options.telemetry.log.error("rules.refused", { from: origin, error: message });
      return { ok: false, issues: [{ path: "", message }], storage: true };
    }
    this.install(parsed.value, origin);
    return { ok: true, version: parsed.value.version, count: parsed.value.count };
  }

  /** Dry run: `{rules?, message}` → outputs and trace (rules in force when `rules` is absent). */
  test(body: unknown): { ok: true; outputs: unknown[]; trace: unknown[] } | { ok: false; issues: Issue[] } {
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      return { ok: false, issues: [{ path: "", message: "expected an object {rules?, message}" }] };
    }
    const b = body as { rules?: unknown; message?: unknown };
    const issues: Issue[] = [];
    let rules: CompiledRules | undefined = this.engine?.rules;
    if (b.rules !== undefined) {
      const parsed = parseRulesDocument(b.rules);
      if (parsed.ok) rules = parsed.value;
      else issues.push(...parsed.issues.map((i) => ({ path: `/rules${i.path}`, message: i.message })));
    }
    const message = parseTestMessage(b.message, this.now());
    if (!message.ok) {
      issues.push(...message.issues.map((i) => ({ path: `/message${i.path}`, message: i.message })));
    }
    if (issues.length > 0 || !message.ok) return { ok: false, issues };
    if (!rules) return { ok: true, outputs: [message.value], trace: [] };
    const result = testRules(rules, message.value, this.now());
    return { ok: true, outputs: result.outputs, trace: result.trace };
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.watching) unwatchFile(this.watching);
    this.timer = undefined;
  }

  private install(rules: CompiledRules, origin: string): void {
    if (this.engine) this.engine.replace(rules);
    else this.engine = createRuleEngine(rules, this.readState());
    this.rewriteState();
    this.origin = origin;
    this.options.telemetry.log.info("rules.applied", {
      version: rules.version,
      count: rules.count,
      from: origin,
    });
    this.armTimer();
  }

  private loadConfigSource():
    | { ok: true; rules: CompiledRules; what: string; mtime: number }
    | { ok: false; issues: Issue[]; what: string }
    | undefined {
    const source = this.options.source;
    if (source === undefined) return undefined;
    if (typeof source !== "string") {
      const parsed = parseRulesDocument(source);
      return parsed.ok ? { ok: true, rules: parsed.value, what: "config", mtime: 0 } : {
        ok: false,
        issues: parsed.issues.map((i) => ({ path: `/rules${i.path}`, message: i.message })),
        what: "config",
      };
    }
    const read = readRulesFile(source);
    if (!read.ok) return { ok: false, issues: read.issues, what: source };
    return { ok: true, rules: read.rules, what: source, mtime: read.mtime };
  }

  private watch(path: string): void {
    this.watching = path;
    // Polling, not inotify: editors replace files by rename, and a rename breaks inotify watches.
    watchFile(path, { interval: 1000, persistent: false }, (cur, prev) => {
      if (cur.mtimeMs === prev.mtimeMs && cur.size === prev.size) return;
      const read = readRulesFile(path);
      if (!read.ok) {
        this.options.telemetry.log.error("rules.file_invalid", {
          file: path,
          errors: read.issues.map((i) => `${i.path || "/"}: ${i.message}`),
          kept: this.engine?.rules.version ?? null,
        });
        return;
      }
      if (read.rules.version === this.engine?.rules.version) return;
      this.install(read.rules, path);
    });
  }

  /**
   * One timer, at the engine's next deadline (aggregate windows closing with no traffic). Closing
   * windows is a state change like any other: stored with its outputs, or undone and tried again
   * later (backing off while the store refuses), never thrown out of the timer.
   */
  private armTimer(): void {
    const next = this.engine?.nextDeadline();
    if (next === undefined) return;
    const deadline = Math.max(next, this.retryAt);
    if (deadline === this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = deadline;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = undefined;
      const engine = this.engine;
      if (!engine) return;
      const now = this.now();
      this.options.emit(() => engine.tick(now)).then(() => {
        this.retryAt = 0;
        this.retryMs = 0;
      }, (error) => {
        this.retryMs = Math.min(30_000, Math.max(1_000, this.retryMs * 2));
        this.retryAt = this.now() + this.retryMs;
        this.options.telemetry.log.error("rules.emit_failed", {
          error: errorMessage(error),
          retryInMs: this.retryMs,
        });
      }).finally(() => this.armTimer());
    }, Math.max(0, deadline - this.now()));
    (this.timer as { unref?: () => void }).unref?.();
  }

  /** Set when the state came from an earlier version's rules-state.json. */
  private upgradedFromFile = false;

  /** The stored state: the `rule_state` rows, or once, an earlier version's rules-state.json. */
  private readState(): RuleState | undefined {
    try {
      const rows = this.allState.all() as StateRow[];
      if (rows.length > 0) return ruleStateFromRows(rows);
      if (!existsSync(this.statePath)) return undefined;
      const state = JSON.parse(readFileSync(this.statePath, "utf8")) as RuleState;
      this.upgradedFromFile = true;
      return state;
    } catch (error) {
      this.options.telemetry.log.warn("rules.state_unreadable", { error: errorMessage(error) });
      return undefined;
    }
  }

  private readApplied(): { rules: CompiledRules; origin: string; mtime: number } | undefined {
    if (!existsSync(this.appliedPath)) return undefined;
    try {
      const saved = JSON.parse(readFileSync(this.appliedPath, "utf8")) as {
        origin: string;
        document: unknown;
      };
      const parsed = parseRulesDocument(saved.document);
      if (!parsed.ok) return undefined;
      return { rules: parsed.value, origin: saved.origin, mtime: statSync(this.appliedPath).mtimeMs };
    } catch {
      return undefined;
    }
  }

  private persistApplied(document: unknown, origin: string): void {
    atomicWrite(
      this.appliedPath,
      JSON.stringify({ origin, appliedAt: new Date(this.now()).toISOString(), document }),
    );
  }
}

/** Reads and validates a rules file: the rules, or every issue (a read/JSON problem at path ""). */
export function readRulesFile(path: string):
  | { ok: true; rules: CompiledRules; mtime: number }
  | { ok: false; issues: Issue[] } {
  let text: string;
  let mtime: number;
  try {
    text = readFileSync(path, "utf8");
    mtime = statSync(path).mtimeMs;
  } catch (error) {
    return {
      ok: false,
      issues: [{
        path: "",
        message: `Cannot read rules file ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`,
      }],
    };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return {
      ok: false,
      issues: [{ path: "", message: `Rules file ${path} is not valid JSON: ${errorMessage(error)}` }],
    };
  }
  const parsed = parseRulesDocument(json);
  return parsed.ok ? { ok: true, rules: parsed.value, mtime } : { ok: false, issues: parsed.issues };
}

function atomicWrite(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, path);
}
