/**
 * Where the CLI finds the running agent: its control API on this machine (a wildcard listen
 * address is reached on loopback) and its token (the config's, else the one kept in the data dir).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Config } from "../config/mod.ts";
import { localUrl } from "../core/hostport.ts";

export function agentEndpoint(config: Config, path: string): { url: string; token?: string } {
  const tokenFile = join(config.dataDir, "api-token");
  const token = config.api.token ??
    (existsSync(tokenFile) ? readFileSync(tokenFile, "utf8").trim() : undefined);
  return { url: localUrl(config.api.listen, path), token };
}
