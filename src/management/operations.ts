/**
 * The hub's management operations on the edge (SPEC §12): `config`, `logs` and `restart`, each
 * answered with `operation` reports `{id, kind, status, reason?, errors?, result?}` where status
 * goes `executing` → `successful` | `failed`.
 *
 * - `config`: validated with the config schema (every issue with its path, nothing changes when
 *   there is one), staged beside the config file (config_trial.ts), and applied by draining and
 *   restarting, the same restart as a self-update. The new process is on trial until the hub is
 *   connected; past the trial time it rolls back to the previous file and restarts again.
 * - `logs`: the on-disk log ring, filtered; answered at once.
 * - `restart`: drain and restart; successful once the agent is back.
 *
 * Outcomes are durable (the journal, the config result file) and reported after every connect,
 * so an operation in flight when the agent stops or is killed still ends in a definite state.
 * Secrets in a pushed config are never logged or reported: reports carry masked values only.
 */
import { Buffer } from "node:buffer";
import { performance } from "node:perf_hooks";
import { readFileSync } from "node:fs";
import { type Config, parseConfig } from "../config/mod.ts";
import { errorMessage, type Issue } from "../core/errors.ts";
import { isSecretPath, maskSecrets } from "../core/redact.ts";
import type { EdgeFrame, OperationFrame } from "../proto/mod.ts";
import { type Logger, parseLogQuery, readLogRing } from "../telemetry/mod.ts";
import {
  commitConfig,
  type ConfigBoot,
  type ConfigMarker,
  configTrialPaths,
  readConfigResult,
  rollbackConfig,
  stageConfig,
  watchedConfigTrial,
} from "./config_trial.ts";
import type { WatchedTrial } from "../update/mod.ts";
import { Journal, type JournalEntry, type OperationStatus } from "./journal.ts";

/** Why the agent asks to be restarted by management. */
export type ManagementRestart = { after: "config" | "restart" | "config-rollback" };

export interface ManagementDeps {
  config: Config;
  /** What the start-up check decided about a config on trial. */
  boot: ConfigBoot;
  log: Logger;
  /** Sends a frame to the hub; false when the link is down. */
  send: (frame: EdgeFrame) => boolean;
  /** Whether the trial's condition holds: the hub connected, when one is configured. */
  hubConnected: () => boolean;
  /** Test hook (`OUTPOST_TEST_CONFIG_PAUSE`): stop for good after `prev`, `marker` or `written`. */
  pauseAt?: string;
  now?: () => number;
}

export interface Management {
  receive(frame: OperationFrame): void;
  /** After each connect: the config in force (masked) and every recorded outcome. */
  connected(): void;
  /** Once the agent has started: watch a config on trial until it commits or rolls back. */
  startTrial(): void;
  /** The agent could not start on a config on trial: roll back now. True when it did. */
  failTrial(reason: string): boolean;
  /** Resolves when the agent must drain and restart. */
  readonly restartRequested: Promise<ManagementRestart>;
  /** After a config was staged: its trial, for the watchdog of a restart without a supervisor. */
  staged(): WatchedTrial | undefined;
  /** Recorded operations, newest last (`GET /api/v1/operations`). */
  operations(): JournalEntry[];
  stop(): void;
}

const KINDS = new Set(["config", "logs", "restart"]);
/** An operation id as the hub makes them; anything else is refused without being recorded. */
const OP_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** Pushed configs larger than this are refused. */
const MAX_CONFIG_BYTES = 1024 * 1024;

export function createManagement(deps: ManagementDeps): Management {
  const { config, log } = deps;
  const now = deps.now ?? Date.now;
  const journal = new Journal(config.dataDir);
  const paths = config.source ? configTrialPaths(config.source) : undefined;
  const restart = Promise.withResolvers<ManagementRestart>();
  let busy = false;
  let trial: ConfigMarker | undefined = deps.boot.kind === "trial" ? deps.boot.marker : undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  let stagedOp: string | undefined;

  const report = (body: Record<string, unknown>) =>
    deps.send({ frame: "report", report: { type: "operation", body: Buffer.from(JSON.stringify(body)) } });
  const reportEntry = (e: JournalEntry, extra: Record<string, unknown> = {}) =>
    report({ id: e.id, kind: e.kind, status: e.status, ...(e.reason ? { reason: e.reason } : {}), ...extra });
  const record = (entry: JournalEntry, extra?: Record<string, unknown>) => {
    try {
      journal.put(entry);
    } catch (error) {
      log.error("operation.store_failed", { id: entry.id, error: errorMessage(error) });
    }
    reportEntry(entry, extra);
  };
  const finished = (id: string, kind: string, status: OperationStatus, reason?: string) =>
    log.info("operation.finished", { id, kind, status, ...(reason ? { reason } : {}) });

  // What the last start settled: a restart asked by the hub is done now that the agent runs
  // again; a config change that ended (at start-up, or before the restart) is in the result file.
  for (const e of journal.entries()) {
    if (e.kind === "restart" && e.status === "executing") {
      journal.put({ ...e, status: "successful", at: now() });
      finished(e.id, e.kind, "successful");
    }
  }
  syncConfigResult();
  // A config change still `executing` with neither a trial nor an outcome of its own was stopped
  // before its new file was in place (a kill -9 while staging): it failed, the file is unchanged.
  for (const e of journal.entries()) {
    if (e.kind !== "config" || e.status !== "executing" || trial?.op === e.id) continue;
    const reason = "interrupted before the new configuration was in place; the previous one stays";
    journal.put({ ...e, status: "failed", reason, at: now() });
    finished(e.id, e.kind, "failed", reason);
  }

  function syncConfigResult(): void {
    if (!paths) return;
    const result = readConfigResult(paths);
    if (!result) return;
    const entry = journal.get(result.op);
    if (entry?.status === result.status) return;
    try {
      journal.put({
        id: result.op,
        kind: "config",
        status: result.status,
        reason: result.reason,
        at: result.at,
      });
    } catch (error) {
      log.error("operation.store_failed", { id: result.op, error: errorMessage(error) });
    }
    finished(result.op, "config", result.status, result.reason);
  }

  function refuse(frame: OperationFrame, reason: string, errors?: Issue[]): void {
    log.warn("operation.refused", { id: frame.id, kind: frame.kind, reason });
    record(
      { id: frame.id, kind: frame.kind, status: "failed", reason, at: now() },
      errors ? { errors } : undefined,
    );
  }

  function receiveLogs(frame: OperationFrame): void {
    let body: unknown = {};
    try {
      const text = Buffer.from(frame.body).toString("utf8");
      if (text.trim() !== "") body = JSON.parse(text);
    } catch (error) {
      return refuse(frame, `The logs request is not valid JSON: ${errorMessage(error)}`);
    }
    const query = parseLogQuery(body, now());
    if (!query.ok) return refuse(frame, "invalid logs request", query.issues);
    const { lines, truncated } = readLogRing(config.dataDir, query.value);
    // Logs are answered at once and not journaled: asked again, they are read again.
    report({ id: frame.id, kind: "logs", status: "successful", result: { lines, truncated } });
  }

  function receiveRestart(frame: OperationFrame): void {
    if (busy) return refuse(frame, "Another operation is restarting the agent");
    busy = true;
    log.info("operation.received", { id: frame.id, kind: "restart" });
    record({ id: frame.id, kind: "restart", status: "executing", at: now() });
    restart.resolve({ after: "restart" });
  }

  async function receiveConfig(frame: OperationFrame): Promise<void> {
    if (!paths) {
      return refuse(frame, "The agent runs on built-in defaults: there is no config file to replace");
    }
    if (busy) return refuse(frame, "Another operation is restarting the agent");
    if (trial) {
      return refuse(frame, "A configuration change is on trial: wait until it commits or rolls back");
    }
    if (frame.body.length > MAX_CONFIG_BYTES) {
      return refuse(frame, `The configuration is larger than ${MAX_CONFIG_BYTES} bytes`);
    }
    const text = Buffer.from(frame.body).toString("utf8");
    let input: unknown;
    try {
      input = JSON.parse(text);
    } catch {
      // The parser's message may quote the text, secrets included: not shown.
      return refuse(frame, "The configuration is not valid JSON");
    }
    const parsed = parseConfig(input, config.baseDir, config.source);
    if (!parsed.ok) {
      const errors = parsed.issues.map(safeIssue);
      return refuse(
        frame,
        `invalid configuration: ${errors.map((i) => `${i.path || "/"}: ${i.message}`).join("; ")}`,
        errors,
      );
    }
    if (parsed.value.hub === undefined) {
      // Without a hub the trial could never fail and the hub would never hear from it again.
      const errors = [{
        path: "/hub",
        message: "is required: a config pushed by the hub must keep a hub link",
      }];
      return refuse(frame, `invalid configuration: /hub: ${errors[0].message}`, errors);
    }
    busy = true;
    log.info("operation.received", { id: frame.id, kind: "config" });
    record({ id: frame.id, kind: "config", status: "executing", at: now() });
    const pause = async (step: string) => {
      if (deps.pauseAt !== step) return;
      log.warn("config.paused", { at: step });
      await new Promise(() => {});
    };
    try {
      await stageConfig(paths, {
        op: frame.id,
        text: JSON.stringify(input, null, 2) + "\n",
        trialSeconds: config.update.trialSeconds,
        maxStarts: config.update.maxStarts,
        now: now(),
        pause,
      });
    } catch (error) {
      busy = false;
      log.error("config.stage_failed", { id: frame.id, error: errorMessage(error) });
      record({
        id: frame.id,
        kind: "config",
        status: "failed",
        reason: `The new configuration could not be written: ${errorMessage(error)}`,
        at: now(),
      });
      return;
    }
    stagedOp = frame.id;
    log.info("config.written", {
      id: frame.id,
      config: config.source,
      trialSeconds: config.update.trialSeconds,
    });
    await pause("written");
    restart.resolve({ after: "config" });
  }

  function judge(healthy: () => string | undefined, monoDeadline: number): void {
    timer = undefined;
    if (stopped || !trial || !paths) return;
    const why = healthy();
    if (why === undefined) {
      try {
        commitConfig(paths, trial, now(), log);
      } catch (error) {
        log.error("config.trial.commit_failed", { error: errorMessage(error) });
        timer = setTimeout(() => judge(healthy, monoDeadline), 5_000);
        return;
      }
      trial = undefined;
      syncConfigResult();
      const e = journal.entries().findLast((x) => x.kind === "config");
      if (e) reportEntry(e);
      return;
    }
    if (performance.now() >= monoDeadline) {
      failTrial(`not healthy within its ${trial.trialSeconds} s trial: ${why}`);
      return;
    }
    timer = setTimeout(() => judge(healthy, monoDeadline), 500);
  }

  function failTrial(reason: string): boolean {
    if (!trial || !paths) return false;
    const marker = trial;
    trial = undefined;
    if (timer) clearTimeout(timer);
    try {
      rollbackConfig(paths, marker, reason, now(), log);
    } catch {
      return false;
    }
    syncConfigResult();
    restart.resolve({ after: "config-rollback" });
    return true;
  }

  return {
    receive(frame) {
      if (!OP_ID.test(frame.id)) {
        log.warn("operation.refused", { kind: frame.kind, reason: "bad operation id" });
        return;
      }
      const known = journal.get(frame.id);
      if (known) return reportEntry(known);
      if (trial?.op === frame.id) {
        return report({ id: frame.id, kind: "config", status: "executing", reason: "on trial" });
      }
      if (!KINDS.has(frame.kind)) return refuse(frame, `Unknown operation kind "${frame.kind.slice(0, 64)}"`);
      try {
        if (frame.kind === "logs") return receiveLogs(frame);
        if (frame.kind === "restart") return receiveRestart(frame);
        receiveConfig(frame).catch((error) => refuse(frame, errorMessage(error)));
      } catch (error) {
        refuse(frame, errorMessage(error));
      }
    },
    connected() {
      report0("config", configReport(config));
      for (const e of journal.entries()) reportEntry(e);
      if (trial) report({ id: trial.op, kind: "config", status: "executing", reason: "on trial" });
    },
    startTrial() {
      if (!trial) return;
      const marker = trial;
      const boot = marker.deadline - now();
      const remaining = Math.max(0, Math.min(boot, marker.trialSeconds * 1000));
      log.info("config.trial.started", {
        op: marker.op,
        starts: marker.starts,
        deadline: new Date(now() + remaining).toISOString(),
      });
      const healthy = () =>
        config.hub === undefined || deps.hubConnected() ? undefined : "the hub is not connected";
      const monoDeadline = performance.now() + remaining;
      timer = setTimeout(() => judge(healthy, monoDeadline), 0);
    },
    failTrial,
    restartRequested: restart.promise,
    staged: () => (paths && stagedOp ? watchedConfigTrial(paths, stagedOp, log) : undefined),
    operations: () => journal.entries(),
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
    },
  };

  function report0(type: string, body: unknown): void {
    deps.send({ frame: "report", report: { type, body: Buffer.from(JSON.stringify(body)) } });
  }
}

/** A validation issue that does not quote a secret's value. */
function safeIssue(issue: Issue): Issue {
  if (!isSecretPath(issue.path)) return issue;
  return {
    path: issue.path,
    message: issue.message.replace(/,? received .*$/s, "").replace(/"[^"]*"/g, '"***"'),
  };
}

/** The config in force as the hub may see it: the file's own text (not the defaults), masked. */
function configReport(config: Config): Record<string, unknown> {
  if (!config.source) return { source: null, config: null };
  try {
    const text = readFileSync(config.source, "utf8");
    return { source: config.source, config: maskSecrets(JSON.parse(text)), at: new Date().toISOString() };
  } catch (error) {
    return { source: config.source, config: null, error: errorMessage(error) };
  }
}
