/**
 * The control API (SPEC §7), one hono app served on `api.listen`, into which HTTP ingest
 * (src/transports/http/) is mounted. Bearer token on everything but `GET /healthz`; a device's
 * own routes also take the device's own token.
 * Every error is JSON; a user mistake never yields a stack trace, and nothing here can crash the
 * agent.
 */
import { Hono } from "hono";
import process from "node:process";
import { errorMessage, type Issue } from "../core/errors.ts";
import type { DeviceRegistry } from "../devices/mod.ts";
import { type DeadLetters, DEVICE_ID } from "../ingest/mod.ts";
import { isDiskFull, type Outbox } from "../outbox/mod.ts";
import { RefusalLog } from "../core/refusal_log.ts";
import type { Telemetry } from "../telemetry/mod.ts";
import { AUTH_MAX_FAILURES, AuthLimiter } from "../core/auth_limiter.ts";
import { bearer, isApiToken, unauthorized } from "./auth.ts";
import {
  changesState,
  isConsolePath,
  mountConsole,
  sameOrigin,
  sessionFromCookie,
  SessionTable,
} from "../console/mod.ts";
import { intParam, jsonBody } from "../core/http.ts";

export interface HubStatus {
  configured: boolean;
  connected: boolean;
  lastAckAt: string | null;
  url?: string;
  /** Every configured hub URL, when `hub.url` lists several. */
  urls?: string[];
  /** While not connected: what the link is waiting for (the hub's first word, the next attempt). */
  waitingFor?: string;
  /** Why the link is down, e.g. `UNAUTHENTICATED: unknown edge or wrong secret`. */
  error?: string;
}

export interface RulesApi {
  status(): { version: string | null; count: number };
  get(): unknown;
  /** Validates and applies a document atomically. */
  put(
    document: unknown,
  ): { ok: true; version: string; count: number } | { ok: false; issues: Issue[]; storage?: boolean };
  /** Dry run: outputs and trace, or issues for an invalid document. */
  test(body: unknown): { ok: true; outputs: unknown[]; trace: unknown[] } | { ok: false; issues: Issue[] };
  /** The JSON Schema of a rules document (the console's editor checks against it). */
  schema?(): unknown;
}

export interface ControlDeps {
  token: string;
  edgeId: string;
  version: string;
  startedAt: number;
  outbox: Outbox;
  devices: DeviceRegistry;
  deadLetters: DeadLetters;
  telemetry: Telemetry;
  hubStatus: () => HubStatus;
  rules?: RulesApi;
  /** More status sections (e.g. `update`), merged into `GET /api/v1/status`. */
  extraStatus?: () => Record<string, unknown>;
  /** Apps of other parts (HTTP ingest) mounted at `/` with `app.route()`, behind the same auth. */
  routes?: Hono[];
  /**
   * The device token a path carries by itself (ThingsBoard's HTTP API): a known one authenticates
   * the request, an unknown one counts as a failed authentication.
   */
  tokenInPath?: (method: string, path: string) => string | undefined;
  /** Extra routes (MQTT, update, commands) mounted by their owners. */
  extend?: (app: Hono) => void;
  now?: () => number;
  /** Console sessions (sign-in by cookie, SPEC §9); made here when not given. */
  sessions?: SessionTable;
}

export function createControlApp(deps: ControlDeps): Hono {
  const app = new Hono();
  const now = deps.now ?? Date.now;
  const { telemetry } = deps;

  /** The path as logs show it: a device token in it (ThingsBoard's HTTP API) is left out. */
  const shownPath = (method: string, path: string) =>
    deps.tokenInPath?.(method, path) === undefined
      ? path
      : path.replace(/^\/api\/v1\/[^/]+/, "/api/v1/{deviceToken}");

  app.onError((error, c) => {
    const path = shownPath(c.req.method, c.req.path);
    if (isDiskFull(error)) {
      telemetry.log.error("api.storage_full", { path, error: errorMessage(error) });
      return c.json({ error: `storage full: ${error.message}` }, 507);
    }
    telemetry.log.error("api.error", { path, error: errorMessage(error) });
    return c.json({ error: "Internal error" }, 500);
  });
  app.notFound((c) => c.json({ error: `No route for ${c.req.method} ${c.req.path}` }, 404));

  app.get("/healthz", (c) => c.json({ status: "ok" }));

  // Authentication: the API token (bearer, or the console's session cookie) everywhere; on a
  // device's own ingest and command routes also the device's own token.
  const limiter = new AuthLimiter({ now });
  const limited = telemetry.metrics.family("outpost_auth_limited_total");
  const limitedLog = new RefusalLog(now);
  const sessions = deps.sessions ?? new SessionTable({ now });
  app.use("*", async (c, next) => {
    if (c.req.path === "/healthz" || isConsolePath(c.req.path)) return await next();
    const address = (c.env as { remoteAddress?: string } | undefined)?.remoteAddress ?? "unknown";
    if (limiter.blocked(address)) {
      limited.add(1);
      const n = limitedLog.note();
      if (n !== undefined) {
        telemetry.log.warn("auth.limited", {
          transport: "http",
          address,
          refused: n,
          addresses: limiter.size,
          rule: `${AUTH_MAX_FAILURES} failed authentications in a minute`,
        });
      }
      c.header("Retry-After", "60");
      return c.json({ error: "Too many failed authentications from this address; try again later" }, 429);
    }
    const candidate = bearer(c);
    if (isApiToken(candidate, deps.token)) return await next();
    const pathToken = deps.tokenInPath?.(c.req.method, c.req.path);
    if (pathToken !== undefined) {
      if (deps.devices.findByToken(pathToken) !== undefined) return await next();
      limiter.fail(address);
      telemetry.authRefused("wrong-token", { path: shownPath(c.req.method, c.req.path), transport: "http" });
      return c.json({ error: "Unknown device token" }, 401);
    }
    if (candidate === undefined && sessions.valid(sessionFromCookie(c.req.header("cookie")))) {
      // A cookie rides along on any request the browser makes, so a change must come from the
      // console's own origin (SPEC §9).
      if (changesState(c.req.method) && !sameOrigin(c)) {
        telemetry.log.warn("console.origin_refused", {
          path: c.req.path,
          origin: (c.req.header("origin") ?? "none").slice(0, 200),
        });
        return c.json({ error: "Cross-origin request refused: Origin must match the console" }, 403);
      }
      return await next();
    }
    const device = ownDeviceRoute(c.req.method, c.req.path);
    if (device !== undefined && candidate !== undefined && deps.devices.verify(device, candidate)) {
      return await next();
    }
    limiter.fail(address);
    telemetry.authRefused(candidate === undefined ? "missing-token" : "wrong-token", {
      path: c.req.path,
      transport: "http",
    });
    return unauthorized(c, candidate === undefined ? "Missing bearer token" : "Invalid token");
  });

  mountConsole(app, {
    app: "agent",
    title: `outpost ${deps.edgeId}`,
    sessions,
    verify: (t) => isApiToken(t, deps.token),
    limiter,
    onSignIn: (address) => telemetry.log.info("console.signed_in", { address }),
    onWrongToken: (address) =>
      telemetry.authRefused("wrong-token", { path: "/ui/login", transport: "http", address }),
  });

  for (const routes of deps.routes ?? []) app.route("/", routes);

  app.get("/api/v1/status", (c) => c.json(status()));

  function status() {
    const counts = telemetry.counts();
    return {
      version: deps.version,
      edgeId: deps.edgeId,
      uptimeSeconds: Math.round((now() - deps.startedAt) / 1000),
      hub: deps.hubStatus(),
      outbox: deps.outbox.stats(),
      ingest: { accepted: counts.accepted, rejected: counts.rejected },
      rules: deps.rules?.status() ?? { version: null, count: 0 },
      ...deps.extraStatus?.(),
    };
  }

  const gauges = telemetry.metrics;
  gauges.collectors.push(() => {
    const s = deps.outbox.stats();
    gauges.family("outpost_outbox_depth").set(s.depth);
    gauges.family("outpost_outbox_bytes").set(s.bytes);
    gauges.family("outpost_outbox_dropped").set(
      s.dropped,
    );
    gauges.family("outpost_hub_connected").set(
      deps.hubStatus().connected ? 1 : 0,
    );
    const m = process.memoryUsage();
    gauges.family("outpost_process_resident_memory_bytes").set(m.rss);
    gauges.family("outpost_js_heap_used_bytes").set(m.heapUsed);
    gauges.family("outpost_js_heap_total_bytes").set(m.heapTotal);
    gauges.family("outpost_js_external_bytes")
      .set(m.external);
    gauges.family("outpost_console_sessions").set(sessions.size);
  });

  app.get("/metrics", (c) => {
    return c.body(telemetry.metrics.render(), 200, {
      "content-type": "text/plain; version=0.0.4; charset=utf-8",
    });
  });

  app.get("/api/v1/outbox", (c) => {
    const limit = intParam(c.req.query("limit"), 100, 1, 1000);
    if (typeof limit === "string") return c.json({ errors: [{ path: "/limit", message: limit }] }, 400);
    const records = deps.outbox.peek(limit).map((r) => ({
      id: r.id,
      seq: r.seq,
      device: r.device,
      kind: r.kind,
      ts: r.ts,
      topic: r.topic,
      payload: JSON.parse(r.payload),
      bytes: r.bytes,
      createdAt: new Date(r.createdAt).toISOString(),
    }));
    return c.json({ records, depth: deps.outbox.stats().depth });
  });

  app.get("/api/v1/devices", (c) => {
    const limit = intParam(c.req.query("limit"), 1000, 1, 10_000);
    if (typeof limit === "string") return c.json({ errors: [{ path: "/limit", message: limit }] }, 400);
    const after = c.req.query("after");
    const devices = deps.devices.list({ limit, after: after || undefined });
    return c.json({ devices, total: deps.devices.size });
  });

  app.post("/api/v1/devices", async (c) => {
    const body = await jsonBody(c);
    if (!body.ok) return c.json({ errors: body.issues }, 400);
    const id = (body.value as { id?: unknown })?.id;
    if (typeof id !== "string" || !DEVICE_ID.test(id)) {
      return c.json({
        errors: [{ path: "/id", message: "must be a device id: 1-128 of A-Z a-z 0-9 . _ : -" }],
      }, 400);
    }
    const created = deps.devices.create(id);
    if ("error" in created) return c.json({ error: `Device "${id}" already exists` }, 409);
    telemetry.log.info("device.created", { device: id });
    return c.json(created, 201);
  });

  app.get("/api/v1/deadletters", (c) => {
    const limit = intParam(c.req.query("limit"), 100, 1, 1000);
    if (typeof limit === "string") return c.json({ errors: [{ path: "/limit", message: limit }] }, 400);
    return c.json({ deadletters: deps.deadLetters.list(limit), total: deps.deadLetters.size });
  });

  if (deps.rules) {
    const rules = deps.rules;
    app.get("/api/v1/rules", (c) => c.json({ ...rules.status(), document: rules.get() }));
    const schema = rules.schema?.();
    if (schema !== undefined) app.get("/api/v1/rules/schema", (c) => c.json(schema));
    app.put("/api/v1/rules", async (c) => {
      const body = await jsonBody(c);
      if (!body.ok) return c.json({ errors: body.issues }, 400);
      const result = rules.put(body.value);
      if (!result.ok && result.storage) return c.json({ error: result.issues[0]?.message }, 507);
      if (!result.ok) return c.json({ errors: result.issues }, 400);
      return c.json({ version: result.version, count: result.count });
    });
    app.post("/api/v1/rules/test", async (c) => {
      const body = await jsonBody(c);
      if (!body.ok) return c.json({ errors: body.issues }, 400);
      const result = rules.test(body.value);
      if (!result.ok) return c.json({ errors: result.issues }, 400);
      return c.json({ outputs: result.outputs, trace: result.trace });
    });
  }

  deps.extend?.(app);
  return app;
}

/**
 * The device whose own token may call this route: `POST …/devices/{device}/telemetry|attributes|events`,
 * its command poll `GET …/devices/{device}/commands` and its answers
 * `POST …/devices/{device}/commands/{id}`.
 */
function ownDeviceRoute(method: string, path: string): string | undefined {
  const m = /^\/api\/v1\/devices\/([^/]+)\/(telemetry|attributes|events|commands)(?:\/([^/]+))?$/.exec(path);
  if (!m) return undefined;
  const [, device, what, id] = m;
  const allowed = what === "commands"
    ? (id === undefined ? method === "GET" : method === "POST")
    : id === undefined && method === "POST";
  if (!allowed) return undefined;
  try {
    return decodeURIComponent(device);
  } catch {
    return undefined;
  }
}
