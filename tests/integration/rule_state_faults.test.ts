/**
 * Rule state and the outbox commit, end to end with real processes (SPEC §14):
 * - over HTTP, a message answered 507 (outbox full under `reject`) and sent again once the hub has
 *   drained the outbox is judged as if it were the first try, for throttle, deadband, alarm and
 *   aggregate: each reaches the hub exactly once;
 * - an open aggregate window survives kill -9: the window that closes after the restart counts
 *   every acknowledged message exactly once.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type AgentHandle,
  freePort,
  type HubHandle,
  hubRecords,
  removeDir,
  startAgent,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";
import { brokerPort, pub } from "./mqtt_helpers.ts";

const EDGE = { id: "gw-state", routingKey: "rk-state", secret: "secret-state-123" };

const RULES = {
  version: 1,
  rules: [
    { id: "th", match: { device: "th-*" }, then: [{ throttle: { interval: "1h" } }] },
    { id: "db", match: { device: "db-*" }, then: [{ deadband: { field: "v", delta: 5 } }] },
    {
      id: "hot",
      match: { device: "al-*" },
      if: { ">": [{ var: "t" }, 90] },
      then: [{ alarm: { type: "overheat", severity: "critical" } }],
    },
    {
      id: "sum",
      match: { device: "ag-*" },
      then: [{ aggregate: { window: "4s", fields: { v: ["count", "sum"] } } }],
    },
  ],
};

/** Writes the agent's config (the rules above, the hub on `hubPort`) and returns its path. */
async function agentConfig(dir: string, hubPort: number, extra: Record<string, unknown>): Promise<string> {
  return writeAgentConfig(join(dir, "agent"), {
    edgeId: EDGE.id,
    dataDir: "data",
    api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
    mqtt: { broker: false },
    hub: { url: `grpc://127.0.0.1:${hubPort}`, routingKey: EDGE.routingKey, secret: EDGE.secret },
    rules: RULES,
    ...extra,
  });
}

async function post(agent: AgentHandle, device: string, body: unknown): Promise<number> {
  const res = await agent.api(`/api/v1/devices/${device}/telemetry`, {
    method: "POST",
    body: JSON.stringify(body),
  });
  await res.body?.cancel();
  return res.status;
}

/**
 * Fills the outbox over HTTP until it answers 507: large records, then the smallest there are, so
 * that no message of the tests fits. Returns how many were accepted (devices "filler" and "f").
 */
async function fill(agent: AgentHandle): Promise<number> {
  const big = "x".repeat(2_000);
  let filled = 0;
  while (await post(agent, "filler", { big }) === 202) filled++;
  while (await post(agent, "f", {}) === 202) filled++;
  return filled;
}

Deno.test({
  name:
    "HTTP 507, then the same message again once there is room: throttle, deadband and alarm judge it as the " +
    "first try; an aggregate absorbs into stored state while the outbox is full; the hub holds each exactly once",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-state-507-");
    let hub: HubHandle | undefined;
    let agent: AgentHandle | undefined;
    try {
      const hubPort = await freePort();
      const configPath = await agentConfig(dir, hubPort, { outbox: { maxBytes: 65_536, onFull: "reject" } });
      agent = await startAgent(configPath);
      // The hub is down: fill the outbox until it answers 507.
      assert.equal(await post(agent, "db-1", { v: 0 }), 202);
      const filled = await fill(agent);
      // Each stateful message is refused now…
      assert.equal(await post(agent, "th-1", { n: 1 }), 507);
      assert.equal(await post(agent, "db-1", { v: 10 }), 507);
      assert.equal(await post(agent, "al-1", { t: 95 }), 507);
      // An aggregate absorbs without a record: its window's state alone is stored, so it is taken.
      assert.equal(await post(agent, "ag-2", { v: 5 }), 202);
      // …then the hub comes, the outbox drains, and the same messages are sent again.
      hub = await startHub({ dir: join(dir, "hub"), edges: [EDGE], grpcPort: hubPort });
      await waitFor(
        async () => {
          const s = await (await agent!.api("/api/v1/status")).json();
          return s.outbox.depth === 0;
        },
        30_000,
        "the outbox to drain",
      );
      assert.equal(await post(agent, "th-1", { n: 1 }), 202);
      assert.equal(await post(agent, "db-1", { v: 10 }), 202);
      assert.equal(await post(agent, "al-1", { t: 95 }), 202);
      assert.equal(await post(agent, "th-1", { n: 2 }), 202, "the throttle holds from the first stored one");
      const records = await waitFor(
        async () => {
          const all = await hubRecords(hub!, EDGE.id);
          const mine = all.filter((r) => r.device !== "filler" && r.device !== "f" && r.device !== "ag-2");
          return mine.length >= 5 ? all : undefined;
        },
        20_000,
        "the records at the hub",
      );
      await new Promise((r) => setTimeout(r, 500));
      // ag-2's window may close at any time now (4 s): its one record is checked below.
      const mine = (await hubRecords(hub, EDGE.id)).filter((r) =>
        r.device !== "filler" && r.device !== "f" && r.device !== "ag-2"
      );
      assert.equal(records!.filter((r) => r.device === "filler" || r.device === "f").length, filled);
      assert.deepEqual(
        mine.map((r) => [r.device, r.kind, r.payload.n ?? r.payload.v ?? r.payload.t ?? r.payload.status]),
        [
          ["db-1", "telemetry", 0],
          ["th-1", "telemetry", 1],
          ["db-1", "telemetry", 10],
          ["al-1", "telemetry", 95],
          ["al-1", "alarm", "active"],
        ],
      );
      // The window that absorbed ag-2 while the outbox was full closes with it counted once.
      const window = await waitFor(
        async () => {
          const w = (await hubRecords(hub!, EDGE.id)).filter((r) => r.device === "ag-2");
          return w.length > 0 ? w : undefined;
        },
        20_000,
        "the aggregate window at the hub",
      );
      assert.deepEqual(window!.map((r) => r.payload), [{ v_count: 1, v_sum: 5 }]);
    } finally {
      await agent?.stop();
      await hub?.stop();
      removeDir(dir);
    }
  },
});

Deno.test({
  name:
    "kill -9 with an open aggregate window: after the restart the window counts every acknowledged message once",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-state-kill-");
    let hub: HubHandle | undefined;
    let agent: AgentHandle | undefined;
    try {
      hub = await startHub({ dir: join(dir, "hub"), edges: [EDGE] });
      const configPath = await agentConfig(dir, hub.grpcPort, {});
      agent = await startAgent(configPath);
      let acknowledged = 0;
      let sum = 0;
      for (let i = 1; i <= 40; i++) {
        if (await post(agent, "ag-1", { v: i }) === 202) {
          acknowledged++;
          sum += i;
        }
      }
      assert.equal(acknowledged, 40);
      await agent.stop("SIGKILL"); // right after the last 202
      agent = await startAgent(configPath);
      const windows = await waitFor(
        async () => {
          const all = (await hubRecords(hub!, EDGE.id)).filter((r) => r.device === "ag-1");
          const counted = all.reduce((n, r) => n + (r.payload.v_count ?? 0), 0);
          return counted >= acknowledged ? all : undefined;
        },
        30_000,
        "the windows to close at the hub",
      );
      await new Promise((r) => setTimeout(r, 500));
      const all = (await hubRecords(hub, EDGE.id)).filter((r) => r.device === "ag-1");
      assert.ok(windows!.length >= 1);
      assert.equal(all.reduce((n, r) => n + r.payload.v_count, 0), acknowledged, JSON.stringify(all));
      assert.equal(all.reduce((n, r) => n + r.payload.v_sum, 0), sum);
    } finally {
      await agent?.stop();
      await hub?.stop();
      removeDir(dir);
    }
  },
});

Deno.test({
  name:
    "MQTT backpressure with a throttle: a mosquitto_pub publish held unacknowledged while the outbox is full " +
    "is stored exactly once when room appears, judged as the first try",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-state-mqtt-");
    let hub: HubHandle | undefined;
    let agent: AgentHandle | undefined;
    try {
      const hubPort = await freePort();
      const configPath = await agentConfig(dir, hubPort, {
        mqtt: { broker: { listen: "127.0.0.1:0", auth: "none" } },
        outbox: { maxBytes: 65_536, onFull: "reject" },
      });
      agent = await startAgent(configPath);
      const port = await brokerPort(agent);
      await fill(agent);
      // The intake retries this publish against the full outbox, every retry running the rules.
      const held = pub(port, "devices/th-9/telemetry", '{"n":1}', ["-i", "th-9"]);
      await agent.proc.waitForEvent("mqtt.backpressure", 10_000);
      await new Promise((r) => setTimeout(r, 1_500)); // several retries
      hub = await startHub({ dir: join(dir, "hub"), edges: [EDGE], grpcPort: hubPort });
      const result = await held;
      assert.equal(result.code, 0, result.stderr);
      // The throttle now holds: a second publish is acknowledged but goes nowhere.
      assert.equal((await pub(port, "devices/th-9/telemetry", '{"n":2}', ["-i", "th-9"])).code, 0);
      await waitFor(
        async () => {
          const s = await (await agent!.api("/api/v1/status")).json();
          return s.outbox.depth === 0;
        },
        30_000,
        "the outbox to drain",
      );
      const th = (await hubRecords(hub, EDGE.id)).filter((r) => r.device === "th-9");
      assert.deepEqual(th.map((r) => r.payload), [{ n: 1 }]);
    } finally {
      await agent?.stop();
      await hub?.stop();
      removeDir(dir);
    }
  },
});
