/**
 * Self-update with real binaries: outpost built at 0.0.1 and 0.0.2 by the real build script, a
 * manifest made by `npm run release` with a key from `outpost update keygen`, served from a
 * loopback HTTP server (Range support, fault injection). Covers the successful update (outbox
 * messages queued before it reach the hub after it), every refusal (the running binary unchanged
 * byte for byte), an interrupted download resumed with Range, and the restart without a
 * supervisor.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import {
  type HubHandle,
  hubRecords,
  removeDir,
  ROOT,
  startHub,
  startProcess,
  tempDir,
  waitFor,
} from "../helpers/procs.ts";
import { generateSigningKey, verifyManifest } from "../../src/update/mod.ts";
import {
  buildVersions,
  fakeBinary,
  installAgent,
  type Installed,
  opts,
  release,
  ReleaseServer,
  runExe,
  sha256Of,
  stopSpawned,
  Supervisor,
  versionOf,
  waitForUpdate,
} from "./update_helpers.ts";

const work = tempDir("outpost-update-apply-");
let setup:
  | Promise<{ bins: Record<string, string>; server: ReleaseServer; publicKey: string; manifestUrl: string }>
  | undefined;

/** Both versions built once, a key from the binary, the release manifest from `npm run release`. */
function prepare() {
  setup ??= (async () => {
    const bins = await buildVersions(work, ["0.0.1", "0.0.2"]);
    const server = await new ReleaseServer().start();
    const keyFile = join(work, "release-key.pem");
    const keygen = await runExe(bins["0.0.1"], ["update", "keygen", "--out", keyFile]);
    assert.equal(keygen.code, 0, keygen.stderr);
    const publicKey = keygen.stdout.trimEnd().split("\n").at(-1)!;
    const release = await new Deno.Command("npm", {
      args: [
        "run",
        "--silent",
        "release",
        "--",
        "--key",
        keyFile,
        "--base-url",
        server.url("/rel"),
        "--version",
        "0.0.2",
        "--dist",
        join(work, "build-0.0.2"),
      ],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(release.stdout) + new TextDecoder().decode(release.stderr);
    assert.equal(release.code, 0, text);
    const manifest = readFileSync(join(work, "build-0.0.2/manifest.json"), "utf8");
    server.put("/rel/0.0.2/manifest.json", manifest);
    server.putFile("/rel/0.0.2/outpost-linux-x64", bins["0.0.2"]);
    return { bins, server, publicKey, manifestUrl: server.url("/rel/0.0.2/manifest.json") };
  })();
  return setup;
}

Deno.test({
  ...opts,
  name:
    "keygen writes a 0600 PKCS8 key and prints the public key last; npm run release signs a manifest it verifies",
  fn: async () => {
    const { bins, publicKey, manifestUrl } = await prepare();
    const keyFile = join(work, "release-key.pem");
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    assert.match(readFileSync(keyFile, "utf8"), /^-----BEGIN PRIVATE KEY-----\n/);
    assert.match(publicKey, /^[A-Za-z0-9+/]{43}=$/, "base64 of 32 bytes, alone on the last line");
    const again = await runExe(bins["0.0.1"], ["update", "keygen", "--out", keyFile]);
    assert.equal(again.code, 2, "keygen never overwrites a key without --force");

    const manifest = JSON.parse(readFileSync(join(work, "build-0.0.2/manifest.json"), "utf8"));
    assert.equal(manifest.version, "0.0.2");
    assert.deepEqual(Object.keys(manifest.artifacts), ["linux-x64"]);
    const a = manifest.artifacts["linux-x64"];
    assert.equal(a.size, statSync(bins["0.0.2"]).size);
    assert.equal(a.sha256, await sha256Of(bins["0.0.2"]));
    assert.ok(a.url.endsWith("/rel/0.0.2/outpost-linux-x64"));
    assert.equal(verifyManifest(manifest, publicKey).ok, true);
    assert.equal(verifyManifest(manifest, generateSigningKey().publicKey).ok, false);

    // --check: current and offered, exit 0; nothing is changed.
    const inst = await installAgent(join(work, "check"), bins["0.0.1"], { publicKey });
    const check = await runExe(inst.exe, [
      "update",
      "--check",
      "--manifest",
      manifestUrl,
      "--config",
      inst.configPath,
    ]);
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /^current: 0\.0\.1\noffered: 0\.0\.2 \(newer/);
    const bad = await runExe(inst.exe, [
      "update",
      "--check",
      "--manifest",
      manifestUrl.replace("0.0.2/manifest", "9.9.9/manifest"),
      "--config",
      inst.configPath,
    ]);
    assert.equal(bad.code, 1, "--check exits 1 when the manifest cannot be had");
    assert.match(bad.stderr, /Cannot fetch the manifest .*404/);
    for (
      const args of [["update", "--manifest", "not a url"], ["update", "frobnicate"], ["update", "keygen"]]
    ) {
      const r = await runExe(inst.exe, [...args, "--config", inst.configPath]);
      assert.equal(r.code, 2, `${args.join(" ")}: bad usage is exit 2 (${r.stderr})`);
    }
    const noKey = await installAgent(join(work, "nokey"), bins["0.0.1"], {});
    const r = await runExe(noKey.exe, [
      "update",
      "--check",
      "--manifest",
      manifestUrl,
      "--config",
      noKey.configPath,
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /No update\.publicKey configured/);
    removeDir(join(work, "check"));
    removeDir(join(work, "nokey"));
  },
});

Deno.test({
  ...opts,
  name: "outpost update under a supervisor: 0.0.1 → 0.0.2 (swap, exit 75, trial until the hub is back, " +
    "commit); outbox messages queued before the update reach the hub after it; config and data untouched",
  fn: async () => {
    const { bins, publicKey, manifestUrl } = await prepare();
    const edge = { id: "gw-update", routingKey: "rk-update", secret: "secret-update-0123456789" };
    const hubDir = join(work, "hub");
    let hub: HubHandle | undefined = await startHub({ dir: hubDir, edges: [edge], runner: bins["0.0.1"] });
    const { grpcPort, apiPort } = hub;
    const inst = await installAgent(join(work, "ok"), bins["0.0.1"], {
      manifestUrl,
      publicKey,
      trialSeconds: 90,
    }, {
      hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
    });
    const configBefore = readFileSync(inst.configPath, "utf8");
    const v1sha = await sha256Of(inst.exe);
    const sup = new Supervisor(inst);
    const post = (i: number) =>
      inst.api("/api/v1/devices/boiler-1/telemetry", { method: "POST", body: JSON.stringify({ seq: i }) });
    try {
      await (await sup.start(0)).waitForEvent("agent.started");
      for (let i = 0; i < 5; i++) assert.equal((await post(i)).status, 202);
      await waitFor(
        async () => (await hubRecords(hub!, edge.id)).length === 5,
        30_000,
        "5 records at the hub",
      );

      // The hub goes away; five more are accepted into the outbox.
      await hub.stop();
      hub = undefined;
      for (let i = 5; i < 10; i++) assert.equal((await post(i)).status, 202);
      const status = await (await inst.api("/api/v1/status")).json();
      assert.equal(status.version, "0.0.1");
      assert.equal(status.outbox.depth, 5);

      // `outpost update` (the CLI) asks the running agent and follows it through the restart.
      const cli = startProcess([inst.exe, "update", "--config", inst.configPath], { cwd: inst.dir });
      const second = await sup.start(1, 90_000);
      assert.equal(sup.exits[0], 75, "the old agent drains and exits 75 for the supervisor to restart it");
      await second.waitForEvent("update.trial.started");
      const trial = await waitForUpdate(inst, (s) => s.state === "trial");
      assert.equal(trial.version, "0.0.2");
      assert.equal(trial.previous, "0.0.1");
      assert.equal(await versionOf(inst.exe), "outpost 0.0.2");
      assert.equal(await sha256Of(`${inst.exe}.prev`), v1sha, "the old binary is kept as .prev");
      assert.ok(existsSync(join(inst.dataDir, "update-trial")), "on trial: the marker is in the data folder");

      // The hub comes back: the new agent connects, commits, and delivers what was queued.
      hub = await startHub({ dir: hubDir, edges: [edge], runner: bins["0.0.1"], grpcPort, apiPort });
      const committed = await waitForUpdate(inst, (s) => s.state === "committed", 60_000);
      assert.equal(committed.version, "0.0.2");
      assert.ok(!existsSync(join(inst.dataDir, "update-trial")), "the marker is gone after commit");
      assert.ok(existsSync(`${inst.exe}.prev`), ".prev is kept for a manual rollback");
      const records = await waitFor(
        async () => {
          const r = await hubRecords(hub!, edge.id);
          return r.length >= 10 ? r : undefined;
        },
        30_000,
        "10 records at the hub",
      );
      assert.deepEqual(records!.map((r) => r.payload.seq), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      const after = await (await inst.api("/api/v1/status")).json();
      assert.equal(after.version, "0.0.2");
      assert.equal(after.outbox.depth, 0);

      const cliExit = await cli.exited;
      assert.equal(cliExit, 0, cli.lines.join("\n"));
      const cliText = cli.lines.join("\n");
      // Progress and steps as plain lines (stderr is not a terminal here); polling may miss short steps.
      assert.match(cliText, /is updating/);
      assert.match(cliText, /outpost 0\.0\.2 is on trial until it is healthy/);
      assert.match(cliText, /outpost 0\.0\.2 is running and committed/);
      assert.equal(readFileSync(inst.configPath, "utf8"), configBefore, "the config is untouched");
      assert.equal(sup.procs.length, 2, sup.output());
    } finally {
      await sup.stop();
      await hub?.stop();
    }
    removeDir(inst.dir);
  },
});

/** POSTs an update and waits for it to fail; asserts nothing changed on disk. */
async function refused(
  inst: Installed,
  manifestUrl: string,
  reason: RegExp,
  body: Record<string, unknown> = {},
) {
  const before = await sha256Of(inst.exe);
  const r = await inst.api("/api/v1/update", {
    method: "POST",
    body: JSON.stringify({ manifestUrl, ...body }),
  });
  assert.equal(r.status, 202, await r.text());
  const s = await waitForUpdate(inst, (s) => s.state === "failed" || s.state === "idle", 60_000);
  assert.equal(s.state, "failed", JSON.stringify(s));
  assert.match(s.reason, reason);
  assert.equal(await sha256Of(inst.exe), before, "the running binary is unchanged, byte for byte");
  assert.equal(await versionOf(inst.exe), "outpost 0.0.1");
  for (
    const f of [
      `${inst.exe}.prev`,
      join(inst.dataDir, "update-trial"),
      join(inst.dir, "bin/.outpost.update.part"),
    ]
  ) {
    assert.ok(!existsSync(f), `${f} does not exist`);
  }
  return s;
}

Deno.test({
  ...opts,
  name: "refused with a reason, the running binary unchanged: unsigned, tampered, wrong key, wrong sha256, " +
    "truncated artifact, not newer, no key configured, from source",
  fn: async (t) => {
    const { bins, server, publicKey } = await prepare();
    const key = { privateKeyPem: readFileSync(join(work, "release-key.pem"), "utf8"), publicKey };
    const rel = release(server, key);
    const v2 = Deno.readFileSync(bins["0.0.2"]);
    const inst = await installAgent(join(work, "refuse"), bins["0.0.1"], { publicKey });
    const sup = new Supervisor(inst);
    try {
      await (await sup.start(0)).waitForEvent("agent.started");

      await t.step("unsigned", async () => {
        const url = await rel.publish("0.0.2", v2, { name: "unsigned", tamper: (m) => delete m.signature });
        await refused(inst, url, /The manifest is unsigned/);
      });
      await t.step("tampered (version changed after signing)", async () => {
        const url = await rel.publish("0.0.2", v2, {
          name: "tampered",
          tamper: (m) => (m.version = "0.0.3"),
        });
        await refused(
          inst,
          url,
          /signature does not verify against update\.publicKey: the manifest was changed/,
        );
      });
      await t.step("tampered (artifact URL redirected after signing)", async () => {
        const url = await rel.publish("0.0.2", v2, {
          name: "tampered-url",
          tamper: (m) => ((m.artifacts as any)["linux-x64"].url = server.url("/evil/outpost-linux-x64")),
        });
        await refused(inst, url, /the manifest was changed after it was signed/);
      });
      await t.step("signed with another key", async () => {
        const url = await release(server).publish("0.0.2", v2, { name: "otherkey" });
        await refused(inst, url, /signed with key "[0-9a-f]{16}", not with update\.publicKey/);
      });
      await t.step("wrong sha256 (the served file differs from the signed hash)", async () => {
        const forged = v2.slice();
        forged[forged.length - 1000] ^= 0xff;
        const url = await rel.publish("0.0.2", v2, { name: "badsha", servedBytes: forged });
        await refused(
          inst,
          url,
          /SHA-256 mismatch: the artifact from .* hashes to [0-9a-f]{64}, the manifest says/,
        );
      });
      await t.step("truncated artifact", async () => {
        const url = await rel.publish("0.0.2", v2, {
          name: "truncated",
          servedBytes: v2.slice(0, v2.length >> 1),
        });
        await refused(inst, url, /Size mismatch: the artifact at .* is \d+ bytes, the manifest says \d+/);
      });
      await t.step("a candidate that does not print the offered version", async () => {
        const url = await rel.publish("0.0.2", fakeBinary("0.0.9", "exit 1"), { name: "liar" });
        await refused(inst, url, /its --version printed "outpost 0\.0\.9", expected "outpost 0\.0\.2"/);
      });
      await t.step("not newer (and not for this target)", async () => {
        const url = await rel.publish("0.0.1", v2, { name: "same" });
        const r = await inst.api("/api/v1/update", {
          method: "POST",
          body: JSON.stringify({ manifestUrl: url }),
        });
        assert.equal(r.status, 202);
        const s = await waitForUpdate(inst, (s) => s.state === "idle" && s.message);
        assert.match(s.message, /Already up to date/);
        const older = await rel.publish("0.0.0", v2, { name: "older" });
        await refused(inst, older, /offers 0\.0\.0, which is not newer than the running 0\.0\.1/);
        const riscv = await rel.publish("0.0.2", v2, { name: "riscv", target: "linux-riscv64" });
        await refused(inst, riscv, /no artifact for this target linux-x64 \(it offers: linux-riscv64\)/);
      });
      await t.step("bad request bodies", async () => {
        const r = await inst.api("/api/v1/update", {
          method: "POST",
          body: JSON.stringify({ manifestUrl: 5 }),
        });
        assert.equal(r.status, 400);
        assert.equal((await r.json()).errors[0].path, "/manifestUrl");
        const none = await inst.api("/api/v1/update", { method: "POST", body: "{}" });
        assert.equal(none.status, 400, "no manifestUrl given and none configured");
      });
    } finally {
      await sup.stop();
    }

    await t.step("no update.publicKey configured: 409, nothing fetched", async () => {
      const nokey = await installAgent(join(work, "refuse-nokey"), bins["0.0.1"], {});
      const s2 = new Supervisor(nokey);
      try {
        await (await s2.start(0)).waitForEvent("agent.started");
        const before = server.requests.length;
        const r = await nokey.api("/api/v1/update", {
          method: "POST",
          body: JSON.stringify({ manifestUrl: server.url("/rel/0.0.2/manifest.json") }),
        });
        assert.equal(r.status, 409);
        assert.match((await r.json()).error, /No update\.publicKey configured/);
        assert.equal(server.requests.length, before, "nothing was fetched");
      } finally {
        await s2.stop();
      }
      removeDir(nokey.dir);
    });

    await t.step("from source: self-update needs the compiled binary", async () => {
      const cfg = await installAgent(join(work, "refuse-src"), bins["0.0.1"], { publicKey });
      const r = await new Deno.Command(join(ROOT, "node_modules/.bin/deno"), {
        args: [
          "run",
          "-A",
          join(ROOT, "src/main.ts"),
          "update",
          "--config",
          cfg.configPath,
          "--manifest",
          server.url("/rel/0.0.2/manifest.json"),
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const err = new TextDecoder().decode(r.stderr);
      assert.equal(r.code, 1, err);
      assert.match(err, /Self-update needs the compiled binary/);
      removeDir(cfg.dir);
    });
    removeDir(inst.dir);
  },
});

Deno.test({
  ...opts,
  name: "an interrupted download resumes with Range; without a supervisor the agent starts the new binary " +
    "itself and watches its trial until it commits",
  fn: async () => {
    const { bins, server, publicKey, manifestUrl } = await prepare();
    const artifact = "/rel/0.0.2/outpost-linux-x64";
    const size = statSync(bins["0.0.2"]).size;
    const cutAt = Math.floor(size * 0.4);
    server.fault(artifact, "cut", cutAt);
    const before = server.requests.length;
    const inst = await installAgent(join(work, "resume"), bins["0.0.1"], {
      manifestUrl,
      publicKey,
      trialSeconds: 60,
    });
    // No INVOCATION_ID: no supervisor. The old process spawns the new one and watches its trial.
    const old = startProcess([inst.exe, "run", "--config", inst.configPath], {
      cwd: inst.dir,
      env: { OUTPOST_SUPERVISED: "0" },
    });
    try {
      await old.waitForEvent("agent.started");
      const r = await inst.api("/api/v1/update", { method: "POST", body: "{}" });
      assert.equal(r.status, 202);
      await old.waitForEvent("update.download.interrupted", 60_000);
      const committed = await waitForUpdate(
        inst,
        (s) => s.state === "committed" && s.current === "0.0.2",
        90_000,
      );
      assert.notEqual(committed.pid, old.pid);
      const requests = server.requests.slice(before).filter((q) => q.path === artifact);
      assert.equal(requests[0].range, null);
      assert.ok(
        requests.some((q) =>
          q.status === 206 && Number(/^bytes=(\d+)-$/.exec(q.range ?? "")?.[1]) >= cutAt - (1 << 20)
        ),
        `a Range request resumed after the cut: ${JSON.stringify(requests)}`,
      );
      assert.equal(
        requests.filter((q) => q.range === null).length,
        1,
        "the file was not fetched from zero again",
      );
      assert.equal(await sha256Of(inst.exe), await sha256Of(bins["0.0.2"]));
      assert.equal((await (await inst.api("/api/v1/status")).json()).version, "0.0.2");
      // The old process handed over and left once the trial committed. (Its output pipe stays open:
      // the new process inherited it, so wait for the process, not for the end of its output.)
      assert.equal((await old.child.status).code, 0);
      await old.waitForEvent("update.watchdog.done", 1000);
    } finally {
      // The processes the agent started itself (detached) hold the output pipe: stop them first.
      await stopSpawned(old.lines);
      await old.kill("SIGKILL");
    }
    removeDir(inst.dir);
  },
});

Deno.test({
  ...opts,
  name: "with no agent running, outpost update installs the update itself (a progress bar on a terminal); " +
    "the next start runs it on trial and commits",
  fn: async () => {
    const { bins, publicKey, manifestUrl } = await prepare();
    const inst = await installAgent(join(work, "offline"), bins["0.0.1"], { manifestUrl, publicKey });
    const quote = (s: string) => `'${s.replaceAll("'", `'"'"'`)}'`;
    // `script` gives the CLI a pseudo-terminal, as an operator's shell would.
    const r = await new Deno.Command("script", {
      args: ["-qec", [inst.exe, "update", "--config", inst.configPath].map(quote).join(" "), "/dev/null"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(r.stdout);
    assert.equal(r.code, 0, text + new TextDecoder().decode(r.stderr));
    // The bar is redrawn in place and ends full, at the binary's size (about 120 MiB).
    assert.match(text, /\r\[#{30}\] 100% (1[12]\d\.\d) MiB of \1 MiB/, "a redrawn progress bar");
    assert.match(
      text,
      /Installed outpost 0\.0\.2 at .*bin\/outpost \(the previous binary is kept as .*outpost\.prev\)/,
    );
    assert.match(text, /the next `outpost run` starts 0\.0\.2 on trial/);
    assert.equal(await versionOf(inst.exe), "outpost 0.0.2");
    assert.ok(existsSync(join(inst.dataDir, "update-trial")));

    const sup = new Supervisor(inst);
    try {
      const started = await (await sup.start(0)).waitForEvent("update.trial.started");
      assert.equal(started.version, "0.0.2");
      const s = await waitForUpdate(inst, (s) => s.state === "committed");
      assert.equal(s.current, "0.0.2");
      assert.match(sup.prestartLog.join("\n"), /0\.0\.2 is on trial: start 1 of 3/);
    } finally {
      await sup.stop();
    }
    removeDir(inst.dir);
  },
});

Deno.test({
  ...opts,
  name: "(cleanup) stop the release server",
  fn: async () => {
    if (setup) await (await setup).server.close();
    removeDir(work);
  },
});
