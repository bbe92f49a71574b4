/**
 * Served by node_http.test.ts under Node (bundled with `bun build --target=node`): the runtime's
 * Node HTTP adapter in front of a hono app that authenticates first and reads bodies with the
 * control API's own bounded reader.
 */
import { createServer } from "node:http";
import process from "node:process";
import { Hono } from "hono";
import { readLimited } from "../../src/core/http.ts";
import { nodeRequestListener } from "../../src/runtime/mod.ts";
import { EventBus, mountEventRoutes } from "../../src/events/mod.ts";

const app = new Hono();
app.use("*", async (c, next) => {
  if (c.req.header("authorization") !== "Bearer right") return c.json({ error: "Invalid token" }, 401);
  await next();
});
app.post("/in", async (c) => {
  const body = await readLimited(c, 1024 * 1024);
  if (body === undefined) return c.json({ error: "Body is over the 1048576-byte limit" }, 413);
  return c.json({ bytes: body.byteLength, remote: (c.env as { remoteAddress: string }).remoteAddress });
});
// Live events: POST /publish?n= publishes n log events (queue of 64 per stream).
const bus = new EventBus({ queueSize: 64 });
mountEventRoutes(app, bus);
app.post("/publish", (c) => {
  const n = Number(c.req.query("n"));
  for (let i = 0; i < n; i++) bus.publish("log", { i, pad: "p".repeat(10_000) });
  return c.json({ published: n, clients: bus.listeners, queued: bus.stats().queuedMax });
});
const server = createServer(nodeRequestListener(app.fetch));
server.listen(0, "127.0.0.1", () => {
  const addr = server.address() as { port: number };
  console.log(JSON.stringify({ event: "listening", port: addr.port, pid: process.pid }));
});
