import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { EventBus, globMatcher, MESSAGE_PAYLOAD_LIMIT, parseFilter } from "../../src/events/mod.ts";

const msg = (device: string, i: number, kind = "telemetry") => ({ device, kind, ts: i, payload: { i } });

Deno.test("a client that never reads keeps a bounded queue and learns how many it lost", () => {
  const bus = new EventBus({ queueSize: 100 });
  const stalled = bus.subscribe({})!;
  const reader = bus.subscribe({})!;
  let got = 0;
  for (let i = 0; i < 20_000; i++) {
    bus.message(msg("d1", i));
    if (i % 50 === 49) got += reader.take().length;
  }
  got += reader.take().length;
  assertEquals(got, 20_000);
  assertEquals(reader.dropped, 0);
  assertEquals(stalled.length, 100);
  assertEquals(stalled.dropped, 19_900);
  const kept = stalled.take();
  assertEquals(kept.length, 100);
  assertEquals(JSON.parse(kept[0].data).payload.i, 0);
});

Deno.test("filters by device glob and by event name or message kind", () => {
  const bus = new EventBus();
  const c = bus.subscribe(parseFilter("sensor-*", "telemetry,hub"))!;
  bus.message(msg("sensor-1", 1));
  bus.message(msg("sensor-2", 2, "attributes"));
  bus.message(msg("pump-1", 3));
  bus.publish("hub", { connected: false }); // no device: a device filter leaves it out
  const all = bus.subscribe(parseFilter(undefined, "hub"))!;
  bus.publish("hub", { connected: true });
  assertEquals(c.take().map((e) => JSON.parse(e.data).ts), [1]);
  assertEquals(all.take().map((e) => e.name), ["hub"]);
  const q = bus.subscribe(parseFilter("a.b?", undefined))!;
  bus.message(msg("a.bc", 4));
  bus.message(msg("axbc", 5));
  assertEquals(q.take().map((e) => JSON.parse(e.data).ts), [4]);
});

Deno.test("Last-Event-ID resumes from the ring; a gap past it counts as dropped", () => {
  const bus = new EventBus({ ringSize: 10 });
  const keep = bus.subscribe({})!; // keeps message events recorded
  for (let i = 1; i <= 25; i++) bus.message(msg("d", i));
  keep.take();
  const resumed = bus.subscribe({}, 20)!;
  assertEquals(resumed.take().map((e) => e.id), [21, 22, 23, 24, 25]);
  const late = bus.subscribe({}, 5)!;
  assertEquals(late.dropped, 10); // 6..15 fell out of the ring
  assertEquals(late.take().map((e) => e.id), [16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
});

Deno.test("message payloads are cut at 4 KiB; nobody listening records nothing", () => {
  let t = 0;
  const bus = new EventBus({ now: () => t });
  bus.message(msg("d", 1));
  const c = bus.subscribe({})!;
  assertEquals(c.take().length, 0);
  bus.message({ device: "d", kind: "telemetry", ts: 2, payload: { big: "x".repeat(10_000) } });
  const [e] = c.take();
  assert(e.data.length < MESSAGE_PAYLOAD_LIMIT + 200);
  assertEquals(JSON.parse(e.data).truncated, true);
  bus.unsubscribe(c);
  t = 61_000;
  assertEquals(bus.active, false);
});

Deno.test("outbox events at most once a second; clients are bounded", () => {
  let t = 0;
  const bus = new EventBus({ now: () => t, maxClients: 2 });
  const c = bus.subscribe({})!;
  bus.outbox({ depth: 1 });
  bus.outbox({ depth: 2 });
  t = 999;
  bus.outbox({ depth: 3 });
  t = 1000;
  bus.outbox({ depth: 4 });
  assertEquals(c.take().map((e) => JSON.parse(e.data).depth), [1, 4]);
  assert(bus.subscribe({}) !== undefined);
  assertEquals(bus.subscribe({}), undefined);
  assertEquals(bus.refusedClients, 1);
});

Deno.test("device globs: * and ? only, and a hostile pattern stays fast", () => {
  const m = globMatcher("pump-*-?");
  assertEquals(["pump-a-1", "pump--1", "pump-abc-12", "xpump-a-1"].map((n) => m.test(n)), [
    true,
    true,
    false,
    false,
  ]);
  assertEquals(globMatcher("a.b").test("axb"), false, "a dot is a dot");
  // With a RegExp this would backtrack for ages; the matcher is O(pattern × name).
  assertEquals(globMatcher("*a".repeat(100) + "b").test("a".repeat(128)), false);
});

Deno.test("warn and error lines are events for those who listen, and cost nothing with nobody listening", () => {
  const bus = new EventBus();
  for (let i = 0; i < 250; i++) bus.log({ event: "x", i });
  const c = bus.subscribe({})!;
  assertEquals(c.take(), [], "nothing kept from before the stream");
  bus.log({ event: "y" });
  assertEquals(c.take().map((e) => e.name), ["log"]);
});
