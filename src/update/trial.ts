/**
 * Trial bookkeeping at start-up, commit and rollback. The same rules as the pre-start script
 * (scripts/outpost-prestart.sh), which runs before the binary under systemd and works when the
 * binary cannot start at all; this in-process check covers setups without it.
 *
 * Rollback is one rename (`<exe>.prev` over `<exe>`), then the result is recorded and the marker
 * removed: a crash between the two leaves a marker naming a version that is no longer the
 * executable's, which the next start recognises and clears.
 */
import { existsSync, renameSync } from "node:fs";
import { dirname } from "node:path";
import { type BootTime, bootTime } from "../core/clock.ts";
import type { Logger } from "../telemetry/mod.ts";
import { fsyncDir, removeDurably, type UpdatePaths } from "./_files.ts";
import { readMarker, type TrialMarker, writeMarker, writeResult } from "./marker.ts";

export interface TrialContext {
  log: Logger;
  now: () => number;
  by: string;
  /** The boot clock (default: /proc); undefined where there is none. */
  boot?: () => BootTime | undefined;
}

export type BootDecision =
  /** No update in progress. */
  | { kind: "normal" }
  /** This binary is on trial: run, and commit once healthy. */
  | { kind: "trial"; marker: TrialMarker }
  /** The trial had failed: `.prev` is back in place; restart into it without starting. */
  | { kind: "rolled-back"; reason: string };

/**
 * Reads the trial marker at start-up, counts this start (`boots`) and decides. A marker naming
 * another version means the swap never happened (a crash before the rename) or a rollback was
 * interrupted after its rename: either way the executable is the old binary, so the marker goes.
 */
export function bootCheck(paths: UpdatePaths, version: string, ctx: TrialContext): BootDecision {
  const marker = readMarker(paths.marker);
  if (marker === undefined) return { kind: "normal" };
  if (marker === "corrupt") {
    ctx.log.warn("update.trial.marker_corrupt", { marker: paths.marker });
    removeDurably(paths.marker);
    return { kind: "normal" };
  }
  if (marker.version !== version) {
    const reason = version === marker.previous
      ? `The update to ${marker.version} did not complete (interrupted before the swap, or rolled back); ` +
        `running ${version}`
      : `A trial marker for ${marker.version} was left behind; running ${version}`;
    ctx.log.warn("update.trial.stale_marker", { marker: marker.version, running: version });
    writeResult(paths.result, {
      status: "failed",
      version: marker.version,
      previous: marker.previous,
      reason,
      at: Math.floor(ctx.now() / 1000),
      by: ctx.by,
    });
    removeDurably(paths.marker);
    return { kind: "normal" };
  }
  const counted: TrialMarker = { ...marker, boots: marker.boots + 1 };
  // The trial's time: counted since boot while the machine has not rebooted (a wall clock that
  // jumps at boot neither ends a trial at once nor makes it endless). After a reboot the trial's
  // time starts again from this boot (the start counts still bound it). A marker without a boot
  // (written where /proc was missing, or by an older version) is judged by the wall clock.
  const boot = (ctx.boot ?? bootTime)();
  let expired: boolean;
  if (boot !== undefined && counted.bootId === boot.bootId && counted.uptimeDeadline !== undefined) {
    expired = boot.uptime > counted.uptimeDeadline;
  } else if (boot !== undefined && counted.bootId !== undefined) {
    const seconds = Number.isNaN(counted.trialSeconds) ? 300 : counted.trialSeconds;
    counted.bootId = boot.bootId;
    counted.uptimeDeadline = boot.uptime + seconds;
    counted.deadline = Math.floor(ctx.now() / 1000) + seconds;
    expired = false;
  } else {
    expired = ctx.now() / 1000 > counted.deadline;
  }
  writeMarker(paths.marker, counted);
  let reason: string | undefined;
  if (counted.boots > counted.maxStarts) {
    reason = `${version} was started ${counted.boots - 1} times without passing its trial`;
  } else if (counted.starts > counted.maxStarts) {
    reason = `${version} was started ${counted.starts - 1} times without passing its trial (pre-start count)`;
  } else if (expired) {
    reason = `${version} did not pass its trial before the deadline ${
      new Date(counted.deadline * 1000).toISOString()
    }`;
  }
  if (reason === undefined) return { kind: "trial", marker: counted };
  const rolled = rollbackTrial(paths, counted, reason, ctx);
  return rolled ? { kind: "rolled-back", reason } : { kind: "normal" };
}

/** The trial passed: the marker goes, `.prev` stays for a manual rollback. */
export function commitTrial(paths: UpdatePaths, marker: TrialMarker, ctx: TrialContext): void {
  writeResult(paths.result, {
    status: "committed",
    version: marker.version,
    previous: marker.previous,
    at: Math.floor(ctx.now() / 1000),
    by: ctx.by,
  });
  removeDurably(paths.marker);
  ctx.log.info("update.committed", { version: marker.version, previous: marker.previous });
}

/**
 * The trial failed: `.prev` is renamed over the executable (atomic), the result recorded, the
 * marker removed. False when there is no `.prev` to go back to (the marker is cleared so that the
 * agent is not stuck in a loop; the failure is recorded for the operator).
 */
export function rollbackTrial(
  paths: UpdatePaths,
  marker: TrialMarker,
  reason: string,
  ctx: TrialContext,
): boolean {
  const at = Math.floor(ctx.now() / 1000);
  if (!existsSync(paths.prev)) {
    ctx.log.error("update.rollback_impossible", { version: marker.version, reason, missing: paths.prev });
    writeResult(paths.result, {
      status: "failed",
      version: marker.version,
      previous: marker.previous,
      reason: `${reason}; cannot roll back: ${paths.prev} is missing`,
      at,
      by: ctx.by,
    });
    removeDurably(paths.marker);
    return false;
  }
  renameSync(paths.prev, paths.exe);
  fsyncDir(dirname(paths.exe));
  writeResult(paths.result, {
    status: "rolled-back",
    version: marker.version,
    previous: marker.previous,
    reason,
    at,
    by: ctx.by,
  });
  removeDurably(paths.marker);
  ctx.log.error("update.rolled_back", { version: marker.version, previous: marker.previous, reason });
  return true;
}
