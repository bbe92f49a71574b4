/**
 * Trial bookkeeping, in-process (bootCheck, commit, rollback) and in the pre-start shell script,
 * which shares the marker and result formats: counting starts, rolling back over the limit or
 * after the deadline, stale and corrupt markers, a missing `.prev`. The script runs under every
 * POSIX shell installed here (dash, bash --posix, busybox sh) and must stay shellcheck-clean and
 * identical to the copy install.sh carries.
 */
import assert from "node:assert/strict";
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  bootCheck,
  commitTrial,
  readMarker,
  readResult,
  type TrialMarker,
  updatePaths,
  writeMarker,
} from "../../../src/update/mod.ts";
import { createLogger } from "../../../src/telemetry/mod.ts";
import { removeDir, ROOT, tempDir } from "../../helpers/procs.ts";

const PRESTART = join(ROOT, "scripts/outpost-prestart.sh");
const ctx = { log: createLogger("error", () => {}), now: Date.now, by: "agent" };

function layout(options: { deadlineIn?: number; prev?: boolean } = {}) {
  const dir = tempDir("outpost-trial-");
  mkdirSync(join(dir, "bin"));
  mkdirSync(join(dir, "data"));
  const paths = updatePaths(join(dir, "bin/outpost"), join(dir, "data"));
  writeFileSync(paths.exe, "NEW", { mode: 0o755 });
  if (options.prev !== false) writeFileSync(paths.prev, "OLD", { mode: 0o755 });
  const now = Math.floor(Date.now() / 1000);
  const marker: TrialMarker = {
    version: "0.0.2",
    previous: "0.0.1",
    exe: paths.exe,
    starts: 0,
    boots: 0,
    maxStarts: 3,
    deadline: now + (options.deadlineIn ?? 100),
    trialSeconds: 100,
    swappedAt: now,
  };
  writeMarker(paths.marker, marker);
  return { dir, paths, marker };
}

const read = (path: string) => readFileSync(path, "utf8");

Deno.test("bootCheck counts boots and rolls back on the start after max_starts", () => {
  const { dir, paths } = layout();
  try {
    for (let boot = 1; boot <= 3; boot++) {
      const d = bootCheck(paths, "0.0.2", ctx);
      assert.equal(d.kind, "trial");
      assert.equal((readMarker(paths.marker) as TrialMarker).boots, boot);
    }
    const d = bootCheck(paths, "0.0.2", ctx);
    assert.equal(d.kind, "rolled-back");
    assert.equal(read(paths.exe), "OLD");
    assert.ok(!existsSync(paths.prev) && !existsSync(paths.marker));
    const r = readResult(paths.result)!;
    assert.equal(r.status, "rolled-back");
    assert.equal(r.by, "agent");
    assert.match(r.reason!, /started 3 times without passing its trial/);
  } finally {
    removeDir(dir);
  }
});

Deno.test("bootCheck rolls back once the deadline has passed", () => {
  const { dir, paths } = layout({ deadlineIn: -5 });
  try {
    const d = bootCheck(paths, "0.0.2", ctx);
    assert.equal(d.kind, "rolled-back");
    assert.match((d as { reason: string }).reason, /before the deadline/);
    assert.equal(read(paths.exe), "OLD");
  } finally {
    removeDir(dir);
  }
});

Deno.test("bootCheck: a marker for another version is stale (the swap never happened) and is cleared", () => {
  const { dir, paths } = layout();
  try {
    assert.equal(bootCheck(paths, "0.0.1", ctx).kind, "normal");
    assert.ok(!existsSync(paths.marker));
    assert.equal(read(paths.exe), "NEW", "nothing is renamed");
    const r = readResult(paths.result)!;
    assert.equal(r.status, "failed");
    assert.match(r.reason!, /did not complete/);
  } finally {
    removeDir(dir);
  }
});

Deno.test("bootCheck: without .prev there is nothing to roll back to: recorded, the marker cleared", () => {
  const { dir, paths } = layout({ prev: false, deadlineIn: -5 });
  try {
    assert.equal(bootCheck(paths, "0.0.2", ctx).kind, "normal");
    assert.ok(!existsSync(paths.marker));
    assert.equal(read(paths.exe), "NEW");
    assert.match(readResult(paths.result)!.reason!, /cannot roll back: .*outpost\.prev is missing/);
  } finally {
    removeDir(dir);
  }
});

Deno.test("bootCheck removes a corrupt marker; commitTrial keeps .prev and records the commit", () => {
  const { dir, paths, marker } = layout();
  try {
    writeFileSync(paths.marker, "garbage\n");
    assert.equal(bootCheck(paths, "0.0.2", ctx).kind, "normal");
    assert.ok(!existsSync(paths.marker));
    writeMarker(paths.marker, marker);
    commitTrial(paths, marker, ctx);
    assert.ok(!existsSync(paths.marker) && existsSync(paths.prev));
    assert.equal(readResult(paths.result)!.status, "committed");
  } finally {
    removeDir(dir);
  }
});

// ---------------------------------------------------------------------------------------------
// The pre-start script

function shells(): string[][] {
  const found: string[][] = [];
  const has = (cmd: string) =>
    new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`], stdout: "null", stderr: "null" }).outputSync()
      .code === 0;
  if (has("dash")) found.push(["dash"]);
  if (has("bash")) found.push(["bash", "--posix"]);
  if (has("busybox")) found.push(["busybox", "sh"]);
  if (found.length === 0) found.push(["sh"]);
  return found;
}

function prestart(shell: string[], ...args: string[]) {
  const out = new Deno.Command(shell[0], {
    args: [...shell.slice(1), PRESTART, ...args],
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

for (const shell of shells()) {
  const sh = shell.join(" ");

  Deno.test(`prestart (${sh}): counts starts and rolls back on the start after max_starts`, () => {
    const { dir, paths } = layout();
    try {
      for (let start = 1; start <= 3; start++) {
        const r = prestart(shell, paths.exe, join(dir, "data"));
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, new RegExp(`on trial: start ${start} of 3`));
        assert.equal((readMarker(paths.marker) as TrialMarker).starts, start, "the marker stays readable");
        assert.equal(read(paths.exe), "NEW");
      }
      const r = prestart(shell, paths.exe, join(dir, "data"));
      assert.equal(r.code, 0);
      assert.match(r.stderr, /rolled back to 0\.0\.1: 0\.0\.2 was started 3 times/);
      assert.equal(read(paths.exe), "OLD");
      assert.ok(!existsSync(paths.prev) && !existsSync(paths.marker));
      const result = readResult(paths.result)!;
      assert.deepEqual([result.status, result.version, result.previous, result.by], [
        "rolled-back",
        "0.0.2",
        "0.0.1",
        "prestart",
      ]);
      assert.ok(Math.abs(result.at - Date.now() / 1000) < 60);
      // Nothing on trial: a no-op.
      const idle = prestart(shell, paths.exe, join(dir, "data"));
      assert.deepEqual(idle, { code: 0, stderr: "" });
    } finally {
      removeDir(dir);
    }
  });

  Deno.test(`prestart (${sh}): the deadline, a missing executable, a missing .prev, one file under two names`, () => {
    const late = layout({ deadlineIn: -5 });
    try {
      const r = prestart(shell, late.paths.exe, join(late.dir, "data"));
      assert.match(r.stderr, /did not pass its trial before its deadline/);
      assert.equal(read(late.paths.exe), "OLD");
    } finally {
      removeDir(late.dir);
    }

    const gone = layout();
    try {
      rmSync(gone.paths.exe);
      prestart(shell, gone.paths.exe, join(gone.dir, "data"));
      assert.equal(read(gone.paths.exe), "OLD", "a missing executable is restored from .prev");
    } finally {
      removeDir(gone.dir);
    }

    const noPrev = layout({ prev: false, deadlineIn: -5 });
    try {
      const r = prestart(shell, noPrev.paths.exe, join(noPrev.dir, "data"));
      assert.equal(r.code, 0);
      assert.match(r.stderr, /cannot roll back/);
      assert.ok(!existsSync(noPrev.paths.marker));
      assert.equal(readResult(noPrev.paths.result)!.status, "failed");
      assert.equal(read(noPrev.paths.exe), "NEW");
    } finally {
      removeDir(noPrev.dir);
    }

    // kill -9 between saving .prev (a hard link) and the rename: the executable already is the
    // previous binary. mv would refuse two names of one file; the script must still converge.
    const linked = layout({ prev: false, deadlineIn: -5 });
    try {
      linkSync(linked.paths.exe, linked.paths.prev);
      const r = prestart(shell, linked.paths.exe, join(linked.dir, "data"));
      assert.equal(r.code, 0, r.stderr);
      assert.ok(!existsSync(linked.paths.marker) && !existsSync(linked.paths.prev));
      assert.equal(readResult(linked.paths.result)!.status, "rolled-back");
    } finally {
      removeDir(linked.dir);
    }

    const corrupt = layout();
    try {
      writeFileSync(corrupt.paths.marker, "starts=x\n");
      const r = prestart(shell, corrupt.paths.exe, join(corrupt.dir, "data"));
      assert.equal(r.code, 0);
      assert.match(r.stderr, /unreadable: removing it/);
      assert.ok(!existsSync(corrupt.paths.marker));
    } finally {
      removeDir(corrupt.dir);
    }

    assert.equal(prestart(shell).code, 2, "bad usage is exit 2");
  });
}

Deno.test("the pre-start script is shellcheck-clean and install.sh carries an identical copy", () => {
  const check = new Deno.Command("shellcheck", { args: [PRESTART], stdout: "piped", stderr: "piped" })
    .outputSync();
  assert.equal(check.code, 0, new TextDecoder().decode(check.stdout));
  const install = read(join(ROOT, "install.sh"));
  const start = install.indexOf("cat <<'OUTPOST_PRESTART_EOF'\n") + "cat <<'OUTPOST_PRESTART_EOF'\n".length;
  const end = install.indexOf("OUTPOST_PRESTART_EOF\n", start);
  assert.ok(start > 100 && end > start, "install.sh has the OUTPOST_PRESTART_EOF here-document");
  assert.equal(
    install.slice(start, end),
    read(PRESTART),
    "install.sh's copy differs from scripts/outpost-prestart.sh: paste the script between its " +
      "OUTPOST_PRESTART_EOF lines",
  );
});
