/**
 * Opens the store a hub config names (SPEC §11): absent or `file:` the embedded libSQL file,
 * `postgres://` PostgreSQL (shared by replicas), `libsql://` or `https://` a libSQL server.
 * `hub.started` names the store; PostgreSQL also logs `hub.store_opened` with the migrations it
 * applied.
 */
import { join } from "node:path";
import type { Logger } from "../telemetry/mod.ts";
import type { HubConfig } from "./config.ts";
import { createHubStore, type HubStore } from "./store.ts";
import { openPgStore } from "./store_pg.ts";
import { openRemoteStore } from "./store_remote.ts";

export async function openHubStore(
  config: Pick<HubConfig, "dataDir" | "store">,
  options: { log: Logger; signal?: AbortSignal },
): Promise<HubStore> {
  const url = config.store?.url;
  if (url === undefined || url.startsWith("file:")) {
    const path = url === undefined ? join(config.dataDir, "hub.db") : url.slice("file:".length);
    return createHubStore(path);
  }
  const scheme = new URL(url).protocol;
  if (scheme === "postgres:" || scheme === "postgresql:") return await openPgStore(url, options);
  return await openRemoteStore(url, options);
}
