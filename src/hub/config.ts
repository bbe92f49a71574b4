/**
 * The reference hub's configuration (SPEC §6): a strict valibot schema (an unknown key is an
 * error), validated once; relative paths resolve against the config file's folder.
 */
import * as v from "valibot";
import { hostPort } from "../core/hostport.ts";
import { toJsonSchema } from "@valibot/to-json-schema";
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { errorMessage, type Issue, type Result, UsageError } from "../core/errors.ts";
import { validate } from "../core/validate.ts";
import { DURATION_PATTERN, parseDuration } from "../core/duration.ts";

export const HUB_DEFAULTS = {
  listen: "127.0.0.1:7443",
  apiListen: "127.0.0.1:8081",
} as const;

const nonEmpty = (what: string) => v.pipe(v.string(), v.minLength(1, `${what} must not be empty`));

export const HubEdgeSchema = v.strictObject({
  id: v.pipe(v.string(), v.regex(/^[A-Za-z0-9._-]{1,128}$/, "must be 1-128 of A-Z a-z 0-9 . _ -")),
  routingKey: nonEmpty("routingKey"),
  secret: nonEmpty("secret"),
});

/** The store URL schemes: the embedded libSQL file, PostgreSQL, a libSQL server (SPEC §11). */
export const STORE_SCHEMES = ["file:", "postgres:", "postgresql:", "libsql:", "https:", "http:"] as const;

const StoreSchema = v.strictObject({
  url: v.pipe(
    v.string(),
    v.check((url) => {
      try {
        return (STORE_SCHEMES as readonly string[]).includes(new URL(url).protocol);
      } catch {
        return false;
      }
    }, 'must be a URL: "file:<path>", "postgres://user:password@host:port/db", "libsql://…" or "https://…"'),
  ),
});

const retention = v.pipe(
  v.string(),
  v.regex(DURATION_PATTERN, 'must be a duration such as "12h", "30d"'),
  v.transform((text) => parseDuration(text)!),
  v.minValue(60_000, "must be at least 1m"),
);

export const HubConfigSchema = v.strictObject({
  listen: v.optional(hostPort, HUB_DEFAULTS.listen),
  api: v.optional(
    v.strictObject({
      listen: v.optional(hostPort, HUB_DEFAULTS.apiListen),
      token: v.optional(v.pipe(v.string(), v.minLength(16, "must be at least 16 characters"))),
    }),
    {},
  ),
  dataDir: nonEmpty("dataDir"),
  edges: v.array(HubEdgeSchema),
  tls: v.optional(v.strictObject({ cert: nonEmpty("cert"), key: nonEmpty("key") })),
  /** Where the hub keeps everything (default: the libSQL file `<dataDir>/hub.db`). */
  store: v.optional(StoreSchema),
  /** Records older than this are deleted, in bounded batches. */
  retention: v.optional(retention),
});

export type HubEdgeConfig = v.InferOutput<typeof HubEdgeSchema>;

/** The validated hub configuration; every path in it is absolute. */
export interface HubConfig {
  /** gRPC listen address, `host:port` (port 0 picks a free port). */
  listen: string;
  api: { listen: string; token?: string };
  dataDir: string;
  edges: HubEdgeConfig[];
  tls?: { cert: string; key: string };
  /** The store URL; absent: the libSQL file `<dataDir>/hub.db`. A `file:` path is absolute. */
  store?: { url: string };
  /** Keep records this long (ms); absent: forever. */
  retention?: number;
}

/** Validates a parsed JSON value as hub configuration, resolving paths against `baseDir`. */
export function parseHubConfig(input: unknown, baseDir: string): Result<HubConfig> {
  const result = validate(HubConfigSchema, input);
  if (!result.ok) return result;
  const c = result.value;
  const issues: Issue[] = [];
  const seen = new Set<string>();
  c.edges.forEach((edge, i) => {
    if (seen.has(edge.id)) issues.push({ path: `/edges/${i}/id`, message: `duplicate edge id "${edge.id}"` });
    seen.add(edge.id);
  });
  if (issues.length > 0) return { ok: false, issues };
  const abs = (path: string) => isAbsolute(path) ? path : resolve(baseDir, path);
  return {
    ok: true,
    value: {
      listen: c.listen,
      api: { listen: c.api.listen, ...(c.api.token === undefined ? {} : { token: c.api.token }) },
      dataDir: abs(c.dataDir),
      edges: c.edges,
      ...(c.tls ? { tls: { cert: abs(c.tls.cert), key: abs(c.tls.key) } } : {}),
      ...(c.store ? { store: { url: resolveFileUrl(c.store.url, abs) } } : {}),
      ...(c.retention === undefined ? {} : { retention: c.retention }),
    },
  };
}

/** `file:relative/path` resolved against the config's folder; other URLs as they are. */
function resolveFileUrl(url: string, abs: (path: string) => string): string {
  if (!url.startsWith("file:")) return url;
  const path = url.slice("file:".length).replace(/^\/\/(?=\/)/, "");
  return `file:${abs(path)}`;
}

/** Reads and validates a hub config file; throws `UsageError` (exit 2) naming every bad key. */
export function loadHubConfig(path: string): HubConfig {
  const file = resolve(path);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new UsageError(
      `Cannot read hub config file ${file}: ${(error as NodeJS.ErrnoException).code ?? error}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`Hub config file ${file} is not valid JSON: ${errorMessage(error)}`);
  }
  const result = parseHubConfig(json, dirname(file));
  if (!result.ok) throw new UsageError(`Hub config file ${file} is invalid`, { issues: result.issues });
  return result.value;
}

/** The JSON Schema of the hub config file, generated from the valibot schema. */
export function hubConfigJsonSchema(): object {
  return {
    $id: "https://outpost.dev/schema/hub-config.json",
    title: "outpost reference hub configuration",
    ...toJsonSchema(HubConfigSchema, { errorMode: "ignore" }),
  };
}
