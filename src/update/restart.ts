/**
 * Restarting after a swap or a rollback, once the agent has drained.
 *
 * Under a supervisor (systemd: `INVOCATION_ID`/`NOTIFY_SOCKET`) the process exits with
 * `RESTART_EXIT_CODE` and the supervisor starts the executable again, running the pre-start
 * check first. Without one, the process starts the executable itself (same arguments, detached)
 * and, after a swap, stays on as a watchdog until the new process commits its trial: if the new
 * process dies during the trial, or is still on trial well after its deadline (hung), the
 * watchdog stops it, restores `.prev` and starts that instead. Nobody else would.
 */
import {
  type DetachedProcess,
  executablePath,
  onShutdownSignal,
  relaunchArgs,
  RESTART_EXIT_CODE,
  spawnDetached,
  underSupervisor,
} from "../runtime/mod.ts";
import type { Logger } from "../telemetry/mod.ts";
import type { UpdatePaths } from "./_files.ts";
import { readMarker } from "./marker.ts";
import { rollbackTrial } from "./trial.ts";

/** How long after the trial's deadline the watchdog gives the new process to settle itself. */
export const WATCHDOG_GRACE_MS = 5_000;

export interface RestartOptions {
  log: Logger;
  /** After a swap: watch the trial of this version (only without a supervisor). */
  watch?: { paths: UpdatePaths; version: string };
  now?: () => number;
}

/** Restarts into the executable: the exit code for the CLI entry to end with. */
export async function restartProcess(options: RestartOptions): Promise<number> {
  const { log } = options;
  if (underSupervisor()) {
    log.info("update.restart", { how: "exit", code: RESTART_EXIT_CODE });
    return RESTART_EXIT_CODE;
  }
  const exe = executablePath();
  const child = spawnDetached(exe, relaunchArgs());
  log.info("update.restart", { how: "spawn", exe, pid: child.pid });
  if (!options.watch) return 0;
  return await watchTrial(child, options.watch, log, options.now ?? Date.now);
}

async function watchTrial(
  child: DetachedProcess,
  watch: { paths: UpdatePaths; version: string },
  log: Logger,
  now: () => number,
): Promise<number> {
  let exitCode: number | string | undefined;
  child.exited.then((code) => (exitCode = code));
  let stopped = false;
  const unhook = onShutdownSignal(() => (stopped = true));
  const onTrial = () => {
    const m = readMarker(watch.paths.marker);
    return m && m !== "corrupt" && m.version === watch.version ? m : undefined;
  };
  log.info("update.watchdog.started", { pid: child.pid, version: watch.version });
  try {
    while (!stopped) {
      await new Promise((r) => setTimeout(r, 250));
      const marker = onTrial();
      if (!marker) {
        log.info("update.watchdog.done", { pid: child.pid, version: watch.version });
        return 0;
      }
      if (exitCode !== undefined) {
        if (exitCode === 0) {
          // Stopped on purpose (SIGTERM drains and exits 0): the trial goes on at its next start.
          log.info("update.watchdog.done", { pid: child.pid, exit: 0, onTrial: true });
          return 0;
        }
        const again = onTrial();
        if (!again) return 0;
        return rollBackAndStart(again, `${watch.version} exited (${exitCode}) during its trial`);
      }
      if (now() > marker.deadline * 1000 + WATCHDOG_GRACE_MS) {
        child.kill("SIGTERM");
        const gone = await Promise.race([
          child.exited,
          new Promise((r) => setTimeout(() => r(undefined), 5_000)),
        ]);
        if (gone === undefined) {
          child.kill("SIGKILL");
          await child.exited;
        }
        const again = onTrial();
        if (!again) return 0;
        return rollBackAndStart(
          again,
          `${watch.version} was still not healthy ${
            WATCHDOG_GRACE_MS / 1000
          } s after its trial deadline (stopped by the watchdog)`,
        );
      }
    }
    return 0;
  } finally {
    unhook();
  }

  function rollBackAndStart(marker: NonNullable<ReturnType<typeof onTrial>>, reason: string): number {
    const rolled = rollbackTrial(watch.paths, marker, reason, { log, now, by: "watchdog" });
    const next = spawnDetached(executablePath(), relaunchArgs());
    log.info("update.restart", { how: "spawn", pid: next.pid, rolledBack: rolled });
    return 0;
  }
}
