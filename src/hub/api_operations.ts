/**
 * The hub's management API (SPEC §12, docs/management.md), mounted by api.ts:
 *
 * - `PUT /api/v1/edges/{edge}/config` — push an agent config (any JSON object: the edge validates
 *   it with its own schema and reports every issue with its path) → 202 `{id, status}`;
 * - `GET /api/v1/edges/{edge}/config` — the config the edge last reported, secrets masked;
 * - `POST /api/v1/edges/{edge}/logs` `{since?, level?, lines?}` — the edge's log lines, waited for;
 * - `POST /api/v1/edges/{edge}/restart` → 202 `{id, status}`;
 * - `GET /api/v1/edges/{edge}/operations` and `GET /api/v1/operations/{id}`.
 *
 * Nothing answered here holds a secret: configs are masked before they are stored for showing,
 * and what goes down to the edge (`body`) is never read back out.
 */
import type { Context, Hono } from "hono";
import type { Issue } from "../core/errors.ts";
import { maskSecrets } from "../core/redact.ts";
import { parseLogQuery } from "../telemetry/mod.ts";
import { type EdgeLink, LOGS_WAITING_PER_EDGE } from "./link.ts";
import type { HubStore, OperationRow } from "./store.ts";

/** Open operations per edge (pending or executing); past it a new one is refused with 429. */
export const OPEN_OPERATIONS_PER_EDGE = 32;
export const MAX_CONFIG_BYTES = 1024 * 1024;
export const LOGS_TIMEOUT_MS = 30_000;
export const OPERATIONS_LIMIT = { default: 100, max: 1000 } as const;

export interface OperationRouteDeps {
  store: Pick<HubStore, "edges" | "operation" | "operationsOf" | "countOpenOperations">;
  link: Pick<EdgeLink, "operate" | "fetchLogs" | "logsWaiting">;
  configured: ReadonlySet<string>;
  errors(c: Context, issues: Issue[]): Response;
  logsTimeoutMs?: number;
}

export function mountOperationRoutes(app: Hono, deps: OperationRouteDeps): void {
  const { store, link, configured } = deps;
  const unknownEdge = (c: Context, edge: string) => c.json({ error: `unknown edge "${edge}"` }, 404);
  const tooMany = (c: Context, edge: string) =>
    c.json(
      { error: `edge "${edge}" has ${OPEN_OPERATIONS_PER_EDGE} operations open; wait for them to end` },
      429,
    );

  app.put("/api/v1/edges/:edge/config", async (c) => {
    const edge = c.req.param("edge");
    if (!configured.has(edge)) return unknownEdge(c, edge);
    const text = await c.req.text();
    if (text.length > MAX_CONFIG_BYTES) {
      return c.json({ error: `a config must be at most ${MAX_CONFIG_BYTES} bytes` }, 413);
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      // JSON.parse's message may quote the text, secrets included.
      return deps.errors(c, [{ path: "", message: "body is not valid JSON" }]);
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      return deps.errors(c, [{ path: "", message: "must be a config object" }]);
    }
    if (await store.countOpenOperations(edge) >= OPEN_OPERATIONS_PER_EDGE) return tooMany(c, edge);
    const op = await link.operate(edge, "config", JSON.stringify(value), { config: maskSecrets(value) });
    return c.json({ id: op.id, edge, kind: op.kind, status: op.status }, 202);
  });

  app.get("/api/v1/edges/:edge/config", async (c) => {
    const edge = c.req.param("edge");
    if (!configured.has(edge)) return unknownEdge(c, edge);
    const row = (await store.edges()).find((e) => e.id === edge);
    const reports = row?.reports as
      | Record<string, { source?: unknown; config?: unknown; at?: unknown }>
      | undefined;
    const reported = reports?.config;
    return c.json({
      edge,
      source: reported?.source ?? null,
      // Masked by the edge already; masked again in case an older edge did not.
      config: reported?.config === undefined ? null : maskSecrets(reported.config),
      // When the edge last said which config it runs (on every connect).
      reportedAt: typeof reported?.at === "string" ? reported.at : null,
    });
  });

  app.post("/api/v1/edges/:edge/logs", async (c) => {
    const edge = c.req.param("edge");
    if (!configured.has(edge)) return unknownEdge(c, edge);
    // An empty body asks for everything (the newest lines, up to the bounds).
    const text = await c.req.text();
    let body: unknown = {};
    if (text.trim() !== "") {
      try {
        body = JSON.parse(text);
      } catch {
        return deps.errors(c, [{ path: "", message: "body is not valid JSON" }]);
      }
    }
    const query = parseLogQuery(body, Date.now());
    if (!query.ok) return deps.errors(c, query.issues);
    if (link.logsWaiting(edge) >= LOGS_WAITING_PER_EDGE) {
      return c.json(
        { error: `edge "${edge}" already has ${LOGS_WAITING_PER_EDGE} logs requests waiting` },
        429,
      );
    }
    // The edge gets the request as asked (a relative `since` is judged on its own clock).
    const outcome = await link.fetchLogs(edge, body, deps.logsTimeoutMs ?? LOGS_TIMEOUT_MS);
    if (outcome.status === "successful") return c.json(outcome);
    const { code, ...rest } = outcome;
    return c.json(rest, code);
  });

  app.post("/api/v1/edges/:edge/restart", async (c) => {
    const edge = c.req.param("edge");
    if (!configured.has(edge)) return unknownEdge(c, edge);
    if (await store.countOpenOperations(edge) >= OPEN_OPERATIONS_PER_EDGE) return tooMany(c, edge);
    const op = await link.operate(edge, "restart", "", null);
    return c.json({ id: op.id, edge, kind: op.kind, status: op.status }, 202);
  });

  app.get("/api/v1/edges/:edge/operations", async (c) => {
    const edge = c.req.param("edge");
    if (!configured.has(edge)) return unknownEdge(c, edge);
    const raw = c.req.query("limit");
    let limit: number = OPERATIONS_LIMIT.default;
    if (raw !== undefined) {
      if (!/^\d{1,5}$/.test(raw) || Number(raw) < 1 || Number(raw) > OPERATIONS_LIMIT.max) {
        return deps.errors(c, [{
          path: "/limit",
          message: `must be an integer from 1 to ${OPERATIONS_LIMIT.max}`,
        }]);
      }
      limit = Number(raw);
    }
    return c.json({ operations: (await store.operationsOf(edge, limit)).map(view) });
  });

  app.get("/api/v1/operations/:id", async (c) => {
    const op = await store.operation(c.req.param("id"));
    if (op === undefined) {
      return c.json({ error: `unknown operation "${c.req.param("id").slice(0, 128)}"` }, 404);
    }
    return c.json(view(op));
  });
}

function view(op: OperationRow): Record<string, unknown> {
  return { ...op, createdAt: iso(op.createdAt), updatedAt: iso(op.updatedAt) };
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}
