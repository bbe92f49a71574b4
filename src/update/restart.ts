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

/**
 * A trial the restarting process watches from outside (without a supervisor): a self-update's,
 * or a pushed config's (src/management). `onTrial()` answers the trial's deadline (unix ms)
 * while the new process is on it; `rollBack(reason)` puts the previous file back and records it.
 */
export interface WatchedTrial {
  what: string;
  onTrial(): { deadline: number } | undefined;
  rollBack(reason: string): boolean;
}

export interface RestartOptions {
  log: Logger;
  /** After a swap or a config change: watch the new process's trial (only without a supervisor). */
  watch?: WatchedTrial;
  now?: () => number;
}

/** The trial of the self-update to `version`, as the watchdog sees it. */
export function updateTrial(
  paths: UpdatePaths,
  version: string,
  log: Logger,
  now: () => number,
): WatchedTrial {
  const marker = () => {
    const m = readMarker(paths.marker);
    return m && m !== "corrupt" && m.version === version ? m : undefined;
  };
  return {
    what: version,
    onTrial() {
      const m = marker();
      return m ? { deadline: m.deadline * 1000 } : undefined;
    },
    rollBack(reason) {
      const m = marker();
      return m ? rollbackTrial(paths, m, reason, { log, now, by: "watchdog" }) : false;
    },
  };
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
  watch: WatchedTrial,
  log: Logger,
  now: () => number,
): Promise<number> {
  let exitCode: number | string | undefined;
  child.exited.then((code) => (exitCode = code));
  let stopped = false;
  const unhook = onShutdownSignal(() => (stopped = true));
  const onTrial = () => watch.onTrial();
  log.info("update.watchdog.started", { pid: child.pid, version: watch.what });
  try {
    while (!stopped) {
      await new Promise((r) => setTimeout(r, 250));
      const marker = onTrial();
      if (!marker) {
        log.info("update.watchdog.done", { pid: child.pid, version: watch.what });
        return 0;
      }
      if (exitCode !== undefined) {
        if (exitCode === 0) {
          // Stopped on purpose (SIGTERM drains and exits 0): the trial goes on at its next start.
          log.info("update.watchdog.done", { pid: child.pid, exit: 0, onTrial: true });
          return 0;
        }
        if (!onTrial()) return 0;
        return rollBackAndStart(`${watch.what} exited (${exitCode}) during its trial`);
      }
      if (now() > marker.deadline + WATCHDOG_GRACE_MS) {
        child.kill("SIGTERM");
        const gone = await Promise.race([
          child.exited,
          new Promise((r) => setTimeout(() => r(undefined), 5_000)),
        ]);
        if (gone === undefined) {
          child.kill("SIGKILL");
          await child.exited;
        }
        if (!onTrial()) return 0;
        return rollBackAndStart(
          `${watch.what} was still not healthy ${
            WATCHDOG_GRACE_MS / 1000
          } s after its trial deadline (stopped by the watchdog)`,
        );
      }
    }
    return 0;
  } finally {
    unhook();
  }

  function rollBackAndStart(reason: string): number {
    const rolled = watch.rollBack(reason);
    const next = spawnDetached(executablePath(), relaunchArgs());
    log.info("update.restart", { how: "spawn", pid: next.pid, rolledBack: rolled });
    return 0;
  }
}
