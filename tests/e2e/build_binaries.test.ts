/**
 * The release binaries, built by the real build script and run as users run them: the x64
 * binary from an empty folder and through the spine's delivery scenario (HTTP ingest → hub,
 * with a SIGKILL of the agent), the arm64 binary under qemu-aarch64 with an arm64 sysroot.
 *
 * Both binaries are built once for this file into a temporary folder (OUTPOST_TEST_REUSE_DIST=1
 * reuses dist/ instead). qemu-aarch64-static and the sysroot are required: without them the arm64
 * tests fail and say what to install.
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { deliveryScenario } from "../integration/delivery_scenario.ts";
import {
  freePort,
  isConnectivityEvent,
  removeDir,
  ROOT,
  type Runner,
  runOutpost,
  startProcess,
  tempDir,
} from "../helpers/procs.ts";
import {
  buildDist,
  type Dist,
  elfMachine,
  reuseDist,
  runBuild,
  sha256Hex,
  writeQemuRunner,
} from "./build_dist.ts";

const PKG_VERSION: string = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version;
const work = tempDir("outpost-build-test-");
let distPromise: Promise<Dist> | undefined;

/** Both release binaries, built once for this file (`npm run build -- --target all`). */
function dist(): Promise<Dist> {
  distPromise ??= (async () => {
    const reused = reuseDist();
    if (reused) return reused;
    const built = await buildDist({ outdir: join(work, "dist"), targets: "all", viaNpm: true });
    console.log(`built both targets in ${built.seconds.toFixed(1)} s`);
    assert.ok(
      built.seconds < 120,
      `building both targets took ${built.seconds.toFixed(1)} s (budget: 120 s)`,
    );
    return built;
  })();
  return distPromise;
}

const opts = { sanitizeResources: false, sanitizeOps: false };

Deno.test({
  ...opts,
  name: "npm run build -- --target all writes both binaries and a SHA256SUMS that sha256sum -c accepts",
  fn: async () => {
    const d = await dist();
    if (!reuseDist()) assert.equal(d.version, PKG_VERSION, "the version defaults to package.json's");
    assert.equal(elfMachine(d.binaries["linux-x64"]), "x86-64");
    assert.equal(elfMachine(d.binaries["linux-arm64"]), "aarch64");
    const sums = readFileSync(join(d.dir, "SHA256SUMS"), "utf8");
    const lines = sums.trimEnd().split("\n");
    assert.deepEqual(lines.map((l) => l.split("  ")[1]).sort(), [
      "outpost-linux-arm64",
      "outpost-linux-armv7.tar.gz",
      "outpost-linux-x64",
    ]);
    for (const line of lines) {
      const [hash, file] = line.split("  ");
      assert.equal(hash, await sha256Hex(join(d.dir, file)), `${file}: SHA256SUMS matches the file`);
    }
    const check = await new Deno.Command("sha256sum", {
      args: ["-c", "SHA256SUMS"],
      cwd: d.dir,
      stdout: "piped",
    })
      .output();
    assert.equal(check.code, 0, new TextDecoder().decode(check.stdout));
    for (const [name, path] of Object.entries(d.binaries)) {
      if (name === "linux-armv7") continue; // an archive (tests/e2e/node_bundle.test.ts looks inside)
      const mode = statSync(path).mode & 0o777;
      assert.equal(mode, 0o755, `outpost-${name} is executable`);
    }
  },
});

Deno.test({
  ...opts,
  name: "--version X stamps the binary: outpost --version prints `outpost X`, then runtime and target",
  fn: async () => {
    const outdir = join(work, "stamped");
    const built = await buildDist({ outdir, targets: "linux-x64", version: "7.8.9-rc.1" });
    assert.equal(built.version, "7.8.9-rc.1");
    for (const args of [["--version"], ["version"]]) {
      const r = await runOutpost(args, { runner: built.binaries["linux-x64"], cwd: outdir });
      assert.equal(r.code, 0, r.stderr);
      const [first, second] = r.stdout.trimEnd().split("\n");
      assert.equal(first, "outpost 7.8.9-rc.1");
      assert.match(second, /^bun \d+\.\d+\.\d+ linux-x64$/);
    }
    // A build of another version replaces the old one, so SHA256SUMS describes one release.
    const again = await buildDist({ outdir, targets: "linux-x64", version: "7.8.10" });
    assert.equal(again.version, "7.8.10");
    assert.equal(readFileSync(join(outdir, "SHA256SUMS"), "utf8").trimEnd().split("\n").length, 1);
  },
});

Deno.test({
  ...opts,
  name: "the build refuses an unknown target or a bad version with exit 2 and says why",
  fn: async () => {
    const bad = await runBuild(["--target", "linux-armv6", "--outdir", join(work, "bad")]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Unknown target "linux-armv6"/);
    const badVersion = await runBuild(["--version", "one", "--outdir", join(work, "bad")]);
    assert.equal(badVersion.code, 2);
    assert.match(badVersion.stderr, /Version "one" is not a semver/);
  },
});

/** `init` then `run` from `dir`, post one message, read it back from the outbox, stop. */
async function initRunIngest(runner: Runner, dir: string, env: Record<string, string> = {}) {
  const configPath = join(dir, "outpost.json");
  const init = await runOutpost(["init", "--config", configPath, "--data-dir", join(dir, "data")], {
    runner,
    cwd: dir,
    env,
  });
  assert.equal(init.code, 0, init.stdout + init.stderr);
  assert.equal(statSync(configPath).mode & 0o777, 0o600, "init writes the config 0600");
  const config = JSON.parse(readFileSync(configPath, "utf8"));
  const apiPort = await freePort();
  config.api.listen = `127.0.0.1:${apiPort}`;
  config.mqtt.broker.listen = `127.0.0.1:${await freePort()}`;
  writeFileSync(configPath, JSON.stringify(config, null, 2));

  const proc = startProcess([runner, "run", "--config", configPath], { cwd: dir, env });
  try {
    await proc.waitForEvent("agent.started", 60_000);
    const api = (path: string, init?: RequestInit) =>
      fetch(`http://127.0.0.1:${apiPort}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${config.api.token}`, "content-type": "application/json" },
      });
    const health = await fetch(`http://127.0.0.1:${apiPort}/healthz`);
    assert.deepEqual(await health.json(), { status: "ok" });
    const post = await api("/api/v1/devices/boiler-1/telemetry", {
      method: "POST",
      body: JSON.stringify({ temperature: 71.5 }),
    });
    assert.equal(post.status, 202);
    assert.deepEqual(await post.json(), { accepted: 1 });
    const outbox = await (await api("/api/v1/outbox?limit=10")).json();
    const data = outbox.records.filter((r: Record<string, unknown>) => !isConnectivityEvent(r));
    assert.equal(data.length, 1);
    assert.equal(data[0].device, "boiler-1");
    assert.deepEqual(data[0].payload, { temperature: 71.5 });
    return { proc, configPath };
  } catch (error) {
    await proc.kill("SIGKILL");
    throw error;
  }
}

Deno.test({
  ...opts,
  name:
    "the x64 binary runs from an empty folder with nothing beside it: --version, init, run, ingest, outbox",
  fn: async () => {
    const d = await dist();
    const dir = tempDir("outpost-lonely-");
    try {
      const binary = join(dir, "outpost");
      Deno.copyFileSync(d.binaries["linux-x64"], binary);
      Deno.chmodSync(binary, 0o755);
      const bunTmp = join(dir, "bun-tmp");
      mkdirSync(bunTmp);
      const env = { BUN_TMPDIR: bunTmp, OUTPOST_CONFIG: "" };
      const version = await runOutpost(["--version"], { runner: binary, cwd: dir, env });
      assert.equal(version.stdout.split("\n")[0], `outpost ${d.version}`);

      const { proc } = await initRunIngest(binary, dir, env);
      try {
        // Nothing from the source tree is mapped: the libSQL addon comes out of the binary.
        const maps = readFileSync(`/proc/${proc.pid}/maps`, "utf8");
        const fromRepo = maps.split("\n").filter((l) => l.includes(`${ROOT}/`));
        assert.deepEqual(fromRepo, [], "the running binary maps no file of the source tree");
        assert.ok(
          maps.split("\n").some((l) => l.includes(bunTmp) && l.endsWith(".node")),
          "the libSQL addon is unpacked from the binary into BUN_TMPDIR",
        );
      } finally {
        assert.equal(await proc.kill("SIGTERM"), 0, "SIGTERM drains and exits 0");
      }
    } finally {
      removeDir(dir);
    }
  },
});

Deno.test({
  ...opts,
  name: "the x64 binary passes the spine's delivery scenario: HTTP → hub, agent SIGKILLed, hub down; " +
    "every 202 exactly once at the hub, in order",
  fn: async () => {
    const d = await dist();
    const r = await deliveryScenario({
      runner: d.binaries["linux-x64"],
      total: 2_000,
      devices: 4,
      clients: 4,
      perRequest: 1,
      killsAt: [700],
      hubDownAt: 1_300,
      hubDownMs: 2_000,
    });
    assert.ok(r.accepted >= 1_950, `accepted ${r.accepted}`);
    assert.ok(r.atHub >= r.accepted && r.atHub <= r.accepted + r.unanswered);
    console.log(`x64 binary: accepted ${r.accepted}, unanswered ${r.unanswered}, at hub ${r.atHub}`);
  },
});

Deno.test({
  ...opts,
  name:
    "the arm64 binary under qemu-aarch64: --version, init, run, accepts a message over HTTP, shows it in the outbox",
  fn: async () => {
    const d = await dist();
    const dir = tempDir("outpost-arm64-");
    try {
      const binary = join(dir, "outpost-linux-arm64");
      Deno.copyFileSync(d.binaries["linux-arm64"], binary);
      Deno.chmodSync(binary, 0o755);
      const runner = writeQemuRunner(dir, binary);
      const version = await runOutpost(["--version"], { runner, cwd: dir });
      assert.equal(version.code, 0, version.stderr);
      const [first, second] = version.stdout.trimEnd().split("\n");
      assert.equal(first, `outpost ${d.version}`);
      assert.match(second, /^bun \d+\.\d+\.\d+ linux-arm64$/);

      const { proc } = await initRunIngest(runner, dir);
      assert.equal(await proc.kill("SIGTERM"), 0, "SIGTERM drains and exits 0");
    } finally {
      removeDir(dir);
    }
  },
});

globalThis.addEventListener("unload", () => removeDir(work));
