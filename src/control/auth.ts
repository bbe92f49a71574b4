/** Bearer-token checks for the control API, compared in constant time. */
import type { Context } from "hono";
import { parseBearer, secretEquals } from "../core/secret.ts";

/** The token in `Authorization: Bearer …`, or undefined. */
export function bearer(c: Context): string | undefined {
  return parseBearer(c.req.header("authorization"));
}

export function isApiToken(candidate: string | undefined, token: string): boolean {
  return candidate !== undefined && secretEquals(candidate, token);
}

export function unauthorized(c: Context, why: string): Response {
  c.header("WWW-Authenticate", 'Bearer realm="outpost"');
  return c.json({ error: why }, 401);
}
