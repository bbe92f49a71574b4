/**
 * `outpost run`: the agent in the foreground until SIGINT/SIGTERM, then drain and exit 0. A
 * self-update (or a failed trial's rollback) also drains, then restarts: exit 75 under a
 * supervisor, else the new process is started here (src/update/restart.ts).
 */
import { createAgent } from "../agent/mod.ts";
import { loadConfig } from "../config/mod.ts";
import { errorMessage, UsageError } from "../core/errors.ts";
import {
  gcOptionsInForce,
  onShutdownSignal,
  onUnhandledRejection,
  releaseStartupPages,
  startupPagesEnabled,
} from "../runtime/mod.ts";
import { createLogger, createTelemetry } from "../telemetry/mod.ts";
import { bootUpdate, restartAfter, type RestartRequest } from "../update/mod.ts";

/** How long after start-up the start-up-only pages of the binary are released (docs/memory.md). */
const STARTUP_PAGES_DELAY_MS = 1000;

export async function runCommand(options: { config?: string }): Promise<number> {
  const config = loadConfig(options.config);
  const log = createLogger(config.log.level);
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
  const agent = createAgent(config, telemetry);
  try {
    await agent.start();
  } catch (error) {
    await agent.stop();
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
  ]);
  clearTimeout(pagesTimer);
  if (typeof outcome === "string") log.info("agent.stopping", { signal: outcome });
  else log.info("agent.stopping", { restart: outcome.after });
  await agent.stop();
  if (typeof outcome === "string") return 0;
  return await restartAfter(outcome as RestartRequest, config.dataDir, log);
}
