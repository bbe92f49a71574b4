/**
 * Other hubs and edges speak the link too (SPEC §6): a hub and an edge written in Python on
 * grpcio, generated with `grpc_tools.protoc` from `proto/outpost/v1/hub.proto` alone.
 *
 * The Python hub sends no response headers before its first message (grpcio's way), so the edge
 * must send its hello and first batches without waiting for the hub, and count the link as up on
 * the first frame. Needs Debian's python3-grpcio and python3-grpc-tools (scripts/setup.sh).
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  freePort,
  hubRecords,
  isConnectivityEvent,
  removeDir,
  ROOT,
  runOutpost,
  startAgent,
  startHub,
  startProcess,
  tempDir,
  TEST_TOKEN,
  waitDrained,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";

const PYTHON = "/usr/bin/python3";
const HERE = join(ROOT, "tests/integration/python");

/** Generates the Python modules for hub.proto into `dir` with grpc_tools.protoc. */
async function generate(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const out = await new Deno.Command(PYTHON, {
    args: [
      "-m",
      "grpc_tools.protoc",
      "-I",
      join(ROOT, "proto"),
      `--python_out=${dir}`,
      `--grpc_python_out=${dir}`,
      join(ROOT, "proto/outpost/v1/hub.proto"),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, `grpc_tools.protoc failed: ${new TextDecoder().decode(out.stderr)}`);
}

const edge = { id: "gw-py", routingKey: "rk-py", secret: "secret-py-0123456789" };

async function agentFor(dir: string, hubPort: number) {
  const apiPort = await freePort();
  const configPath = writeAgentConfig(join(dir, "agent"), {
    edgeId: edge.id,
    dataDir: "data",
    api: { listen: `127.0.0.1:${apiPort}`, token: TEST_TOKEN },
    mqtt: { broker: false },
    hub: { url: `grpc://127.0.0.1:${hubPort}`, routingKey: edge.routingKey, secret: edge.secret },
  });
  return await startAgent(configPath);
}

const TEXT = "température ✓ 温度";

Deno.test({
  name:
    "a grpcio hub that sends no headers before its first message: the edge delivers, the hub acks every record",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-interop-");
    const gen = join(dir, "gen");
    await generate(gen);
    const port = await freePort();
    const out = join(dir, "stored.jsonl");
    const pyHub = startProcess([
      PYTHON,
      join(HERE, "py_hub.py"),
      gen,
      String(port),
      out,
      edge.id,
      edge.routingKey,
      edge.secret,
    ]);
    await pyHub.waitForEvent("py.started");
    const agent = await agentFor(dir, port);
    try {
      const total = 3_000;
      for (let start = 0; start < total; start += 100) {
        const body = Array.from({ length: 100 }, (_, i) => ({ n: start + i, text: TEXT }));
        const res = await agent.api(`/api/v1/devices/d${(start / 100) % 3}/telemetry`, {
          method: "POST",
          body: JSON.stringify(body),
        });
        assert.equal(res.status, 202, await res.text());
      }
      await waitDrained(agent, 60_000);
      const stored = readFileSync(out, "utf8").trim().split("\n").map((l) => JSON.parse(l))
        .filter((r) => !isConnectivityEvent(r));
      assert.equal(stored.length, total, "the Python hub holds every record once");
      assert.equal(new Set(stored.map((r) => r.id)).size, total);
      assert.deepEqual(
        stored.map((r) => r.payload.n).sort((a, b) => a - b),
        Array.from({ length: total }, (_, i) => i),
      );
      assert.ok(stored.every((r) => r.payload.text === TEXT && r.kind === "telemetry"), "unicode intact");
      // The hello report went out without waiting for the hub.
      await pyHub.waitForEvent("py.report", 1_000);
      const status = await (await agent.api("/api/v1/status")).json();
      assert.equal(status.hub.connected, true);
      assert.equal(status.hub.waitingFor, undefined);
    } finally {
      await agent.stop();
      await pyHub.kill("SIGTERM");
      removeDir(dir);
    }
  },
});

Deno.test({
  name:
    "a hub that never answers: status says the link waits for the hub's headers or first frame; nothing leaves the outbox",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-interop-");
    const gen = join(dir, "gen");
    await generate(gen);
    const port = await freePort();
    const pyHub = startProcess([
      PYTHON,
      join(HERE, "py_hub.py"),
      gen,
      String(port),
      join(dir, "x.jsonl"),
      edge.id,
      edge.routingKey,
      edge.secret,
      "--silent",
    ]);
    await pyHub.waitForEvent("py.started");
    const agent = await agentFor(dir, port);
    try {
      const res = await agent.api("/api/v1/devices/d1/telemetry", { method: "POST", body: '{"n": 1}' });
      assert.equal(res.status, 202);
      await pyHub.waitForEvent("py.batch_held", 10_000);
      const status = await waitFor(
        async () => {
          const s = await (await agent.api("/api/v1/status")).json();
          return s.hub.waitingFor?.includes("response headers or first frame") ? s : undefined;
        },
        10_000,
        "status to say what the link waits for",
      );
      assert.equal(status.hub.connected, false);
      const outbox = await (await agent.api("/api/v1/outbox")).json();
      assert.deepEqual(
        outbox.records.filter((r: Record<string, unknown>) => !isConnectivityEvent(r)).map((r: any) =>
          r.payload
        ),
        [{ n: 1 }],
        "unacknowledged: still in the outbox",
      );
      const human = await runOutpost(["status", "--config", agent.configPath]);
      assert.match(
        human.stdout,
        /hub: +disconnected \(grpc:\/\/[^)]+\); waiting for the hub's response headers/,
      );
    } finally {
      await agent.stop();
      await pyHub.kill("SIGTERM");
      removeDir(dir);
    }
  },
});

Deno.test({
  name:
    "a grpcio edge delivers to outpost hub: every batch acked, a resent batch stored once, unicode intact",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-interop-");
    const gen = join(dir, "gen");
    await generate(gen);
    const hub = await startHub({ dir: join(dir, "hub"), edges: [edge] });
    try {
      const pyEdge = startProcess([
        PYTHON,
        join(HERE, "py_edge.py"),
        gen,
        `127.0.0.1:${hub.grpcPort}`,
        edge.id,
        edge.routingKey,
        edge.secret,
        "20",
        "50",
      ]);
      const done = await pyEdge.waitForEvent("py.edge_done", 60_000);
      assert.equal(await pyEdge.exited, 0);
      assert.deepEqual(done.acked, Array.from({ length: 21 }, (_, i) => i + 1), "every batch acknowledged");
      const records = await hubRecords(hub, edge.id);
      assert.equal(records.length, 1_000, "each (edge, id) stored once, the resend too");
      assert.deepEqual(records.map((r) => r.payload.n), Array.from({ length: 1_000 }, (_, i) => i));
      assert.ok(records.every((r) => r.payload.text === TEXT));
      // A wrong pair ends the Python edge's call before anything is stored.
      const wrong = startProcess([
        PYTHON,
        join(HERE, "py_edge.py"),
        gen,
        `127.0.0.1:${hub.grpcPort}`,
        edge.id,
        edge.routingKey,
        "a-wrong-secret-000",
        "2",
        "10",
      ]);
      const failed = await wrong.waitForEvent("py.edge_failed", 30_000);
      assert.equal(failed.code, "UNAUTHENTICATED");
      assert.equal((await hubRecords(hub, edge.id)).length, 1_000);
    } finally {
      await hub.stop();
      removeDir(dir);
    }
  },
});
