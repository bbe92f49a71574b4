/**
 * The Node bundle (`npm run build -- --target node` → `dist/outpost.mjs`) runs the whole agent and
 * hub with `node`: every command, the spine's delivery scenario (agent SIGKILLed twice, hub
 * stopped by SIGTERM) and a shorter MQTT fault run, all as real `node` processes.
 *
 * The bundle is built once into a temporary folder (`OUTPOST_TEST_REUSE_DIST=1`: dist/ as it is).
 */
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { join } from "node:path";
import {
  type AgentHandle,
  freePort,
  type HubHandle,
  hubRecords,
  removeDir,
  ROOT,
  sequencesByDevice,
  startAgent,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitDrained,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";
import { deliveryScenario } from "../integration/delivery_scenario.ts";
import { checkExactlyOnce, type Publisher, startPublisher } from "../integration/mqtt_helpers.ts";
import { armhfNode, runBuild } from "./build_dist.ts";

const outdir = Deno.env.get("OUTPOST_TEST_REUSE_DIST") === "1"
  ? join(ROOT, "dist")
  : tempDir("outpost-node-");
const BUNDLE = join(outdir, "outpost.mjs");
const VERSION = outdir === join(ROOT, "dist")
  ? JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version
  : "0.0.0-node.1";

const HOST_ADDON = join(
  ROOT,
  `node_modules/@libsql/linux-${Deno.build.arch === "x86_64" ? "x64" : "arm64"}-gnu/index.node`,
);

let built: Promise<string> | undefined;

/** Builds the bundle once; outside the checkout, the host's addon goes into libsql/ beside it. */
function bundle(): Promise<string> {
  built ??= (async () => {
    if (existsSync(BUNDLE) && outdir === join(ROOT, "dist")) return BUNDLE;
    const b = await runBuild(["--target", "node", "--version", VERSION, "--outdir", outdir]);
    assert.equal(b.code, 0, b.stdout + b.stderr);
    mkdirSync(join(outdir, "libsql"), { recursive: true });
    copyFileSync(HOST_ADDON, join(outdir, "libsql/index.node"));
    return BUNDLE;
  })();
  return built;
}

async function node(args: string[], cwd: string): Promise<{ code: number; out: string; err: string }> {
  const o = await new Deno.Command("node", { args, cwd, stdout: "piped", stderr: "piped" }).output();
  return { code: o.code, out: new TextDecoder().decode(o.stdout), err: new TextDecoder().decode(o.stderr) };
}

Deno.test({
  name: "node dist/outpost.mjs: version, init, config schema, rules check/test, status, update --check; " +
    "the addon is taken from libsql/ beside the bundle outside any node_modules",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const file = await bundle();
    // One ES module: no import of anything but Node's built-ins (some dependencies name them
    // without the node: prefix, e.g. "util", which Node resolves to the built-in all the same).
    // Node's own parser lists the module's static imports (text that only looks like one, such as
    // the console's embedded ES modules inside strings, is not counted).
    const listed = new Deno.Command("node", {
      args: [
        "--no-warnings",
        "--experimental-vm-modules",
        "-e",
        "const vm = require('vm'); const m = new vm.SourceTextModule(require('fs').readFileSync(process.argv[1], 'utf8'));" +
        " console.log(JSON.stringify(m.dependencySpecifiers));",
        file,
      ],
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    assert.equal(listed.code, 0, new TextDecoder().decode(listed.stderr));
    const imports: string[] = JSON.parse(new TextDecoder().decode(listed.stdout));
    assert.ok(imports.length > 0 && imports.includes("node:module"), `imports: ${imports}`);
    assert.deepEqual(
      imports.filter((i) => !i.startsWith("node:") && !builtinModules.includes(i)),
      [],
      "imports only Node built-ins",
    );

    const dir = tempDir("outpost-node-cmds-");
    try {
      // Outside the repository: no node_modules above; the host's addon in libsql/ beside it.
      mkdirSync(join(dir, "libsql"));
      copyFileSync(file, join(dir, "outpost.mjs"));
      const v0 = await node(["outpost.mjs", "version"], dir);
      assert.notEqual(v0.code, 0, "without an addon it cannot start");
      copyFileSync(HOST_ADDON, join(dir, "libsql/index.node"));
      const v = await node(["outpost.mjs", "version"], dir);
      assert.equal(v.code, 0, v.err);
      const nodeVersion = (await node(["--version"], dir)).out.trim();
      const arch = Deno.build.arch === "x86_64" ? "x64" : "arm64";
      assert.equal(v.out, `outpost ${VERSION}\nnode ${nodeVersion} linux-${arch}\n`);

      const init = await node(["outpost.mjs", "init", "--config", "o.json", "--edge-id", "gw-n"], dir);
      assert.equal(init.code, 0, init.err);
      const config = JSON.parse(readFileSync(join(dir, "o.json"), "utf8"));
      assert.equal(config.edgeId, "gw-n");

      const schema = await node(["outpost.mjs", "config", "schema"], dir);
      assert.equal(schema.code, 0, schema.err);
      assert.equal(JSON.parse(schema.out).type, "object");

      Deno.writeTextFileSync(
        join(dir, "rules.json"),
        JSON.stringify({
          rules: [{ name: "hot", when: { ">": [{ var: "payload.t" }, 50] }, then: [{ drop: true }] }],
        }),
      );
      const check = await node(["outpost.mjs", "rules", "check", "rules.json"], dir);
      const bad = await node(["outpost.mjs", "rules", "check", "missing.json"], dir);
      assert.notEqual(bad.code, 0);
      assert.ok(!bad.err.includes("    at "), `no stack trace: ${bad.err}`);
      console.log(`rules check: exit ${check.code}: ${(check.out + check.err).trim().split("\n")[0]}`);

      // status against no running agent: a clear failure, not a crash.
      const status = await node(["outpost.mjs", "status", "--config", "o.json"], dir);
      assert.equal(status.code, 1, status.out + status.err);
      assert.ok(!status.err.includes("    at "), `no stack trace: ${status.err}`);

      const update = await node(["outpost.mjs", "update", "--help"], dir);
      assert.equal(update.code, 0, update.err);

      const usage = await node(["outpost.mjs", "nonsense"], dir);
      assert.equal(usage.code, 2, usage.out + usage.err);
    } finally {
      removeDir(dir);
    }
  },
});

Deno.test({
  name: "node dist/outpost.mjs (agent and hub): 6,000 messages from 4 clients for 8 devices over HTTP, " +
    "agent SIGKILLed twice, hub stopped by SIGTERM for 2 s: every 202 at the hub exactly once, in order",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const file = await bundle();
    const r = await deliveryScenario({
      runner: file,
      total: 6_000,
      devices: 8,
      clients: 4,
      perRequest: 1,
      killsAt: [1_500, 3_000],
      hubDownAt: 4_000,
      hubDownMs: 2_000,
      hubStopSignal: "SIGTERM",
    });
    assert.ok(r.accepted >= 5_900, `accepted ${r.accepted}`);
    assert.ok(r.atHub >= r.accepted && r.atHub <= r.accepted + r.unanswered);
    console.log(`node: accepted ${r.accepted}, unanswered ${r.unanswered}, at hub ${r.atHub}`);
  },
});

Deno.test({
  name: "node dist/outpost.mjs, MQTT: 4 devices, 4,000 QoS 1 messages, agent SIGKILLed once: " +
    "every PUBACKed message at the hub exactly once, in order",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const file = await bundle();
    const dir = tempDir("outpost-node-mqtt-");
    const edge = { id: "gw-nm", routingKey: "rk-gw-nm", secret: "secret-gw-nm-abcdef" };
    let hub: HubHandle | undefined;
    let agent: AgentHandle | undefined;
    const publishers: Publisher[] = [];
    try {
      hub = await startHub({ dir: join(dir, "hub"), edges: [edge], runner: file });
      const brokerPort = await freePort();
      const configPath = writeAgentConfig(join(dir, "agent"), {
        edgeId: edge.id,
        dataDir: "data",
        api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
        mqtt: { broker: { listen: `127.0.0.1:${brokerPort}` } },
        hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
      });
      agent = await startAgent(configPath, { runner: file });
      const devices = Array.from({ length: 4 }, (_, i) => `keep-${i}`);
      const perDevice = 1_000;
      publishers.push(startPublisher({
        url: `mqtt://127.0.0.1:${brokerPort}`,
        devices,
        perDevice,
        window: 50,
        progressEvery: 250,
        clientPrefix: "keep",
      }));
      await waitFor(() => publishers[0].acked() >= 1_500, 60_000, "1,500 PUBACKs");
      await agent.stop("SIGKILL");
      await new Promise((r) => setTimeout(r, 300));
      agent = await startAgent(configPath, { runner: file });
      const report = await publishers[0].done(120_000);
      assert.equal(report.errors, 0);
      await waitDrained(agent);
      const byDevice = sequencesByDevice(await hubRecords(hub, edge.id));
      const problems: string[] = [];
      for (const d of devices) {
        assert.equal(report.acked[d].length, perDevice, `${d}: every message PUBACKed`);
        problems.push(...checkExactlyOnce(d, byDevice.get(d) ?? [], report.acked[d]));
      }
      assert.deepEqual(problems, []);
      console.log(
        `node MQTT: ${devices.length * perDevice} PUBACKed, each exactly once at the hub, in order`,
      );
    } finally {
      for (const p of publishers) await p.proc.kill("SIGKILL");
      await agent?.stop("SIGKILL").catch(() => {});
      await hub?.stop().catch(() => {});
      removeDir(dir);
    }
  },
});

globalThis.addEventListener("unload", () => {
  if (outdir !== join(ROOT, "dist")) removeDir(outdir);
});

Deno.test({
  name: "the armv7 archive: the bundle, a 32-bit ARM libSQL addon and a launcher; as shipped, under " +
    "qemu-arm-static with an armv7l Node.js 20, it prints its version, writes a config and delivers " +
    "messages over HTTP to a hub; the launcher runs through a symlink and says clearly when node is missing or too old",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const out = tempDir("outpost-armv7-");
    try {
      const b = await runBuild(["--target", "linux-armv7", "--version", VERSION, "--outdir", out]);
      assert.equal(b.code, 0, b.stdout + b.stderr);
      const archive = join(out, "outpost-linux-armv7.tar.gz");
      const sums = readFileSync(join(out, "SHA256SUMS"), "utf8");
      assert.match(sums, /^[0-9a-f]{64} {2}outpost-linux-armv7\.tar\.gz$/m);
      const x = await new Deno.Command("tar", { args: ["-xzf", archive, "-C", out] }).output();
      assert.equal(x.code, 0);
      const top = join(out, `outpost-${VERSION}-linux-armv7`);
      // ELF, 32-bit (class 1), little-endian, machine 40 (ARM).
      const elf = readFileSync(join(top, "libsql/index.node")).subarray(0, 20);
      assert.deepEqual([elf[0], elf[1], elf[2], elf[3], elf[4], elf[5], elf[18]], [
        0x7f,
        0x45,
        0x4c,
        0x46,
        1,
        1,
        40,
      ]);
      await runArmv7UnderQemu(top, out);

      // The launcher's checks with the host's node: put its addon in place to run the bundle here.
      copyFileSync(HOST_ADDON, join(top, "libsql/index.node"));
      mkdirSync(join(out, "bin"));
      Deno.symlinkSync(join(top, "outpost"), join(out, "bin/outpost"));
      const run = (env: Record<string, string> = {}) =>
        new Deno.Command(join(out, "bin/outpost"), {
          args: ["version"],
          env,
          stdout: "piped",
          stderr: "piped",
        })
          .output();
      const ok = await run();
      const text = new TextDecoder().decode(ok.stdout);
      assert.equal(ok.code, 0, new TextDecoder().decode(ok.stderr));
      assert.match(
        text,
        new RegExp(`^outpost ${VERSION.replaceAll(".", "\\.")}\nnode v\\d+\\.\\d+\\.\\d+ linux-`),
      );
      // A node that is too old, and none at all.
      const old = join(out, "node18");
      Deno.writeTextFileSync(
        old,
        '#!/bin/sh\ncase "$1" in -e) printf 18 ;; --version) echo v18.19.0 ;; esac\n',
      );
      Deno.chmodSync(old, 0o755);
      const tooOld = await run({ OUTPOST_NODE: old });
      assert.equal(tooOld.code, 1);
      assert.match(new TextDecoder().decode(tooOld.stderr), /Node\.js v18\.19\.0: outpost needs 20 or newer/);
      const none = await run({ OUTPOST_NODE: join(out, "no-such-node") });
      assert.equal(none.code, 127);
      assert.match(new TextDecoder().decode(none.stderr), /not found: install Node\.js 20 or newer/);
    } finally {
      removeDir(out);
    }
  },
});

/**
 * The unpacked armv7 archive, unchanged, run by an armv7l Node.js 20 under qemu-arm-static (its
 * armhf libSQL addon loaded by it): `--version`, `init`, and `run` taking messages over HTTP into
 * its outbox and delivering them to a hub (the hub runs on this machine's runtime).
 */
async function runArmv7UnderQemu(top: string, out: string): Promise<void> {
  const env = { OUTPOST_NODE: armhfNode(out) };
  const launcher = join(top, "outpost");
  const cmd = async (args: string[], cwd: string) => {
    const o = await new Deno.Command(launcher, { args, cwd, env, stdout: "piped", stderr: "piped" }).output();
    return { code: o.code, out: new TextDecoder().decode(o.stdout), err: new TextDecoder().decode(o.stderr) };
  };
  const v = await cmd(["--version"], out);
  assert.equal(v.code, 0, v.err);
  assert.match(
    v.out,
    new RegExp(`^outpost ${VERSION.replaceAll(".", "\\.")}\nnode v2\\d\\.\\d+\\.\\d+ linux-armv7\n$`),
  );

  const dir = join(out, "armv7-run");
  mkdirSync(dir);
  const init = await cmd(["init", "--config", "init.json", "--edge-id", "gw-arm"], dir);
  assert.equal(init.code, 0, init.err);
  assert.equal(JSON.parse(readFileSync(join(dir, "init.json"), "utf8")).edgeId, "gw-arm");

  const edge = { id: "gw-arm", routingKey: "rk-gw-arm", secret: "secret-gw-arm-abcdef" };
  let hub: HubHandle | undefined;
  let agent: AgentHandle | undefined;
  try {
    hub = await startHub({ dir: join(dir, "hub"), edges: [edge] });
    const configPath = writeAgentConfig(join(dir, "agent"), {
      edgeId: edge.id,
      dataDir: "data",
      api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
      mqtt: { broker: { listen: `127.0.0.1:${await freePort()}` } },
      hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
    });
    const armAgent = agent = await startAgent(configPath, { runner: launcher, env });
    const sent: number[] = [];
    for (let n = 1; n <= 20; n++) {
      const res: Response = await armAgent.api("/api/v1/devices/arm-1/telemetry", {
        method: "POST",
        body: JSON.stringify({ n, t: 20 + n / 10 }),
      });
      const body = await res.text();
      assert.equal(res.status, 202, body);
      sent.push(n);
    }
    await waitDrained(armAgent, 60_000);
    const byDevice = sequencesByDevice(await hubRecords(hub, edge.id));
    assert.deepEqual(byDevice.get("arm-1"), sent);
    console.log(`armv7 under qemu: ${v.out.trim().replace("\n", ", ")}; 20 messages at the hub, in order`);
  } finally {
    await agent?.stop("SIGTERM").catch(() => {});
    await hub?.stop().catch(() => {});
  }
}
