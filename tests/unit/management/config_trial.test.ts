/**
 * A pushed config on trial, at each point a crash can stop it: the start-up check always leaves a
 * whole config file in place and a definite outcome.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  configBootCheck,
  configTrialPaths,
  readConfigMarker,
  readConfigResult,
  rollbackConfig,
  stageConfig,
} from "../../../src/management/mod.ts";
import { createLogger } from "../../../src/telemetry/mod.ts";
import { removeDir, tempDir } from "../../helpers/procs.ts";

const log = createLogger("error", () => {});
const OLD = '{"edgeId": "old"}\n';
const NEW = '{"edgeId": "new"}\n';

function fixture() {
  const dir = tempDir();
  const path = join(dir, "outpost.json");
  writeFileSync(path, OLD, { mode: 0o600 });
  return { dir, paths: configTrialPaths(path) };
}

const stage = (paths: ReturnType<typeof configTrialPaths>, pauseAt?: string) =>
  stageConfig(paths, {
    op: "op-1",
    text: NEW,
    trialSeconds: 60,
    maxStarts: 2,
    now: Date.now(),
    pause: pauseAt
      ? (step) => (step === pauseAt ? Promise.reject(new Error("killed")) : Promise.resolve())
      : undefined,
  });

Deno.test("staged: .prev, the marker and the new file, all 0600; each start is counted; past maxStarts it rolls back", async () => {
  const { dir, paths } = fixture();
  try {
    await stage(paths);
    assert.equal(readFileSync(paths.config, "utf8"), NEW);
    assert.equal(readFileSync(paths.prev, "utf8"), OLD);
    for (const f of [paths.config, paths.prev, paths.marker]) {
      assert.equal(statSync(f).mode & 0o777, 0o600, f);
    }
    assert.equal(configBootCheck(paths, log).kind, "trial");
    assert.equal(configBootCheck(paths, log).kind, "trial");
    const third = configBootCheck(paths, log);
    assert.equal(third.kind, "rolled-back");
    assert.equal(readFileSync(paths.config, "utf8"), OLD);
    assert.ok(!existsSync(paths.marker));
    const result = readConfigResult(paths)!;
    assert.equal(result.status, "failed");
    assert.match(result.reason!, /^rolled back: the agent started 2 times on it/);
    assert.equal(configBootCheck(paths, log).kind, "normal");
  } finally {
    removeDir(dir);
  }
});

Deno.test("killed after .prev or after the marker: the old file stays and the change is failed", async () => {
  for (const step of ["prev", "marker"]) {
    const { dir, paths } = fixture();
    try {
      await assert.rejects(stage(paths, step));
      const boot = configBootCheck(paths, log);
      assert.equal(readFileSync(paths.config, "utf8"), OLD, step);
      assert.ok(!existsSync(paths.marker), step);
      if (step === "marker") {
        assert.equal(boot.kind, "rolled-back");
        assert.match(
          readConfigResult(paths)!.reason!,
          /^interrupted before the new configuration was in place/,
        );
      } else assert.equal(boot.kind, "normal");
    } finally {
      removeDir(dir);
    }
  }
});

Deno.test("killed during a rollback after its outcome was recorded: the next start finishes it", async () => {
  const { dir, paths } = fixture();
  try {
    await stage(paths);
    const marker = readConfigMarker(paths);
    assert.ok(marker && marker !== "corrupt");
    // The outcome written, the rename not yet done: as a kill -9 between the two leaves it.
    writeFileSync(
      paths.result,
      JSON.stringify({ op: "op-1", status: "failed", reason: "rolled back: x", at: 1 }),
    );
    const boot = configBootCheck(paths, log);
    assert.deepEqual(boot, { kind: "rolled-back", reason: "rolled back: x" });
    assert.equal(readFileSync(paths.config, "utf8"), OLD);
    assert.ok(!existsSync(paths.marker));
    // A full rollback keeps .prev for the operator.
    await stage(paths);
    rollbackConfig(paths, readConfigMarker(paths) as never, "test", Date.now(), log);
    assert.equal(readFileSync(paths.config, "utf8"), OLD);
    assert.equal(readFileSync(paths.prev, "utf8"), OLD);
  } finally {
    removeDir(dir);
  }
});

Deno.test("an unreadable marker is removed and the file in place runs", () => {
  const { dir, paths } = fixture();
  try {
    writeFileSync(paths.marker, "{not json");
    assert.equal(configBootCheck(paths, log).kind, "normal");
    assert.ok(!existsSync(paths.marker));
  } finally {
    removeDir(dir);
  }
});
