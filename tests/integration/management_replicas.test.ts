/**
 * Remote management on a hub of two replicas sharing one PostgreSQL (SPEC §11, §12), with real
 * processes: the agent is connected to replica B only, every request goes to replica A. A logs
 * request posted to A gets the lines the edge sent to B; a config push and a restart posted to A
 * reach the edge through B and end `successful`; both replicas list the edge's operations; no
 * secret is in any answer. A logs request whose replica is killed while it waits ends `failed`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  freePort,
  type HubHandle,
  removeDir,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";
import { type Postgres, startPostgres } from "../helpers/postgres.ts";
import {
  opts,
  pushConfig,
  RUNNER,
  superviseAgent,
  type Supervised,
  waitConnected,
  waitOperation,
} from "./management_helpers.ts";

const EDGE = { id: "gw-replicas", routingKey: "rk-replicas", secret: "hub-secret-Rp4vLx8sD2" };

Deno.test({
  ...opts,
  name:
    "two replicas on PostgreSQL: logs, a config push and a restart posted to replica A reach the edge connected to replica B; both list the operations; a logs request of a killed replica fails",
  fn: async () => {
    const dir = tempDir("outpost-manage-pg-");
    let pg: Postgres | undefined;
    const hubs: HubHandle[] = [];
    let agent: Supervised | undefined;
    try {
      pg = await startPostgres();
      for (const name of ["a", "b"]) {
        hubs.push(
          await startHub({
            dir: join(dir, name),
            edges: [EDGE],
            runner: RUNNER,
            config: { store: { url: pg.url } },
            startTimeoutMs: 60_000,
          }),
        );
      }
      const [a, b] = hubs;
      const apiPort = await freePort();
      const config: Record<string, unknown> = {
        edgeId: EDGE.id,
        dataDir: "data",
        api: { listen: `127.0.0.1:${apiPort}`, token: TEST_TOKEN },
        mqtt: { broker: false },
        hub: { url: `grpc://127.0.0.1:${b.grpcPort}`, routingKey: EDGE.routingKey, secret: EDGE.secret },
        update: { trialSeconds: 15, maxStarts: 3 },
      };
      const configPath = writeAgentConfig(join(dir, "agent"), config);
      agent = await superviseAgent(configPath, apiPort);
      await waitConnected(agent);
      await waitFor(
        async () => {
          const edges = (await (await a.api("/api/v1/edges")).json()).edges;
          return edges.find((e: { id: string }) => e.id === EDGE.id)?.connected === true;
        },
        30_000,
        "replica A to see the edge connected (to B)",
      );
      const answers: string[] = [];

      // Logs: asked of A, answered by the edge on B.
      const logs = await a.api(`/api/v1/edges/${EDGE.id}/logs`, {
        method: "POST",
        body: JSON.stringify({ level: "debug" }),
      });
      const logsText = await logs.text();
      answers.push(logsText);
      assert.equal(logs.status, 200, logsText);
      const logsBody = JSON.parse(logsText);
      assert.equal(logsBody.status, "successful");
      assert.ok(
        logsBody.lines.some((l: { event: string }) => l.event === "agent.started"),
        logsText.slice(0, 500),
      );

      // A config change posted to A: sent down by B, the edge restarts onto it and reports success.
      const id = await pushConfig(a, EDGE.id, { ...config, log: { level: "debug" } });
      const op = await waitOperation(a, id, 60_000);
      answers.push(JSON.stringify(op));
      assert.equal(op.status, "successful", JSON.stringify(op));
      assert.equal(op.request.config.hub.secret, "***");
      assert.equal(agent.procs.length, 2, "the agent restarted once onto the new config");

      // A restart posted to A, once the edge is back on B.
      await waitConnected(agent);
      const restart = await a.api(`/api/v1/edges/${EDGE.id}/restart`, { method: "POST" });
      assert.equal(restart.status, 202);
      const restartId = (await restart.json()).id;
      const restarted = await waitOperation(b, restartId, 60_000);
      assert.equal(restarted.status, "successful", JSON.stringify(restarted));
      await agent.started(3);

      // Both replicas list every operation, newest first; the logs one keeps a count, not lines.
      for (const hub of hubs) {
        const text = await (await hub.api(`/api/v1/edges/${EDGE.id}/operations`)).text();
        answers.push(text);
        const ops = JSON.parse(text).operations;
        assert.deepEqual(ops.map((o: { kind: string }) => o.kind), ["restart", "config", "logs"], text);
        assert.ok(ops.every((o: { status: string }) => o.status === "successful"), text);
        assert.equal(ops[2].id, logsBody.id);
        assert.equal(typeof ops[2].result.lines, "number");
      }
      // Replica A killed while it waits for a logs answer (the edge is stopped): replica B fails the
      // request once A's heartbeat is stale; the edge's late answer changes nothing.
      await waitConnected(agent);
      const agentPid = agent.current().pid;
      Deno.kill(agentPid, "SIGSTOP");
      const waiting = a.api(`/api/v1/edges/${EDGE.id}/logs`, { method: "POST", body: "{}" }).catch(() =>
        undefined
      );
      const lost = await waitFor(
        async () => {
          const ops = (await (await b.api(`/api/v1/edges/${EDGE.id}/operations`)).json()).operations;
          return ops.find((o: { kind: string; status: string }) =>
            o.kind === "logs" && o.status === "pending"
          );
        },
        10_000,
        "the logs operation",
      );
      await a.proc.kill("SIGKILL");
      await waiting;
      const failed = await waitOperation(b, lost.id, 45_000);
      Deno.kill(agentPid, "SIGCONT");
      assert.equal(failed.status, "failed");
      assert.equal(failed.reason, "the hub replica waiting for the answer stopped before the edge answered");
      await waitConnected(agent);
      assert.equal((await waitOperation(b, lost.id)).status, "failed", "a final operation never changes");

      for (const text of answers) {
        for (const secret of [EDGE.secret, TEST_TOKEN]) {
          assert.ok(!text.includes(secret), `an answer holds "${secret}"`);
        }
      }
    } finally {
      await agent?.stop();
      for (const hub of hubs) await hub.stop();
      await pg?.remove();
      removeDir(dir);
    }
  },
});
