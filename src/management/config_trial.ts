/**
 * A configuration pushed by the hub, on trial (SPEC §12, docs/management.md). The files, all
 * beside the config file `<cfg>` (so that a new config that moves `dataDir` still finds them),
 * all 0600 and written atomically (temporary file, fsync, rename, fsync the folder):
 *
 *   <cfg>.prev    the config that was in force, kept for the rollback
 *   <cfg>.trial   the trial marker (JSON): operation id, SHA-256 of both files, starts, deadline
 *   <cfg>.result  the last change's outcome (JSON): what the hub is told after every connect
 *
 * Staging is three steps in this order: `.prev` ← the current file; the marker; the new file
 * renamed over `<cfg>`. Rolling back is one rename (`.prev` over `<cfg>`), then the result, then
 * the marker goes. At start-up the marker's two digests say where a crash stopped: `<cfg>` with
 * the new digest is on trial; with the previous digest the new file never got in place (or the
 * rollback had already happened), and the change is recorded as failed. Either way the agent
 * starts on a whole file, never a mix.
 */
import type { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync } from "node:fs";
import { dirname } from "node:path";
import { bootTime } from "../core/clock.ts";
import { errorMessage } from "../core/errors.ts";
import type { Logger } from "../telemetry/mod.ts";
import { fsyncDir, removeDurably, type WatchedTrial, writeFileAtomic } from "../update/mod.ts";

export interface ConfigTrialPaths {
  config: string;
  prev: string;
  marker: string;
  result: string;
}

export function configTrialPaths(config: string): ConfigTrialPaths {
  return { config, prev: `${config}.prev`, marker: `${config}.trial`, result: `${config}.result` };
}

export interface ConfigMarker {
  /** The hub's operation id. */
  op: string;
  newSha256: string;
  prevSha256: string;
  /** Starts of the agent on the new file, this one included. */
  starts: number;
  maxStarts: number;
  trialSeconds: number;
  /** Unix ms: the trial must have committed by then (wall clock; see bootId). */
  deadline: number;
  /** The boot the trial's time is counted in, and the deadline in seconds since that boot. */
  bootId?: string;
  uptimeDeadline?: number;
}

export interface ConfigResult {
  op: string;
  status: "successful" | "failed";
  reason?: string;
  /** Unix ms. */
  at: number;
}

export type ConfigBoot =
  | { kind: "normal" }
  | { kind: "trial"; marker: ConfigMarker }
  /** The file in place is the previous one again (or still); the outcome is recorded. */
  | { kind: "rolled-back"; reason: string };

const sha256 = (text: string | Buffer) => createHash("sha256").update(text).digest("hex");

function fileDigest(path: string): string | undefined {
  try {
    return sha256(readFileSync(path));
  } catch {
    return undefined;
  }
}

export function readConfigMarker(paths: ConfigTrialPaths): ConfigMarker | undefined | "corrupt" {
  if (!existsSync(paths.marker)) return undefined;
  try {
    const m = JSON.parse(readFileSync(paths.marker, "utf8"));
    if (typeof m?.op !== "string" || typeof m.newSha256 !== "string" || typeof m.starts !== "number") {
      return "corrupt";
    }
    return m as ConfigMarker;
  } catch {
    return "corrupt";
  }
}

export function readConfigResult(paths: ConfigTrialPaths): ConfigResult | undefined {
  try {
    const r = JSON.parse(readFileSync(paths.result, "utf8"));
    return typeof r?.op === "string" && (r.status === "successful" || r.status === "failed") ? r : undefined;
  } catch {
    return undefined;
  }
}

function writeJson(path: string, value: unknown): void {
  writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n", 0o600);
}

function record(paths: ConfigTrialPaths, result: ConfigResult): void {
  writeJson(paths.result, result);
}

export interface StageOptions {
  op: string;
  /** The new file's text, validated already. */
  text: string;
  trialSeconds: number;
  maxStarts: number;
  now: number;
  /** Test hook: stops for good after the named step (`prev`, `marker`). */
  pause?: (step: string) => Promise<void>;
}

/** Puts a validated config in place for a trial: `.prev`, the marker, then the new file. */
export async function stageConfig(paths: ConfigTrialPaths, options: StageOptions): Promise<void> {
  const current = readFileSync(paths.config);
  writeFileAtomic(paths.prev, current.toString("utf8"), 0o600);
  await options.pause?.("prev");
  const boot = bootTime();
  const marker: ConfigMarker = {
    op: options.op,
    newSha256: sha256(options.text),
    prevSha256: sha256(current),
    starts: 0,
    maxStarts: options.maxStarts,
    trialSeconds: options.trialSeconds,
    deadline: options.now + options.trialSeconds * 1000,
    ...(boot ? { bootId: boot.bootId, uptimeDeadline: boot.uptime + options.trialSeconds } : {}),
  };
  writeJson(paths.marker, marker);
  await options.pause?.("marker");
  writeFileAtomic(paths.config, options.text, 0o600);
}

/**
 * At start-up, before the config is read: counts this start on the new file and decides whether
 * it runs on trial, or whether the trial has failed (too many starts, its time is up, or a crash
 * left the previous file in place) and the previous file is back.
 */
export function configBootCheck(paths: ConfigTrialPaths, log: Logger, now = Date.now()): ConfigBoot {
  const marker = readConfigMarker(paths);
  if (marker === undefined) return { kind: "normal" };
  if (marker === "corrupt") {
    // The marker is written before the new file: an unreadable one means the file in place is
    // the previous one, unless it is `.prev`'s twin; either way there is nothing to judge.
    log.warn("config.trial.marker_corrupt", { marker: paths.marker });
    removeDurably(paths.marker);
    return { kind: "normal" };
  }
  const inPlace = fileDigest(paths.config);
  const decided = readConfigResult(paths);
  if (decided?.op === marker.op) {
    // The outcome was recorded and a crash stopped what follows it: finish it.
    if (decided.status === "failed" && inPlace === marker.newSha256 && existsSync(paths.prev)) {
      restorePrev(paths);
    }
    removeDurably(paths.marker);
    return decided.status === "failed" ? { kind: "rolled-back", reason: decided.reason ?? "failed" } : {
      kind: "normal",
    };
  }
  if (inPlace !== marker.newSha256) {
    const reason = inPlace === marker.prevSha256
      ? "interrupted before the new configuration was in place; the previous one stays"
      : "the configuration file changed during the trial; it stays as it is";
    finish(paths, marker, "failed", reason, now, log);
    return { kind: "rolled-back", reason };
  }
  const counted: ConfigMarker = { ...marker, starts: marker.starts + 1 };
  let why: string | undefined;
  if (counted.starts > counted.maxStarts) {
    why = `the agent started ${counted.starts - 1} times on it without passing its trial`;
  } else {
    const boot = bootTime();
    const late = boot && counted.bootId === boot.bootId && counted.uptimeDeadline !== undefined
      ? boot.uptime > counted.uptimeDeadline
      : !boot && now > counted.deadline;
    if (late) why = `its ${counted.trialSeconds} s trial ended before the hub was reached`;
  }
  if (why !== undefined) {
    const rolled = rollbackConfig(paths, counted, why, now, log);
    return { kind: "rolled-back", reason: rolled };
  }
  writeJson(paths.marker, counted);
  return { kind: "trial", marker: counted };
}

/** The trial passed: the outcome recorded, the marker removed; `.prev` stays. */
export function commitConfig(paths: ConfigTrialPaths, marker: ConfigMarker, now: number, log: Logger): void {
  finish(paths, marker, "successful", undefined, now, log);
  log.info("config.committed", { op: marker.op, starts: marker.starts });
}

/**
 * The trial failed: `.prev` renamed over the config file (atomic), the outcome recorded, the
 * marker removed. Answers the reason as recorded.
 */
export function rollbackConfig(
  paths: ConfigTrialPaths,
  marker: ConfigMarker,
  why: string,
  now: number,
  log: Logger,
): string {
  if (!existsSync(paths.prev)) {
    const reason = `${why}; cannot roll back: ${paths.prev} is missing`;
    log.error("config.rollback_impossible", { op: marker.op, reason });
    finish(paths, marker, "failed", reason, now, log);
    return reason;
  }
  const reason = `rolled back: ${why}`;
  // The outcome first: a crash after it is finished at the next start (configBootCheck).
  record(paths, { op: marker.op, status: "failed", reason, at: now });
  try {
    restorePrev(paths);
  } catch (error) {
    log.error("config.rollback_impossible", { op: marker.op, reason: errorMessage(error) });
    throw error;
  }
  removeDurably(paths.marker);
  log.error("config.rolled_back", { op: marker.op, reason });
  return reason;
}

/** `.prev` back over the config file in one rename; `.prev` itself stays, for the operator. */
function restorePrev(paths: ConfigTrialPaths): void {
  const text = readFileSync(paths.prev, "utf8");
  const tmp = `${paths.config}.rollback`;
  writeFileAtomic(tmp, text, 0o600);
  renameSync(tmp, paths.config);
  fsyncDir(dirname(paths.config));
}

function finish(
  paths: ConfigTrialPaths,
  marker: ConfigMarker,
  status: ConfigResult["status"],
  reason: string | undefined,
  now: number,
  log: Logger,
): void {
  record(paths, { op: marker.op, status, ...(reason ? { reason } : {}), at: now });
  removeDurably(paths.marker);
  if (status === "failed") log.warn("config.trial.failed", { op: marker.op, reason });
}

/**
 * The trial of operation `op` as the restarting process's watchdog sees it (no supervisor): on
 * trial while the marker names `op`; a new process that dies or hangs past the deadline is
 * rolled back from outside.
 */
export function watchedConfigTrial(paths: ConfigTrialPaths, op: string, log: Logger): WatchedTrial {
  const marker = () => {
    const m = readConfigMarker(paths);
    return m && m !== "corrupt" && m.op === op ? m : undefined;
  };
  return {
    what: `the config of operation ${op}`,
    onTrial() {
      const m = marker();
      return m ? { deadline: m.deadline } : undefined;
    },
    rollBack(reason) {
      const m = marker();
      if (!m) return false;
      rollbackConfig(paths, m, reason, Date.now(), log);
      return true;
    },
  };
}
