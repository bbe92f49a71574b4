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
  startAgent,
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
      assert.equal(typeof before.body.reportedAt, "string");

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
      // A config without a hub would cut the edge off for good: refused.
      const { hub: _hub, ...withoutHub } = s.config;
      const op3 = await waitOperation(s.hub, await pushConfig(s.hub, EDGE.id, withoutHub));
      assert.equal(op3.status, "failed");
      assert.deepEqual(op3.result.errors.map((e: { path: string }) => e.path), ["/hub"]);
      assert.equal(readFileSync(s.configPath, "utf8"), original);
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

Deno.test({
  ...opts,
  name:
    "restart from the hub; logs filtered by level, time and count include lines from before the restart; outpost logs reads the same ring",
  fn: async () => {
    const s = await setup();
    try {
      const firstStart = await s.agent.procs[0].waitForEvent("agent.started");
      const res = await s.hub.api(`/api/v1/edges/${EDGE.id}/restart`, { method: "POST" });
      assert.equal(res.status, 202);
      const { id } = await res.json();
      await s.agent.started(2);
      const op = await waitOperation(s.hub, id);
      assert.equal(op.status, "successful", JSON.stringify(op));
      assert.equal(op.kind, "restart");
      await waitConnected(s.agent);

      const logs = async (body: unknown) => {
        const r = await s.hub.api(`/api/v1/edges/${EDGE.id}/logs`, {
          method: "POST",
          body: JSON.stringify(body),
        });
        return { status: r.status, body: await r.json() };
      };
      // Every info line since before the first start: both starts are there.
      const all = await logs({ since: new Date(Date.parse(String(firstStart.ts)) - 1000).toISOString() });
      assert.equal(all.status, 200);
      const starts = all.body.lines.filter((l: { event: string }) => l.event === "agent.started");
      assert.equal(starts.length, 2, "lines from before and after the restart");
      assert.ok(all.body.lines.some((l: { event: string }) => l.event === "agent.restart"));
      // By level: warn and above only (the first start logs the hub API warning: none here).
      const warn = await logs({ level: "warn" });
      assert.equal(warn.status, 200);
      assert.ok(warn.body.lines.every((l: { level: string }) => l.level === "warn" || l.level === "error"));
      assert.ok(all.body.lines.some((l: { level: string }) => l.level === "info"));
      // By time: only lines at or after the second start.
      const secondStart = await s.agent.procs[1].waitForEvent("agent.started");
      const recent = await logs({ since: secondStart.ts });
      assert.ok(recent.body.lines.length > 0);
      assert.ok(recent.body.lines.every((l: { ts: string }) => l.ts >= String(secondStart.ts)));
      assert.ok(!recent.body.lines.some((l: { ts: string; event: string }) => l.ts === firstStart.ts));
      // By count: the newest n.
      const three = await logs({ lines: 3 });
      assert.equal(three.body.lines.length, 3);
      const ts = three.body.lines.map((l: { ts: string }) => l.ts);
      assert.deepEqual(ts, [...ts].sort(), "oldest first");
      // Bad requests: 400 with the path, nothing sent.
      const bad = await logs({ level: "loud", lines: 0, colour: 1 });
      assert.equal(bad.status, 400);
      assert.deepEqual(bad.body.errors.map((e: { path: string }) => e.path).sort(), [
        "/colour",
        "/level",
        "/lines",
      ]);
      // The logs operations are listed like any other.
      const ops = (await (await s.hub.api(`/api/v1/edges/${EDGE.id}/operations`)).json()).operations;
      assert.ok(
        ops.some((o: { kind: string; status: string }) => o.kind === "logs" && o.status === "successful"),
      );
      assert.ok(ops.some((o: { kind: string; id: string }) => o.kind === "restart" && o.id === id));

      // Rules pushes and update offers are operations too, with the edge's outcome.
      const rulesOk = await (await s.hub.api(`/api/v1/edges/${EDGE.id}/rules`, {
        method: "PUT",
        body: JSON.stringify({ version: 1, rules: [{ id: "r", then: [{ remove: ["x"] }] }] }),
      })).json();
      const rulesBad = await (await s.hub.api(`/api/v1/edges/${EDGE.id}/rules`, {
        method: "PUT",
        body: JSON.stringify({ version: 1, rules: [{ id: "r", then: [{ deadband: { field: "x" } }] }] }),
      })).json();
      await s.hub.api(`/api/v1/edges/${EDGE.id}/update`, {
        method: "POST",
        body: JSON.stringify({
          version: "9.9.9",
          url: "https://releases.example/9.9.9/manifest.json?sig=abc",
        }),
      }).then((r) => r.body?.cancel());
      const byVersion = await waitFor(
        async () => {
          const list = (await (await s.hub.api(`/api/v1/edges/${EDGE.id}/operations`)).json()).operations;
          const find = (kind: string, version: string) =>
            list.find((o: { kind: string; version: string }) => o.kind === kind && o.version === version);
          const found = [
            find("rules", rulesOk.version),
            find("rules", rulesBad.version),
            find("update", "9.9.9"),
          ];
          return found.every((o) => o && (o.status === "successful" || o.status === "failed"))
            ? found
            : undefined;
        },
        30_000,
        "the rules and update operations to end",
      );
      const [okOp, badOp, updateOp] = byVersion!;
      assert.equal(okOp.status, "successful");
      assert.equal(badOp.status, "failed");
      assert.equal(badOp.result.errors[0].path, "/rules/0/then/0/deadband/delta");
      assert.equal(updateOp.status, "failed");
      assert.match(updateOp.reason, /update\.auto is off/);
      assert.ok(!JSON.stringify(updateOp).includes("sig=abc"), "the offer's query is masked");

      // The CLI reads the same ring, also the lines of the first process.
      const cli = await runOutpost(["logs", "--config", s.configPath, "--json"], { runner: RUNNER });
      assert.equal(cli.code, 0, cli.stderr);
      const cliStarts = cli.stdout.trim().split("\n").map((l) => JSON.parse(l)).filter((l) =>
        l.event === "agent.started"
      );
      assert.equal(cliStarts.length, 2);
      const cliWarn = await runOutpost(
        ["logs", "--config", s.configPath, "--level", "warn", "--since", "1h"],
        {
          runner: RUNNER,
        },
      );
      assert.equal(cliWarn.code, 0, cliWarn.stderr);
      assert.ok(!/ info /.test(cliWarn.stdout));
      const cliBad = await runOutpost(["logs", "--config", s.configPath, "--level", "loud"], {
        runner: RUNNER,
      });
      assert.equal(cliBad.code, 2);
      assert.match(cliBad.stderr, /--level: must be "debug", "info", "warn" or "error"/);
      assert.ok(!cliBad.stderr.includes("    at "), "no stack trace");
      // The ring's files are 0600 in a 0700 folder.
      const ringDir = join(s.dir, "agent", "data", "logs");
      assert.equal(statSync(ringDir).mode & 0o777, 0o700);
      for (const f of readdirSync(ringDir)) assert.equal(statSync(join(ringDir, f)).mode & 0o777, 0o600, f);
    } finally {
      await teardown(s);
    }
  },
});

Deno.test({
  ...opts,
  name: "operations of a hub killed mid-operation end in a definite state after it restarts",
  fn: async () => {
    const s = await setup();
    let hub = s.hub;
    try {
      // A logs request the edge cannot answer (its process is stopped), and the hub killed.
      const agentPid = s.agent.current().pid;
      Deno.kill(agentPid, "SIGSTOP");
      const waiting = hub.api(`/api/v1/edges/${EDGE.id}/logs`, { method: "POST", body: "{}" }).catch(() =>
        undefined
      );
      const logsOp = await waitFor(
        async () => {
          const ops = (await (await hub.api(`/api/v1/edges/${EDGE.id}/operations`)).json()).operations;
          return ops.find((o: { kind: string }) => o.kind === "logs");
        },
        10_000,
        "the logs operation",
      );
      assert.equal(logsOp.status, "pending");
      // A config change sent while the edge is stopped: it gets it when it runs again.
      const id = await pushConfig(hub, EDGE.id, { ...s.config, log: { maxBytes: 262144 } });
      await hub.proc.kill("SIGKILL");
      await waiting;
      Deno.kill(agentPid, "SIGCONT");
      hub = await startHub({
        dir: join(s.dir, "hub"),
        edges: [EDGE],
        grpcPort: s.hub.grpcPort,
        apiPort: s.hub.apiPort,
        runner: RUNNER,
      });
      const lost = await (await hub.api(`/api/v1/operations/${logsOp.id}`)).json();
      assert.equal(lost.status, "failed");
      assert.equal(lost.reason, "the hub restarted before the edge answered");
      const op = await waitOperation(hub, id);
      assert.equal(op.status, "successful", JSON.stringify(op));
      assert.equal(JSON.parse(readFileSync(s.configPath, "utf8")).log.maxBytes, 262144);
      // And the hub is killed while the edge is on trial with a config it will roll back.
      const bad = await pushConfig(hub, EDGE.id, {
        ...s.config,
        hub: { ...s.config.hub, secret: WRONG_SECRET },
      });
      await waitFor(
        async () => (await (await hub.api(`/api/v1/operations/${bad}`)).json()).status === "executing",
        30_000,
        "executing",
      );
      await hub.proc.kill("SIGKILL");
      hub = await startHub({
        dir: join(s.dir, "hub"),
        edges: [EDGE],
        grpcPort: s.hub.grpcPort,
        apiPort: s.hub.apiPort,
        runner: RUNNER,
      });
      const rolled = await waitOperation(hub, bad);
      assert.equal(rolled.status, "failed");
      assert.match(rolled.reason, /^rolled back: /);
      await waitConnected(s.agent);
    } finally {
      await s.agent.stop();
      await hub.stop();
      removeDir(s.dir);
    }
  },
});

Deno.test({
  ...opts,
  name: "without a supervisor the agent starts itself again onto a pushed config, also when run from source",
  fn: async () => {
    const dir = tempDir("outpost-manage-");
    const hub = await startHub({ dir: join(dir, "hub"), edges: [EDGE], runner: RUNNER });
    const apiPort = await freePort();
    const config = {
      edgeId: EDGE.id,
      dataDir: "data",
      api: { listen: `127.0.0.1:${apiPort}`, token: TEST_TOKEN },
      mqtt: { broker: false },
      hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: EDGE.routingKey, secret: EDGE.secret },
    };
    const configPath = writeAgentConfig(join(dir, "agent"), config);
    const agent = await startAgent(configPath, { runner: RUNNER, env: { OUTPOST_SUPERVISED: "0" } });
    let childPid: number | undefined;
    try {
      await waitFor(
        async () => (await (await agent.api("/api/v1/status")).json()).hub.connected,
        30_000,
        "link",
      );
      const id = await pushConfig(hub, EDGE.id, { ...config, log: { maxBytes: 196608 } });
      const restart = await agent.proc.waitForEvent("update.restart");
      assert.equal(restart.how, "spawn");
      childPid = Number(restart.pid);
      // (Its output pipe stays open: the new process writes to it too.)
      assert.equal((await agent.proc.child.status).code, 0, "the first process left after starting the next");
      const op = await waitOperation(hub, id);
      assert.equal(op.status, "successful", JSON.stringify(op));
      const status = await (await agent.api("/api/v1/status")).json();
      assert.equal(status.hub.connected, true);
    } finally {
      try {
        agent.proc.child.kill("SIGTERM");
      } catch { /* gone */ }
      if (childPid) {
        try {
          Deno.kill(childPid, "SIGTERM");
        } catch { /* gone */ }
        await waitFor(
          () => {
            try {
              Deno.kill(childPid!, "SIGCONT");
              return false;
            } catch {
              return true;
            }
          },
          15_000,
          "the restarted agent to stop",
        );
      }
      await hub.stop();
      removeDir(dir);
    }
  },
});

Deno.test({
  ...opts,
  name:
    "a pushed config the agent cannot start on is rolled back at once; one it keeps crashing on is rolled back past update.maxStarts",
  fn: async () => {
    const s = await setup({ update: { trialSeconds: 600, maxStarts: 3 } });
    try {
      const original = readFileSync(s.configPath, "utf8");
      // The API on a port in use (the hub's): the new process cannot start.
      const busy = await pushConfig(s.hub, EDGE.id, {
        ...s.config,
        api: { ...s.config.api, listen: `127.0.0.1:${s.hub.apiPort}` },
      });
      const op1 = await waitOperation(s.hub, busy);
      assert.equal(op1.status, "failed");
      assert.match(op1.reason, /^rolled back: the agent did not start: /);
      assert.equal(readFileSync(s.configPath, "utf8"), original);
      await waitConnected(s.agent);

      // A config on which the agent is killed at every start (as a crash would): the start
      // after update.maxStarts goes back to the previous file before reading the new one.
      const crash = await pushConfig(s.hub, EDGE.id, {
        ...s.config,
        hub: { ...s.config.hub, secret: WRONG_SECRET },
      });
      const before = s.agent.procs.length;
      for (let k = 1; k <= 3; k++) {
        await s.agent.started(before + k);
        await s.agent.current().waitForEvent("config.trial.started");
        await s.agent.kill9AndStart();
      }
      const op2 = await waitOperation(s.hub, crash);
      assert.equal(op2.status, "failed");
      assert.match(op2.reason, /^rolled back: the agent started 3 times on it without passing its trial/);
      assert.equal(readFileSync(s.configPath, "utf8"), original);
      await waitConnected(s.agent);
    } finally {
      await teardown(s);
    }
  },
});

Deno.test({
  ...opts,
  name:
    "without a supervisor the process that applied a config watches the new one: killed on trial, the previous file is restored and started",
  fn: async () => {
    const dir = tempDir("outpost-manage-");
    const hub = await startHub({ dir: join(dir, "hub"), edges: [EDGE], runner: RUNNER });
    const apiPort = await freePort();
    const config = {
      edgeId: EDGE.id,
      dataDir: "data",
      api: { listen: `127.0.0.1:${apiPort}`, token: TEST_TOKEN },
      mqtt: { broker: false },
      hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: EDGE.routingKey, secret: EDGE.secret },
      update: { trialSeconds: 600 },
    };
    const configPath = writeAgentConfig(join(dir, "agent"), config);
    const original = readFileSync(configPath, "utf8");
    const agent = await startAgent(configPath, { runner: RUNNER, env: { OUTPOST_SUPERVISED: "0" } });
    const spawned = () =>
      agent.proc.lines.filter((l) => l.includes('"event":"update.restart"')).map((l) =>
        Number(JSON.parse(l).pid)
      );
    try {
      await waitFor(
        async () => (await (await agent.api("/api/v1/status")).json()).hub.connected,
        30_000,
        "link",
      );
      const id = await pushConfig(hub, EDGE.id, { ...config, hub: { ...config.hub, secret: WRONG_SECRET } });
      await agent.proc.waitForEvent("config.trial.started");
      await agent.proc.waitForEvent("update.watchdog.started");
      const [child] = spawned();
      Deno.kill(child, "SIGKILL");
      const op = await waitOperation(hub, id);
      assert.equal(op.status, "failed");
      assert.match(op.reason, /^rolled back: the config of operation .* exited \(SIGKILL\) during its trial/);
      assert.equal(readFileSync(configPath, "utf8"), original);
      assert.equal(spawned().length, 2, "the watchdog started the previous config");
      await waitFor(
        async () => (await (await agent.api("/api/v1/status")).json()).hub.connected,
        30_000,
        "link",
      );
    } finally {
      try {
        agent.proc.child.kill("SIGTERM");
      } catch { /* gone */ }
      for (const pid of spawned()) {
        try {
          Deno.kill(pid, "SIGTERM");
        } catch { /* gone */ }
      }
      await hub.stop();
      await new Promise((r) => setTimeout(r, 1000));
      removeDir(dir);
    }
  },
});
