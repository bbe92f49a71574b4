/**
 * An update's trial is timed on the boot clock, not the wall clock (SPEC §14): a wall clock that
 * jumps (NTP at boot) neither ends a trial at once nor stretches it; after a reboot the trial's time
 * starts again. Injected clocks, real files.
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import {
  bootCheck,
  readMarker,
  type TrialMarker,
  updatePaths,
  writeMarker,
} from "../../../src/update/mod.ts";
import { createLogger } from "../../../src/telemetry/mod.ts";
import { monotonicWallClock } from "../../../src/core/clock.ts";
import { removeDir, ROOT, tempDir } from "../../helpers/procs.ts";

function layout(marker: Partial<TrialMarker>) {
  const dir = tempDir("outpost-trial-clock-");
  mkdirSync(join(dir, "bin"));
  mkdirSync(join(dir, "data"));
  const paths = updatePaths(join(dir, "bin/outpost"), join(dir, "data"));
  writeFileSync(paths.exe, "NEW", { mode: 0o755 });
  writeFileSync(paths.prev, "OLD", { mode: 0o755 });
  writeMarker(paths.marker, {
    version: "0.0.2",
    previous: "0.0.1",
    exe: paths.exe,
    starts: 0,
    boots: 0,
    maxStarts: 3,
    deadline: 1_000_100,
    trialSeconds: 100,
    swappedAt: 1_000_000,
    ...marker,
  });
  return { dir, paths };
}

const log = createLogger("error", () => {});

Deno.test("the wall clock jumps a year ahead during the boot that wrote the marker: still on trial", () => {
  const { dir, paths } = layout({ bootId: "boot-a", uptimeDeadline: 150 });
  try {
    const jumped = (1_000_000 + 365 * 86_400) * 1000;
    const d = bootCheck(paths, "0.0.2", {
      log,
      now: () => jumped,
      by: "agent",
      boot: () => ({ bootId: "boot-a", uptime: 60 }),
    });
    assert.equal(d.kind, "trial");
  } finally {
    removeDir(dir);
  }
});

Deno.test("the time since boot passes the deadline while the wall clock went back: the trial has failed", () => {
  const { dir, paths } = layout({ bootId: "boot-a", uptimeDeadline: 150 });
  try {
    const d = bootCheck(paths, "0.0.2", {
      log,
      now: () => 0, // 1970: the real-time clock lost
      by: "agent",
      boot: () => ({ bootId: "boot-a", uptime: 151 }),
    });
    assert.equal(d.kind, "rolled-back");
    assert.equal(readFileSync(paths.exe, "utf8"), "OLD");
  } finally {
    removeDir(dir);
  }
});

Deno.test("after a reboot the trial's time starts again from the new boot (the start counts still bound it)", () => {
  const { dir, paths } = layout({ bootId: "boot-a", uptimeDeadline: 150 });
  try {
    const d = bootCheck(paths, "0.0.2", {
      log,
      now: () => 5_000_000_000,
      by: "agent",
      boot: () => ({ bootId: "boot-b", uptime: 20 }),
    });
    assert.equal(d.kind, "trial");
    const m = readMarker(paths.marker) as TrialMarker;
    assert.equal(m.bootId, "boot-b");
    assert.equal(m.uptimeDeadline, 120);
    assert.equal(m.boots, 1);
  } finally {
    removeDir(dir);
  }
});

Deno.test("the pre-start script judges by the time since this boot, not by a wall clock far ahead", () => {
  const bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  const uptime = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
  // A wall-clock deadline long past, but the boot-relative one ahead: still on trial.
  const { dir, paths } = layout({ deadline: 1, bootId, uptimeDeadline: Math.ceil(uptime) + 3_600 });
  try {
    const run = spawnSync("sh", [join(ROOT, "scripts/outpost-prestart.sh"), paths.exe, join(dir, "data")], {
      encoding: "utf8",
    });
    assert.equal(readFileSync(paths.exe, "utf8"), "NEW", run.stdout + run.stderr);
    assert.match(run.stdout + run.stderr, /on trial: start 1 of 3/);
  } finally {
    removeDir(dir);
  }
});

Deno.test("command deadlines run on a clock the wall clock's jumps do not move", () => {
  const clock = monotonicWallClock();
  const real = Date.now;
  const before = clock();
  Date.now = () => real() + 365 * 86_400_000;
  try {
    const after = clock();
    assert.ok(after - before >= 0 && after - before < 1_000, `moved by ${after - before} ms`);
  } finally {
    Date.now = real;
  }
});
