/**
 * Self-update rollback and crash safety with real binaries (0.0.1 and 0.0.2 from the real build
 * script) and stand-ins for broken releases (`#!/bin/sh` scripts that print the right --version):
 *
 * - a candidate that exits 1 at once: rolled back by the pre-start script, run by a supervisor
 *   loop the way systemd runs install.sh's unit;
 * - a candidate that starts but never becomes healthy: a real 0.0.2 whose hub never answers
 *   (rolled back by its own trial), and a script that never answers at all without a supervisor
 *   (rolled back by the old process, which watches the trial);
 * - kill -9 at each step of an update (download, verify, swap, trial): the executable always
 *   holds a binary that starts, and the next start converges.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import {
  freePort,
  type HubHandle,
  isConnectivityEvent,
  removeDir,
  startHub,
  startProcess,
  tempDir,
} from "../helpers/procs.ts";
import { readResult } from "../../src/update/mod.ts";
import {
  buildVersions,
  fakeBinary,
  installAgent,
  type Installed,
  opts,
  type Release,
  release,
  ReleaseServer,
  sha256Of,
  stopSpawned,
  Supervisor,
  versionOf,
  waitForUpdate,
} from "./update_helpers.ts";

const work = tempDir("outpost-update-rollback-");
let setup:
  | Promise<
    { bins: Record<string, string>; server: ReleaseServer; rel: Release; sha: Record<string, string> }
  >
  | undefined;

function prepare() {
  setup ??= (async () => {
    const bins = await buildVersions(work, ["0.0.1", "0.0.2"]);
    const server = await new ReleaseServer().start();
    const rel = release(server);
    await rel.publish("0.0.2", bins["0.0.2"], { name: "good" });
    const sha = { "0.0.1": await sha256Of(bins["0.0.1"]), "0.0.2": await sha256Of(bins["0.0.2"]) };
    return { bins, server, rel, sha };
  })();
  return setup;
}

async function postUpdate(inst: Installed, manifestUrl: string): Promise<void> {
  const r = await inst.api("/api/v1/update", { method: "POST", body: JSON.stringify({ manifestUrl }) });
  assert.equal(r.status, 202, await r.text());
}

function noMarker(inst: Installed): void {
  assert.ok(!existsSync(join(inst.dataDir, "update-trial")), "no trial marker is left");
}

Deno.test({
  ...opts,
  name: "a candidate that exits 1 at once is rolled back by the pre-start script after max starts",
  fn: async () => {
    const { bins, rel, sha } = await prepare();
    const url = await rel.publish("0.0.2", fakeBinary("0.0.2", 'echo "crashing at once" >&2; exit 1'), {
      name: "crash",
    });
    const inst = await installAgent(join(work, "crash"), bins["0.0.1"], {
      publicKey: rel.key.publicKey,
      maxStarts: 3,
      trialSeconds: 120,
    });
    const sup = new Supervisor(inst, { restartDelayMs: 100 });
    try {
      await (await sup.start(0)).waitForEvent("agent.started");
      await postUpdate(inst, url);
      // 0.0.1 exits 75; the script fails three starts; the fourth pre-start restores 0.0.1.
      const back = await sup.start(4, 60_000);
      await back.waitForEvent("agent.started");
      assert.deepEqual(sup.exits.slice(0, 4), [75, 1, 1, 1], sup.output());
      assert.equal(await versionOf(inst.exe), "outpost 0.0.1");
      assert.equal(await sha256Of(inst.exe), sha["0.0.1"], "the executable is 0.0.1 again, byte for byte");
      assert.ok(!existsSync(`${inst.exe}.prev`), ".prev was moved back over the executable");
      noMarker(inst);
      assert.match(
        sup.prestartLog.join("\n"),
        /rolled back to 0\.0\.1: 0\.0\.2 was started 3 times without passing/,
      );
      const s = await waitForUpdate(inst, (s) => s.state === "rolled-back");
      assert.equal(s.version, "0.0.2");
      assert.equal(s.current, "0.0.1");
      assert.match(s.reason, /pre-start check/);
      assert.equal(readResult(join(inst.dataDir, "update-result"))?.by, "prestart");
    } finally {
      await sup.stop();
    }
    removeDir(inst.dir);
  },
});

Deno.test({
  ...opts,
  name: "a real 0.0.2 that never becomes healthy (its hub never answers) fails its trial and restores 0.0.1",
  fn: async () => {
    const { bins, rel, sha } = await prepare();
    const url = await rel.publish("0.0.2", bins["0.0.2"], { name: "good" });
    const deadHub = await freePort();
    const inst = await installAgent(join(work, "unhealthy"), bins["0.0.1"], {
      publicKey: rel.key.publicKey,
      trialSeconds: 4,
    }, { hub: { url: `grpc://127.0.0.1:${deadHub}`, routingKey: "rk", secret: "secret-0123456789" } });
    const configBefore = readFileSync(inst.configPath, "utf8");
    const sup = new Supervisor(inst, { restartDelayMs: 100 });
    try {
      await (await sup.start(0)).waitForEvent("agent.started");
      // Three messages wait in the outbox (the hub is down): they must survive the round trip.
      for (let i = 0; i < 3; i++) {
        const r = await inst.api("/api/v1/devices/d1/telemetry", {
          method: "POST",
          body: JSON.stringify({ i }),
        });
        assert.equal(r.status, 202);
      }
      const outboxBefore = (await (await inst.api("/api/v1/outbox?limit=10")).json()).records
        .filter((r: Record<string, unknown>) => !isConnectivityEvent(r));
      assert.equal(outboxBefore.length, 3);
      await postUpdate(inst, url);
      const trial = await sup.start(1, 60_000);
      await trial.waitForEvent("update.trial.started");
      const rolled = await trial.waitForEvent("update.rolled_back", 30_000);
      assert.match(String(rolled.reason), /Not healthy within the 4 s trial: the hub is not connected/);
      const back = await sup.start(2, 30_000);
      await back.waitForEvent("agent.started");
      assert.deepEqual(sup.exits.slice(0, 2), [75, 75], sup.output());
      assert.equal(
        back.lines.find((l) => l.includes('"agent.started"'))?.includes('"version":"0.0.1"'),
        true,
      );
      assert.equal(await sha256Of(inst.exe), sha["0.0.1"]);
      noMarker(inst);
      const s = await waitForUpdate(inst, (s) => s.state === "rolled-back");
      assert.match(s.reason, /the hub is not connected/);
      const outboxAfter = (await (await inst.api("/api/v1/outbox?limit=10")).json()).records
        .filter((r: Record<string, unknown>) => !isConnectivityEvent(r));
      assert.deepEqual(outboxAfter, outboxBefore, "the outbox survives the update and the rollback");
      assert.equal(readFileSync(inst.configPath, "utf8"), configBefore, "the config is untouched");
    } finally {
      await sup.stop();
    }
    removeDir(inst.dir);
  },
});

Deno.test({
  ...opts,
  name: "without a supervisor, a candidate that never answers is stopped by the old process' watchdog " +
    "after the trial deadline, and 0.0.1 is restored and started",
  fn: async () => {
    const { bins, rel, sha } = await prepare();
    const url = await rel.publish("0.0.2", fakeBinary("0.0.2", "exec sleep 600"), { name: "hang" });
    const inst = await installAgent(join(work, "hang"), bins["0.0.1"], {
      publicKey: rel.key.publicKey,
      trialSeconds: 2,
    });
    const old = startProcess([inst.exe, "run", "--config", inst.configPath], {
      cwd: inst.dir,
      env: { OUTPOST_SUPERVISED: "0" },
    });
    try {
      await old.waitForEvent("agent.started");
      await postUpdate(inst, url);
      await old.waitForEvent("update.watchdog.started", 60_000);
      const rolled = await old.waitForEvent("update.rolled_back", 30_000);
      assert.match(
        String(rolled.reason),
        /still not healthy 5 s after its trial deadline \(stopped by the watchdog\)/,
      );
      assert.equal((await old.child.status).code, 0);
      const s = await waitForUpdate(inst, (s) => s.state === "rolled-back" && s.current === "0.0.1", 30_000);
      assert.notEqual(s.pid, old.pid, "0.0.1 runs again, started by the watchdog");
      assert.equal(await sha256Of(inst.exe), sha["0.0.1"]);
      noMarker(inst);
    } finally {
      await stopSpawned(old.lines);
      await old.kill("SIGKILL");
    }
    removeDir(inst.dir);
  },
});

// ---------------------------------------------------------------------------------------------
// kill -9 at each step

interface KillCase {
  name: string;
  /** Sets up the fault (server stall, pause hook) and returns the start-0 environment. */
  env?: Record<string, string>;
  /** Waits until the update is at the step to kill in. */
  at: (inst: Installed, sup: Supervisor) => Promise<void>;
  /** What the executable holds right after the kill. */
  exeAfterKill: "0.0.1" | "0.0.2";
  /** Whether another update is needed after the restart to reach 0.0.2. */
  updateAgain: boolean;
  check?: (inst: Installed) => Promise<void> | void;
  /** A hub is configured but down until after the restart (the trial waits for it). */
  withHub?: boolean;
}

async function killCase(c: KillCase) {
  const { bins, server, rel, sha } = await prepare();
  const url = await rel.publish("0.0.2", bins["0.0.2"], { name: "good" });
  const extra: Record<string, unknown> = {};
  let hubHandle: HubHandle | undefined;
  const edge = { id: "gw-update", routingKey: "rk-kill", secret: "secret-kill-0123456789" };
  const hubPorts = { grpcPort: await freePort(), apiPort: await freePort() };
  if (c.withHub) {
    extra.hub = {
      url: `grpc://127.0.0.1:${hubPorts.grpcPort}`,
      routingKey: edge.routingKey,
      secret: edge.secret,
    };
  }
  const inst = await installAgent(join(work, `kill-${c.name}`), bins["0.0.1"], {
    publicKey: rel.key.publicKey,
    trialSeconds: 120,
  }, extra);
  const sup = new Supervisor(inst, { env: (n) => (n === 0 ? c.env ?? {} : {}), restartDelayMs: 100 });
  try {
    await (await sup.start(0)).waitForEvent("agent.started");
    const before = server.requests.length;
    await postUpdate(inst, url);
    await c.at(inst, sup);
    sup.hold();
    const victim = sup.current()!;
    await victim.kill("SIGKILL");
    // The invariant: whatever the step, the executable is a whole binary that starts.
    assert.equal(await versionOf(inst.exe), `outpost ${c.exeAfterKill}`);
    assert.equal(await sha256Of(inst.exe), sha[c.exeAfterKill]);
    await c.check?.(inst);
    sup.release();
    const n = sup.procs.length;
    const next = await sup.start(n, 60_000);
    await next.waitForEvent("agent.started");
    if (c.updateAgain) {
      assert.equal(
        next.lines.some((l) => l.includes('"version":"0.0.1"') && l.includes("agent.started")),
        true,
      );
      noMarker(inst);
      await postUpdate(inst, url);
    }
    if (c.withHub) {
      await waitForUpdate(inst, (s) => s.state === "trial" && s.current === "0.0.2", 60_000);
      hubHandle = await startHub({
        dir: join(inst.dir, "hub"),
        edges: [edge],
        runner: bins["0.0.1"],
        ...hubPorts,
      });
    }
    const s = await waitForUpdate(inst, (s) => s.state === "committed" && s.current === "0.0.2", 90_000);
    assert.equal(s.version, "0.0.2");
    assert.equal(await sha256Of(inst.exe), sha["0.0.2"]);
    assert.equal(await sha256Of(`${inst.exe}.prev`), sha["0.0.1"]);
    noMarker(inst);
    assert.ok(!existsSync(join(inst.dir, "bin/.outpost.update.part")), "no partial download is left");
    return { inst, sup, requests: server.requests.slice(before) };
  } finally {
    await sup.stop();
    await hubHandle?.stop();
    removeDir(inst.dir);
  }
}

Deno.test({
  ...opts,
  name: "kill -9 at each step of an update: the executable always starts, and the next start converges",
  fn: async (t) => {
    const { bins, server } = await prepare();
    const artifact = "/good/outpost-linux-x64";
    const size = statSync(bins["0.0.2"]).size;

    await t.step("while downloading: the partial file is resumed with Range after the restart", async () => {
      const stallAt = Math.floor(size / 2);
      server.fault(artifact, "stall", stallAt);
      const { requests } = await killCase({
        name: "download",
        at: async (inst) => {
          await waitForUpdate(
            inst,
            (s) => s.state === "downloading" && s.progress?.bytes >= stallAt - (1 << 20),
          );
        },
        exeAfterKill: "0.0.1",
        updateAgain: true,
        check: (inst) => {
          const partial = statSync(join(inst.dir, "bin/.outpost.update.part")).size;
          assert.ok(partial > 0 && partial <= stallAt, `a partial download of ${partial} bytes is kept`);
          assert.ok(
            existsSync(join(inst.dir, "bin/.outpost.update.json")),
            "with what it is meant to become",
          );
        },
      });
      const gets = requests.filter((r) => r.path === artifact);
      assert.equal(gets.length, 2, JSON.stringify(gets));
      assert.equal(gets[0].range, null);
      assert.match(gets[1].range ?? "", /^bytes=\d+-$/, "the second run resumed with Range");
      assert.equal(gets[1].status, 206);
      assert.ok(Number(/\d+/.exec(gets[1].range!)![0]) > 0);
    });

    await t.step("while verifying: the complete download is reused, not fetched again", async () => {
      const { requests } = await killCase({
        name: "verify",
        env: { OUTPOST_TEST_UPDATE_PAUSE: "verifying" },
        at: async (_inst, sup) => void await sup.current()!.waitForEvent("update.paused", 60_000),
        exeAfterKill: "0.0.1",
        updateAgain: true,
      });
      assert.equal(requests.filter((r) => r.path === artifact).length, 1, "downloaded once");
    });

    await t.step("while swapping, after .prev was saved", async () => {
      await killCase({
        name: "swap-prev",
        env: { OUTPOST_TEST_UPDATE_PAUSE: "swapping-prev" },
        at: async (_inst, sup) => void await sup.current()!.waitForEvent("update.paused", 60_000),
        exeAfterKill: "0.0.1",
        updateAgain: true,
      });
    });

    await t.step("while swapping, after the trial marker was written, before the rename", async () => {
      await killCase({
        name: "swap-marker",
        env: { OUTPOST_TEST_UPDATE_PAUSE: "swapping-marker" },
        at: async (_inst, sup) => void await sup.current()!.waitForEvent("update.paused", 60_000),
        exeAfterKill: "0.0.1",
        updateAgain: true,
        check: (inst) => assert.ok(existsSync(join(inst.dataDir, "update-trial")), "the marker names 0.0.2"),
      });
    });

    await t.step("after the rename, before the restart: the next start is 0.0.2 on trial", async () => {
      await killCase({
        name: "swapped",
        env: { OUTPOST_TEST_UPDATE_PAUSE: "swapped" },
        at: async (_inst, sup) => void await sup.current()!.waitForEvent("update.paused", 60_000),
        exeAfterKill: "0.0.2",
        updateAgain: false,
      });
    });

    await t.step("during the trial (waiting for the hub): the trial goes on after the restart", async () => {
      await killCase({
        name: "trial",
        at: async (inst, sup) => {
          await waitForUpdate(inst, (s) => s.state === "trial" && s.current === "0.0.2", 60_000);
          await sup.current()!.waitForEvent("update.trial.started");
        },
        exeAfterKill: "0.0.2",
        updateAgain: false,
        check: (inst) => {
          const marker = readFileSync(join(inst.dataDir, "update-trial"), "utf8");
          assert.match(marker, /^boots=1$/m);
        },
        withHub: true,
      });
    });
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
