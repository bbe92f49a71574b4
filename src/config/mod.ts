/**
 * Loading the agent's configuration: where the file is (`--config`, `$OUTPOST_CONFIG`,
 * `./outpost.json`, `/etc/outpost/config.json`, else built-in defaults), parsing it, validating
 * it once, and resolving relative paths against the file's folder. Components receive the typed
 * `Config` and never re-check it.
 */
import { toJsonSchema } from "@valibot/to-json-schema";
import { existsSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { dirname, isAbsolute, resolve } from "node:path";
import process from "node:process";
import { errorMessage, type Issue, type Result, UsageError } from "../core/errors.ts";
import { ConfigSchema, type ParsedConfig } from "./schema.ts";
import { validate } from "../core/validate.ts";

export { BROKER_LIMIT_DEFAULTS, ConfigSchema, DEFAULTS } from "./schema.ts";

export interface Config extends ParsedConfig {
  edgeId: string;
  /** Absolute. */
  dataDir: string;
  /** The file it came from, or undefined for built-in defaults. */
  source?: string;
  /** The folder relative paths in the file are resolved against. */
  baseDir: string;
}

export const DEFAULT_CONFIG_PATHS = ["./outpost.json", "/etc/outpost/config.json"];

/** Finds the config file by SPEC's lookup order; undefined means built-in defaults. */
export function findConfigPath(flag?: string, env = process.env): string | undefined {
  if (flag) return resolve(flag);
  if (env.OUTPOST_CONFIG) return resolve(env.OUTPOST_CONFIG);
  for (const candidate of DEFAULT_CONFIG_PATHS) {
    if (existsSync(candidate)) return resolve(candidate);
  }
  return undefined;
}

/** Validates a parsed JSON value as configuration. */
export function parseConfig(input: unknown, baseDir: string, source?: string): Result<Config> {
  const result = validate(ConfigSchema, input);
  if (!result.ok) return result;
  const c = result.value;
  return {
    ok: true,
    value: {
      ...c,
      edgeId: c.edgeId ?? safeHostname(),
      dataDir: isAbsolute(c.dataDir) ? c.dataDir : resolve(baseDir, c.dataDir),
      source,
      baseDir,
    },
  };
}

/** Loads the config from the lookup order; throws `UsageError` (exit 2) naming every bad key. */
export function loadConfig(flag?: string, env = process.env): Config {
  const path = findConfigPath(flag, env);
  if (path === undefined) {
    const result = parseConfig({}, process.cwd());
    if (!result.ok) throw new UsageError("Built-in defaults are invalid", { issues: result.issues });
    return result.value;
  }
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(
      `Cannot read config file ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`Config file ${path} is not valid JSON: ${errorMessage(error)}`);
  }
  const result = parseConfig(json, dirname(path), path);
  if (!result.ok) {
    throw new UsageError(`Config file ${path} is invalid`, { issues: result.issues });
  }
  return result.value;
}

/** Resolves a path from the config file against the file's folder. */
export function resolveFromConfig(config: Pick<Config, "baseDir">, path: string): string {
  return isAbsolute(path) ? path : resolve(config.baseDir, path);
}

/** The JSON Schema of the config file, generated from the valibot schema. */
export function configJsonSchema(): object {
  return {
    $id: "https://outpost.dev/schema/config.json",
    title: "outpost configuration",
    ...toJsonSchema(ConfigSchema, { errorMode: "ignore" }),
  };
}

/** Replaces secrets by "***" so a config can be shown or logged. */
export function redactConfig(config: Config): unknown {
  return JSON.parse(JSON.stringify(config, (key, value) => {
    if ((key === "secret" || key === "token" || key === "password") && typeof value === "string") {
      return "***";
    }
    return value;
  }));
}

export type { Issue };

function safeHostname(): string {
  const name = hostname().replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 128);
  return name || "outpost";
}
