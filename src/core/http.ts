/** Small HTTP helpers shared by every hono app (bodies with a size bound, JSON bodies, query numbers). */
import type { Context } from "hono";
import { errorMessage, type Issue } from "./errors.ts";
import { depthOverBytes, MAX_DEPTH } from "./json_depth.ts";

/** Reads the body, giving up (undefined) as soon as it passes `max` bytes. */
export async function readLimited(c: Context, max: number): Promise<Uint8Array | undefined> {
  const declared = Number(c.req.header("content-length") ?? NaN);
  if (declared > max) return undefined;
  const stream = c.req.raw.body;
  if (!stream) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let off = 0;
  for (const ch of chunks) {
    out.set(ch, off);
    off += ch.byteLength;
  }
  return out;
}

/** Parses a JSON request body (1 MiB at most) into a value or a `/`-path issue. */
export async function jsonBody(
  c: Context,
): Promise<{ ok: true; value: unknown } | { ok: false; issues: Issue[] }> {
  const raw = await readLimited(c, 1024 * 1024);
  if (raw === undefined) return { ok: false, issues: [{ path: "", message: "Body is over 1 MiB" }] };
  const deep = depthOverBytes(raw);
  if (deep >= 0) {
    return {
      ok: false,
      issues: [{ path: "", message: `Body is nested deeper than ${MAX_DEPTH} levels (at byte ${deep})` }],
    };
  }
  try {
    return { ok: true, value: JSON.parse(new TextDecoder().decode(raw)) };
  } catch (error) {
    return {
      ok: false,
      issues: [{ path: "", message: `Body is not valid JSON: ${errorMessage(error)}` }],
    };
  }
}

/** A whole-number query parameter in [min, max]; a string is the error message. */
export function intParam(
  value: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number | string {
  if (value === undefined || value === "") return fallback;
  if (!/^\d{1,9}$/.test(value)) return `must be a whole number, got "${value.slice(0, 32)}"`;
  const n = Number(value);
  if (n < min || n > max) return `must be between ${min} and ${max}, got ${n}`;
  return n;
}
