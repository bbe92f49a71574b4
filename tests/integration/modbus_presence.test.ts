/**
 * What the Modbus transport reports through `Presence` (the connectivity hook, SPEC §10): a
 * device goes up when its polls succeed, down when its server stops answering (once, however
 * many retries follow), and up again when the server is back. The transport runs in-process
 * against a real pymodbus server that is stopped and started again on the same port; its
 * messages go to a recording ingest.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Message } from "../../src/core/message.ts";
import type { Presence } from "../../src/core/presence.ts";
import type { Ingest } from "../../src/ingest/mod.ts";
import { createTelemetry } from "../../src/telemetry/mod.ts";
import { createModbusTransport } from "../../src/transports/modbus/mod.ts";
import { connectModbus } from "../../src/transports/modbus/client.ts";
import { freePort, ROOT, waitFor } from "../helpers/procs.ts";

async function startServer(port: number): Promise<Deno.ChildProcess> {
  const proc = new Deno.Command("/usr/bin/python3", {
    args: [join(ROOT, "tests/integration/modbus_server.py"), String(port)],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitFor(
    async () => {
      try {
        (await connectModbus({ host: "127.0.0.1", port, unitId: 1, timeoutMs: 500 })).close();
        return true;
      } catch {
        return false;
      }
    },
    20_000,
    "the pymodbus server",
  );
  return proc;
}

async function stopServer(proc: Deno.ChildProcess): Promise<void> {
  try {
    proc.kill("SIGKILL");
  } catch { /* ended */ }
  await proc.status;
}

Deno.test({
  name:
    "Modbus presence: up when polls succeed, down once when the server goes away, up again when it is back",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const port = await freePort();
    let server = await startServer(port);
    const events: string[] = [];
    let active = 0;
    const presence: Presence = {
      active: () => void active++,
      up: (device, transport) => void events.push(`up ${device} ${transport}`),
      down: (device, transport) => void events.push(`down ${device} ${transport}`),
    };
    const messages: Message[] = [];
    const ingest: Ingest = {
      accept(batch) {
        messages.push(...batch);
        return Promise.resolve({ ok: true, accepted: batch.length });
      },
      emit: () => Promise.resolve(),
    };
    const logs: string[] = [];
    const transport = createModbusTransport([{
      device: "plc-1",
      host: "127.0.0.1",
      port,
      unitId: 1,
      interval: 200,
      timeout: 300,
      registers: [{ name: "power", table: "holding", address: 0, scale: 0.1 }],
    }], { ingest, telemetry: createTelemetry(createLoggerTo(logs)), presence });
    try {
      transport.start({ signal: new AbortController().signal });
      await waitFor(() => messages.length >= 2, 10_000, "two polls");
      assert.deepEqual(messages[0].payload, { power: 123.4 });
      assert.equal(messages[0].source, "modbus");
      assert.deepEqual(events, ["up plc-1 modbus"]);
      assert.deepEqual(transport.states(), { "plc-1": "online" });

      await stopServer(server);
      await waitFor(() => events.length === 2, 10_000, "plc-1 down");
      assert.deepEqual(events, ["up plc-1 modbus", "down plc-1 modbus"]);
      assert.deepEqual(transport.states(), { "plc-1": "offline" });
      const polled = messages.length;

      server = await startServer(port);
      await waitFor(() => events.length === 3, 90_000, "plc-1 up again");
      assert.deepEqual(events, ["up plc-1 modbus", "down plc-1 modbus", "up plc-1 modbus"]);
      await waitFor(() => messages.length > polled, 10_000, "polls again");
      assert.ok(active >= messages.length);
      assert.equal(logs.filter((l) => l.includes('"modbus.offline"')).length, 1, "offline logged once");
    } finally {
      await transport.stop();
      await stopServer(server);
    }
  },
});

function createLoggerTo(lines: string[]) {
  const write = (level: string) => (event: string, fields?: Record<string, unknown>) =>
    void lines.push(JSON.stringify({ level, event, ...fields }));
  return { debug: write("debug"), info: write("info"), warn: write("warn"), error: write("error") };
}
