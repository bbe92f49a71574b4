/**
 * Modbus TCP polling against a real server (Debian's pymodbus, tests/integration/modbus_server.py)
 * on a free port: every second a poll of holding and input registers of each type (uint16, int16,
 * uint32, int32, float32, both word orders, scale and offset), coils and discrete inputs becomes
 * one telemetry message at the hub; `modbus.write` commands sent at the hub write a holding
 * register and a coil that the server then holds (read back with a separate client), and refusals
 * come back as errors (a Modbus exception with its code, a read-only table, an unknown method). A
 * server that accepts TCP and never answers makes its device offline and is retried, while the
 * other device keeps being polled and the agent stays healthy.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type AgentHandle,
  freePort,
  type HubHandle,
  hubRecords,
  removeDir,
  ROOT,
  startAgent,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";
import { connectModbus } from "../../src/transports/modbus/client.ts";

const PYTHON = "/usr/bin/python3";

/** Starts the pymodbus server on `port`; resolves once it accepts connections. */
async function startModbusServer(port: number): Promise<Deno.ChildProcess> {
  const proc = new Deno.Command(PYTHON, {
    args: [join(ROOT, "tests/integration/modbus_server.py"), String(port)],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  await waitFor(
    async () => {
      try {
        const c = await connectModbus({ host: "127.0.0.1", port, unitId: 1, timeoutMs: 500 });
        c.close();
        return true;
      } catch {
        return false;
      }
    },
    20_000,
    "the pymodbus server (Debian's python3-pymodbus; scripts/setup.sh installs it)",
  );
  return proc;
}

/** A TCP server that accepts connections and never answers (holds them open). */
function startSilentServer(port: number): { accepted: () => number; close: () => void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const conns: Deno.Conn[] = [];
  (async () => {
    try {
      for await (const conn of listener) {
        conns.push(conn);
        (async () => {
          const buf = new Uint8Array(1024);
          try {
            while ((await conn.read(buf)) !== null) { /* read and never answer */ }
          } catch { /* closed */ }
        })();
      }
    } catch { /* closed */ }
  })();
  return {
    accepted: () => conns.length,
    close() {
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      listener.close();
    },
  };
}

const REGISTERS = [
  { name: "power", table: "holding", address: 0, scale: 0.1 },
  { name: "delta", table: "holding", address: 1, type: "int16" },
  { name: "serial", table: "holding", address: 2, type: "uint32" },
  { name: "offsetLE", table: "holding", address: 4, type: "int32", wordOrder: "little" },
  { name: "temp", table: "holding", address: 6, type: "float32" },
  { name: "tempLE", table: "holding", address: 8, type: "float32", wordOrder: "little" },
  { name: "setpoint", table: "holding", address: 10, scale: 0.1, offset: -10 },
  { name: "counter", table: "holding", address: 12, type: "uint32" },
  { name: "raw", table: "input", address: 0 },
  { name: "energyLE", table: "input", address: 1, type: "uint32", wordOrder: "little" },
  { name: "minusTwo", table: "input", address: 3, type: "int32" },
  { name: "pressureLE", table: "input", address: 5, type: "float32", wordOrder: "little" },
  { name: "level", table: "input", address: 7, type: "int16", scale: 0.5, offset: 100 },
  { name: "pump", table: "coil", address: 0 },
  { name: "valve", table: "coil", address: 1 },
  { name: "door", table: "discrete", address: 0 },
  { name: "alarm", table: "discrete", address: 1 },
];

const EXPECTED = {
  power: 123.4,
  delta: -1234,
  serial: 305419896,
  offsetLE: -123456,
  temp: 21.5,
  tempLE: -3.25,
  setpoint: 40,
  counter: 7,
  raw: 65535,
  energyLE: 4000000000,
  minusTwo: -2,
  pressureLE: 1013.25,
  level: 90,
  pump: true,
  valve: false,
  door: false,
  alarm: true,
};

Deno.test({
  name: "Modbus TCP against pymodbus: polls at 1 s with every type reach the hub, modbus.write is held by " +
    "the server, exceptions come back; a silent server makes its device offline, the agent stays healthy",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-modbus-");
    const edge = { id: "gw-modbus", routingKey: "rk-gw-modbus", secret: "secret-gw-modbus-0123" };
    let hub: HubHandle | undefined;
    let agent: AgentHandle | undefined;
    let server: Deno.ChildProcess | undefined;
    let silent: ReturnType<typeof startSilentServer> | undefined;
    try {
      const modbusPort = await freePort();
      server = await startModbusServer(modbusPort);
      const silentPort = await freePort();
      silent = startSilentServer(silentPort);
      hub = await startHub({ dir: join(dir, "hub"), edges: [edge] });
      const configPath = writeAgentConfig(join(dir, "agent"), {
        edgeId: edge.id,
        dataDir: "data",
        api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
        mqtt: { broker: false },
        hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
        modbus: [
          {
            device: "plc-1",
            host: "127.0.0.1",
            port: modbusPort,
            interval: "1s",
            timeout: "500ms",
            registers: REGISTERS,
          },
          // The same server, a register it does not have: every poll is refused with exception 2.
          {
            device: "plc-ghost",
            host: "127.0.0.1",
            port: modbusPort,
            interval: "1s",
            registers: [{ name: "ghost", table: "holding", address: 100 }],
          },
          {
            device: "silent-1",
            host: "127.0.0.1",
            port: silentPort,
            interval: "1s",
            timeout: "300ms",
            registers: [{ name: "x", table: "holding", address: 0 }],
          },
        ],
      });
      agent = await startAgent(configPath);
      const online = await agent.proc.waitForEvent("modbus.online");
      assert.equal(online.device, "plc-1");

      // Polls reach the hub with every value decoded.
      const plc = async () => (await hubRecords(hub!, edge.id)).filter((r) => r.device === "plc-1");
      const first = await waitFor(
        async () => {
          const r = await plc();
          return r.length >= 3 ? r : undefined;
        },
        30_000,
        "three polls of plc-1 at the hub",
      );
      for (const r of first!) {
        assert.equal(r.kind, "telemetry");
        assert.deepEqual(r.payload, EXPECTED);
      }

      // Writes sent at the hub, then read back from the server with a separate client.
      const command = async (device: string, method: string, params: unknown) => {
        const res = await hub!.api(`/api/v1/edges/${edge.id}/commands`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ device, method, params, timeoutMs: 10_000 }),
        });
        assert.equal(res.status, 200);
        return await res.json();
      };
      const setpoint = await command("plc-1", "modbus.write", { name: "setpoint", value: 55.5 });
      assert.deepEqual([setpoint.status, setpoint.payload], ["ok", { name: "setpoint", value: 55.5 }]);
      const counter = await command("plc-1", "modbus.write", { name: "counter", value: 123456 });
      assert.equal(counter.status, "ok");
      const pump = await command("plc-1", "modbus.write", { name: "pump", value: false });
      assert.equal(pump.status, "ok");
      const check = await connectModbus({ host: "127.0.0.1", port: modbusPort, unitId: 1, timeoutMs: 1000 });
      assert.deepEqual(await check.read("holding", 10, 1), [655]); // (55.5 + 10) / 0.1
      assert.deepEqual(await check.read("holding", 12, 2), [1, 57920]); // 123456 as two words, high first
      assert.equal((await check.read("coil", 0, 1))[0], false);
      check.close();
      // And the next polls carry the new values.
      await waitFor(
        async () => {
          const last = (await plc()).at(-1)?.payload;
          return last?.setpoint === 55.5 && last?.counter === 123456 && last?.pump === false;
        },
        15_000,
        "a poll with the written values",
      );

      // Refusals: a Modbus exception with its code, a read-only table, a bad value, an unknown method.
      const ghost = await command("plc-ghost", "modbus.write", { name: "ghost", value: 1 });
      assert.equal(ghost.status, "error");
      assert.equal(ghost.payload.exception, 2);
      assert.match(ghost.payload.error, /Modbus exception 2: Illegal data address/);
      const readOnly = await command("plc-1", "modbus.write", { name: "raw", value: 1 });
      assert.equal(readOnly.status, "error");
      assert.match(readOnly.payload.error, /read-only input/);
      const outOfRange = await command("plc-1", "modbus.write", { name: "delta", value: 40000 });
      assert.match(outOfRange.payload.error, /out of range for int16/);
      const unknown = await command("plc-1", "reboot", {});
      assert.equal(unknown.status, "error");
      assert.match(unknown.payload.error, /a Modbus device takes "modbus.write"/);

      // The silent server: offline once (logged), retried, a write to it answered with an error.
      const offline = await agent.proc.waitForEvent("modbus.offline");
      const silentLines = () =>
        agent!.proc.lines.filter((l) => l.includes('"modbus.offline"') && l.includes('"silent-1"'));
      await waitFor(() => silentLines().length >= 1, 15_000, "silent-1 offline");
      assert.ok(typeof offline.retryInMs === "number");
      await waitFor(() => silent!.accepted() >= 2, 20_000, "a second attempt at the silent server");
      assert.equal(silentLines().length, 1, "offline is logged once, not per retry");
      const stuck = await command("silent-1", "modbus.write", { name: "x", value: 1 });
      assert.equal(stuck.status, "error");
      assert.match(stuck.payload.error, /no answer|closed|Timed out|timed out/i);

      // Everything else carries on.
      const before = (await plc()).length;
      await waitFor(async () => (await plc()).length >= before + 2, 15_000, "plc-1 still polled");
      assert.equal((await fetch(`http://127.0.0.1:${agent.apiPort}/healthz`)).status, 200);
      const metrics = await (await agent.api("/metrics")).text();
      assert.match(metrics, /outpost_modbus_polls_total\{result="failed"\} [1-9]/);
      assert.ok(!agent.proc.lines.some((l) => /"level":"error"/.test(l)), "no error logged");

      // Poll rhythm at 1 s, from the messages' own times (a figure, not an assertion).
      const ts = (await plc()).map((r) => r.ts);
      const gaps = ts.slice(1).map((t, i) => t - ts[i]).filter((g) => g < 1_500);
      if (gaps.length > 0) {
        const worst = Math.max(...gaps.map((g) => Math.abs(g - 1000)));
        console.log(
          `${ts.length} polls of plc-1; interval ${Math.min(...gaps)}-${
            Math.max(...gaps)
          } ms, worst jitter ${worst} ms`,
        );
      }
    } finally {
      await agent?.stop().catch(() => {});
      await hub?.stop().catch(() => {});
      silent?.close();
      if (server) {
        try {
          server.kill("SIGTERM");
        } catch { /* ended */ }
        await server.stderr.cancel().catch(() => {});
        await server.status;
      }
      removeDir(dir);
    }
  },
});
