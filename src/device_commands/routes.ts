/**
 * HTTP routes for commands on the control API (docs/commands.md):
 * - `GET /api/v1/devices/{device}/commands?wait=N`: an HTTP device's long poll; answers its
 *   waiting commands `[{id, method, params}]` (at once, or as soon as one arrives within N
 *   seconds, else `[]`) and counts them as delivered.
 * - `POST /api/v1/devices/{device}/commands/{id}`: the device's answer (JSON, see parse.ts).
 * - `GET /api/v1/commands?device=&limit=`, `GET /api/v1/commands/{id}`: what the edge holds.
 * - `POST /api/v1/devices/{device}/commands` `{"method", "params"?, "timeoutMs"?}`: a command from
 *   the operator on this edge (the web console), answered 202 `{"id", "status": "pending"}`; it
 *   takes the same path as one from the hub, and its id starts with `console-`.
 * The control API's middleware authenticates: the API token everywhere, and a device's own token
 * on its own two device routes.
 */
import type { Context, Hono } from "hono";
import { Buffer } from "node:buffer";
import { intParam, jsonBody, readLimited } from "../core/http.ts";
import { randomToken } from "../core/secret.ts";
import { DEVICE_ID } from "../ingest/mod.ts";
import type { Commands } from "./host.ts";

/** Ids of commands sent from this edge's console: their results stay here, not sent to the hub. */
export const CONSOLE_COMMAND_PREFIX = "console-";

/** The longest long poll, in seconds (below every runtime's idle timeout for a connection). */
export const MAX_WAIT_SECONDS = 60;

function badDevice(c: Context, device: string): Response {
  return c.json({
    errors: [{
      path: "/device",
      message: `Invalid device id "${device.slice(0, 64)}": use 1-128 of A-Z a-z 0-9 . _ : -`,
    }],
  }, 400);
}

/** Mounts the command routes on the control app. */
export function mountCommandRoutes(app: Hono, commands: Commands): void {
  app.get("/api/v1/devices/:device/commands", async (c) => {
    const device = c.req.param("device");
    if (!DEVICE_ID.test(device)) return badDevice(c, device);
    const wait = intParam(c.req.query("wait"), 0, 0, MAX_WAIT_SECONDS);
    if (typeof wait === "string") return c.json({ errors: [{ path: "/wait", message: wait }] }, 400);
    const list = await commands.poll(device, wait * 1000, c.req.raw.signal);
    return c.json(list.map(({ id, method, params }) => ({ id, method, params })));
  });

  app.post("/api/v1/devices/:device/commands", async (c) => {
    const device = c.req.param("device");
    if (!DEVICE_ID.test(device)) return badDevice(c, device);
    const body = await jsonBody(c);
    if (!body.ok) return c.json({ errors: body.issues }, 400);
    const b = (body.value ?? {}) as { method?: unknown; params?: unknown; timeoutMs?: unknown };
    const errors = [];
    if (typeof b !== "object" || Array.isArray(b)) errors.push({ path: "", message: "must be an object" });
    else {
      if (typeof b.method !== "string" || b.method === "") {
        errors.push({ path: "/method", message: "must be a non-empty string" });
      }
      if (b.timeoutMs !== undefined && (!Number.isInteger(b.timeoutMs) || (b.timeoutMs as number) < 1)) {
        errors.push({ path: "/timeoutMs", message: "must be a whole number of milliseconds, at least 1" });
      }
    }
    if (errors.length > 0) return c.json({ errors }, 400);
    const id = `${CONSOLE_COMMAND_PREFIX}${randomToken(12)}`;
    commands.receive({
      id,
      device,
      method: b.method as string,
      params: Buffer.from(JSON.stringify(b.params ?? {})),
      timeoutMs: (b.timeoutMs as number | undefined) ?? 30_000,
    });
    const view = commands.get(id);
    if (view?.status === "error") {
      return c.json({ error: (view.payload as { error?: string })?.error ?? "refused" }, 400);
    }
    return c.json({ id, status: "pending" }, 202);
  });

  app.post("/api/v1/devices/:device/commands/:id", async (c) => {
    const device = c.req.param("device");
    if (!DEVICE_ID.test(device)) return badDevice(c, device);
    const id = c.req.param("id");
    const max = commands.limits.maxAnswerBytes;
    const body = await readLimited(c, max);
    if (body === undefined) return c.json({ error: `Body is over the ${max}-byte limit` }, 413);
    const outcome = commands.answer(device, id, body, "http", "refuse");
    if (outcome.ok) return c.json({ id, status: outcome.status });
    const code = outcome.reason === "unknown" ? 404 : outcome.reason === "finished" ? 409 : 400;
    return c.json({ error: outcome.message }, code);
  });

  app.get("/api/v1/commands", (c) => {
    const device = c.req.query("device");
    if (device !== undefined && !DEVICE_ID.test(device)) return badDevice(c, device);
    const limit = intParam(c.req.query("limit"), 100, 1, 1000);
    if (typeof limit === "string") return c.json({ errors: [{ path: "/limit", message: limit }] }, 400);
    return c.json({ commands: commands.list(device, limit), ...commands.counts() });
  });

  app.get("/api/v1/commands/:id", (c) => {
    const command = commands.get(c.req.param("id"));
    if (command === undefined) {
      return c.json({ error: `Unknown command "${c.req.param("id").slice(0, 128)}"` }, 404);
    }
    return c.json(command);
  });
}
