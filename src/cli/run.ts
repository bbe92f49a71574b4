/** `outpost run`: the agent in the foreground until SIGINT/SIGTERM, then drain and exit 0. */
import { createAgent } from "../agent/mod.ts";
import { loadConfig } from "../config/mod.ts";
import { UsageError } from "../core/errors.ts";
import { onShutdownSignal } from "../runtime/mod.ts";
import { createLogger, createTelemetry } from "../telemetry/mod.ts";

export async function runCommand(options: { config?: string }): Promise<number> {
  const config = loadConfig(options.config);
  const log = createLogger(config.log.level);
  const telemetry = createTelemetry(log);
  const agent = createAgent(config, telemetry);
  try {
    await agent.start();
  } catch (error) {
    await agent.stop();
    if (error instanceof UsageError) throw error;
    log.error("agent.start_failed", { error: (error as Error).message });
    return 1;
  }
  const signal = await new Promise<string>((resolve) => onShutdownSignal(resolve));
  log.info("agent.stopping", { signal });
  await agent.stop();
  return 0;
}
