/** The reference hub end to end: a real hub on free ports, real grpc-js edges, real HTTP. */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { connectEdge, EDGE, OTHER, record, startHub, TOKEN } from "./_edge.ts";

async function records(hub: Awaited<ReturnType<typeof startHub>>, query = "") {
  const res = await hub.api(`/api/v1/records${query}`);
  assert.equal(res.status, 200);
  return await res.json() as { records: any[]; next: number | null };
}

Deno.test("a wrong secret or unknown edge is refused with UNAUTHENTICATED and nothing is stored", async () => {
  const hub = await startHub();
  try {
    for (
      const who of [{ ...EDGE, secret: "wrong" }, { ...EDGE, routingKey: "rk-gw-02" }, {
        ...EDGE,
        id: "nobody",
      }]
    ) {
      const edge = connectEdge(hub.grpcPort, who);
      edge.batch(1, [record("r1", "boiler-1", { t: 1 })]);
      const status = await edge.status;
      assert.equal(status.code, grpc.status.UNAUTHENTICATED);
      assert.match(status.details, /unknown edge or wrong routing key\/secret/);
      assert.equal(edge.frames.length, 0);
    }
    assert.deepEqual((await records(hub)).records, []);
    const edges = await (await hub.api("/api/v1/edges")).json();
    assert.equal(edges.edges[0].connected, false);
  } finally {
    await hub.close();
  }
});

Deno.test("batches are acknowledged after they are stored, each (edge, id) once, in arrival order", async () => {
  const hub = await startHub();
  try {
    const edge = connectEdge(hub.grpcPort, EDGE);
    await edge.headers;
    edge.batch(1, [record("a", "boiler-1", { t: 1 }), record("b", "boiler-2", { t: 2 })]);
    edge.batch(2, [record("b", "boiler-2", { t: 2 }), record("c", "boiler-1", { t: 3 })]);
    assert.deepEqual((await edge.next("ack", (f) => f.ack.seq === 1)).ack, { seq: 1 });
    await edge.next("ack", (f) => f.ack.seq === 2);
    // Once acked, the records are readable: the ack came after the commit.
    assert.deepEqual((await records(hub)).records.map((r) => r.id), ["a", "b", "c"]);
    assert.equal((await edge.close()).code, grpc.status.OK);

    // A reconnecting edge resends what it had in flight: stored once, acked again.
    const again = connectEdge(hub.grpcPort, EDGE);
    again.batch(1, [record("c", "boiler-1", { t: 3 }), record("d", "boiler-1", { t: 4 })]);
    await again.next("ack", (f) => f.ack.seq === 1);
    await again.close();

    // Another edge may use the same record ids: uniqueness is per edge.
    const other = connectEdge(hub.grpcPort, OTHER);
    other.batch(1, [record("a", "pump-1", { p: 9 })]);
    await other.next("ack");
    await other.close();

    const page = await records(hub);
    assert.deepEqual(page.records.map((r) => `${r.edge}/${r.id}`), [
      "gw-01/a",
      "gw-01/b",
      "gw-01/c",
      "gw-01/d",
      "gw-02/a",
    ]);
    const seqs = page.records.map((r) => r.seq);
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y));
    assert.equal(page.next, null);
    const first = page.records[0];
    assert.deepEqual(
      { ...first, seq: undefined, receivedAt: undefined },
      {
        seq: undefined,
        receivedAt: undefined,
        id: "a",
        edge: "gw-01",
        device: "boiler-1",
        kind: "telemetry",
        ts: 1_700_000_000_000,
        topic: "devices/boiler-1/telemetry",
        payload: { t: 1 },
      },
    );
    const edges = (await (await hub.api("/api/v1/edges")).json()).edges;
    assert.deepEqual(edges.map((e: any) => [e.id, e.records, e.connected]), [["gw-01", 4, false], [
      "gw-02",
      1,
      false,
    ]]);
    assert.equal(typeof edges[0].lastSeenAt, "string");
  } finally {
    await hub.close();
  }
});

Deno.test("an edge's batches are stored serially across its streams, and a payload that is not JSON is kept raw", async () => {
  const hub = await startHub();
  try {
    const old = connectEdge(hub.grpcPort, EDGE);
    const fresh = connectEdge(hub.grpcPort, EDGE);
    await Promise.all([old.headers, fresh.headers]);
    const many = (prefix: string, n: number) =>
      Array.from({ length: n }, (_, i) => record(`${prefix}${i}`, "d", { i }));
    old.batch(1, many("x", 500));
    fresh.batch(1, [...many("x", 500), record("raw", "d", "not json {")]);
    await old.next("ack");
    await fresh.next("ack");
    await Promise.all([old.close(), fresh.close()]);
    const page = await records(hub, "?limit=10000");
    assert.equal(page.records.length, 501);
    assert.deepEqual(
      page.records.slice(0, 500).map((r) => r.payload.i),
      Array.from({ length: 500 }, (_, i) => i),
    );
    assert.deepEqual(page.records[500].payload, { _raw: "not json {" });
  } finally {
    await hub.close();
  }
});

Deno.test("GET /api/v1/records pages with after/next and filters by edge and device", async () => {
  const hub = await startHub();
  try {
    const edge = connectEdge(hub.grpcPort, EDGE);
    edge.batch(1, Array.from({ length: 5 }, (_, i) => record(`r${i}`, i % 2 ? "odd" : "even", { i })));
    await edge.next("ack");
    await edge.close();
    const other = connectEdge(hub.grpcPort, OTHER);
    other.batch(1, [record("r0", "even", { i: 100 })]);
    await other.next("ack");
    await other.close();

    const p1 = await records(hub, "?limit=2");
    assert.deepEqual(p1.records.map((r) => r.payload.i), [0, 1]);
    assert.equal(p1.next, p1.records[1].seq);
    const p2 = await records(hub, `?limit=2&after=${p1.next}`);
    assert.deepEqual(p2.records.map((r) => r.payload.i), [2, 3]);
    const p3 = await records(hub, `?limit=2&after=${p2.next}`);
    assert.deepEqual(p3.records.map((r) => r.payload.i), [4, 100]);
    assert.equal(p3.next, null);

    assert.deepEqual((await records(hub, "?edge=gw-01&device=even")).records.map((r) => r.payload.i), [
      0,
      2,
      4,
    ]);
    assert.deepEqual((await records(hub, "?device=even")).records.map((r) => r.payload.i), [0, 2, 4, 100]);
    assert.deepEqual((await records(hub, "?edge=gw-02")).records.map((r) => r.payload.i), [100]);
    assert.deepEqual((await records(hub, "?edge=gw-01&device=odd&limit=1")).next !== null, true);
  } finally {
    await hub.close();
  }
});

Deno.test("the API needs the bearer token, except /healthz; bad query params are 400 with their path", async () => {
  const hub = await startHub();
  try {
    const health = await hub.api("/healthz", { token: null });
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: "ok" });
    for (const token of [null, "wrong-token-0123456789"]) {
      const res = await hub.api("/api/v1/edges", { token });
      assert.equal(res.status, 401);
      assert.equal(typeof (await res.json()).error, "string");
    }
    const ok = await hub.api("/api/v1/edges", { token: TOKEN });
    assert.equal(ok.status, 200);
    await ok.body?.cancel();

    const bad = await hub.api("/api/v1/records?limit=0&after=x&colour=red");
    assert.equal(bad.status, 400);
    const { errors } = await bad.json();
    assert.deepEqual(errors.map((e: any) => e.path).sort(), ["/after", "/colour", "/limit"]);
    const tooMany = await hub.api("/api/v1/records?limit=10001");
    assert.deepEqual((await tooMany.json()).errors, [{
      path: "/limit",
      message: "must be an integer from 1 to 10000",
    }]);
  } finally {
    await hub.close();
  }
});

Deno.test("heartbeats are answered and reports show on GET /api/v1/edges", async () => {
  const hub = await startHub();
  try {
    const edge = connectEdge(hub.grpcPort, EDGE);
    edge.send({ report: { type: "hello", body: new TextEncoder().encode('{"version":"0.1.0"}') } });
    edge.send({ heartbeat: { ts: 1 } });
    const beat = await edge.next("heartbeat");
    assert.equal(typeof beat.heartbeat.ts, "number");
    const edges = (await (await hub.api("/api/v1/edges")).json()).edges;
    assert.equal(edges[0].connected, true);
    assert.deepEqual(edges[0].reports, { hello: { version: "0.1.0" } });
    await edge.close();
  } finally {
    await hub.close();
  }
});

Deno.test("a command goes over the edge's live stream and its result comes back", async () => {
  const hub = await startHub();
  try {
    const post = (body: unknown) =>
      hub.api("/api/v1/edges/gw-01/commands", { method: "POST", body: JSON.stringify(body) }).then((r) =>
        r.json()
      );
    const offline = await post({ device: "valve-1", method: "open" });
    assert.equal(offline.status, "device-offline");

    const edge = connectEdge(hub.grpcPort, EDGE);
    await edge.headers;
    const pending = post({ device: "valve-1", method: "open", params: { to: 50 }, timeoutMs: 2000 });
    const { command } = await edge.next("command");
    assert.equal(command.device, "valve-1");
    assert.equal(command.method, "open");
    assert.equal(command.timeoutMs, 2000);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(command.params)), { to: 50 });
    edge.send({
      commandResult: { id: command.id, status: "ok", payload: new TextEncoder().encode('{"opened":true}') },
    });
    assert.deepEqual(await pending, { id: command.id, status: "ok", payload: { opened: true } });
    const stored = await (await hub.api(`/api/v1/commands/${command.id}`)).json();
    assert.equal(stored.status, "ok");
    assert.equal(stored.edge, "gw-01");

    const silent = await post({ device: "valve-1", method: "close", timeoutMs: 20 });
    assert.equal(silent.status, "timeout");
    await edge.close();

    const invalid = await hub.api("/api/v1/edges/gw-01/commands", { method: "POST", body: '{"method":1}' });
    assert.equal(invalid.status, 400);
    assert.deepEqual((await invalid.json()).errors.map((e: any) => e.path).sort(), ["/device", "/method"]);
    const unknown = await hub.api("/api/v1/edges/nope/commands", { method: "POST", body: "{}" });
    assert.equal(unknown.status, 404);
    await unknown.body?.cancel();
  } finally {
    await hub.close();
  }
});

Deno.test("rules and update offers go to a connected edge at once, or wait for it to connect", async () => {
  const hub = await startHub();
  try {
    const rules = { version: 1, rules: [{ id: "drop-all", then: [{ drop: true }] }] };
    const put = await hub.api("/api/v1/edges/gw-01/rules", { method: "PUT", body: JSON.stringify(rules) });
    assert.equal(put.status, 202);
    const queued = await put.json();
    assert.equal(queued.status, "pending");
    const offer = { version: "0.2.0", url: "https://example.com/outpost-linux-x64", size: 10 };
    const update = await hub.api("/api/v1/edges/gw-01/update", {
      method: "POST",
      body: JSON.stringify(offer),
    });
    assert.equal((await update.json()).status, "pending");
    const edges = (await (await hub.api("/api/v1/edges")).json()).edges;
    assert.deepEqual(edges[0].pending, { rules: queued.version, update: "0.2.0" });

    const edge = connectEdge(hub.grpcPort, EDGE);
    const got = await edge.next("rules");
    assert.equal(got.rules.version, queued.version);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(got.rules.document)), rules);
    const gotOffer = await edge.next("updateOffer");
    assert.equal(gotOffer.updateOffer.url, offer.url);
    assert.equal(gotOffer.updateOffer.size, 10);

    const live = await hub.api("/api/v1/edges/gw-01/rules", {
      method: "PUT",
      body: JSON.stringify({ version: 1, rules: [] }),
    });
    assert.equal((await live.json()).status, "sent");
    await edge.next("rules", (f) => f.rules.version !== queued.version);
    await edge.close();

    const bad = await hub.api("/api/v1/edges/gw-01/rules", { method: "PUT", body: '{"version":2}' });
    assert.equal(bad.status, 400);
    assert.deepEqual((await bad.json()).errors.map((e: any) => e.path).sort(), ["/rules", "/version"]);
  } finally {
    await hub.close();
  }
});

Deno.test("stop ends edge streams with UNAVAILABLE and is idempotent", async () => {
  const hub = await startHub();
  const edge = connectEdge(hub.grpcPort, EDGE);
  await edge.headers;
  edge.batch(1, [record("a", "d", {})]);
  await edge.next("ack");
  await Promise.all([hub.hub.stop(), hub.hub.stop()]);
  assert.equal((await edge.status).code, grpc.status.UNAVAILABLE);
  await hub.close();
});
