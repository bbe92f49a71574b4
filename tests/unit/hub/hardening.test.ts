/**
 * The reference hub under hostile input (SPEC §14): failed authentications are limited per remote
 * address on the gRPC link and on the HTTP API, its files are private whatever the umask, and it
 * warns when its API has no token.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { createHub } from "../../../src/hub/mod.ts";
import { createLogger } from "../../../src/telemetry/mod.ts";
import { connectEdge, EDGE, record, startHub, TOKEN } from "./_edge.ts";
import { removeDir, tempDir, waitFor } from "../../helpers/procs.ts";

Deno.test(
  "hub link: after 10 wrong credentials from one address in a minute, even the right ones are refused " +
    "(RESOURCE_EXHAUSTED) and nothing is stored",
  async () => {
    const hub = await startHub();
    try {
      for (let i = 0; i < 10; i++) {
        const bad = connectEdge(hub.grpcPort, { ...EDGE, secret: `wrong-${i}` });
        const status = await bad.status;
        assert.equal(status.code, grpc.status.UNAUTHENTICATED);
      }
      const good = connectEdge(hub.grpcPort, EDGE);
      good.batch(1, [record("r1", "d1", { n: 1 })]);
      const status = await good.status;
      assert.equal(status.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(status.details, /too many failed authentications/);
      const records = await (await hub.api("/api/v1/records")).json();
      assert.deepEqual(records.records, []);
    } finally {
      await hub.close();
    }
  },
);

Deno.test("hub API: 429 after 10 wrong tokens from one address, also for the right token", async () => {
  const hub = await startHub();
  try {
    for (let i = 0; i < 10; i++) {
      const r = await hub.api("/api/v1/edges", { token: `wrong-token-${i}-0123456789` });
      assert.equal(r.status, 401);
      await r.body?.cancel();
    }
    const r = await hub.api("/api/v1/edges", { token: TOKEN });
    assert.equal(r.status, 429);
    assert.equal(r.headers.get("retry-after"), "60");
    await r.body?.cancel();
    const health = await hub.api("/healthz", { token: null });
    assert.equal(health.status, 200, "the health check stays open");
    await health.body?.cancel();
  } finally {
    await hub.close();
  }
});

Deno.test(
  "hub files: data folder 0700 and database files 0600 under umask 000",
  async () => {
    const root = tempDir("outpost-hub-modes-");
    const old = process.umask(0);
    const dataDir = join(root, "hub-data");
    const hub = createHub({
      listen: "127.0.0.1:0",
      api: { listen: "127.0.0.1:0" },
      dataDir,
      edges: [EDGE],
    }, { log: createLogger("error", () => {}) });
    try {
      const ports = await hub.start();
      const edge = connectEdge(ports.grpcPort, EDGE);
      edge.batch(1, [record("r1", "d1", { n: 1 })]);
      await edge.next("ack");
      await edge.close();
      assert.equal(statSync(dataDir).mode & 0o777, 0o700);
      for (const f of ["hub.db", "hub.db-wal"]) {
        assert.equal(statSync(join(dataDir, f)).mode & 0o777, 0o600, f);
      }
    } finally {
      process.umask(old);
      await hub.stop();
      removeDir(root);
    }
  },
);

Deno.test("outpost hub warns at start when its API has no token", async () => {
  const dir = tempDir("outpost-hub-warn-");
  writeFileSync(
    join(dir, "hub.json"),
    JSON.stringify({ listen: "127.0.0.1:0", api: { listen: "127.0.0.1:0" }, dataDir: "data", edges: [EDGE] }),
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./_run_hub.ts", import.meta.url).pathname, join(dir, "hub.json")],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (out.split("\n").length < 3) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    reader.releaseLock();
    const events = out.split("\n").filter(Boolean).map((l) => JSON.parse(l));
    assert.equal(events[0].event, "hub.started");
    assert.equal(events[1].event, "hub.api_without_token");
    assert.equal(events[1].level, "warn");
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await child.stdout.cancel().catch(() => {});
    removeDir(dir);
  }
});

Deno.test(
  "a record id the hub holds with other content (a cloned or restored edge) is counted and logged as a " +
    "conflict, not stored twice; a plain resend stays silent",
  async () => {
    const hub = await startHub();
    try {
      const first = connectEdge(hub.grpcPort, EDGE);
      first.batch(1, [record("e1-1", "d1", { v: 1 }), record("e1-2", "d1", { v: 2 })]);
      await first.next("ack");
      // A resend of the same records: silent duplicates.
      first.batch(2, [record("e1-1", "d1", { v: 1 }), record("e1-2", "d1", { v: 2 })]);
      await first.next("ack", (f) => Number(f.ack.seq) === 2);
      await first.close();
      let edges = await (await hub.api("/api/v1/edges")).json();
      assert.equal(edges.edges.find((e: { id: string }) => e.id === EDGE.id).conflicts, 0);
      // A restored edge starts its ids again with new content.
      const clone = connectEdge(hub.grpcPort, EDGE);
      clone.batch(1, [record("e1-1", "d1", { v: 100 }), record("e1-3", "d1", { v: 3 })]);
      await clone.next("ack");
      await clone.close();
      edges = await (await hub.api("/api/v1/edges")).json();
      const row = edges.edges.find((e: { id: string }) => e.id === EDGE.id);
      assert.equal(row.conflicts, 1);
      assert.equal(row.records, 3);
      const records = await (await hub.api("/api/v1/records")).json();
      assert.deepEqual(records.records.map((r: { id: string; payload: unknown }) => [r.id, r.payload]), [
        ["e1-1", { v: 1 }],
        ["e1-2", { v: 2 }],
        ["e1-3", { v: 3 }],
      ]);
    } finally {
      await hub.close();
    }
  },
);

Deno.test(
  "a rules push stays at the hub until the edge reports on it: sent again on every connect until then, " +
    "gone after the report",
  async () => {
    const hub = await startHub();
    try {
      const rules = { version: 1, rules: [{ id: "drop-all", then: [{ drop: true }] }] };
      const edge = connectEdge(hub.grpcPort, EDGE);
      await edge.headers;
      const put = await hub.api("/api/v1/edges/gw-01/rules", { method: "PUT", body: JSON.stringify(rules) });
      const { version, status } = await put.json();
      assert.equal(status, "sent");
      assert.equal((await edge.next("rules")).rules.version, version);
      await edge.close(); // gone before it reported

      const again = connectEdge(hub.grpcPort, EDGE);
      assert.equal((await again.next("rules")).rules.version, version, "sent again: no report came");
      again.send({
        report: {
          type: "rules",
          body: new TextEncoder().encode(JSON.stringify({ version, status: "applied" })),
        },
      });
      await waitFor(
        async () => {
          const edges = (await (await hub.api("/api/v1/edges")).json()).edges;
          return edges[0].pending.rules === undefined;
        },
        5_000,
        "the push to end",
      );
      await again.close();

      const third = connectEdge(hub.grpcPort, EDGE);
      await third.headers;
      third.batch(1, [record("r1", "d1", { n: 1 })]);
      await third.next("ack");
      assert.equal(third.frames.filter((f) => f.frame === "rules").length, 0, "not sent after the report");
      await third.close();
    } finally {
      await hub.close();
    }
  },
);
