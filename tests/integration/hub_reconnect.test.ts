/**
 * The edge comes back soon after the hub does (src/core/backoff.ts, `createReconnectSchedule`):
 * the reference hub is stopped for a few seconds, started again on the same ports, and the edge
 * must be connected and delivering what it queued meanwhile within a bound counted from the hub's
 * `hub.started` line. The bound (3 s) is generous for a loaded machine; the schedule tries at least
 * every 0.8 s for the first minute of an outage, and `npm run bench -- --only backlog` measures
 * the real figure (`reconnect_ms`).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type AgentHandle,
  freePort,
  type HubHandle,
  hubRecords,
  type Proc,
  removeDir,
  startAgent,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitDrained,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";

/** From the hub answering again to the edge connected and its queued record stored, at most. */
const BOUND_MS = 3_000;

/** The `ts` (ms since the epoch) of the first `event` line at or after line `from`. */
function eventAt(proc: Proc, event: string, from = 0): number | undefined {
  for (const line of proc.lines.slice(from)) {
    if (!line.startsWith("{") || !line.includes(`"event":"${event}"`)) continue;
    return Date.parse(JSON.parse(line).ts);
  }
  return undefined;
}

async function connected(agent: AgentHandle): Promise<boolean> {
  return (await (await agent.api("/api/v1/status")).json()).hub.connected;
}

Deno.test({
  name: "the edge reconnects and delivers within 3 s of a hub that was stopped for a few seconds " +
    "(SIGTERM for 6 s, then SIGKILL for 2 s) answering again on the same port",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-reconnect-");
    const edge = { id: "gw-reconnect", routingKey: "rk-reconnect", secret: "secret-reconnect-0123456789" };
    let hub: HubHandle | undefined;
    let agent: AgentHandle | undefined;
    try {
      hub = await startHub({ dir: join(dir, "hub"), edges: [edge], runner: "bun" });
      const { grpcPort, apiPort } = hub;
      const configPath = writeAgentConfig(join(dir, "agent"), {
        edgeId: edge.id,
        dataDir: "data",
        api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
        mqtt: { broker: false },
        hub: { url: `grpc://127.0.0.1:${grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
      });
      const a = agent = await startAgent(configPath);
      const post = async (n: number) => {
        const res = await a.api("/api/v1/devices/r-1/telemetry", {
          method: "POST",
          body: JSON.stringify({ n }),
        });
        assert.equal(res.status, 202, await res.text());
      };
      await post(0);
      await waitDrained(a, 30_000);

      for (const [round, signal, downMs] of [[1, "SIGTERM", 6_000], [2, "SIGKILL", 2_000]] as const) {
        await hub.proc.kill(signal);
        await waitFor(async () => !(await connected(a)), 10_000, "the edge to see the hub gone");
        await post(round);
        await new Promise((r) => setTimeout(r, downMs));
        const depth = (await (await a.api("/api/v1/status")).json()).outbox.depth;
        assert.equal(depth, 1, `round ${round}: the record sent during the outage waits in the outbox`);

        const from = a.proc.lines.length;
        hub = await startHub({ dir: join(dir, "hub"), edges: [edge], runner: "bun", grpcPort, apiPort });
        const h = hub;
        const ready = eventAt(h.proc, "hub.started")!;
        const stored: number = await waitFor(
          async () => (await hubRecords(h, edge.id)).some((r) => r.payload.n === round) ? Date.now() : 0,
          15_000,
          `round ${round}: the record queued during the outage at the hub`,
        );
        const up = eventAt(a.proc, "hub.connected", from);
        assert.ok(up !== undefined, `round ${round}: the edge logged hub.connected`);
        console.log(
          `round ${round} (${signal}, ${downMs} ms down): hub.started → hub.connected ${up - ready} ms, ` +
            `→ record stored (seen by a 100 ms poll) ${stored - ready} ms`,
        );
        assert.ok(
          up - ready <= BOUND_MS,
          `round ${round}: connected ${up - ready} ms after the hub was ready`,
        );
        assert.ok(
          stored - ready <= BOUND_MS,
          `round ${round}: delivered ${stored - ready} ms after the hub was ready`,
        );
        assert.ok(await connected(a));
      }
      const ns = (await hubRecords(hub, edge.id)).map((r) => r.payload.n);
      assert.deepEqual(ns, [0, 1, 2], "each record once, in order");
    } finally {
      await agent?.stop("SIGKILL").catch(() => {});
      await hub?.stop().catch(() => {});
      removeDir(dir);
    }
  },
});
