/**
 * `POST /api/v1/update` (`{"manifestUrl"?, "allowDowngrade"?}` → 202 with the state; the update
 * runs in the background) and `GET /api/v1/update` (its state), mounted on the control API
 * through its `extend` hook, behind its bearer token.
 */
import type { Hono } from "hono";
import * as v from "valibot";
import { validate } from "../core/validate.ts";
import { jsonBody } from "../core/http.ts";
import type { Updater } from "./updater.ts";

const UpdateBodySchema = v.strictObject({
  manifestUrl: v.optional(v.pipe(v.string(), v.url("must be a URL"))),
  allowDowngrade: v.optional(v.boolean()),
});

export function mountUpdateRoutes(app: Hono, updater: Updater): void {
  app.get("/api/v1/update", (c) => c.json(updater.status()));

  app.post("/api/v1/update", async (c) => {
    let body: unknown = {};
    if ((c.req.header("content-length") ?? "0") !== "0" || c.req.header("transfer-encoding")) {
      const parsed = await jsonBody(c);
      if (!parsed.ok) return c.json({ errors: parsed.issues }, 400);
      body = parsed.value ?? {};
    }
    const result = validate(UpdateBodySchema, body);
    if (!result.ok) return c.json({ errors: result.issues }, 400);
    const started = updater.start(result.value);
    if (!started.ok) return c.json({ error: started.reason, state: updater.status() }, started.status);
    return c.json(updater.status(), 202);
  });
}
