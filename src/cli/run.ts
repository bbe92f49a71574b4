/**
 * `outpost run`: the agent in the foreground until SIGINT/SIGTERM, then drain and exit 0. A
 * self-update, a config pushed by the hub, a restart asked by the hub (or a failed trial's
 * rollback) also drains, then restarts: exit 75 under a supervisor, else the new process is
 * started here (src/update/restart.ts). Every log line also goes to the on-disk ring.
 */
import { createAgent } from "../agent/mod.ts";
import { type Config, findConfigPath, loadConfig } from "../config/mod.ts";
import process from "node:process";
import {
  type ConfigBoot,
  configBootCheck,
  configTrialPaths,
  readConfigMarker,
  rollbackConfig,
} from "../management/mod.ts";
import { errorMessage, UsageError } from "../core/errors.ts";
import {
  gcOptionsInForce,
  onShutdownSignal,
  onUnhandledRejection,
  releaseStartupPages,
  startupPagesEnabled,
} from "../runtime/mod.ts";
import { createLogger, createTelemetry, type Logger, openLogRing } from "../telemetry/mod.ts";
import { bootUpdate, restartAfter, type RestartRequest } from "../update/mod.ts";

/** How long after start-up the start-up-only pages of the binary are released (docs/memory.md). */
const STARTUP_PAGES_DELAY_MS = 1000;

export async function runCommand(options: { config?: string }): Promise<number> {
  // Lines logged before the config says where the log ring is go there once it is open.
  const early: string[] = [];
  const earlyLog = createLogger("info", (line) => {
    console.log(line);
    early.push(line);
  });
  const { config, configBoot } = loadWithTrial(options.config, earlyLog);
  const ring = openLogRing(config.dataDir, config.log.maxBytes);
  for (const line of early) ring.append(line);
  const log = createLogger(config.log.level, (line) => {
    console.log(line);
    ring.append(line);
  });
  try {
    return await runAgent(config, configBoot, log);
  } finally {
    ring.close();
  }
}

/**
 * Reads the config, first settling a pushed config on trial (src/management): this start is
 * counted, and a trial that has failed (too many starts, out of time, a crash mid-change) is
 * rolled back before the file is read. A config on trial that this agent refuses is rolled back too.
 */
function loadWithTrial(flag: string | undefined, log: Logger): { config: Config; configBoot: ConfigBoot } {
  const path = findConfigPath(flag);
  const paths = path === undefined ? undefined : configTrialPaths(path);
  const configBoot = paths ? configBootCheck(paths, log) : { kind: "normal" as const };
  try {
    return { config: loadConfig(flag), configBoot };
  } catch (error) {
    const marker = paths ? readConfigMarker(paths) : undefined;
    if (!paths || configBoot.kind !== "trial" || marker === undefined || marker === "corrupt") throw error;
    const reason = rollbackConfig(
      paths,
      marker,
      `the agent refused it: ${errorMessage(error)}`,
      Date.now(),
      log,
    );
    return { config: loadConfig(flag), configBoot: { kind: "rolled-back", reason } };
  }
}

async function runAgent(config: Config, configBoot: ConfigBoot, log: Logger): Promise<number> {
  const telemetry = createTelemetry(log);
  // A binary on trial counts this start; a failed trial is rolled back before anything starts.
  if (bootUpdate(config.dataDir, log).kind === "rolled-back") {
    return await restartAfter({ after: "rollback" }, config.dataDir, log);
  }
  onUnhandledRejection((reason) => {
    log.error("bug.unhandled_rejection", {
      error: reason instanceof Error ? reason.stack ?? reason.message : String(reason),
    });
  });
  const agent = createAgent(config, telemetry, { configBoot });
  try {
    await agent.start();
  } catch (error) {
    await agent.stop();
    // On a pushed config's trial, failing to start fails the trial: the previous file, restart.
    if (agent.management.failTrial(`the agent did not start: ${errorMessage(error)}`)) {
      log.info("agent.restart", { after: "config-rollback" });
      return await restartAfter({ after: "config-rollback" }, config.dataDir, log);
    }
    // On trial, failing to start is failing the trial: back to the previous binary at once.
    if (agent.update.updater.failTrial(`The agent did not start: ${errorMessage(error)}`)) {
      return await restartAfter({ after: "rollback" }, config.dataDir, log);
    }
    if (error instanceof UsageError) throw error;
    log.error("agent.start_failed", { error: errorMessage(error) });
    return 1;
  }
  const gcOptions = gcOptionsInForce();
  if (gcOptions.length > 0) log.info("memory.gc_options", { options: gcOptions });
  // Once started, the pages only start-up needed go back to the kernel (docs/memory.md).
  const pagesTimer = startupPagesEnabled()
    ? setTimeout(async () => {
      const started = performance.now();
      const released = await releaseStartupPages();
      if (released) {
        log.info("memory.startup_pages_released", {
          advisedMb: Math.round(released.advisedBytes / 1048576),
          refused: released.refused,
          ms: Math.round(performance.now() - started),
        });
      }
    }, STARTUP_PAGES_DELAY_MS)
    : undefined;
  const outcome = await Promise.race([
    new Promise<string>((resolve) => onShutdownSignal(resolve)),
    agent.update.restartRequested,
    agent.management.restartRequested,
  ]);
  clearTimeout(pagesTimer);
  if (typeof outcome === "string") log.info("agent.stopping", { signal: outcome });
  else log.info("agent.stopping", { restart: outcome.after });
  await agent.stop();
  if (typeof outcome === "string") return 0;
  if (outcome.after === "config" && process.env.OUTPOST_TEST_CONFIG_PAUSE === "restarting") {
    // Test hook: stopped, about to restart onto the new config; a test kills the process here.
    log.warn("config.paused", { at: "restarting" });
    await new Promise(() => {});
  }
  if (outcome.after !== "swap" && outcome.after !== "rollback") {
    log.info("agent.restart", { after: outcome.after });
  }
  const watch = outcome.after === "config" ? agent.management.staged() : undefined;
  return await restartAfter(outcome as RestartRequest, config.dataDir, log, watch);
}
