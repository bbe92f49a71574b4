/**
 * The CoAP promise under a crash: a 2.01 means "stored". 10 devices (each its own UDP socket, as
 * separate devices are) send 500 confirmable requests each, one at a time, `{"n": 0…499}`, while
 * the agent is killed with SIGKILL midway and restarted on the same port. A request retransmits
 * with the same message id until it is answered or its retransmissions are spent (then the
 * device gives it up and goes on). Every request answered 2.01 is at the hub exactly once, in
 * per-device order; a request given up is there at most once; nothing else is there. Last, a
 * stored request's answer is lost with the process on purpose: its retransmission to the
 * restarted agent is answered 2.01 and not stored twice.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type AgentHandle,
  freePort,
  type HubHandle,
  hubRecords,
  removeDir,
  sequencesByDevice,
  startAgent,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitDrained,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";
import { type CoapTestClient, createCoapClient } from "../helpers/coap.ts";
import { checkExactlyOnce } from "./mqtt_helpers.ts";

Deno.test({
  name: "CoAP → hub: 10 devices, 5,000 confirmable requests, agent SIGKILLed midway: every 2.01 at the hub " +
    "exactly once, in per-device order",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-coap-fault-");
    const edge = { id: "gw-coap-fault", routingKey: "rk-gw-coap-fault", secret: "secret-gw-coap-fault-0123" };
    let hub: HubHandle | undefined;
    let agent: AgentHandle | undefined;
    const clients: CoapTestClient[] = [];
    try {
      hub = await startHub({ dir: join(dir, "hub"), edges: [edge] });
      const port = await freePort();
      const configPath = writeAgentConfig(join(dir, "agent"), {
        edgeId: edge.id,
        dataDir: "data",
        api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
        mqtt: { broker: false },
        coap: { listen: `127.0.0.1:${port}` },
        hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
      });
      agent = await startAgent(configPath);
      const devices = Array.from({ length: 10 }, (_, i) => `coap-${i}`);
      const tokens = new Map<string, string>();
      for (const d of devices) {
        const res = await agent.api("/api/v1/devices", { method: "POST", body: JSON.stringify({ id: d }) });
        tokens.set(d, (await res.json()).token);
      }

      const perDevice = 500;
      const acked = new Map<string, number[]>(devices.map((d) => [d, []]));
      const unanswered = new Map<string, number[]>(devices.map((d) => [d, []]));
      const refused: string[] = [];
      let answered = 0;
      const runs = devices.map(async (d) => {
        // Retransmissions span about 19 s (0.3 s doubling, 5 times): longer than a restart.
        const client = await createCoapClient(port, { ackTimeoutMs: 300, maxRetransmit: 5 });
        clients.push(client);
        for (let n = 0; n < perDevice; n++) {
          const a = await client.request({
            path: `/api/v1/${tokens.get(d)}/telemetry`,
            payload: JSON.stringify({ n }),
          });
          if (a?.code === "2.01") {
            acked.get(d)!.push(n);
            answered++;
          } else {
            // No answer (the agent died with it), or 5.03 while it started: not known to be stored.
            unanswered.get(d)!.push(n);
            if (a !== undefined) refused.push(`${d} n=${n}: ${a.code} ${a.payload}`);
          }
        }
      });

      await waitFor(() => answered >= 2_500, 120_000, "2,500 answers");
      await agent.stop("SIGKILL");
      await new Promise((r) => setTimeout(r, 300));
      agent = await startAgent(configPath);
      await Promise.all(runs);

      // An answer lost with the process: a request stored, the agent killed, the same datagram
      // (same peer, message id and content) retransmitted to the restarted agent. It is answered
      // 2.01 from the stored exchanges and not stored again.
      const late = await createCoapClient(port, { ackTimeoutMs: 300, maxRetransmit: 5 });
      clients.push(late);
      const lost = {
        path: `/api/v1/${tokens.get("coap-0")}/telemetry`,
        payload: '{"n":1000}',
        messageId: 4321,
      };
      assert.equal((await late.request(lost))?.code, "2.01");
      await agent.stop("SIGKILL");
      agent = await startAgent(configPath);
      assert.equal((await late.request(lost))?.code, "2.01");
      acked.get("coap-0")!.push(1000);

      await waitDrained(agent);
      const byDevice = sequencesByDevice(await hubRecords(hub, edge.id));
      const problems: string[] = [];
      let ackedTotal = 0;
      let unansweredTotal = 0;
      for (const d of devices) {
        ackedTotal += acked.get(d)!.length;
        unansweredTotal += unanswered.get(d)!.length;
        problems.push(...checkExactlyOnce(d, byDevice.get(d) ?? [], acked.get(d)!, unanswered.get(d)!));
      }
      assert.deepEqual(problems, []);
      assert.equal(ackedTotal + unansweredTotal, devices.length * perDevice + 1);
      // At most the requests in flight at the kill (one per device) and those refused while starting.
      assert.ok(
        unansweredTotal <= devices.length + refused.length,
        `${unansweredTotal} unanswered: ${refused}`,
      );
      const metrics = await (await agent.api("/metrics")).text();
      const resends = Number(/^outpost_coap_resends_total (\d+)/m.exec(metrics)?.[1] ?? 0);
      assert.ok(resends >= 1, "the retransmission after the restart was recognised as stored");
      console.log(
        `${ackedTotal} answered 2.01 (each exactly once at the hub, in order), ${unansweredTotal} given up ` +
          `(${refused.length} refused while the agent started); ${resends} retransmissions after the restart ` +
          `recognised as stored (one sent on purpose)`,
      );
    } finally {
      for (const c of clients) c.close();
      await agent?.stop("SIGKILL").catch(() => {});
      await hub?.stop().catch(() => {});
      removeDir(dir);
    }
  },
});
