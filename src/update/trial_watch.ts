/**
 * The trial of a new version, in the process it started: `healthy()` is asked every 500 ms until
 * it holds (the trial commits) or the trial time passes (it rolls back to `.prev`). Judged on the
 * monotonic clock: a wall clock jumping during the trial (NTP at boot) neither ends it at once
 * nor stretches it.
 */
import { performance } from "node:perf_hooks";
import { errorMessage } from "../core/errors.ts";
import type { Logger } from "../telemetry/mod.ts";
import type { UpdatePaths } from "./_files.ts";
import { readMarker, type TrialMarker } from "./marker.ts";
import type { UpdateStateName, UpdateStatus } from "./status.ts";
import { commitTrial, rollbackTrial } from "./trial.ts";

export interface TrialWatchDeps {
  paths: UpdatePaths;
  log: Logger;
  now: () => number;
  by: string;
  /** From source the "executable" is the runtime (deno, bun): it never is on trial. */
  compiled: boolean;
  version: string;
  set(next: Partial<UpdateStatus> & { state: UpdateStateName }): void;
  onRolledBack?: () => void;
  signal: AbortSignal;
}

/** The trial as the status shows it. */
export function trialInfo(m: TrialMarker): NonNullable<UpdateStatus["trial"]> {
  return {
    deadline: new Date(m.deadline * 1000).toISOString(),
    starts: m.starts,
    boots: m.boots,
    maxStarts: m.maxStarts,
  };
}

export class TrialWatch {
  #marker: TrialMarker | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly deps: TrialWatchDeps) {}

  /** The marker of this version's trial, if this process is on trial. */
  #mine(): TrialMarker | undefined {
    if (!this.deps.compiled) return undefined;
    const marker = readMarker(this.deps.paths.marker);
    return marker && marker !== "corrupt" && marker.version === this.deps.version ? marker : undefined;
  }

  start(healthy: () => Promise<string | undefined>): void {
    const { log, now, paths, set } = this.deps;
    const marker = this.#mine();
    if (marker === undefined) return;
    this.#marker = marker;
    set({ state: "trial", version: marker.version, previous: marker.previous, trial: trialInfo(marker) });
    const deadlineMs = Math.min(marker.deadline * 1000, now() + marker.trialSeconds * 1000);
    const monoDeadline = performance.now() + Math.max(0, deadlineMs - now());
    log.info("update.trial.started", {
      version: marker.version,
      previous: marker.previous,
      deadline: new Date(deadlineMs).toISOString(),
      starts: marker.starts,
      boots: marker.boots,
    });
    const tick = async () => {
      this.#timer = undefined;
      if (this.deps.signal.aborted || !this.#marker) return;
      let why: string | undefined;
      try {
        why = await healthy();
      } catch (error) {
        why = errorMessage(error);
      }
      const current = this.#marker;
      if (this.deps.signal.aborted || !current) return;
      if (why === undefined) {
        try {
          commitTrial(paths, current, { log, now, by: this.deps.by });
        } catch (error) {
          // A full disk, say: the trial stays open and is tried again.
          log.error("update.trial.commit_failed", { error: errorMessage(error) });
          this.#timer = setTimeout(tick, 5_000);
          return;
        }
        set({ state: "committed", version: current.version, previous: current.previous });
        this.#marker = undefined;
        return;
      }
      if (performance.now() >= monoDeadline) {
        this.fail(`Not healthy within the ${marker.trialSeconds} s trial: ${why}`);
        return;
      }
      this.#timer = setTimeout(tick, 500);
    };
    this.#timer = setTimeout(tick, 0);
  }

  /** Fails a running trial now (the agent could not start): true when it rolled back. */
  fail(reason: string): boolean {
    const marker = this.#marker ?? this.#mine();
    if (marker === undefined) return false;
    this.#marker = undefined;
    if (this.#timer) clearTimeout(this.#timer);
    const { log, now, paths } = this.deps;
    const rolled = rollbackTrial(paths, marker, reason, { log, now, by: this.deps.by });
    this.deps.set({
      state: rolled ? "rolled-back" : "failed",
      version: marker.version,
      previous: marker.previous,
      reason,
    });
    if (rolled) this.deps.onRolledBack?.();
    return rolled;
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
