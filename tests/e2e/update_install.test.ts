/**
 * install.sh's part in self-update: it installs the pre-start check (identical to
 * scripts/outpost-prestart.sh) and the unit runs it as `ExecStartPre=` with the executable and the
 * data folder, so that a new binary that cannot start is rolled back before systemd starts it.
 * The release is a shell-script stand-in (install.sh only runs its --version and init), so this
 * runs in a second; install_script.test.ts covers the installer with real binaries.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { removeDir, ROOT, tempDir } from "../helpers/procs.ts";
import { readResult, updatePaths, writeMarker } from "../../src/update/mod.ts";
import { opts, ReleaseServer } from "./update_helpers.ts";

const FAKE = `#!/bin/sh
case "$1" in
  --version) echo "outpost 1.0.0"; echo "sh linux-x64" ;;
  init) shift; while [ "$#" -gt 0 ]; do [ "$1" = --config ] && printf '{}\\n' >"$2"; shift; done ;;
esac
`;

Deno.test({
  ...opts,
  ignore: Deno.uid() !== 0,
  name: "install.sh installs the pre-start check and the unit runs it before the binary (ExecStartPre=)",
  fn: async () => {
    const root = tempDir("outpost-update-install-");
    const server = await new ReleaseServer().start();
    try {
      const sha = createHash("sha256").update(FAKE).digest("hex");
      server.put("/1.0.0/outpost-linux-x64", FAKE);
      server.put("/1.0.0/SHA256SUMS", `${sha}  outpost-linux-x64\n`);
      const l = {
        bin: join(root, "usr/local/bin"),
        config: join(root, "etc/outpost"),
        data: join(root, "var/lib/outpost"),
        unit: join(root, "etc/systemd/system"),
      };
      const env = {
        OUTPOST_BASE_URL: server.url(""),
        OUTPOST_ARCH: "x86_64",
        OUTPOST_LIBC: "glibc",
        OUTPOST_BIN_DIR: l.bin,
        OUTPOST_CONFIG_DIR: l.config,
        OUTPOST_DATA_DIR: l.data,
        OUTPOST_UNIT_DIR: l.unit,
        OUTPOST_NO_SYSTEMD: "1",
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      };
      const run = await new Deno.Command("sh", {
        args: [join(ROOT, "install.sh"), "--version", "1.0.0"],
        env,
        clearEnv: true,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const out = new TextDecoder().decode(run.stdout) + new TextDecoder().decode(run.stderr);
      assert.equal(run.code, 0, out);
      const prestart = join(root, "usr/local/lib/outpost/outpost-prestart");
      assert.match(out, new RegExp(`installed the update pre-start check ${prestart}`));
      assert.equal(
        readFileSync(prestart, "utf8"),
        readFileSync(join(ROOT, "scripts/outpost-prestart.sh"), "utf8"),
      );
      assert.equal(statSync(prestart).mode & 0o777, 0o755);

      const unit = readFileSync(join(l.unit, "outpost.service"), "utf8").split("\n");
      const exe = join(l.bin, "outpost");
      const pre = unit.find((line) => line.startsWith("ExecStartPre="));
      assert.equal(pre, `ExecStartPre=${prestart} ${exe} ${l.data}`);
      assert.ok(unit.indexOf(pre!) < unit.findIndex((line) => line.startsWith("ExecStart=")));
      for (const line of ["SuccessExitStatus=75", "RestartForceExitStatus=75", "Restart=always"]) {
        assert.ok(unit.includes(line), `the unit has ${line}`);
      }

      // Run the unit's ExecStartPre= as systemd would, with a failed trial on record.
      const paths = updatePaths(exe, l.data);
      writeFileSync(paths.prev, FAKE.replace("1.0.0", "0.9.0"), { mode: 0o755 });
      writeMarker(paths.marker, {
        version: "1.0.0",
        previous: "0.9.0",
        exe,
        starts: 3,
        boots: 3,
        maxStarts: 3,
        deadline: Math.floor(Date.now() / 1000) + 100,
        trialSeconds: 100,
        swappedAt: Math.floor(Date.now() / 1000),
      });
      const [cmd, ...args] = pre!.slice("ExecStartPre=".length).split(" ");
      const ran = await new Deno.Command(cmd, { args, stderr: "piped" }).output();
      assert.equal(ran.code, 0);
      assert.match(readFileSync(exe, "utf8"), /outpost 0\.9\.0/, "the previous binary is back");
      assert.equal(readResult(paths.result)?.status, "rolled-back");

      const un = await new Deno.Command("sh", {
        args: [join(ROOT, "install.sh"), "--uninstall"],
        env,
        clearEnv: true,
        stdout: "piped",
      }).output();
      assert.equal(un.code, 0);
      assert.ok(
        !existsSync(prestart) && !existsSync(join(root, "usr/local/lib/outpost")),
        "uninstall removes it",
      );
    } finally {
      await server.close();
      removeDir(root);
    }
  },
});
