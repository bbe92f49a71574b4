/**
 * The two small files an update leaves in the data folder, in a `key=value` format that the
 * pre-start shell script (scripts/outpost-prestart.sh) reads and writes too:
 *
 * - `update-trial`, the trial marker: written (atomically) just before the new binary is renamed
 *   into place, removed on commit or rollback. While it exists the binary it names is on trial.
 *   `starts` is counted by the pre-start script before each start (it works when the binary is
 *   broken); `boots` is counted by the binary itself once it runs. Either over `max_starts`, or
 *   a start after `deadline` (unix seconds), means the trial failed.
 * - `update-result`, the last outcome (committed, rolled-back or failed, with the reason), read
 *   by `GET /api/v1/update` after a restart.
 */
import { formatKeyValues, readKeyValues, writeFileAtomic } from "./_files.ts";

export interface TrialMarker {
  /** The version on trial (the new one). */
  version: string;
  /** The version it replaced, kept as `<exe>.prev`. */
  previous: string;
  exe: string;
  /** Starts counted by the pre-start script. */
  starts: number;
  /** Starts counted by the binary itself. */
  boots: number;
  maxStarts: number;
  /** Unix seconds: the trial must have committed by then. */
  deadline: number;
  trialSeconds: number;
  /** Unix seconds. */
  swappedAt: number;
  /**
   * The boot the trial's time is counted in, and the deadline in seconds since that boot: what
   * decides while the machine has not rebooted, whatever the wall clock does (src/core/clock.ts).
   */
  bootId?: string;
  uptimeDeadline?: number;
}

export type UpdateOutcome = "committed" | "rolled-back" | "failed";

export interface UpdateResult {
  status: UpdateOutcome;
  version: string;
  previous?: string;
  reason?: string;
  /** Unix seconds. */
  at: number;
  /** Who wrote it: `agent`, `watchdog`, `prestart`, `cli`. */
  by: string;
}

const MARKER_HEADER = "# outpost update trial: the binary named here is on trial until it commits." +
  "\n# Written by outpost, counted by outpost-prestart; do not edit while the agent runs.";

/** The trial marker, `undefined` when there is none, `"corrupt"` when it cannot be read. */
export function readMarker(path: string): TrialMarker | undefined | "corrupt" {
  const kv = readKeyValues(path);
  if (!kv) return undefined;
  const num = (k: string) => (/^\d+$/.test(kv[k] ?? "") ? Number(kv[k]) : NaN);
  const marker: TrialMarker = {
    version: kv.version ?? "",
    previous: kv.previous ?? "",
    exe: kv.exe ?? "",
    starts: num("starts"),
    boots: num("boots"),
    maxStarts: num("max_starts"),
    deadline: num("deadline"),
    trialSeconds: num("trial_seconds"),
    swappedAt: num("swapped_at"),
  };
  if (kv.boot_id && /^\d+(\.\d+)?$/.test(kv.uptime_deadline ?? "")) {
    marker.bootId = kv.boot_id;
    marker.uptimeDeadline = Number(kv.uptime_deadline);
  }
  if (
    !marker.version || [marker.starts, marker.boots, marker.maxStarts, marker.deadline].some(Number.isNaN)
  ) {
    return "corrupt";
  }
  return marker;
}

export function writeMarker(path: string, m: TrialMarker): void {
  writeFileAtomic(
    path,
    formatKeyValues(MARKER_HEADER, {
      version: m.version,
      previous: m.previous,
      exe: m.exe,
      starts: m.starts,
      boots: m.boots,
      max_starts: m.maxStarts,
      deadline: m.deadline,
      trial_seconds: Number.isNaN(m.trialSeconds) ? undefined : m.trialSeconds,
      swapped_at: Number.isNaN(m.swappedAt) ? undefined : m.swappedAt,
      boot_id: m.bootId,
      uptime_deadline: m.uptimeDeadline === undefined ? undefined : Math.ceil(m.uptimeDeadline),
    }),
    0o600,
  );
}

export function readResult(path: string): UpdateResult | undefined {
  const kv = readKeyValues(path);
  if (!kv || !["committed", "rolled-back", "failed"].includes(kv.status)) return undefined;
  return {
    status: kv.status as UpdateOutcome,
    version: kv.version ?? "",
    previous: kv.previous || undefined,
    reason: kv.reason || undefined,
    at: Number(kv.at) || 0,
    by: kv.by ?? "",
  };
}

export function writeResult(path: string, r: UpdateResult): void {
  writeFileAtomic(
    path,
    formatKeyValues("# outpost: the last update's outcome", {
      status: r.status,
      version: r.version,
      previous: r.previous,
      reason: r.reason,
      at: r.at,
      by: r.by,
    }),
    0o600,
  );
}
