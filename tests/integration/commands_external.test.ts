/**
 * Commands for a device on an external broker (a real mosquitto): outpost publishes through its
 * client of that broker, where it saw the device, and takes the answer from there.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type AgentHandle,
  freePort,
  type HubHandle,
  removeDir,
  startAgent,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";
import {
  type Mosquitto,
  pub,
  requireTools,
  startMosquitto,
  subscribe,
  type Subscriber,
} from "./mqtt_helpers.ts";

Deno.test({
  name: "a device on an external broker gets its command through that broker and answers there",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    requireTools();
    const dir = tempDir("outpost-commands-ext-");
    const edge = { id: "gw-ext", routingKey: "rk-gw-ext", secret: "secret-gw-ext-0123" };
    let hub: HubHandle | undefined;
    let agent: AgentHandle | undefined;
    let mosquitto: Mosquitto | undefined;
    let device: Subscriber | undefined;
    try {
      mosquitto = await startMosquitto(join(dir, "mosquitto"));
      hub = await startHub({ dir: join(dir, "hub"), edges: [edge] });
      agent = await startAgent(writeAgentConfig(join(dir, "agent"), {
        edgeId: edge.id,
        dataDir: "data",
        api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
        mqtt: { broker: false, external: [{ url: mosquitto.url, topics: ["devices/+/telemetry"] }] },
        hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
      }));
      await agent.proc.waitForEvent("mqtt.external.subscribed", 15_000);
      const a = agent;
      await waitFor(
        async () => (await (await a.api("/api/v1/status")).json()).hub.connected,
        15_000,
        "hub link",
      );

      device = subscribe(mosquitto.port, ["devices/ext-1/commands/+"], ["-q", "1", "-v"]);
      await device.subscribed;
      // The device shows up on the external broker: that is where its commands go.
      assert.equal((await pub(mosquitto.port, "devices/ext-1/telemetry", '{"t":20}')).code, 0);
      await waitFor(async () =>
        (await (await a.api("/api/v1/devices")).json()).devices.some((d: any) => d.id === "ext-1")
      );

      const h = hub;
      const pending = h.api(`/api/v1/edges/${edge.id}/commands`, {
        method: "POST",
        body: JSON.stringify({ device: "ext-1", method: "blink", params: { times: 3 }, timeoutMs: 15_000 }),
      }).then((r) => r.json());
      const d = device;
      const line = await waitFor(
        () => d.messages().find((l) => l.startsWith("devices/ext-1/commands/")),
        10_000,
      ) as string;
      const body = JSON.parse(line.slice(line.indexOf(" ") + 1));
      assert.deepEqual({ method: body.method, params: body.params }, {
        method: "blink",
        params: { times: 3 },
      });
      assert.equal(
        (await pub(mosquitto.port, `devices/ext-1/commands/${body.id}/response`, '{"blinked":3}')).code,
        0,
      );
      assert.deepEqual(await pending, { id: body.id, status: "ok", payload: { blinked: 3 } });
      const view = await (await a.api(`/api/v1/commands/${body.id}`)).json();
      assert.equal(view.deliveredVia, `mqtt:127.0.0.1:${mosquitto.port}`);
      // The answer was taken as an answer, not as device data.
      assert.deepEqual((await (await a.api("/api/v1/deadletters")).json()).deadletters, []);
    } finally {
      await device?.stop();
      await agent?.stop("SIGKILL");
      await hub?.proc.kill("SIGKILL");
      await mosquitto?.stop();
      removeDir(dir);
    }
  },
});
