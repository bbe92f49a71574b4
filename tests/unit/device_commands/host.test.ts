/**
 * The commands host, fed `command` frames through the downlink as the hub link would, over a real
 * agent database; the MQTT side and the hub link are small fakes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Hono } from "hono";
import { createDownlink } from "../../../src/downlink/mod.ts";
import type { RulesHost } from "../../../src/agent/rules_host.ts";
import {
  type Commands,
  createCommands,
  type DeviceCommand,
  mountCommandRoutes,
} from "../../../src/device_commands/mod.ts";
import { agentMigrations, type LocalDatabase, openDatabase } from "../../../src/db/mod.ts";
import type { EdgeFrame, HubFrame } from "../../../src/proto/mod.ts";
import { createLogger, createTelemetry } from "../../../src/telemetry/mod.ts";
import { removeDir, tempDir } from "../../helpers/procs.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

interface Harness {
  commands: Commands;
  db: LocalDatabase;
  downlink: (frame: HubFrame) => void;
  /** Results sent to the hub, in order. */
  results(): { id: string; status: string; payload: any }[];
  /** Commands handed to the fake MQTT side. */
  delivered: DeviceCommand[];
  /** Devices the fake MQTT side has a listener for. */
  listeners: Set<string>;
  link: { up: boolean };
  app: Hono;
  restart(): Harness;
  close(): void;
}

function harness(dir = tempDir(), known = ["valve-1", "pump-1", "meter-1"]): Harness {
  const db = openDatabase(join(dir, "outbox.db"), { migrations: agentMigrations });
  const sent: EdgeFrame[] = [];
  const link = { up: true };
  const delivered: DeviceCommand[] = [];
  const listeners = new Set<string>();
  const send = (frame: EdgeFrame) => {
    if (!link.up) return false;
    sent.push(frame);
    return true;
  };
  const commands = createCommands({
    db,
    telemetry: createTelemetry(createLogger("error", () => {})),
    send,
    isKnownDevice: (d) => known.includes(d),
    seenDevices: () => known,
    deliver: (c) => {
      if (!listeners.has(c.device)) return undefined;
      delivered.push(c);
      return "mqtt";
    },
  });
  commands.start();
  const downlink = createDownlink({
    rules: {} as RulesHost,
    commands,
    telemetry: createTelemetry(createLogger("error", () => {})),
    send,
  });
  const app = new Hono();
  mountCommandRoutes(app, commands);
  let closed = false;
  const h: Harness = {
    commands,
    db,
    downlink,
    delivered,
    listeners,
    link,
    app,
    results: () =>
      sent.flatMap((f) =>
        f.frame === "commandResult"
          ? [{
            id: f.commandResult.id,
            status: f.commandResult.status,
            payload: JSON.parse(dec.decode(f.commandResult.payload)),
          }]
          : []
      ),
    restart() {
      commands.stop();
      db.close();
      closed = true;
      return harness(dir, known);
    },
    close() {
      commands.stop();
      if (!closed) db.close();
      removeDir(dir);
    },
  };
  return h;
}

function command(id: string, device: string, over: Record<string, unknown> = {}): HubFrame {
  return {
    frame: "command",
    command: {
      id,
      device,
      method: "open",
      params: enc.encode('{"to":50}'),
      timeoutMs: 10_000,
      ...over,
    } as any,
  };
}

// A timer, then an immediate queued after it: the host's own setImmediate (queued earlier) has run by then,
// whichever of the event loop's phases comes first.
const tick = () => new Promise((r) => setTimeout(() => setImmediate(r), 0));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("bad input from the hub gets an immediate error result naming the problem; nothing else is disturbed", () => {
  const h = harness();
  try {
    h.listeners.add("valve-1");
    h.downlink(command("ok-1", "valve-1"));
    h.downlink(command("bad-params", "valve-1", { params: enc.encode('{"to": 50') }));
    h.downlink(
      command("too-big", "valve-1", { params: enc.encode(JSON.stringify({ b: "x".repeat(70_000) })) }),
    );
    h.downlink(command("bad-device", "valve/1"));
    h.downlink(command("bad-timeout", "valve-1", { timeoutMs: 0 }));
    h.downlink(command("unknown", "ghost-9"));
    const errors = h.results();
    assert.deepEqual(errors.map((r) => [r.id, r.status]), [
      ["bad-params", "error"],
      ["too-big", "error"],
      ["bad-device", "error"],
      ["bad-timeout", "error"],
      ["unknown", "error"],
    ]);
    assert.match(errors[0].payload.error, /^Params are not valid JSON: /);
    assert.match(errors[1].payload.error, /^Params of \d+ bytes are over the 65536-byte limit$/);
    assert.match(errors[2].payload.error, /^Device id "valve\/1" is not 1-128 of/);
    assert.match(errors[3].payload.error, /^timeoutMs 0 is not a whole number from 1 to 3600000/);
    assert.equal(
      errors[4].payload.error,
      'Unknown device "ghost-9": it has never been seen by this edge and is not provisioned',
    );
    // The good command before them went out and is still waiting for its answer.
    assert.deepEqual(h.delivered.map((c) => c.id), ["ok-1"]);
    assert.equal(h.commands.get("ok-1")?.state, "delivered");
    // The refusals are kept like any result (resent until acknowledged).
    assert.equal(h.commands.get("too-big")?.status, "error");
    assert.deepEqual(h.commands.answer("valve-1", "ok-1", '{"opened":true}', "mqtt"), {
      ok: true,
      status: "ok",
    });
    assert.deepEqual(h.results().at(-1), { id: "ok-1", status: "ok", payload: { opened: true } });
  } finally {
    h.close();
  }
});

Deno.test("a command waits for its device, goes out when the device listens, and its answer is the result", async () => {
  const h = harness();
  try {
    h.downlink(command("c1", "pump-1"));
    assert.equal(h.delivered.length, 0);
    assert.equal(h.commands.get("c1")?.state, "pending");
    h.listeners.add("pump-1");
    h.commands.listening("pump-1");
    await tick();
    assert.deepEqual(h.delivered, [{ id: "c1", device: "pump-1", method: "open", params: { to: 50 } }]);
    assert.equal(h.commands.get("c1")?.deliveredVia, "mqtt");
    assert.deepEqual(h.commands.answer("pump-1", "c1", '{"error":"jammed"}', "mqtt"), {
      ok: true,
      status: "error",
    });
    assert.deepEqual(h.results(), [{ id: "c1", status: "error", payload: { error: "jammed" } }]);
    // Only one result per command: a second answer, or one from another device, is ignored.
    assert.equal(h.commands.answer("pump-1", "c1", "{}", "mqtt").ok, false);
    assert.equal(h.commands.answer("valve-1", "c1", "{}", "mqtt").ok, false);
    // An answer that is not JSON over MQTT still ends the command, as an error saying so.
    h.downlink(command("c2", "pump-1"));
    h.commands.answer("pump-1", "c2", "garbage", "mqtt");
    assert.equal(h.results().length, 2);
    assert.match(h.results()[1].payload.error, /answered with something unusable: Answer is not valid JSON/);
    // The hub sending a finished command again gets its result again.
    h.downlink(command("c1", "pump-1"));
    assert.deepEqual(h.results().at(-1), { id: "c1", status: "error", payload: { error: "jammed" } });
  } finally {
    h.close();
  }
});

Deno.test("at the deadline: timeout, saying whether the command was ever delivered", async () => {
  const h = harness();
  try {
    h.downlink(command("never", "meter-1", { timeoutMs: 60 }));
    h.listeners.add("valve-1");
    h.downlink(command("silent", "valve-1", { timeoutMs: 80 }));
    await sleep(250);
    const byId = Object.fromEntries(h.results().map((r) => [r.id, r]));
    assert.equal(byId.never.status, "timeout");
    assert.equal(byId.never.payload.delivered, false);
    assert.match(byId.never.payload.error, /did not connect within 60 ms: the command was never delivered/);
    assert.equal(byId.silent.status, "timeout");
    assert.equal(byId.silent.payload.delivered, true);
    assert.equal(byId.silent.payload.deliveredVia, "mqtt");
    assert.match(byId.silent.payload.error, /did not answer within 80 ms/);
    // A device answering after its deadline changes nothing.
    assert.equal(h.commands.answer("valve-1", "silent", "{}", "mqtt").ok, false);
    assert.equal(h.results().length, 2);
  } finally {
    h.close();
  }
});

Deno.test("HTTP devices: the long poll answers waiting commands, or the next within wait; answers by POST", async () => {
  const h = harness();
  try {
    const empty = await h.app.request("/api/v1/devices/meter-1/commands");
    assert.deepEqual(await empty.json(), []);
    const started = Date.now();
    const poll = h.app.request("/api/v1/devices/meter-1/commands?wait=5");
    await sleep(50);
    h.downlink(command("h1", "meter-1", { params: enc.encode('{"interval":5}'), method: "configure" }));
    const got = await poll;
    assert.ok(Date.now() - started < 2000, "answered as soon as the command arrived");
    assert.deepEqual(await got.json(), [{ id: "h1", method: "configure", params: { interval: 5 } }]);
    assert.equal(h.commands.get("h1")?.deliveredVia, "http");
    // Delivered once: the next poll does not see it again.
    assert.deepEqual(await (await h.app.request("/api/v1/devices/meter-1/commands")).json(), []);
    // A command that was waiting is answered at once.
    h.downlink(command("h2", "meter-1"));
    assert.deepEqual(
      (await (await h.app.request("/api/v1/devices/meter-1/commands?wait=30")).json()).map((c: any) => c.id),
      ["h2"],
    );

    const answer = (id: string, body: string, device = "meter-1") =>
      h.app.request(`/api/v1/devices/${device}/commands/${id}`, { method: "POST", body });
    const bad = await answer("h1", "{nope");
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).error, /^Answer is not valid JSON/);
    assert.equal(h.commands.get("h1")?.state, "delivered", "a refused answer leaves the command open");
    const ok = await answer("h1", '{"status":"ok","payload":{"interval":5}}');
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { id: "h1", status: "ok" });
    assert.deepEqual(h.results(), [{ id: "h1", status: "ok", payload: { interval: 5 } }]);
    assert.equal((await answer("h1", "{}")).status, 409);
    assert.equal((await answer("nope", "{}")).status, 404);
    assert.equal((await answer("h2", "{}", "valve-1")).status, 404, "another device's command");
    assert.equal((await h.app.request("/api/v1/devices/bad%2Fid/commands")).status, 400);
    assert.equal((await h.app.request("/api/v1/devices/meter-1/commands?wait=61")).status, 400);
    const list = await (await h.app.request("/api/v1/commands?device=meter-1")).json();
    assert.deepEqual(list.commands.map((c: any) => [c.id, c.state]), [["h2", "delivered"], ["h1", "done"]]);
  } finally {
    h.close();
  }
});

Deno.test("results the hub has not acknowledged are kept and sent again after reconnect", () => {
  const h = harness();
  try {
    h.listeners.add("valve-1");
    h.downlink(command("r1", "valve-1"));
    h.downlink(command("r2", "valve-1"));
    h.link.up = false;
    h.commands.answer("valve-1", "r1", '{"done":1}', "mqtt");
    h.commands.answer("valve-1", "r2", '{"done":2}', "mqtt");
    assert.equal(h.results().length, 0, "the link is down");
    assert.equal(h.commands.counts().unacked, 2);
    h.link.up = true;
    h.commands.linkUp();
    assert.deepEqual(h.results().map((r) => r.id), ["r1", "r2"]);
    h.downlink({ frame: "commandResultAck", commandResultAck: { id: "r1" } });
    assert.equal(h.commands.get("r1")?.resultAcked, true);
    // Sent but never acknowledged (the stream broke after the write): sent again on reconnect.
    h.commands.linkUp();
    assert.deepEqual(h.results().map((r) => r.id), ["r1", "r2", "r2"]);
    h.downlink({ frame: "commandResultAck", commandResultAck: { id: "r2" } });
    h.commands.linkUp();
    assert.equal(h.results().length, 3);
    assert.equal(h.commands.counts().unacked, 0);
  } finally {
    h.close();
  }
});

Deno.test("commands survive a restart: waiting ones go out later, expired ones time out at start", async () => {
  let h = harness();
  try {
    h.downlink(command("short", "pump-1", { timeoutMs: 100 }));
    h.downlink(command("long", "pump-1", { timeoutMs: 20_000 }));
    h.link.up = false;
    h.listeners.add("valve-1");
    h.downlink(command("answered", "valve-1"));
    h.commands.answer("valve-1", "answered", '"yes"', "mqtt");
    h = h.restart(); // the result of "answered" was never sent
    await sleep(150);
    // (the new harness's commands started before the deadline of "short": it fires in time)
    const first = h.results();
    assert.ok(first.some((r) => r.id === "short" && r.status === "timeout" && r.payload.delivered === false));
    h.commands.linkUp();
    assert.deepEqual(h.results().find((r) => r.id === "answered"), {
      id: "answered",
      status: "ok",
      payload: "yes",
    });
    h.listeners.add("pump-1");
    h.commands.listening("pump-1");
    await tick();
    assert.deepEqual(h.delivered.map((c) => c.id), ["long"]);

    // Down for longer than a deadline: the timeout comes at start.
    h.downlink(command("short2", "pump-1", { timeoutMs: 50 }));
    h.listeners.delete("pump-1");
    const before = h.results().length;
    h.commands.stop();
    await sleep(100);
    h = h.restart();
    await tick();
    const late = h.results().filter((r) => r.id === "short2");
    assert.equal(late.length, 1, JSON.stringify(h.results().slice(before)));
    assert.equal(late[0].status, "timeout");
  } finally {
    h.close();
  }
});
