/** Command routes on the control API: a device's own token reaches its own poll and answers, nothing more. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createCommands, mountCommandRoutes } from "../../../src/device_commands/mod.ts";
import { createHttpIngest } from "../../../src/transports/http/mod.ts";
import { createControlApp } from "../../../src/control/mod.ts";
import { DeviceRegistry } from "../../../src/devices/mod.ts";
import { createIngest, DeadLetters, passThrough } from "../../../src/ingest/mod.ts";
import { createOutbox } from "../../../src/outbox/mod.ts";
import { createLogger, createTelemetry } from "../../../src/telemetry/mod.ts";
import { removeDir, tempDir } from "../../helpers/procs.ts";

const TOKEN = "control-test-token-0123456789";

Deno.test("a device's own token authorises its own command poll and answers only", async () => {
  const dir = tempDir();
  const outbox = createOutbox({ path: join(dir, "o.db"), maxBytes: 1 << 30, onFull: "reject" });
  const telemetry = createTelemetry(createLogger("error", () => {}));
  const devices = new DeviceRegistry(outbox.db);
  const commands = createCommands({
    db: outbox.db,
    telemetry,
    send: () => true,
    isKnownDevice: (d) => devices.isProvisioned(d),
    seenDevices: () => [],
  });
  commands.start();
  const app = createControlApp({
    token: TOKEN,
    edgeId: "gw-test",
    version: "9.9.9",
    startedAt: Date.now(),
    outbox,
    devices,
    deadLetters: new DeadLetters(),
    telemetry,
    hubStatus: () => ({ configured: false, connected: false, lastAckAt: null }),
    routes: [
      createHttpIngest({
        ingest: createIngest({
          outbox,
          devices,
          telemetry,
          rules: () => passThrough,
        }),
        telemetry,
        maxPayloadBytes: 256 * 1024,
      }),
    ],
    extend: (a) => mountCommandRoutes(a, commands),
  });
  try {
    const meter = devices.create("meter-1") as { token: string };
    const other = devices.create("meter-2") as { token: string };
    const as = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
    commands.receive({
      id: "c1",
      device: "meter-1",
      method: "read",
      params: new TextEncoder().encode("{}"),
      timeoutMs: 10_000,
    });
    const poll = await app.request("/api/v1/devices/meter-1/commands", as(meter.token));
    assert.equal(poll.status, 200);
    assert.deepEqual(await poll.json(), [{ id: "c1", method: "read", params: {} }]);
    const answer = await app.request("/api/v1/devices/meter-1/commands/c1", {
      method: "POST",
      body: '{"kwh":12.5}',
      ...as(meter.token),
    });
    assert.equal(answer.status, 200);
    assert.deepEqual(await answer.json(), { id: "c1", status: "ok" });

    // Another device's token, the wrong method, or the operator's list: 401.
    assert.equal((await app.request("/api/v1/devices/meter-1/commands", as(other.token))).status, 401);
    assert.equal(
      (await app.request("/api/v1/devices/meter-1/commands/c1", {
        method: "POST",
        body: "{}",
        ...as(other.token),
      }))
        .status,
      401,
    );
    assert.equal(
      (await app.request("/api/v1/devices/meter-1/commands", { method: "POST", ...as(meter.token) })).status,
      401,
    );
    assert.equal((await app.request("/api/v1/devices/meter-1/commands/c1", as(meter.token))).status, 401);
    assert.equal((await app.request("/api/v1/commands", as(meter.token))).status, 401);
    assert.equal((await app.request("/api/v1/devices/meter-1/commands")).status, 401);
    // Ingest with the device token still works; the API token reaches everything.
    assert.equal(
      (await app.request("/api/v1/devices/meter-1/telemetry", {
        method: "POST",
        body: '{"a":1}',
        ...as(meter.token),
      }))
        .status,
      202,
    );
    const list = await app.request("/api/v1/commands", as(TOKEN));
    assert.equal(list.status, 200);
    const body = await list.json();
    assert.equal(body.commands[0].status, "ok");
    assert.deepEqual(body.commands[0].payload, { kwh: 12.5 });
    assert.equal((await app.request("/api/v1/commands/c1", as(TOKEN))).status, 200);
    assert.equal((await app.request("/api/v1/commands/zz", as(TOKEN))).status, 404);
  } finally {
    commands.stop();
    outbox.close();
    removeDir(dir);
  }
});
