/**
 * Clocks for deadlines. The wall clock of a gateway can jump, most often at boot (no real-time
 * clock until NTP answers): a deadline kept on it ends at once, or never. Durations inside one
 * process use the monotonic clock (`performance.now()`, timers); deadlines that outlive a process
 * (an update's trial) use the time since boot with the boot's id, and fall back to the wall clock
 * where /proc is not there.
 */
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";

export interface BootTime {
  /** /proc/sys/kernel/random/boot_id: changes at every boot. */
  bootId: string;
  /** Seconds since boot (/proc/uptime), never going back within one boot. */
  uptime: number;
}

/** The boot's id and the seconds since it, or undefined where /proc does not tell. */
export function bootTime(): BootTime | undefined {
  try {
    const bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    const uptime = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
    if (!bootId || !Number.isFinite(uptime)) return undefined;
    return { bootId, uptime };
  } catch {
    return undefined;
  }
}

/**
 * Milliseconds since the epoch as of this process's start, advanced by the monotonic clock: reads
 * like `Date.now()`, but a wall clock that jumps while the process runs does not move it. For
 * deadlines kept by one process (command timeouts).
 */
export function monotonicWallClock(): () => number {
  const base = Date.now() - performance.now();
  return () => base + performance.now();
}
