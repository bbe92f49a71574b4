/**
 * Managing a gateway from the hub (SPEC §12) with real processes: an agent under a supervisor
 * (exit 75 → started again, as under systemd) and a hub, both `outpost` processes on loopback.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  freePort,
  type HubHandle,
  hubRecords,
  removeDir,
  runOutpost,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";
import {
  opts,
  pushConfig,
  RUNNER,
  superviseAgent,
  type Supervised,
  waitConnected,
  waitOperation,
} from "./management_helpers.ts";

const EDGE = { id: "gw-manage", routingKey: "rk-manage", secret: "hub-secret-Zq8uNw3kP1" };
const WRONG_SECRET = "wrong-secret-Vb7yTm2xQ9";

interface Setup {
  dir: string;
  hub: HubHandle;
  agent: Supervised;
  configPath: string;
  config: Record<string, any>;
  apiPort: number;
}

async function setup(
  extra: Record<string, unknown> = {},
  env: Record<string, string> = {},
): Promise<Setup> {
  const dir = tempDir("outpost-manage-");
  const hub = await startHub({ dir: join(dir, "hub"), edges: [EDGE], runner: RUNNER });
  const apiPort = await freePort();
  const agentDir = join(dir, "agent");
  const config: Record<string, any> = {
    edgeId: EDGE.id,
    dataDir: "data",
    api: { listen: `127.0.0.1:${apiPort}`, token: TEST_TOKEN },
    mqtt: { broker: false },
    hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: EDGE.routingKey, secret: EDGE.secret },
    update: { trialSeconds: 8, maxStarts: 3 },
    ...extra,
  };
  const configPath = writeAgentConfig(agentDir, config);
  const agent = await superviseAgent(configPath, apiPort, env);
  await waitConnected(agent);
  return { dir, hub, agent, configPath, config, apiPort };
}

async function teardown(s: Setup): Promise<void> {
  await s.agent.stop();
  await s.hub.stop();
  removeDir(s.dir);
}

async function post(agent: Supervised, device: string, n: number): Promise<void> {
  const res = await agent.api(`/api/v1/devices/${device}/telemetry`, {
    method: "POST",
    body: JSON.stringify({ n }),
  });
  assert.equal(res.status, 202, `message ${n}: ${res.status}`);
}

/** Every hub API answer a test collected, and every log line of both sides and the ring. */
function assertNoSecret(s: Setup, answers: string[], secrets: string[]): void {
  const ringDir = join(s.dir, "agent", "data", "logs");
  const ring = existsSync(ringDir)
    ? readdirSync(ringDir).map((f) => readFileSync(join(ringDir, f), "utf8")).join("\n")
    : "";
  const outputs = {
    "hub API answers": answers.join("\n"),
    "agent output": s.agent.lines().join("\n"),
    "hub output": s.hub.proc.lines.join("\n"),
    "agent log ring": ring,
  };
  for (const [where, text] of Object.entries(outputs)) {
    assert.ok(text.length > 0, `${where} is empty`);
    for (const secret of secrets) assert.ok(!text.includes(secret), `${where} holds the secret "${secret}"`);
  }
}

async function hubJson(hub: HubHandle, path: string, answers: string[], init?: RequestInit) {
  const res = await hub.api(path, init);
  const text = await res.text();
  answers.push(text);
  return { status: res.status, body: JSON.parse(text) };
}

Deno.test({
  ...opts,
  name:
    "a pushed config takes effect after a restart on trial; the hub shows it masked and its secrets appear in no answer and no log line",
  fn: async () => {
    const dir = tempDir("outpost-rules-");
    writeFileSync(
      join(dir, "a.json"),
      JSON.stringify({ version: 1, rules: [{ id: "a", then: [{ set: { stage: "a" } }] }] }),
    );
    writeFileSync(
      join(dir, "b.json"),
      JSON.stringify({ version: 1, rules: [{ id: "b", then: [{ set: { stage: "b" } }] }] }),
    );
    const s = await setup({ rules: join(dir, "a.json") });
    const answers: string[] = [];
    try {
      // A device with its own token: the token must not leak either.
      const created = await (await s.agent.api("/api/v1/devices", {
        method: "POST",
        body: JSON.stringify({ id: "pump-1" }),
      })).json();
      const deviceToken = created.token as string;
      assert.ok(deviceToken.length >= 16);
      await post(s.agent, "pump-1", 1);

      const before = await hubJson(s.hub, `/api/v1/edges/${EDGE.id}/config`, answers);
      assert.equal(before.status, 200);
      assert.equal(before.body.config.rules, join(dir, "a.json"));
      assert.equal(before.body.config.hub.secret, "***");
      assert.equal(before.body.config.api.token, "***");

      const id = await pushConfig(s.hub, EDGE.id, { ...s.config, rules: join(dir, "b.json") });
      const op = await waitOperation(s.hub, id);
      assert.equal(op.status, "successful", JSON.stringify(op));
      assert.equal(op.kind, "config");
      assert.equal(op.request.config.hub.secret, "***");
      assert.equal(op.request.config.api.token, "***");
      assert.equal(s.agent.procs.length, 2, "the agent restarted once onto the new config");

      await waitConnected(s.agent);
      await post(s.agent, "pump-1", 2);
      const records = await waitFor(
        async () => {
          const r = await hubRecords(s.hub, EDGE.id);
          return r.filter((x) => x.device === "pump-1").length === 2 ? r : undefined;
        },
        30_000,
        "both records",
      );
      const stages = records!.filter((x) => x.device === "pump-1").map((x) => [x.payload.n, x.payload.stage]);
      assert.deepEqual(stages, [[1, "a"], [2, "b"]]);

      const after = await waitFor(
        async () => {
          const c = await hubJson(s.hub, `/api/v1/edges/${EDGE.id}/config`, answers);
          return c.body.config?.rules === join(dir, "b.json") ? c : undefined;
        },
        30_000,
        "the new config at the hub",
      );
      assert.equal(after!.body.config.hub.secret, "***");
      // The file: the new config, 0600; the previous one kept beside it, 0600.
      assert.equal(JSON.parse(readFileSync(s.configPath, "utf8")).rules, join(dir, "b.json"));
      assert.equal(statSync(s.configPath).mode & 0o777, 0o600);
      assert.equal(JSON.parse(readFileSync(`${s.configPath}.prev`, "utf8")).rules, join(dir, "a.json"));
      assert.equal(statSync(`${s.configPath}.prev`).mode & 0o777, 0o600);
      assert.ok(!existsSync(`${s.configPath}.trial`));

      const ops = await hubJson(s.hub, `/api/v1/edges/${EDGE.id}/operations`, answers);
      assert.equal(ops.body.operations[0].id, id);
      await hubJson(s.hub, `/api/v1/edges`, answers);
      await hubJson(s.hub, `/api/v1/operations/${id}`, answers);
      const logs = await hubJson(s.hub, `/api/v1/edges/${EDGE.id}/logs`, answers, {
        method: "POST",
        body: JSON.stringify({ level: "debug" }),
      });
      assert.equal(logs.status, 200);
      assert.ok(logs.body.lines.some((l: { event: string }) => l.event === "config.committed"));
      assertNoSecret(s, answers, [EDGE.secret, TEST_TOKEN, deviceToken]);
    } finally {
      await teardown(s);
      removeDir(dir);
    }
  },
});

Deno.test({
  ...opts,
  name:
    "a pushed config with an unknown key is refused with its path: nothing changes and the hub shows failed and why",
  fn: async () => {
    const s = await setup();
    try {
      const original = readFileSync(s.configPath, "utf8");
      const id = await pushConfig(s.hub, EDGE.id, {
        ...s.config,
        hub: { ...s.config.hub, secrett: "typo" },
        colour: "blue",
      });
      const op = await waitOperation(s.hub, id);
      assert.equal(op.status, "failed");
      assert.match(op.reason, /invalid configuration/);
      assert.match(op.reason, /\/colour: unknown key/);
      assert.match(op.reason, /\/hub\/secrett: unknown key/);
      assert.deepEqual(
        op.result.errors.map((e: { path: string }) => e.path).sort(),
        ["/colour", "/hub/secrett"],
      );
      assert.equal(readFileSync(s.configPath, "utf8"), original, "the config file is unchanged");
      assert.ok(!existsSync(`${s.configPath}.trial`) && !existsSync(`${s.configPath}.prev`));
      assert.equal(s.agent.procs.length, 1, "the agent did not restart");
      assert.equal((await (await s.agent.api("/api/v1/status")).json()).hub.connected, true);
      // A value of the wrong type under a secret's key is refused without quoting it.
      const id2 = await pushConfig(s.hub, EDGE.id, {
        ...s.config,
        hub: { ...s.config.hub, secret: 987654321 },
      });
      const op2 = await waitOperation(s.hub, id2);
      assert.equal(op2.status, "failed");
      assert.match(op2.reason, /\/hub\/secret: /);
      assert.ok(!JSON.stringify(op2).includes("987654321"), JSON.stringify(op2));
      assert.ok(!s.agent.lines().join("\n").includes("987654321"));
      // Not JSON, not an object: 400 at the hub with the path.
      const bad = await s.hub.api(`/api/v1/edges/${EDGE.id}/config`, { method: "PUT", body: "[1]" });
      assert.equal(bad.status, 400);
      assert.deepEqual((await bad.json()).errors, [{ path: "", message: "must be a config object" }]);
      const unknown = await s.hub.api(`/api/v1/edges/nope/config`, { method: "PUT", body: "{}" });
      assert.equal(unknown.status, 404);
      await unknown.body?.cancel();
    } finally {
      await teardown(s);
    }
  },
});

Deno.test({
  ...opts,
  name:
    "a pushed config whose hub secret the hub rejects fails its trial, the previous file comes back, the agent reconnects, and no accepted message is lost",
  fn: async () => {
    const s = await setup();
    try {
      const original = readFileSync(s.configPath, "utf8");
      let n = 0;
      for (; n < 20; n++) await post(s.agent, "meter-1", n);
      const id = await pushConfig(s.hub, EDGE.id, {
        ...s.config,
        hub: { ...s.config.hub, secret: WRONG_SECRET },
      });
      // The second process runs on the new file, on trial, and cannot reach the hub.
      await s.agent.started(2);
      await s.agent.current().waitForEvent("config.trial.started");
      const during = await waitFor(
        async () => {
          const r = await (await s.agent.api("/api/v1/status")).json();
          return r;
        },
        30_000,
        "the agent on trial",
      );
      assert.equal(during.hub.connected, false);
      for (; n < 50; n++) await post(s.agent, "meter-1", n);
      const executing = await (await s.hub.api(`/api/v1/operations/${id}`)).json();
      assert.equal(executing.status, "executing");

      const op = await waitOperation(s.hub, id);
      assert.equal(op.status, "failed");
      assert.match(op.reason, /^rolled back: not healthy within its 8 s trial: the hub is not connected/);
      assert.equal(s.agent.procs.length, 3, "restarted onto the new config, then back onto the previous");
      assert.equal(readFileSync(s.configPath, "utf8"), original, "the previous file is back, byte for byte");
      await waitConnected(s.agent);
      for (; n < 60; n++) await post(s.agent, "meter-1", n);
      const records = await waitFor(
        async () => {
          const r = (await hubRecords(s.hub, EDGE.id)).filter((x) => x.device === "meter-1");
          return r.length >= 60 ? r : undefined;
        },
        60_000,
        "every message at the hub",
      );
      const ns = records!.map((r) => r.payload.n);
      assert.equal(ns.length, 60, "each message once");
      assert.deepEqual(ns, Array.from({ length: 60 }, (_, i) => i), "all of them, in order");
      assertNoSecret(s, [JSON.stringify(op)], [EDGE.secret, WRONG_SECRET, TEST_TOKEN]);
    } finally {
      await teardown(s);
    }
  },
});

Deno.test({
  ...opts,
  name:
    "kill -9 at each step of a config change (staging, written, restarting, on trial): the agent comes back on a config that connects and the operation ends",
  fn: async () => {
    const cases: { step: string; bad: boolean; expect: "successful" | "failed"; reason?: RegExp }[] = [
      {
        step: "prev",
        bad: false,
        expect: "failed",
        reason: /^interrupted before the new configuration was in place/,
      },
      {
        step: "marker",
        bad: false,
        expect: "failed",
        reason: /^interrupted before the new configuration was in place/,
      },
      { step: "written", bad: false, expect: "successful" },
      { step: "restarting", bad: false, expect: "successful" },
      { step: "trial", bad: true, expect: "failed", reason: /^rolled back: / },
    ];
    for (const c of cases) {
      const s = await setup({}, c.step === "trial" ? {} : { OUTPOST_TEST_CONFIG_PAUSE: c.step });
      try {
        const original = readFileSync(s.configPath, "utf8");
        const pushed = c.bad
          ? { ...s.config, hub: { ...s.config.hub, secret: WRONG_SECRET } }
          : { ...s.config, log: { maxBytes: 131072 } };
        const id = await pushConfig(s.hub, EDGE.id, pushed);
        if (c.step === "trial") {
          await s.agent.started(2);
          await s.agent.current().waitForEvent("config.trial.started");
        } else {
          const paused = await s.agent.current().waitForEvent("config.paused");
          assert.equal(paused.at, c.step);
        }
        await s.agent.kill9AndStart();
        const op = await waitOperation(s.hub, id);
        assert.equal(op.status, c.expect, `${c.step}: ${JSON.stringify(op)}`);
        if (c.reason) assert.match(op.reason, c.reason, c.step);
        await waitConnected(s.agent);
        const now = JSON.parse(readFileSync(s.configPath, "utf8"));
        if (c.expect === "successful") assert.equal(now.log.maxBytes, 131072, c.step);
        else assert.equal(readFileSync(s.configPath, "utf8"), original, `${c.step}: the previous file`);
        assert.ok(!existsSync(`${s.configPath}.trial`), `${c.step}: no marker left`);
      } finally {
        await teardown(s);
      }
    }
  },
});
