/**
 * The local side of management, on the control API behind its bearer token:
 * `GET /api/v1/logs?since=&level=&lines=` reads the on-disk log ring (the same lines the hub's
 * `POST /api/v1/edges/{edge}/logs` returns), `GET /api/v1/operations` lists the hub's operations
 * this agent has recorded, newest last.
 */
import type { Hono } from "hono";
import { parseLogQuery, readLogRing } from "../telemetry/mod.ts";
import type { Management } from "./operations.ts";

export function mountManagementRoutes(app: Hono, deps: { dataDir: string; management: Management }): void {
  app.get("/api/v1/logs", (c) => {
    const params = new URL(c.req.url).searchParams;
    const input: Record<string, unknown> = {};
    for (const [key, value] of params) {
      input[key] = key === "lines" && /^\d{1,6}$/.test(value) ? Number(value) : value;
    }
    const query = parseLogQuery(input, Date.now());
    if (!query.ok) return c.json({ errors: query.issues }, 400);
    return c.json(readLogRing(deps.dataDir, query.value));
  });
  app.get("/api/v1/operations", (c) => c.json({ operations: deps.management.operations() }));
}
