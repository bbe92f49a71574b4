/**
 * The embedded broker in-process, with mqtt.js as the device: a QoS 1 PUBACK comes only after
 * accept() has resolved, publishes arriving together share one accept() and keep their order,
 * and a full outbox holds the acknowledgement back.
 */
import assert from "node:assert/strict";
import mqtt from "mqtt";
import type { Message } from "../../../src/core/message.ts";
import { DeadLetters, type Ingest } from "../../../src/ingest/mod.ts";
import { OutboxFullError } from "../../../src/outbox/mod.ts";
import { createLogger, createTelemetry } from "../../../src/telemetry/mod.ts";
import { createEmbeddedBroker } from "../../../src/transports/mqtt/broker.ts";
import { createIntake } from "../../../src/transports/mqtt/intake.ts";

interface Gate {
  promise: Promise<void>;
  open: () => void;
}

function gate(): Gate {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

async function setup() {
  const calls: Message[][] = [];
  const state: { hold?: Gate; fullTimes: number } = { fullTimes: 0 };
  const ingest: Ingest = {
    async accept(messages) {
      calls.push([...messages]);
      if (state.fullTimes > 0) {
        state.fullTimes--;
        return { ok: false, reason: "full", message: new OutboxFullError().message };
      }
      if (state.hold) await state.hold.promise;
      return { ok: true, accepted: messages.length };
    },
    emit: () => Promise.resolve(),
  };
  const telemetry = createTelemetry(createLogger("error", () => {}));
  const intake = createIntake({
    ingest,
    telemetry,
    deadLetters: new DeadLetters(),
    maxPayloadBytes: 1024,
    retry: { firstMs: 10, maxMs: 20 },
  });
  const broker = createEmbeddedBroker({ listen: "127.0.0.1:0", auth: "none" }, {
    intake,
    telemetry,
    credentials: {
      isApiToken: () => false,
      verifyDevice: () => false,
      deviceByToken: () => undefined,
      isProvisioned: () => false,
    },
  });
  const { port } = await broker.start();
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    clientId: "unit-dev",
    reconnectPeriod: 0,
  });
  return {
    calls,
    state,
    client,
    broker,
    async close() {
      await client.endAsync(true);
      await broker.stop();
      intake.stop();
    },
  };
}

Deno.test("a QoS 1 publish is PUBACKed only after accept() has resolved", async () => {
  const t = await setup();
  try {
    t.state.hold = gate();
    let acked = false;
    const done = t.client.publishAsync("devices/d1/telemetry", '{"t":1}', { qos: 1 }).then(
      () => (acked = true),
    );
    while (t.calls.length === 0) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(acked, false, "no PUBACK while the commit is pending");
    t.state.hold.open();
    await done;
    assert.equal(acked, true);
  } finally {
    await t.close();
  }
});

Deno.test("publishes arriving together share one accept() (group commit) and keep their order", async () => {
  const t = await setup();
  try {
    t.state.hold = gate();
    const all = Array.from(
      { length: 300 },
      (_, n) => t.client.publishAsync("devices/d1/telemetry", JSON.stringify({ n }), { qos: 1 }),
    );
    await new Promise((r) => setTimeout(r, 50));
    t.state.hold.open();
    await Promise.all(all);
    assert.ok(t.calls.length < 300 / 5, `${t.calls.length} accept() calls for 300 publishes`);
    assert.deepEqual(t.calls.flat().map((m) => m.payload.n), Array.from({ length: 300 }, (_, n) => n));
  } finally {
    await t.close();
  }
});

Deno.test("a full outbox withholds the PUBACK until there is room (backpressure, not loss)", async () => {
  const t = await setup();
  try {
    t.state.fullTimes = 4;
    await t.client.publishAsync("devices/d1/telemetry", '{"t":1}', { qos: 1 });
    assert.equal(t.calls.length, 5);
    assert.deepEqual(t.calls.map((c) => c[0].payload), Array(5).fill({ t: 1 }));
  } finally {
    await t.close();
  }
});

Deno.test("local-bus topics bypass the outbox; stored device data is relayed to subscribers, bad input is not", async () => {
  const t = await setup();
  try {
    const port = Number(t.broker.status().listen!.split(":").pop());
    const watcher = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
      clientId: "unit-watch",
      reconnectPeriod: 0,
    });
    const seen: string[] = [];
    watcher.on("message", (topic, payload) => seen.push(`${topic} ${payload}`));
    await watcher.subscribeAsync("#", { qos: 1 });
    await t.client.publishAsync("bus/hello", "hi", { qos: 1 });
    await t.client.publishAsync("devices/d1/telemetry", "{broken", { qos: 1 });
    await t.client.publishAsync("devices/d1/telemetry", '{"ok":true}', { qos: 1 });
    while (seen.length < 2) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(seen, ["bus/hello hi", 'devices/d1/telemetry {"ok":true}']);
    assert.deepEqual(t.calls.map((c) => c.map((m) => m.payload)), [[{ ok: true }]]);
    await watcher.endAsync(true);
  } finally {
    await t.close();
  }
});
