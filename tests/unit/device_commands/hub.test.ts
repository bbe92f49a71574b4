/** The reference hub's side of commands: ?async=1, late results, and the ack the edge waits for. */
import assert from "node:assert/strict";
import { connectEdge, EDGE, startHub } from "../hub/_edge.ts";

const enc = new TextEncoder();

Deno.test("?async=1 answers 202 {id} at once; GET /api/v1/commands/{id} shows the result when it comes", async () => {
  const hub = await startHub();
  try {
    const post = (query: string, body: unknown) =>
      hub.api(`/api/v1/edges/gw-01/commands${query}`, { method: "POST", body: JSON.stringify(body) });
    // Edge not connected: device-offline at once, in the store as well.
    const offline = await post("?async=1", { device: "valve-1", method: "open" });
    assert.equal(offline.status, 202);
    const o = await offline.json();
    assert.equal(o.status, "device-offline");
    assert.equal((await (await hub.api(`/api/v1/commands/${o.id}`)).json()).status, "device-offline");
    const bad = await post("?async=maybe", { device: "valve-1", method: "open" });
    assert.equal(bad.status, 400);
    assert.deepEqual((await bad.json()).errors, [{ path: "/async", message: "must be 1, true, 0 or false" }]);

    const edge = connectEdge(hub.grpcPort, EDGE);
    await edge.headers;
    const accepted = await post("?async=1", {
      device: "valve-1",
      method: "open",
      params: { to: 5 },
      timeoutMs: 60_000,
    });
    assert.equal(accepted.status, 202);
    const { id, status } = await accepted.json();
    assert.equal(status, "pending");
    const { command } = await edge.next("command");
    assert.equal(command.id, id);
    assert.equal((await (await hub.api(`/api/v1/commands/${id}`)).json()).status, "pending");
    edge.send({ commandResult: { id, status: "ok", payload: enc.encode('{"opened":true}') } });
    // The hub acknowledges a result once stored, so the edge can forget it.
    await edge.next("commandResultAck", (f) => f.commandResultAck.id === id);
    const done = await (await hub.api(`/api/v1/commands/${id}`)).json();
    assert.equal(done.status, "ok");
    assert.deepEqual(done.payload, { opened: true });

    // A result after the hub's own timeout replaces it (the edge resends what it kept).
    const silent = await (await post("", { device: "valve-1", method: "close", timeoutMs: 20 })).json();
    assert.equal(silent.status, "timeout");
    edge.send({ commandResult: { id: silent.id, status: "ok", payload: enc.encode('"late"') } });
    await edge.next("commandResultAck", (f) => f.commandResultAck.id === silent.id);
    assert.equal((await (await hub.api(`/api/v1/commands/${silent.id}`)).json()).payload, "late");
    // A result for a command the hub never sent is acknowledged too (nothing to keep it for).
    edge.send({ commandResult: { id: "never-sent", status: "ok", payload: enc.encode("1") } });
    await edge.next("commandResultAck", (f) => f.commandResultAck.id === "never-sent");
    await edge.close();
  } finally {
    await hub.close();
  }
});
