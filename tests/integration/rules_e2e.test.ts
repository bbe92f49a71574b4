/**
 * Rules end to end: messages posted over HTTP come out at the hub transformed, dropped,
 * deadbanded, throttled, aggregated and alarmed as the rules say, with one real agent and hub.
 * Each step replaces the rules through `PUT /api/v1/rules` (or the watched rules file) and uses
 * its own devices. Wall-clock windows are unit-tested with an injected clock
 * (tests/unit/rules/actions.test.ts); here one short aggregate window closes for real.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
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

const EDGE = { id: "gw-rules", routingKey: "rk-rules", secret: "secret-rules-123" };

Deno.test({
  name: "rules end to end: HTTP → rules → hub",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const dir = tempDir("outpost-rules-");
    const rulesFile = join(dir, "agent", "rules.json");
    const initial = {
      version: 1,
      rules: [{
        id: "c2f",
        match: { device: "conv-*" },
        then: [{ set: { temp_f: { "+": [{ "*": [{ var: "temperature" }, 1.8] }, 32] } } }],
      }],
    };
    const hub: HubHandle = await startHub({ dir: join(dir, "hub"), edges: [EDGE] });
    const apiPort = await freePort();
    writeAgentConfig(join(dir, "agent"), {});
    writeFileSync(rulesFile, JSON.stringify(initial));
    const configPath = writeAgentConfig(join(dir, "agent"), {
      edgeId: EDGE.id,
      dataDir: "data",
      api: { listen: `127.0.0.1:${apiPort}`, token: TEST_TOKEN },
      mqtt: { broker: false },
      hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: EDGE.routingKey, secret: EDGE.secret },
      rules: "rules.json",
    });
    let agent: AgentHandle = await startAgent(configPath);

    const post = async (device: string, body: unknown, kind = "telemetry") => {
      const res = await agent.api(`/api/v1/devices/${device}/${kind}`, {
        method: "POST",
        body: JSON.stringify(body),
      });
      assert.equal(res.status, 202, await res.text());
    };
    const put = async (doc: unknown) => {
      const res = await agent.api("/api/v1/rules", { method: "PUT", body: JSON.stringify(doc) });
      return { status: res.status, body: await res.json() };
    };
    const status = async () => await (await agent.api("/api/v1/status")).json();
    /** Waits until the outbox is empty, then returns the hub's records for these devices. */
    const atHub = async (devices: string[]) => {
      await waitFor(async () => (await status()).outbox.depth === 0, 20_000, "outbox to drain");
      return (await hubRecords(hub, EDGE.id)).filter((r) => devices.includes(r.device));
    };

    try {
      await t.step("rules from the config's file: a unit conversion (set)", async () => {
        const s = await status();
        assert.equal(s.rules.count, 1);
        await post("conv-1", { temperature: 100 });
        const got = await atHub(["conv-1"]);
        assert.deepEqual(got.map((r) => r.payload), [{ temperature: 100, temp_f: 212 }]);
      });

      await t.step("rename, remove, keep", async () => {
        const r = await put({
          version: 1,
          rules: [
            {
              id: "rn",
              match: { device: "shape-*" },
              then: [{ rename: { t: "temperature" } }, { remove: ["debug"] }],
            },
            { id: "kp", match: { device: "shape-2" }, then: [{ keep: ["temperature"] }] },
          ],
        });
        assert.equal(r.status, 200);
        await post("shape-1", { t: 21, debug: "x", rssi: -60 });
        await post("shape-2", { t: 22, debug: "x", rssi: -61 });
        const got = await atHub(["shape-1", "shape-2"]);
        assert.deepEqual(got.map((r) => r.payload), [{ temperature: 21, rssi: -60 }, { temperature: 22 }]);
      });

      await t.step("drop: debug events never reach the hub", async () => {
        await put({
          version: 1,
          rules: [{
            id: "nodebug",
            match: { kind: "event" },
            if: { "==": [{ var: "level" }, "debug"] },
            then: [{ drop: true }],
          }],
        });
        await post("drop-1", { level: "debug", msg: "a" }, "events");
        await post("drop-1", { level: "info", msg: "b" }, "events");
        await post("drop-1", { level: "debug", msg: "c" }, "events");
        const got = await atHub(["drop-1"]);
        assert.deepEqual(got.map((r) => r.payload.msg), ["b"]);
        assert.equal(got[0].kind, "event");
      });

      await t.step("deadband: only moves of at least delta since the last forwarded value", async () => {
        await put({ version: 1, rules: [{ id: "db", then: [{ deadband: { field: "v", delta: 0.5 } }] }] });
        for (const v of [20, 20.1, 20.4, 20.6, 20.7, 21.2, 20.6]) await post("db-1", { v });
        const got = await atHub(["db-1"]);
        assert.deepEqual(got.map((r) => r.payload.v), [20, 20.6, 21.2, 20.6]);
      });

      await t.step("throttle: at most one message per device per interval", async () => {
        await put({ version: 1, rules: [{ id: "th", then: [{ throttle: { interval: "1h" } }] }] });
        for (let i = 0; i < 5; i++) await post("th-1", { i });
        for (let i = 0; i < 3; i++) await post("th-2", { i });
        const got = await atHub(["th-1", "th-2"]);
        assert.deepEqual(got.map((r) => [r.device, r.payload.i]), [["th-1", 0], ["th-2", 0]]);
      });

      await t.step(
        "aggregate: one message per device per window, emitted when the window closes with no further traffic",
        async () => {
          await put({
            version: 1,
            rules: [{
              id: "agg",
              then: [{ aggregate: { window: "2s", fields: { v: ["avg", "min", "max", "count", "last"] } } }],
            }],
          });
          // Start right after a window boundary so all five land in one window.
          await new Promise((r) => setTimeout(r, 2000 - (Date.now() % 2000) + 50));
          for (const v of [1, 2, 3, 4, 10]) await post("agg-1", { v });
          const got = await waitFor(
            async () => {
              const r = (await hubRecords(hub, EDGE.id)).filter((x) => x.device === "agg-1");
              return r.length > 0 ? r : undefined;
            },
            10_000,
            "the window's message",
          ) as Record<string, any>[];
          assert.equal(got.length, 1);
          assert.deepEqual(got[0].payload, { v_avg: 4, v_min: 1, v_max: 10, v_count: 5, v_last: 10 });
          assert.equal(got[0].ts % 2000, 0, "ts is the window start, aligned to the wall clock");
        },
      );

      const alarmRules = {
        version: 1,
        rules: [{
          id: "overheat",
          match: { kind: "telemetry" },
          if: { ">": [{ var: "temperature" }, 90] },
          then: [{
            alarm: { type: "overheat", severity: "critical", clear: { "<": [{ var: "temperature" }, 80] } },
          }],
        }],
      };

      await t.step("alarm: raised once while the condition holds, cleared when clear holds", async () => {
        await put(alarmRules);
        for (const temperature of [85, 95, 97, 85, 99, 70, 75]) await post("boiler-1", { temperature });
        const got = await atHub(["boiler-1"]);
        const alarms = got.filter((r) => r.kind === "alarm").map((
          r,
        ) => [r.payload.type, r.payload.status, r.payload.severity]);
        assert.deepEqual(alarms, [["overheat", "active", "critical"], ["overheat", "cleared", "critical"]]);
        assert.equal(
          got.filter((r) => r.kind === "telemetry").length,
          7,
          "the readings themselves still go through",
        );
      });

      await t.step(
        "alarm: an active alarm survives a restart (not raised again, still cleared)",
        async () => {
          await post("boiler-2", { temperature: 95 });
          await atHub(["boiler-2"]);
          await new Promise((r) => setTimeout(r, 1500)); // the engine state is saved within a second
          await agent.stop("SIGKILL");
          agent = await startAgent(configPath);
          await post("boiler-2", { temperature: 96 });
          await post("boiler-2", { temperature: 60 });
          const got = await atHub(["boiler-2"]);
          const alarms = got.filter((r) => r.kind === "alarm").map((r) => r.payload.status);
          assert.deepEqual(alarms, ["active", "cleared"]);
        },
      );

      await t.step("route: a message routed only to a local MQTT topic does not go to the hub", async () => {
        await put({
          version: 1,
          rules: [{ id: "local", match: { device: "loc-*" }, then: [{ route: ["mqtt:local/readings"] }] }],
        });
        await post("loc-1", { v: 1 });
        await post("hubbound-1", { v: 2 });
        const got = await atHub(["loc-1", "hubbound-1"]);
        assert.deepEqual(got.map((r) => r.device), ["hubbound-1"]);
      });

      await t.step("an invalid document is refused with every error's path and changes nothing", async () => {
        const before = (await status()).rules.version;
        const r = await put({
          version: 1,
          rules: [{ id: "x", then: [{ bogus: 1 }, { deadband: { field: "v" } }] }, { if: { nope: [1] } }],
        });
        assert.equal(r.status, 400);
        const paths = r.body.errors.map((e: { path: string }) => e.path);
        for (
          const p of ["/rules/0/then/0/bogus", "/rules/0/then/1/deadband/delta", "/rules/1/id", "/rules/1/if"]
        ) {
          assert.ok(paths.includes(p), `${p} in ${JSON.stringify(paths)}`);
        }
        assert.equal((await status()).rules.version, before);
      });

      await t.step(
        "a rule that fails at run time: the message goes on unchanged, the error is counted",
        async () => {
          await put({
            version: 1,
            rules: [{
              id: "label",
              match: { device: "err-*" },
              then: [{ set: { label: { cat: ["x", { var: "obj" }] } } }],
            }],
          });
          await post("err-1", { obj: { toString: 1 }, n: 1 });
          await post("err-1", { obj: "fine", n: 2 });
          const got = await atHub(["err-1"]);
          assert.deepEqual(got.map((r) => r.payload), [{ obj: { toString: 1 }, n: 1 }, {
            obj: "fine",
            n: 2,
            label: "xfine",
          }]);
          const metrics = await (await agent.api("/metrics")).text();
          assert.match(metrics, /^outpost_rules_errors_total 1$/m);
        },
      );

      await t.step(
        "the watched rules file: a valid change replaces the rules, an invalid one is refused",
        async () => {
          writeFileSync(
            rulesFile,
            JSON.stringify({ version: 1, rules: [{ id: "a", then: [] }, { id: "b", then: [] }] }),
          );
          await waitFor(async () => (await status()).rules.count === 2, 10_000, "the file change to apply");
          const version = (await status()).rules.version;
          writeFileSync(rulesFile, '{"version": 1, "rules": [{"id": "a", "then": [{"drop": "yes"}]}]}');
          await new Promise((r) => setTimeout(r, 2500));
          assert.equal((await status()).rules.version, version);
          assert.ok(
            agent.proc.lines.some((l) =>
              l.includes("rules.file_invalid") && l.includes("/rules/0/then/0/drop")
            ),
          );
        },
      );

      await t.step(
        "dry run: POST /api/v1/rules/test shows outputs and trace without storing anything",
        async () => {
          const res = await agent.api("/api/v1/rules/test", {
            method: "POST",
            body: JSON.stringify({
              rules: alarmRules,
              message: { device: "boiler-9", kind: "telemetry", payload: { temperature: 95 } },
            }),
          });
          assert.equal(res.status, 200);
          const body = await res.json();
          assert.deepEqual(body.outputs.map((o: { kind: string }) => o.kind), ["telemetry", "alarm"]);
          assert.equal(body.trace[0].rule, "overheat");
          assert.equal(body.trace[0].matched, true);
          const bad = await agent.api("/api/v1/rules/test", {
            method: "POST",
            body: JSON.stringify({
              rules: { version: 2, rules: [] },
              message: { device: "d", kind: "nope", payload: 1 },
            }),
          });
          assert.equal(bad.status, 400);
          const paths = (await bad.json()).errors.map((e: { path: string }) => e.path);
          assert.ok(
            paths.includes("/rules/version") && paths.includes("/message/kind") &&
              paths.includes("/message/payload"),
            JSON.stringify(paths),
          );
          assert.equal((await status()).outbox.depth, 0);
        },
      );
    } finally {
      await agent.stop("SIGKILL");
      await hub.stop();
      removeDir(dir);
    }
  },
});
