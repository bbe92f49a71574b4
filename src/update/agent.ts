/**
 * The update as the agent uses it: an updater bound to this process (its executable, version,
 * target and data folder), the trial check at start-up, and the restart once the agent has
 * drained. `outpost run` calls `bootUpdate` before it builds the agent and `restartAfter` after
 * it has stopped it.
 */
import type { Hono } from "hono";
import process from "node:process";
import { executablePath, installedAs, pid, target } from "../runtime/mod.ts";
import type { Logger } from "../telemetry/mod.ts";
import { VERSION } from "../version.ts";
import { updatePaths } from "./_files.ts";
import { restartProcess, updateTrial, type WatchedTrial } from "./restart.ts";
import { mountUpdateRoutes } from "./routes.ts";
import { bootCheck, type BootDecision } from "./trial.ts";
import { createUpdater, type Updater, type UpdateSettings } from "./updater.ts";

/** Why the agent asks to be restarted. */
export type RestartRequest =
  | { after: "swap"; version: string }
  /** A failed trial restored `.prev`; or the hub's management asked (a config change or undo, a restart). */
  | { after: "rollback" | "config" | "config-rollback" | "restart" };

export interface AgentUpdate {
  readonly updater: Updater;
  /** Resolves when the agent must drain and restart (a swap, or a failed trial rolled back). */
  readonly restartRequested: Promise<RestartRequest>;
  /** Mounts `GET|POST /api/v1/update` (the control API's `extend` hook). */
  mount(app: Hono): void;
}

export interface AgentUpdateConfig {
  dataDir: string;
  update: UpdateSettings;
}

export function createAgentUpdate(config: AgentUpdateConfig, log: Logger): AgentUpdate {
  const restart = Promise.withResolvers<RestartRequest>();
  const updater = createUpdater({
    paths: updatePaths(executablePath(), config.dataDir),
    version: VERSION,
    target: target(),
    compiled: installedAs() !== undefined,
    bundle: installedAs() === "bundle",
    settings: config.update,
    log,
    pid: pid(),
    by: "agent",
    onSwapped: (version) => restart.resolve({ after: "swap", version }),
    onRolledBack: () => restart.resolve({ after: "rollback" }),
    pauseAt: process.env.OUTPOST_TEST_UPDATE_PAUSE || undefined,
  });
  return {
    updater,
    restartRequested: restart.promise,
    mount: (app) => mountUpdateRoutes(app, updater),
  };
}

/**
 * The trial check at start-up (counts this start; rolls back when the trial has failed). When it
 * answers `rolled-back`, the caller restarts with `restartAfter({after: "rollback"}, …)` without
 * starting the agent.
 */
export function bootUpdate(dataDir: string, log: Logger): BootDecision {
  // From source the "executable" is the runtime (deno, bun): never swapped, never rolled back.
  if (installedAs() === undefined) return { kind: "normal" };
  return bootCheck(updatePaths(executablePath(), dataDir), VERSION, { log, now: Date.now, by: "agent" });
}

/** Restarts after the agent has stopped: the exit code for `outpost run` to end with. */
export async function restartAfter(
  request: RestartRequest,
  dataDir: string,
  log: Logger,
  /** Another trial to watch after the restart (a pushed config's, src/management). */
  watch?: WatchedTrial,
): Promise<number> {
  return await restartProcess({
    log,
    watch: request.after === "swap"
      ? updateTrial(updatePaths(executablePath(), dataDir), request.version, log, Date.now)
      : watch,
  });
}
