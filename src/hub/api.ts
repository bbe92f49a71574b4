/**
 * The reference hub's HTTP API (SPEC §6, conventions of §7): a hono app that never serves
 * itself. `GET /healthz` is open; everything else needs the bearer token when one is set.
 * Validation errors answer 400 `{"errors": [{"path", "message"}]}` with JSON Pointer paths.
 */
import { AUTH_MAX_FAILURES, AuthLimiter } from "../core/auth_limiter.ts";
import { RefusalLog } from "../core/refusal_log.ts";
import { Hono } from "hono";
import type { Context } from "hono";
import * as v from "valibot";
import { createHash, randomUUID } from "node:crypto";
import type { Issue } from "../core/errors.ts";
import { validate } from "../core/validate.ts";
import type { EdgeLink } from "./link.ts";
import { matchesHash, parseBearer, sha256Hex } from "../core/secret.ts";
import type { Logger } from "../telemetry/mod.ts";
import { errorMessage } from "../core/errors.ts";
import { maskSecrets } from "../core/redact.ts";
import type { HubStore } from "./store.ts";
import { mountOperationRoutes } from "./api_operations.ts";
import {
  changesState,
  isConsolePath,
  mountConsole,
  sameOrigin,
  sessionFromCookie,
  SessionTable,
} from "../console/mod.ts";

export const RECORDS_LIMIT = { default: 1000, max: 10000 } as const;
export const COMMAND_TIMEOUT_MS = { default: 30_000, max: 600_000 } as const;

export interface HubApiDeps {
  store: Pick<
    HubStore,
    "edges" | "records" | "command" | "pushes" | "operation" | "operationsOf" | "countOpenOperations"
  >;
  link: Pick<
    EdgeLink,
    "connectedEdges" | "runCommand" | "startCommand" | "push" | "operate" | "fetchLogs" | "logsWaiting"
  >;
  /** The configured edge ids, in config order. */
  edges: readonly string[];
  /** When set, every route but `GET /healthz` needs `Authorization: Bearer <token>`. */
  token?: string;
  log?: Logger;
  now?: () => number;
  /** How long `POST /api/v1/edges/{edge}/logs` waits for the edge (default 30 s). */
  logsTimeoutMs?: number;
}

const nonEmpty = v.pipe(v.string(), v.minLength(1, "must not be empty"));
const integerParam = (message: string, max: number) =>
  v.pipe(v.string(), v.regex(/^\d{1,16}$/, message), v.transform(Number), v.maxValue(max, message));

const RecordsQuerySchema = v.strictObject({
  edge: v.optional(nonEmpty),
  device: v.optional(nonEmpty),
  after: v.optional(integerParam("must be a seq: an integer of 0 or more", Number.MAX_SAFE_INTEGER)),
  limit: v.optional(
    v.pipe(
      integerParam(`must be an integer from 1 to ${RECORDS_LIMIT.max}`, RECORDS_LIMIT.max),
      v.minValue(1, `must be an integer from 1 to ${RECORDS_LIMIT.max}`),
    ),
  ),
});

const CommandBodySchema = v.strictObject({
  device: nonEmpty,
  method: nonEmpty,
  params: v.optional(v.unknown()),
  timeoutMs: v.optional(
    v.pipe(
      v.number(),
      v.integer("must be an integer"),
      v.minValue(1, "must be at least 1"),
      v.maxValue(COMMAND_TIMEOUT_MS.max, `must be at most ${COMMAND_TIMEOUT_MS.max}`),
    ),
  ),
});

// The edge validates rules fully; the hub checks only the document's outer shape.
const RulesBodySchema = v.looseObject({
  version: v.literal(1, "must be 1"),
  rules: v.array(v.unknown(), "must be an array of rules"),
});

const UpdateBodySchema = v.strictObject({
  version: nonEmpty,
  url: v.pipe(v.string(), v.url("must be a URL")),
  sha256: v.optional(v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits"))),
  signature: v.optional(v.string()),
  size: v.optional(v.pipe(v.number(), v.integer("must be an integer"), v.minValue(0, "must be at least 0"))),
});

type Body = { ok: true; value: unknown } | { ok: false; response: Response };

const ASYNC_VALUES: ReadonlySet<string> = new Set(["1", "true", "0", "false"]);

/** Builds the hub's HTTP API; serve its `fetch` with `serve()` or call `app.request()` in tests. */
export function createHubApi(deps: HubApiDeps): Hono {
  const { store, link } = deps;
  const configured = new Set(deps.edges);
  const tokenDigest = deps.token === undefined ? undefined : sha256Hex(deps.token);
  const app = new Hono();

  const errors = (c: Context, issues: Issue[]) => c.json({ errors: issues }, 400);
  const unknownEdge = (c: Context, edge: string) => c.json({ error: `unknown edge "${edge}"` }, 404);
  const readBody = async (c: Context): Promise<Body> => {
    const text = await c.req.text();
    try {
      return { ok: true, value: JSON.parse(text) };
    } catch (error) {
      const message = `body is not valid JSON: ${errorMessage(error)}`;
      return { ok: false, response: errors(c, [{ path: "", message }]) };
    }
  };

  const now = deps.now ?? Date.now;
  const limiter = new AuthLimiter({ now });
  const refusals = new RefusalLog(now);
  const sessions = new SessionTable({ now });
  app.use("*", async (c, next) => {
    if (tokenDigest === undefined || c.req.path === "/healthz" || isConsolePath(c.req.path)) {
      return await next();
    }
    const address = (c.env as { remoteAddress?: string } | undefined)?.remoteAddress ?? "unknown";
    if (limiter.blocked(address)) {
      const n = refusals.note();
      if (n !== undefined) {
        deps.log?.warn("api.auth_limited", {
          address,
          refused: n,
          rule: `${AUTH_MAX_FAILURES} failed authentications in a minute`,
        });
      }
      c.header("Retry-After", "60");
      return c.json({ error: "Too many failed authentications from this address; try again later" }, 429);
    }
    const token = parseBearer(c.req.header("authorization"));
    if (token === undefined && sessions.valid(sessionFromCookie(c.req.header("cookie")))) {
      // The fleet console's session cookie: a change must come from the console's own origin.
      if (changesState(c.req.method) && !sameOrigin(c)) {
        return c.json({ error: "cross-origin request refused: Origin must match the console" }, 403);
      }
      return await next();
    }
    if (token === undefined || !matchesHash(token, tokenDigest)) {
      limiter.fail(address);
      c.header("WWW-Authenticate", 'Bearer realm="outpost-hub"');
      return c.json({ error: "missing or wrong bearer token" }, 401);
    }
    return await next();
  });

  app.get("/healthz", (c) => c.json({ status: "ok" }));

  // The fleet console (SPEC §9): signed in with the API token; read-only without one.
  mountConsole(app, {
    app: "hub",
    title: "outpost hub",
    sessions,
    verify: tokenDigest === undefined ? undefined : (t) => matchesHash(t, tokenDigest),
    limiter,
  });

  app.get("/api/v1/edges", async (c) => {
    const rows = new Map((await store.edges()).map((row) => [row.id, row]));
    const pending = new Map<string, Record<string, string>>();
    for (const p of await store.pushes()) {
      pending.set(p.edge, { ...pending.get(p.edge), [p.kind]: p.version });
    }
    const connected = await link.connectedEdges();
    return c.json({
      edges: deps.edges.map((id) => {
        const row = rows.get(id);
        return {
          id,
          connected: connected.has(id),
          connectedAt: iso(row?.connectedAt),
          lastSeenAt: iso(row?.lastSeenAt),
          records: row?.records ?? 0,
          conflicts: row?.conflicts ?? 0,
          reports: maskSecrets(row?.reports ?? {}),
          pending: pending.get(id) ?? {},
        };
      }),
    });
  });

  app.get("/api/v1/records", async (c) => {
    const params = new URL(c.req.url).searchParams;
    const input: Record<string, string> = {};
    const repeated: Issue[] = [];
    for (const [key, value] of params) {
      if (key in input) repeated.push({ path: `/${key}`, message: "must be given once" });
      input[key] = value;
    }
    if (repeated.length > 0) return errors(c, repeated);
    const result = validate(RecordsQuerySchema, input);
    if (!result.ok) {
      return errors(
        c,
        result.issues.map((i) =>
          i.message === "unknown key" ? { ...i, message: "unknown query parameter" } : i
        ),
      );
    }
    const { edge, device } = result.value;
    const after = result.value.after ?? 0;
    const limit = result.value.limit ?? RECORDS_LIMIT.default;
    // One row more than asked tells whether another page follows.
    const rows = await store.records({ edge, device, after, limit: limit + 1 });
    const records = rows.slice(0, limit);
    const next = rows.length > limit ? records[records.length - 1].seq : null;
    return c.json({
      records: records.map(({ receivedAt, ...r }) => ({ ...r, receivedAt: iso(receivedAt) })),
      next,
    });
  });

  app.post("/api/v1/edges/:edge/commands", async (c) => {
    const edge = c.req.param("edge");
    if (!configured.has(edge)) return unknownEdge(c, edge);
    const body = await readBody(c);
    if (!body.ok) return body.response;
    const result = validate(CommandBodySchema, body.value);
    if (!result.ok) return errors(c, result.issues);
    const mode = c.req.query("async");
    if (mode !== undefined && !ASYNC_VALUES.has(mode)) {
      return errors(c, [{ path: "/async", message: "must be 1, true, 0 or false" }]);
    }
    const { device, method, params, timeoutMs } = result.value;
    const request = {
      device,
      method,
      params: params ?? {},
      timeoutMs: timeoutMs ?? COMMAND_TIMEOUT_MS.default,
    };
    if (mode === "1" || mode === "true") {
      // Answer at once; the outcome lands in the store, where GET /api/v1/commands/{id} reads it.
      const { id, outcome } = await link.startCommand(edge, { id: randomUUID(), ...request });
      outcome.catch((error) => deps.log?.error("command.failed", { edge, id, error: errorMessage(error) }));
      const stored = await store.command(id);
      return c.json({ id, status: stored?.status ?? "pending" }, 202);
    }
    return c.json(await link.runCommand(edge, request));
  });

  app.get("/api/v1/commands/:id", async (c) => {
    const command = await store.command(c.req.param("id"));
    if (command === undefined) return c.json({ error: `unknown command "${c.req.param("id")}"` }, 404);
    return c.json({ ...command, createdAt: iso(command.createdAt), completedAt: iso(command.completedAt) });
  });

  app.put("/api/v1/edges/:edge/rules", async (c) => {
    const edge = c.req.param("edge");
    if (!configured.has(edge)) return unknownEdge(c, edge);
    const body = await readBody(c);
    if (!body.ok) return body.response;
    const result = validate(RulesBodySchema, body.value);
    if (!result.ok) return errors(c, result.issues);
    const document = JSON.stringify(body.value);
    // The same document always gets the same version, so an edge can tell a no-op.
    const version = createHash("sha256").update(document).digest("hex").slice(0, 16);
    const status = await link.push(edge, "rules", version, document);
    return c.json({ edge, version, status }, 202);
  });

  app.post("/api/v1/edges/:edge/update", async (c) => {
    const edge = c.req.param("edge");
    if (!configured.has(edge)) return unknownEdge(c, edge);
    const body = await readBody(c);
    if (!body.ok) return body.response;
    const result = validate(UpdateBodySchema, body.value);
    if (!result.ok) return errors(c, result.issues);
    const offer = { sha256: "", signature: "", size: 0, ...result.value };
    const status = await link.push(edge, "update", offer.version, JSON.stringify(offer));
    return c.json({ edge, version: offer.version, status }, 202);
  });

  mountOperationRoutes(app, { store, link, configured, errors, logsTimeoutMs: deps.logsTimeoutMs });

  app.notFound((c) => c.json({ error: `no route for ${c.req.method} ${c.req.path}` }, 404));
  app.onError((error, c) => {
    deps.log?.error("api.failed", { method: c.req.method, path: c.req.path, error: errorMessage(error) });
    return c.json({ error: "internal error" }, 500);
  });
  return app;
}

function iso(ms: number | null | undefined): string | null {
  return ms === null || ms === undefined ? null : new Date(ms).toISOString();
}
