/**
 * HTTP ingest (SPEC §4): `POST /api/v1/devices/{device}/telemetry|attributes|events`, answered
 * 202 with `{accepted}` only after the outbox committed. A hono app of its own, mounted into the
 * control API's server with `app.route("/", …)`; the control API authenticates every request
 * first (the API token, or the device's own token on its own routes).
 */
import { Hono } from "hono";
import { readLimited } from "../../core/http.ts";
import type { IngestKind } from "../../core/message.ts";
import { DEVICE_ID, type Ingest, parsePayload, type RejectReason } from "../../ingest/mod.ts";
import type { Telemetry } from "../../telemetry/mod.ts";

export {
  createThingsBoardHttp,
  type HttpCommands,
  RPC_DEFAULT_TIMEOUT_MS,
  RPC_MAX_TIMEOUT_MS,
  type ThingsBoardHttpDeps,
  thingsBoardToken,
} from "./thingsboard.ts";

export interface HttpIngestDeps {
  ingest: Ingest;
  telemetry: Telemetry;
  maxPayloadBytes: number;
  /** False while the agent starts or stops: requests get 503 and may be retried. Default: always. */
  accepting?: () => boolean;
  now?: () => number;
}

/** HTTP status of each reason a payload is refused (400 for any other). */
const REJECT_STATUS: Partial<Record<RejectReason, 413 | 429>> = {
  "too-large": 413,
  "batch-too-large": 413,
  "device-limit": 429,
};

const KINDS: Record<string, IngestKind> = {
  telemetry: "telemetry",
  attributes: "attributes",
  events: "event",
};

export function createHttpIngest(deps: HttpIngestDeps): Hono {
  const app = new Hono();
  const now = deps.now ?? Date.now;
  const { telemetry } = deps;

  app.post("/api/v1/devices/:device/:kind{telemetry|attributes|events}", async (c) => {
    if (deps.accepting && !deps.accepting()) {
      c.header("Retry-After", "1");
      return c.json({ error: "The agent is starting or stopping; try again" }, 503);
    }
    const device = c.req.param("device");
    const kind = KINDS[c.req.param("kind")];
    if (!DEVICE_ID.test(device)) {
      return c.json({
        errors: [{
          path: "/device",
          message: `Invalid device id "${device}": use 1-128 of A-Z a-z 0-9 . _ : -`,
        }],
      }, 400);
    }
    const declared = Number(c.req.header("content-length") ?? NaN);
    if (declared > deps.maxPayloadBytes) {
      telemetry.rejected("too-large", { device, transport: "http", bytes: declared });
      return c.json(
        { error: `Body of ${declared} bytes is over the ${deps.maxPayloadBytes}-byte limit` },
        413,
      );
    }
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
      return c.json({ error: parsed.message }, REJECT_STATUS[parsed.reason] ?? 400);
    }
    const result = await deps.ingest.accept(parsed.messages);
    if (result.ok) return c.json({ accepted: result.accepted }, 202);
    telemetry.rejected(result.reason === "stopping" ? "stopping" : "outbox-full", {
      device,
      transport: "http",
      count: parsed.messages.length,
    });
    return c.json({ error: result.message }, result.reason === "stopping" ? 503 : 507);
  });

  return app;
}
