/**
 * install.sh against a loopback HTTP server that serves freshly built binaries as a release
 * site does (`<base>/<version>/outpost-linux-<arch>`, `<base>/<version>/SHA256SUMS`). Every
 * location is moved into a temporary folder through the documented environment variables and
 * OUTPOST_NO_SYSTEMD=1 keeps systemctl out of it; the unit file's content is checked instead.
 *
 * Served versions: 1.0.0 (x64, arm64 and the armv7 archive; `OUTPOST_TEST_REUSE_DIST=1` serves
 * dist/ under that name instead), 1.1.0 (x64 and armv7, also served as `latest`), 6.6.6 (a
 * tampered x64 binary and armv7 archive), 4.0.4 (missing), and the x64 binary with its compressed
 * form (`--compress`): 2.0.0 (both), 2.0.1 (a tampered .xz), 2.0.2 (the .xz listed in SHA256SUMS
 * but not on the server) and 2.0.3 (no .xz at all). shellcheck, qemu-aarch64-static,
 * qemu-arm-static and the arm64 and armhf sysroots are required.
 */
import assert from "node:assert/strict";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { freePort, isConnectivityEvent, removeDir, ROOT, startProcess, tempDir } from "../helpers/procs.ts";
import {
  armhfNode,
  buildDist,
  type Dist,
  elfMachine,
  qemuPrefix,
  requireTool,
  reuseDist,
  runBuild,
  sha256Hex,
} from "./build_dist.ts";

const INSTALL_SH = join(ROOT, "install.sh");
const ARMV7 = "outpost-linux-armv7.tar.gz";
const IS_ROOT = Deno.uid() === 0;
const work = tempDir("outpost-install-test-");
const opts = { sanitizeResources: false, sanitizeOps: false };

// ---------------------------------------------------------------------------------------------
// The release site

interface Site {
  base: string;
  v1: string;
  v2: string;
  /** The x64 binary published with its .xz (2.0.0): its sha256, and the .xz's. */
  compressed: { version: string; sha256: string; xzSha256: string };
  requests: string[];
  close(): Promise<void>;
}

let sitePromise: Promise<Site> | undefined;

function site(): Promise<Site> {
  sitePromise ??= (async () => {
    const srv = join(work, "srv");
    const d1: Dist = reuseDist() ??
      await buildDist({ outdir: join(work, "v1"), targets: "all", version: "1.0.0" });
    const v2 = "1.1.0";
    const d2 = await buildDist({ outdir: join(work, "v2"), targets: "linux-x64", version: v2 });
    const publish = (version: string, d: Dist) => {
      mkdirSync(join(srv, version), { recursive: true });
      for (const f of [...Object.values(d.binaries), join(d.dir, "SHA256SUMS")]) {
        copyFileSync(f, join(srv, version, f.split("/").pop()!));
      }
    };
    publish(d1.version, d1);
    publish(v2, d2);
    publish("latest", d2);
    // 6.6.6: SHA256SUMS is right, the binary has one byte changed (a corrupted or forged file).
    publish("6.6.6", d2);
    // The armv7 archive of 1.1.0 (1.0.0's is in the release set), its line added to each SHA256SUMS.
    const armv7: [string, string[]][] = [[v2, [v2, "latest", "6.6.6"]]];
    if (!d1.binaries["linux-armv7"]) armv7.push([d1.version, [d1.version]]);
    for (const [version, folders] of armv7) {
      const out = join(work, `armv7-${version}`);
      const b = await runBuild(["--target", "linux-armv7", "--version", version, "--outdir", out]);
      if (b.code !== 0) throw new Error(`armv7 build failed:\n${b.stdout}${b.stderr}`);
      const line = readFileSync(join(out, "SHA256SUMS"), "utf8");
      for (const folder of folders) {
        copyFileSync(join(out, ARMV7), join(srv, folder, ARMV7));
        Deno.writeTextFileSync(join(srv, folder, "SHA256SUMS"), line, { append: true });
      }
    }
    // The compressed form, as `npm run build -- --compress` makes it (a fast preset: the format is
    // the release's, only the ratio differs).
    const vx = "2.0.0";
    const outx = join(work, `x64-${vx}`);
    const bx = await runBuild([
      "--target",
      "linux-x64",
      "--version",
      vx,
      "--outdir",
      outx,
      "--compress",
      "--xz-preset",
      "0",
    ]);
    if (bx.code !== 0) throw new Error(`compressed build failed:\n${bx.stdout}${bx.stderr}`);
    for (
      const [folder, files] of [
        ["2.0.0", ["outpost-linux-x64", "outpost-linux-x64.xz"]],
        ["2.0.1", ["outpost-linux-x64", "outpost-linux-x64.xz"]],
        ["2.0.2", ["outpost-linux-x64"]],
      ] as const
    ) {
      mkdirSync(join(srv, folder), { recursive: true });
      for (const f of [...files, "SHA256SUMS"]) copyFileSync(join(outx, f), join(srv, folder, f));
    }
    mkdirSync(join(srv, "2.0.3"), { recursive: true });
    copyFileSync(join(outx, "outpost-linux-x64"), join(srv, "2.0.3/outpost-linux-x64"));
    Deno.writeTextFileSync(
      join(srv, "2.0.3/SHA256SUMS"),
      readFileSync(join(outx, "SHA256SUMS"), "utf8").split("\n").filter((l) => !l.endsWith(".xz")).join("\n"),
    );
    {
      const tampered = join(srv, "2.0.1/outpost-linux-x64.xz");
      const bytes = Deno.readFileSync(tampered);
      bytes[Math.floor(bytes.length / 2)] ^= 0xff;
      Deno.writeFileSync(tampered, bytes);
    }
    const compressed = {
      version: vx,
      sha256: await sha256Hex(join(outx, "outpost-linux-x64")),
      xzSha256: await sha256Hex(join(outx, "outpost-linux-x64.xz")),
    };
    copyFileSync(INSTALL_SH, join(srv, "install.sh"));
    for (const name of ["outpost-linux-x64", ARMV7]) {
      const tampered = join(srv, "6.6.6", name);
      const bytes = Deno.readFileSync(tampered);
      bytes[bytes.length - 100] ^= 0xff;
      Deno.writeFileSync(tampered, bytes);
    }

    const requests: string[] = [];
    const listening = Promise.withResolvers<number>();
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen: ({ port }) => listening.resolve(port),
    }, async (req) => {
      const path = decodeURIComponent(new URL(req.url).pathname);
      requests.push(path);
      const file = join(srv, path);
      if (path.includes("..") || !existsSync(file) || !statSync(file).isFile()) {
        return new Response("not found\n", { status: 404 });
      }
      return new Response(await Deno.readFile(file));
    });
    const port = await listening.promise;
    return {
      base: `http://127.0.0.1:${port}`,
      v1: d1.version,
      v2,
      compressed,
      requests,
      close: () => server.shutdown(),
    };
  })();
  return sitePromise;
}

// ---------------------------------------------------------------------------------------------
// Running install.sh

interface Layout {
  root: string;
  bin: string;
  binDir: string;
  configDir: string;
  config: string;
  dataDir: string;
  unitDir: string;
  unit: string;
}

function layout(root: string): Layout {
  mkdirSync(root, { recursive: true });
  const binDir = join(root, "usr/local/bin");
  const configDir = join(root, "etc/outpost");
  const unitDir = join(root, "etc/systemd/system");
  return {
    root,
    bin: join(binDir, "outpost"),
    binDir,
    configDir,
    config: join(configDir, "config.json"),
    dataDir: join(root, "var/lib/outpost"),
    unitDir,
    unit: join(unitDir, "outpost.service"),
  };
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function install(
  l: Layout,
  args: string[] = [],
  env: Record<string, string> = {},
  options: { script?: string; user?: number } = {},
): Promise<Run> {
  const s = await site();
  const tmp = join(l.root, "tmp");
  mkdirSync(tmp, { recursive: true });
  const fullEnv: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin",
    HOME: join(l.root, "home"),
    TMPDIR: tmp,
    OUTPOST_BASE_URL: s.base,
    OUTPOST_BIN_DIR: l.binDir,
    OUTPOST_CONFIG_DIR: l.configDir,
    OUTPOST_DATA_DIR: l.dataDir,
    OUTPOST_UNIT_DIR: l.unitDir,
    OUTPOST_NO_SYSTEMD: "1",
    ...env,
  };
  for (const [k, v] of Object.entries(fullEnv)) if (v === "") delete fullEnv[k];
  let cmd = "sh";
  let cmdArgs = options.script === "-c" ? args : [options.script ?? INSTALL_SH, ...args];
  if (options.user !== undefined) {
    cmd = "setpriv";
    cmdArgs = [
      "--reuid",
      String(options.user),
      "--regid",
      String(options.user),
      "--clear-groups",
      "sh",
      ...cmdArgs,
    ];
  }
  const out = await new Deno.Command(cmd, {
    args: cmdArgs,
    env: fullEnv,
    clearEnv: true,
    cwd: l.root,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const run = {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
  if (Deno.env.get("OUTPOST_TEST_VERBOSE")) {
    console.error(`install.sh ${args.join(" ")} → ${run.code}\n${run.stdout}${run.stderr}`);
  }
  return run;
}

async function versionOf(binary: string, prefix: string[] = []): Promise<string[]> {
  const cmd = [...prefix, binary, "--version"];
  const out = await new Deno.Command(cmd[0], { args: cmd.slice(1), stdout: "piped", stderr: "piped" })
    .output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).trimEnd().split("\n");
}

const mode = (path: string) => statSync(path).mode & 0o777;

/** Starts the installed binary with its written config (ports moved), checks /healthz and ingest. */
async function runInstalled(l: Layout, prefix: string[] = [], env: Record<string, string> = {}) {
  const config = JSON.parse(readFileSync(l.config, "utf8"));
  const apiPort = await freePort();
  config.api.listen = `127.0.0.1:${apiPort}`;
  config.mqtt.broker.listen = `127.0.0.1:${await freePort()}`;
  writeFileSync(l.config, JSON.stringify(config, null, 2), { mode: 0o600 });
  const proc = startProcess([...prefix, l.bin, "run", "--config", l.config], { cwd: l.root, env });
  try {
    await proc.waitForEvent("agent.started", 60_000);
    assert.equal((await fetch(`http://127.0.0.1:${apiPort}/healthz`)).status, 200);
    const post = await fetch(`http://127.0.0.1:${apiPort}/api/v1/devices/pump-7/telemetry`, {
      method: "POST",
      headers: { authorization: `Bearer ${config.api.token}`, "content-type": "application/json" },
      body: JSON.stringify({ rpm: 1450 }),
    });
    const answer = await post.text();
    assert.equal(post.status, 202, answer);
    const outbox = await (await fetch(`http://127.0.0.1:${apiPort}/api/v1/outbox`, {
      headers: { authorization: `Bearer ${config.api.token}` },
    })).json();
    assert.deepEqual(
      outbox.records.filter((r: Record<string, unknown>) => !isConnectivityEvent(r)).map((r: any) =>
        r.payload
      ),
      [{ rpm: 1450 }],
    );
    assert.ok(
      existsSync(join(l.dataDir, "outbox.db")),
      "the agent keeps its outbox in the installed data folder",
    );
  } finally {
    assert.equal(await proc.kill("SIGTERM"), 0, "SIGTERM drains and exits 0");
  }
}

function assertUnit(l: Layout) {
  const unit = readFileSync(l.unit, "utf8");
  const lines = new Set(unit.split("\n"));
  for (
    const line of [
      "[Unit]",
      "[Service]",
      `ExecStart=${l.bin} run --config ${l.config}`,
      "Restart=always",
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      `ReadWritePaths=${l.dataDir} ${l.binDir}`,
      "PrivateTmp=yes",
      "ProtectHome=read-only",
      "[Install]",
      "WantedBy=multi-user.target",
    ]
  ) {
    assert.ok(lines.has(line), `the unit has the line ${line}:\n${unit}`);
  }
  assert.ok(!/^MemoryDenyWriteExecute=yes/m.test(unit), "the JIT needs W^X off: no MemoryDenyWriteExecute");
  assert.equal(mode(l.unit), 0o644);
}

/** `systemd-analyze verify` when it exists (the unit's syntax and directives). */
async function verifyUnit(l: Layout) {
  const which = await new Deno.Command("sh", { args: ["-c", "command -v systemd-analyze"], stdout: "null" })
    .output();
  if (which.code !== 0) {
    console.warn("systemd-analyze is not installed: the unit's syntax was not verified");
    return;
  }
  const out = await new Deno.Command("systemd-analyze", {
    args: ["verify", l.unit],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, text);
  assert.equal(text.trim(), "", `systemd-analyze verify has remarks:\n${text}`);
}

/** The folder's files (recursively), with their sha256, for "nothing changed" checks. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return out;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    out[path.slice(dir.length)] = `${mode(path).toString(8)} ${await sha256Hex(path)}`;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tests

Deno.test({
  ...opts,
  name: "install.sh passes shellcheck and parses as POSIX sh (dash)",
  fn: async () => {
    const shellcheck = requireTool(
      "shellcheck",
      "install it (sh scripts/setup.sh does: apt-get install shellcheck)",
    );
    const check = await new Deno.Command(shellcheck, { args: ["-s", "sh", INSTALL_SH], stdout: "piped" })
      .output();
    assert.equal(check.code, 0, new TextDecoder().decode(check.stdout));
    const dash = await new Deno.Command("sh", { args: ["-n", INSTALL_SH] }).output();
    assert.equal(dash.code, 0);
    assert.match(readFileSync(INSTALL_SH, "utf8"), /^#!\/bin\/sh\n[\s\S]*^set -eu$/m);
  },
});

Deno.test({
  ...opts,
  name:
    "the one-liner works (curl -fsSL <base>/install.sh | sh -s -- …), and a script cut short runs nothing",
  fn: async () => {
    const s = await site();
    const l = layout(join(work, "one-liner"));
    const r = await install(
      l,
      ["-c", `curl -fsSL ${s.base}/install.sh | sh -s -- --version ${s.v2} --no-service`],
      {},
      {
        script: "-c",
      },
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal((await versionOf(l.bin))[0], `outpost ${s.v2}`);
    assert.ok(existsSync(l.config) && !existsSync(l.unit));

    // A download that stops anywhere before the last line defines functions and runs nothing.
    const text = readFileSync(INSTALL_SH, "utf8");
    const cut = join(l.root, "cut.sh");
    const l2 = layout(join(work, "cut"));
    for (const at of [0.25, 0.5, 0.75, 0.98]) {
      writeFileSync(cut, text.slice(0, Math.floor(text.length * at)));
      const partial = await install(l2, ["--purge"], {}, { script: cut });
      assert.equal(partial.stdout, "", `cut at ${at}: no output`);
      assert.ok(!existsSync(l2.binDir), `cut at ${at}: nothing installed`);
    }
  },
});

Deno.test({
  ...opts,
  name: "--help lists the options and environment; an unknown option is exit 2",
  fn: async () => {
    const l = layout(join(work, "help"));
    const help = await install(l, ["--help"]);
    assert.equal(help.code, 0);
    for (
      const word of [
        "--version",
        "--prefix",
        "--no-service",
        "--uninstall",
        "--purge",
        "OUTPOST_BASE_URL",
        "OUTPOST_VERSION",
        "OUTPOST_ARCH",
        "OUTPOST_BIN_DIR",
        "OUTPOST_CONFIG_DIR",
        "OUTPOST_DATA_DIR",
        "OUTPOST_UNIT_DIR",
        "OUTPOST_NO_SYSTEMD",
      ]
    ) assert.ok(help.stdout.includes(word), `--help mentions ${word}`);
    const bad = await install(l, ["--frobnicate"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unknown option "--frobnicate"/);
  },
});

Deno.test({
  ...opts,
  ignore: !IS_ROOT,
  name: "as root: install, upgrade in place, refuse a bad checksum or a failed download, uninstall, purge",
  fn: async (t) => {
    const s = await site();
    const l = layout(join(work, "root"));

    await t.step(
      "installs the binary, a 0600 config, the data folder and the unit; prints what it did",
      async () => {
        const r = await install(l, ["--version", s.v1]);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.equal(mode(l.bin), 0o755);
        assert.deepEqual((await versionOf(l.bin))[0], `outpost ${s.v1}`);
        assert.equal(mode(l.config), 0o600, "the config holds the API token: 0600");
        const config = JSON.parse(readFileSync(l.config, "utf8"));
        assert.ok(typeof config.api.token === "string" && config.api.token.length >= 16);
        assert.equal(config.dataDir, l.dataDir);
        assert.equal(mode(l.dataDir), 0o700);
        assertUnit(l);
        await verifyUnit(l);
        assert.match(r.stdout, new RegExp(`installed ${l.bin} \\(version ${s.v1.replaceAll(".", "\\.")}\\)`));
        assert.match(r.stdout, /wrote .*config\.json \(mode 0600/);
        assert.match(r.stdout, /wrote the systemd unit/);
        assert.match(r.stdout, /systemd is not running here/);
        assert.ok(r.stdout.includes(`${l.bin} run --config ${l.config}`), "says how to run the agent");
        assert.deepEqual(readdirSync(l.binDir), ["outpost"], "no temporary file is left beside the binary");
        assert.ok(
          s.requests.includes(`/${s.v1}/SHA256SUMS`) && s.requests.includes(`/${s.v1}/outpost-linux-x64`),
        );
      },
    );

    await t.step("the installed binary runs with the config it wrote", async () => {
      await runInstalled(l);
    });

    await t.step(
      "a re-run upgrades in place (to latest) and keeps an edited config and the data",
      async () => {
        const config = JSON.parse(readFileSync(l.config, "utf8"));
        config.edgeId = "edited-gw";
        config.log = { level: "debug" };
        writeFileSync(l.config, JSON.stringify(config, null, 2), { mode: 0o600 });
        const before = readFileSync(l.config, "utf8");
        writeFileSync(join(l.dataDir, "marker"), "keep me");
        const dataBefore = await snapshot(l.dataDir);
        const r = await install(l, [], { OUTPOST_VERSION: "" });
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.ok(s.requests.includes("/latest/outpost-linux-x64"), "no version means latest");
        assert.equal((await versionOf(l.bin))[0], `outpost ${s.v2}`);
        assert.match(
          r.stdout,
          new RegExp(`upgraded ${l.bin} from ${s.v1} to ${s.v2}`.replaceAll(".", "\\.")),
        );
        assert.match(r.stdout, /kept the existing config/);
        assert.equal(readFileSync(l.config, "utf8"), before, "the edited config is untouched");
        assert.equal(mode(l.config), 0o600);
        assert.deepEqual(await snapshot(l.dataDir), dataBefore, "the data is untouched");
        assert.deepEqual(readdirSync(l.binDir), ["outpost"]);
      },
    );

    await t.step("a checksum mismatch is refused and changes nothing", async () => {
      const before = await snapshot(l.root);
      const r = await install(l, ["--version", "6.6.6"]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /checksum mismatch for outpost-linux-x64/);
      assert.match(r.stderr, /Nothing was installed/);
      assert.deepEqual(await snapshot(l.root), before, "no file changed, none was added");
      assert.equal((await versionOf(l.bin))[0], `outpost ${s.v2}`);
    });

    await t.step("a failed download says which URL failed and changes nothing", async () => {
      const before = await snapshot(l.root);
      const r = await install(l, ["--version", "4.0.4"]);
      assert.equal(r.code, 1);
      assert.ok(r.stderr.includes(`download of ${s.base}/4.0.4/SHA256SUMS failed`), r.stderr);
      assert.deepEqual(await snapshot(l.root), before);
    });

    await t.step("--uninstall removes the binary and the unit, keeps config and data", async () => {
      const r = await install(l, ["--uninstall"]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.ok(!existsSync(l.bin) && !existsSync(l.unit));
      assert.ok(existsSync(l.config) && existsSync(join(l.dataDir, "marker")));
      assert.match(r.stdout, /removed .*outpost\.service/);
      assert.match(r.stdout, /Kept your config and data/);
    });

    await t.step("--purge removes config and data as well", async () => {
      const r = await install(l, ["--purge"]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.ok(!existsSync(l.config) && !existsSync(l.dataDir));
      assert.match(r.stdout, /removed .*var\/lib\/outpost \(all stored data\)/);
      const again = await install(l, ["--uninstall"]);
      assert.equal(again.code, 0);
      assert.match(again.stdout, /not installed here/);
    });
  },
});

Deno.test({
  ...opts,
  ignore: !IS_ROOT,
  name: "the arm64 path: OUTPOST_ARCH=aarch64 installs outpost-linux-arm64, which then runs under qemu",
  fn: async () => {
    const s = await site();
    const prefix = qemuPrefix();
    const l = layout(join(work, "arm64"));
    const r = await install(l, ["--version", s.v1], {
      OUTPOST_ARCH: "aarch64",
      OUTPOST_EXEC_WRAPPER: prefix.join(" "),
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /for linux-arm64/);
    assert.ok(s.requests.includes(`/${s.v1}/outpost-linux-arm64`));
    assert.equal(elfMachine(l.bin), "aarch64");
    const [first, second] = await versionOf(l.bin, prefix);
    assert.equal(first, `outpost ${s.v1}`);
    assert.match(second, /linux-arm64$/);
    assert.equal(mode(l.config), 0o600, "the config was written by the arm64 binary's init");
    assertUnit(l);
    assert.ok(!readFileSync(l.unit, "utf8").includes("qemu"), "the unit runs the binary itself");
    await runInstalled(l, prefix);
  },
});

Deno.test({
  ...opts,
  ignore: !IS_ROOT,
  name:
    "the armv7 path: OUTPOST_ARCH=armv7l asks for Node.js 20 first, installs the archive (checked, unpacked, " +
    "a link to its launcher) that then runs with an armv7l node under qemu, upgrades, refuses a tampered " +
    "archive changing nothing, and uninstalls the bundles",
  fn: async () => {
    const s = await site();
    const l = layout(join(work, "armv7"));
    const armNode = armhfNode(l.root);
    const env = { OUTPOST_ARCH: "armv7l", OUTPOST_NODE: armNode };

    // No node, or one too old: refused before anything is downloaded or created.
    const before = s.requests.length;
    const none = await install(l, ["--version", s.v1], { ...env, OUTPOST_NODE: join(l.root, "no-node") });
    assert.equal(none.code, 1);
    assert.match(none.stderr, /runs on Node\.js 20 or newer, and ".*no-node" was not found/);
    const old = join(l.root, "node18");
    writeFileSync(old, '#!/bin/sh\ncase "$1" in -e) printf 18 ;; --version) echo v18.19.0 ;; esac\n', {
      mode: 0o755,
    });
    const tooOld = await install(l, ["--version", s.v1], { ...env, OUTPOST_NODE: old });
    assert.equal(tooOld.code, 1);
    assert.match(tooOld.stderr, /needs Node\.js 20 or newer; .*node18 is v18\.19\.0/);
    assert.equal(s.requests.length, before, "nothing downloaded");
    assert.ok(!existsSync(l.binDir), "nothing created");

    const r = await install(l, ["--version", s.v1], env);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /for linux-armv7/);
    assert.ok(s.requests.includes(`/${s.v1}/${ARMV7}`));
    const releases = join(l.root, "usr/local/lib/outpost/releases");
    const [first] = readdirSync(releases);
    assert.equal(Deno.readLinkSync(l.bin), join(releases, first, "outpost"));
    assert.equal(elfMachine(join(releases, first, "libsql/index.node")), "arm");
    const unit = readFileSync(l.unit, "utf8");
    assert.ok(unit.includes(`\nEnvironment=OUTPOST_NODE=${armNode}\n`), unit);
    assert.ok(
      unit.includes(`\nReadWritePaths=${l.dataDir} ${l.binDir} ${join(l.root, "usr/local/lib/outpost")}\n`),
    );
    assert.equal(mode(l.config), 0o600, "the config was written by the armv7 bundle's init");
    const run = (args: string[]) =>
      new Deno.Command(l.bin, { args, env: { OUTPOST_NODE: armNode }, stdout: "piped", stderr: "piped" })
        .output();
    const v1 = new TextDecoder().decode((await run(["--version"])).stdout);
    assert.match(
      v1,
      new RegExp(`^outpost ${s.v1.replaceAll(".", "\\.")}\nnode v20\\.\\d+\\.\\d+ linux-armv7\n$`),
    );
    await runInstalled(l, [], { OUTPOST_NODE: armNode });

    // A tampered archive: refused, nothing changed.
    const kept = await snapshot(l.root);
    const link = Deno.readLinkSync(l.bin);
    const bad = await install(l, ["--version", "6.6.6"], env);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /checksum mismatch for outpost-linux-armv7\.tar\.gz.*Nothing was installed/);
    assert.deepEqual(await snapshot(l.root), kept);
    assert.equal(Deno.readLinkSync(l.bin), link);

    // Upgrade: a new folder, the link moved, the old folder removed.
    const up = await install(l, ["--version", s.v2], env);
    assert.equal(up.code, 0, up.stdout + up.stderr);
    assert.match(
      up.stdout,
      new RegExp(`upgraded .* from ${s.v1.replaceAll(".", "\\.")} to ${s.v2.replaceAll(".", "\\.")}`),
    );
    const after = readdirSync(releases);
    assert.equal(after.length, 1);
    assert.notEqual(after[0], first);
    assert.equal(Deno.readLinkSync(l.bin), join(releases, after[0], "outpost"));
    assert.match(new TextDecoder().decode((await run(["--version"])).stdout), new RegExp(`^outpost ${s.v2}`));

    const un = await install(l, ["--uninstall"], env);
    assert.equal(un.code, 0, un.stdout + un.stderr);
    assert.ok(!existsSync(l.bin) && !existsSync(releases), un.stdout);
    assert.ok(existsSync(l.config), "the config is kept");
  },
});

Deno.test({
  ...opts,
  name: "an unknown architecture (armv6l) or OS is refused with a message naming it; nothing is created",
  fn: async () => {
    const l = layout(join(work, "armv6l"));
    const r = await install(l, [], { OUTPOST_ARCH: "armv6l" });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unsupported architecture "armv6l"/);
    const os = await install(l, [], { OUTPOST_OS: "Darwin" });
    assert.equal(os.code, 1);
    assert.match(os.stderr, /unsupported operating system "Darwin"/);
    for (const dir of [l.binDir, l.configDir, l.dataDir, l.unitDir]) {
      assert.ok(!existsSync(dir), `${dir} not created`);
    }
  },
});

Deno.test({
  ...opts,
  name: "a musl system asks for outpost-linux-<arch>-musl and says clearly when the release has none",
  fn: async () => {
    const s = await site();
    const l = layout(join(work, "musl"));
    const r = await install(l, ["--version", s.v1], { OUTPOST_LIBC: "musl" });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /SHA256SUMS has no entry for outpost-linux-x64-musl/);
    assert.ok(!existsSync(l.bin));
  },
});

/** A PATH folder with links to every tool install.sh uses, except `without`. */
function toolPath(dir: string, without: string[]): string {
  mkdirSync(dir, { recursive: true });
  const tools = [
    "sh",
    "id",
    "uname",
    "mkdir",
    "chmod",
    "mv",
    "rm",
    "rmdir",
    "mktemp",
    "awk",
    "cut",
    "head",
    "tail",
    "sed",
    "grep",
    "ls",
    "cat",
    "getconf",
    "ldd",
    "curl",
    "wget",
    "sha256sum",
    "shasum",
  ];
  for (const tool of tools) {
    if (without.includes(tool)) continue;
    const out = new Deno.Command("sh", { args: ["-c", `command -v ${tool}`], stdout: "piped" }).outputSync();
    const path = new TextDecoder().decode(out.stdout).trim();
    if (path) symlinkSync(path, join(dir, tool));
  }
  return dir;
}

Deno.test({
  ...opts,
  name: "tools: a clear error without curl and wget or without sha256sum and shasum; wget alone is enough",
  fn: async () => {
    const s = await site();
    const l = layout(join(work, "tools"));
    const noDownloader = await install(l, [], { PATH: toolPath(join(l.root, "path1"), ["curl", "wget"]) });
    assert.equal(noDownloader.code, 1);
    assert.match(noDownloader.stderr, /needs curl or wget/);
    const noSha = await install(l, [], { PATH: toolPath(join(l.root, "path2"), ["sha256sum", "shasum"]) });
    assert.equal(noSha.code, 1);
    assert.match(noSha.stderr, /needs sha256sum or shasum/);
    assert.ok(!existsSync(l.bin));

    requireTool("wget", "apt-get install wget");
    const wgetOnly = await install(l, ["--version", s.v2, "--no-service"], {
      PATH: toolPath(join(l.root, "path3"), ["curl", "sha256sum"]),
    });
    assert.equal(wgetOnly.code, 0, wgetOnly.stdout + wgetOnly.stderr);
    assert.equal((await versionOf(l.bin))[0], `outpost ${s.v2}`);
    assert.ok(!existsSync(l.unit), "--no-service: no unit");
  },
});

Deno.test({
  ...opts,
  name:
    "the compressed form: .xz when xz is here, the plain binary without xz or without a .xz; a bad .xz is refused",
  fn: async (t) => {
    const s = await site();
    const plain = (v: string) => `/${v}/outpost-linux-x64`;
    const since = (from: number) => s.requests.slice(from);
    const run = async (name: string, v: string, env: Record<string, string> = {}) => {
      const l = layout(join(work, `xz-${name}`));
      const from = s.requests.length;
      const r = await install(l, ["--version", v, "--no-service"], env);
      return { l, r, requests: since(from) };
    };

    await t.step(
      "with xz: downloads the .xz only, checks it, installs the binary it decompresses to",
      async () => {
        const { l, r, requests } = await run("with", "2.0.0");
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /Downloading outpost-linux-x64\.xz/);
        assert.ok(requests.includes(`${plain("2.0.0")}.xz`), requests.join(" "));
        assert.ok(
          !requests.includes(plain("2.0.0")),
          `the plain binary is not downloaded: ${requests.join(" ")}`,
        );
        assert.equal(await sha256Hex(l.bin), s.compressed.sha256, "the installed binary is the release's");
        assert.equal(mode(l.bin), 0o755);
        assert.equal((await versionOf(l.bin))[0], "outpost 2.0.0");
        assert.deepEqual(readdirSync(l.binDir), ["outpost"], "no temporary file is left beside the binary");
      },
    );

    await t.step("without xz or unxz on PATH: the plain binary", async () => {
      const { l, r, requests } = await run("without", "2.0.0", {
        PATH: toolPath(join(work, "xz-path"), ["xz", "unxz"]),
      });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /No xz here: downloading the uncompressed outpost-linux-x64/);
      assert.ok(requests.includes(plain("2.0.0")));
      assert.ok(!requests.includes(`${plain("2.0.0")}.xz`), requests.join(" "));
      assert.equal(await sha256Hex(l.bin), s.compressed.sha256);
    });

    await t.step("a .xz listed but missing on the server, or not listed: the plain binary", async () => {
      const missing = await run("missing", "2.0.2");
      assert.equal(missing.r.code, 0, missing.r.stdout + missing.r.stderr);
      assert.match(missing.r.stderr, /warning: download of .*outpost-linux-x64\.xz failed/);
      assert.deepEqual(missing.requests.filter((p) => p.startsWith("/2.0.2/outpost")), [
        `${plain("2.0.2")}.xz`,
        plain("2.0.2"),
      ]);
      assert.equal(await sha256Hex(missing.l.bin), s.compressed.sha256);
      assert.deepEqual(readdirSync(missing.l.binDir), ["outpost"], "the failed .xz download is removed");

      const unlisted = await run("unlisted", "2.0.3");
      assert.equal(unlisted.r.code, 0, unlisted.r.stdout + unlisted.r.stderr);
      assert.match(unlisted.r.stdout, /SHA256SUMS lists no outpost-linux-x64\.xz/);
      assert.deepEqual(unlisted.requests.filter((p) => p.startsWith("/2.0.3/outpost")), [plain("2.0.3")]);
      assert.equal(await sha256Hex(unlisted.l.bin), s.compressed.sha256);
    });

    await t.step(
      "a .xz whose checksum is wrong: refused, nothing installed, nothing left behind",
      async () => {
        const { l, r, requests } = await run("tampered", "2.0.1");
        assert.equal(r.code, 1, r.stdout + r.stderr);
        assert.match(
          r.stderr,
          new RegExp(
            `checksum mismatch for outpost-linux-x64\\.xz: SHA256SUMS says ${s.compressed.xzSha256}`,
          ),
        );
        assert.match(r.stderr, /Nothing was installed/);
        assert.ok(!existsSync(l.bin));
        assert.ok(!requests.includes(plain("2.0.1")), "not retried as the plain binary");
        assert.deepEqual(existsSync(l.binDir) ? readdirSync(l.binDir) : [], []);
        assert.deepEqual(readdirSync(join(l.root, "tmp")), [], "the work folder is removed");
      },
    );
  },
});

Deno.test({
  ...opts,
  ignore: !IS_ROOT,
  name: "--prefix puts the binary in <prefix>/bin and the unit runs it from there",
  fn: async () => {
    const s = await site();
    const l = layout(join(work, "prefix"));
    const prefix = join(l.root, "opt/outpost");
    const r = await install(l, ["--prefix", prefix, "--version", s.v2], { OUTPOST_BIN_DIR: "" });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const bin = join(prefix, "bin/outpost");
    assert.equal((await versionOf(bin))[0], `outpost ${s.v2}`);
    assertUnit({ ...l, bin, binDir: join(prefix, "bin") });
  },
});

Deno.test({
  ...opts,
  name: "without root: ~/.local/bin, config and data under the home folder, no unit, and it says how to run",
  fn: async () => {
    const s = await site();
    const l = layout(join(work, "user"));
    chmodSync(work, 0o755);
    chmodSync(l.root, 0o777);
    const home = join(l.root, "home");
    mkdirSync(home, { recursive: true });
    const script = join(l.root, "install.sh");
    copyFileSync(INSTALL_SH, script);
    chmodSync(script, 0o644);
    let user: number | undefined;
    if (IS_ROOT) {
      requireTool("setpriv", "install util-linux");
      user = 65534; // nobody
      chownSync(home, user, user);
      mkdirSync(join(l.root, "tmp"), { recursive: true, mode: 0o1777 });
      chmodSync(join(l.root, "tmp"), 0o1777);
    }
    const r = await install(l, ["--version", s.v2], {
      OUTPOST_BIN_DIR: "",
      OUTPOST_CONFIG_DIR: "",
      OUTPOST_DATA_DIR: "",
      HOME: home,
    }, { script, user });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const bin = join(home, ".local/bin/outpost");
    const config = join(home, ".config/outpost/config.json");
    assert.equal((await versionOf(bin))[0], `outpost ${s.v2}`);
    assert.equal(mode(config), 0o600);
    assert.equal(JSON.parse(readFileSync(config, "utf8")).dataDir, join(home, ".local/share/outpost"));
    assert.ok(existsSync(join(home, ".local/share/outpost")));
    assert.ok(!existsSync(l.unitDir), "no unit without root, even with OUTPOST_UNIT_DIR set");
    assert.ok(r.stdout.includes(`run the agent:  ${bin} run --config ${config}`), r.stdout);
    assert.match(r.stdout, /is not on your PATH/);
  },
});

Deno.test({
  ...opts,
  name: "(cleanup) stop the release site",
  fn: async () => {
    if (sitePromise) await (await sitePromise).close();
    removeDir(work);
  },
});
