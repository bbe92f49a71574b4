/** Rules pushed from the hub: applied atomically and reported back; an invalid document is refused with paths. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  freePort,
  hubRecords,
  removeDir,
  startAgent,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";

const EDGE = { id: "gw-hubrules", routingKey: "rk-hr", secret: "secret-hubrules-1" };

Deno.test({
  name:
    "rules pushed from the hub change what reaches the hub; an invalid document is refused with paths and changes nothing",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir();
    const hub = await startHub({ dir: join(dir, "hub"), edges: [EDGE] });
    const apiPort = await freePort();
    const agent = await startAgent(writeAgentConfig(join(dir, "agent"), {
      edgeId: EDGE.id,
      dataDir: "data",
      api: { listen: `127.0.0.1:${apiPort}`, token: TEST_TOKEN },
      mqtt: { broker: false },
      hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: EDGE.routingKey, secret: EDGE.secret },
    }));
    const post = async (body: unknown) => {
      const res = await agent.api("/api/v1/devices/pump-1/telemetry", {
        method: "POST",
        body: JSON.stringify(body),
      });
      assert.equal(res.status, 202);
    };
    const report = async () => {
      const edges = (await (await hub.api("/api/v1/edges")).json()).edges;
      return edges.find((e: { id: string }) => e.id === EDGE.id).reports.rules;
    };
    const pushRules = async (doc: unknown) => {
      const res = await hub.api(`/api/v1/edges/${EDGE.id}/rules`, {
        method: "PUT",
        body: JSON.stringify(doc),
      });
      assert.equal(res.status, 202);
      return (await res.json()).version as string;
    };
    try {
      await waitFor(
        async () => (await (await agent.api("/api/v1/status")).json()).hub.connected,
        10_000,
        "hub link",
      );
      await post({ rpm: 1000, debug: true });

      const v1 = await pushRules({ version: 1, rules: [{ id: "strip", then: [{ remove: ["debug"] }] }] });
      const r1 = await waitFor(
        async () => {
          const r = await report();
          return r?.version === v1 ? r : undefined;
        },
        10_000,
        "the edge's report",
      );
      assert.equal(r1.status, "applied");
      const s1 = (await (await agent.api("/api/v1/status")).json()).rules;
      assert.equal(s1.version, r1.rulesVersion);
      assert.equal(s1.count, 1);
      await post({ rpm: 1100, debug: true });

      const v2 = await pushRules({
        version: 1,
        rules: [{ id: "bad", then: [{ deadband: { field: "rpm" } }] }, { then: [] }],
      });
      const r2 = await waitFor(
        async () => {
          const r = await report();
          return r?.version === v2 ? r : undefined;
        },
        10_000,
        "the edge's refusal",
      );
      assert.equal(r2.status, "refused");
      const paths = r2.errors.map((e: { path: string }) => e.path);
      assert.ok(
        paths.includes("/rules/0/then/0/deadband/delta") && paths.includes("/rules/1/id"),
        JSON.stringify(paths),
      );
      assert.equal(
        (await (await agent.api("/api/v1/status")).json()).rules.version,
        s1.version,
        "rules in force unchanged",
      );
      await post({ rpm: 1200, debug: true });

      await waitFor(async () => (await hubRecords(hub, EDGE.id)).length === 3, 10_000, "three records");
      const got = (await hubRecords(hub, EDGE.id)).map((r) => r.payload);
      assert.deepEqual(got, [{ rpm: 1000, debug: true }, { rpm: 1100 }, { rpm: 1200 }]);
    } finally {
      await agent.stop("SIGKILL");
      await hub.stop();
      removeDir(dir);
    }
  },
});
