/**
 * ThingsBoard's HTTP device API (SPEC §10), on the control API's listener; the device's token in
 * the path is its only credential (the control API's middleware lets a known token through and
 * counts an unknown one as a failed authentication):
 * - `POST /api/v1/{deviceToken}/telemetry|attributes`: answered 200 only after the outbox
 *   committed (ThingsBoard answers 200 with an empty body);
 * - `GET /api/v1/{deviceToken}/rpc?timeout=ms`: the long poll for one command, 200
 *   `{"id", "method", "params"}` or 408 when the wait ends (default 60 s, at most 300 s);
 * - `POST /api/v1/{deviceToken}/rpc/{id}`: the device's answer.
 * A token never appears in a log line or an answer.
 */
import { Hono } from "hono";
import { readLimited } from "../../core/http.ts";
import { type Ingest, parsePayload, type RejectReason } from "../../ingest/mod.ts";
import type { Telemetry } from "../../telemetry/mod.ts";

export const RPC_DEFAULT_TIMEOUT_MS = 60_000;
export const RPC_MAX_TIMEOUT_MS = 300_000;

/** The device commands, as this API uses them (src/device_commands). */
export interface HttpCommands {
  poll(
    device: string,
    waitMs: number,
    signal?: AbortSignal,
    limit?: number,
  ): Promise<{ id: string; method: string; params: unknown }[]>;
  answer(
    device: string,
    id: string,
    raw: Uint8Array,
    via: string,
    invalid: "refuse",
  ): { ok: true; status: string } | { ok: false; reason: string; message: string };
  readonly limits: { maxAnswerBytes: number };
}

export interface ThingsBoardHttpDeps {
  ingest: Ingest;
  telemetry: Telemetry;
  maxPayloadBytes: number;
  devices: {
    findByToken(token: string): string | undefined;
    activity(id: string, transport: string): boolean;
  };
  commands?: HttpCommands;
  accepting?: () => boolean;
  now?: () => number;
}

const REJECT_STATUS: Partial<Record<RejectReason, 413 | 429>> = {
  "too-large": 413,
  "batch-too-large": 413,
  "device-limit": 429,
};

export function createThingsBoardHttp(deps: ThingsBoardHttpDeps): Hono {
  const app = new Hono();
  const now = deps.now ?? Date.now;
  const { telemetry } = deps;
  const unknownToken = { error: "Unknown device token" };

  app.post("/api/v1/:token/:kind{telemetry|attributes}", async (c) => {
    if (deps.accepting && !deps.accepting()) {
      c.header("Retry-After", "1");
      return c.json({ error: "The agent is starting or stopping; try again" }, 503);
    }
    const device = deps.devices.findByToken(c.req.param("token"));
    if (device === undefined) return c.json(unknownToken, 401);
    const kind = c.req.param("kind") === "telemetry" ? "telemetry" : "attributes";
    const body = await readLimited(c, deps.maxPayloadBytes);
    if (body === undefined) {
      telemetry.rejected("too-large", { device, transport: "http" });
      return c.json({ error: `Body is over the ${deps.maxPayloadBytes}-byte limit` }, 413);
    }
    const parsed = parsePayload(body, {
      device,
      kind,
      source: "http",
      now: now(),
      maxBytes: deps.maxPayloadBytes,
      maxBatchBytes: deps.ingest.maxBatchBytes,
      admit: deps.ingest.admit,
    });
    if (!parsed.ok) {
      telemetry.rejected(parsed.reason, { device, transport: "http" });
      const status = REJECT_STATUS[parsed.reason];
      if (status) return c.json({ error: parsed.message }, status);
      return c.json({ errors: [{ path: pathOf(parsed.message), message: parsed.message }] }, 400);
    }
    const result = await deps.ingest.accept(parsed.messages);
    if (result.ok) return c.body(null, 200);
    telemetry.rejected(result.reason === "stopping" ? "stopping" : "outbox-full", {
      device,
      transport: "http",
      count: parsed.messages.length,
    });
    return c.json({ error: result.message }, result.reason === "stopping" ? 503 : 507);
  });

  app.get("/api/v1/:token/rpc", async (c) => {
    const device = deps.devices.findByToken(c.req.param("token"));
    if (device === undefined) return c.json(unknownToken, 401);
    if (!deps.commands) return c.json({ error: "Commands are not available on this agent" }, 404);
    const raw = c.req.query("timeout");
    let waitMs = RPC_DEFAULT_TIMEOUT_MS;
    if (raw !== undefined && raw !== "") {
      if (!/^\d{1,9}$/.test(raw) || Number(raw) > RPC_MAX_TIMEOUT_MS) {
        return c.json({
          errors: [{
            path: "/timeout",
            message: `must be a whole number of milliseconds up to ${RPC_MAX_TIMEOUT_MS}, got "${
              raw.slice(0, 32)
            }"`,
          }],
        }, 400);
      }
      waitMs = Number(raw);
    }
    deps.devices.activity(device, "http");
    if (waitMs > 100_000) (c.env as { keepOpen?: () => void } | undefined)?.keepOpen?.();
    const [command] = await deps.commands.poll(device, waitMs, c.req.raw.signal, 1);
    if (command === undefined) return c.json({ error: `No command within ${waitMs} ms` }, 408);
    return c.json({ id: command.id, method: command.method, params: command.params });
  });

  app.post("/api/v1/:token/rpc/:id", async (c) => {
    const device = deps.devices.findByToken(c.req.param("token"));
    if (device === undefined) return c.json(unknownToken, 401);
    if (!deps.commands) return c.json({ error: "Commands are not available on this agent" }, 404);
    const id = c.req.param("id");
    const max = deps.commands.limits.maxAnswerBytes;
    const body = await readLimited(c, max);
    if (body === undefined) return c.json({ error: `Body is over the ${max}-byte limit` }, 413);
    deps.devices.activity(device, "http");
    const outcome = deps.commands.answer(device, id, body, "http", "refuse");
    if (outcome.ok) return c.json({ id, status: outcome.status });
    const code = outcome.reason === "unknown" ? 404 : outcome.reason === "finished" ? 409 : 400;
    if (code === 400) return c.json({ errors: [{ path: "", message: outcome.message }] }, 400);
    return c.json({ error: outcome.message }, code);
  });

  return app;
}

/** The JSON Pointer a parse message names (`Payload item /3 …`), else the whole body. */
function pathOf(message: string): string {
  return /^Payload item (\/\d+)/.exec(message)?.[1] ?? "";
}

/**
 * The device token in a ThingsBoard HTTP API path, for the control API's authentication, or
 * undefined when the path is not one (the token itself is never logged).
 */
export function thingsBoardToken(method: string, path: string): string | undefined {
  const m = /^\/api\/v1\/([^/]+)\/(telemetry|attributes|rpc)(?:\/([^/]+))?$/.exec(path);
  if (!m) return undefined;
  const [, token, what, id] = m;
  const allowed = what === "rpc"
    ? (id === undefined ? method === "GET" : method === "POST")
    : id === undefined && method === "POST";
  if (!allowed || token === "devices") return undefined;
  try {
    return decodeURIComponent(token);
  } catch {
    return undefined;
  }
}
