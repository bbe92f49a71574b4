/**
 * The agent: builds every component from the typed config and runs them under one lifecycle.
 * Start order: store → uplink → control API → rules → transports; stop in reverse, draining
 * what is in flight. Start-up and reload share one code path per part.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Config } from "../config/mod.ts";
import { createControlApp, type HubStatus } from "../control/mod.ts";
import { randomToken } from "../core/secret.ts";
import { DeviceRegistry } from "../devices/mod.ts";
import { createIngest, DeadLetters, type Ingest, passThrough } from "../ingest/mod.ts";
import { createOutbox, type Outbox } from "../outbox/mod.ts";
import { serve, type Server, target } from "../runtime/mod.ts";
import type { Telemetry } from "../telemetry/mod.ts";
import { createUplink, type Uplink } from "../uplink/mod.ts";
import { VERSION } from "../version.ts";

export interface Agent {
  start(): Promise<{ apiPort: number }>;
  /** Drains and stops everything, in reverse start order. Idempotent. */
  stop(): Promise<void>;
  readonly outbox: Outbox;
  readonly ingest: Ingest;
}

export function splitHostPort(listen: string): { hostname: string; port: number } {
  const i = listen.lastIndexOf(":");
  return { hostname: listen.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(listen.slice(i + 1)) };
}

/** The API token: from the config, else the one kept in the data dir (made once, mode 0600). */
export function resolveApiToken(config: Config): string {
  if (config.api.token) return config.api.token;
  const file = join(config.dataDir, "api-token");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const token = randomToken();
  writeFileSync(file, token + "\n", { mode: 0o600 });
  chmodSync(file, 0o600);
  return token;
}

export function createAgent(config: Config, telemetry: Telemetry): Agent {
  const log = telemetry.log;
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const startedAt = Date.now();

  // 1. Store.
  const outbox = createOutbox({
    path: join(config.dataDir, "outbox.db"),
    maxBytes: config.outbox.maxBytes,
    onFull: config.outbox.onFull,
    onDropped: (n) => telemetry.dropped(n, "outbox full (onFull: drop-oldest)"),
  });
  const devices = new DeviceRegistry(outbox.db);
  const deadLetters = new DeadLetters(1000);

  // 2. Uplink.
  let uplink: Uplink | undefined;
  if (config.hub) {
    uplink = createUplink(
      { url: config.hub.url, routingKey: config.hub.routingKey, secret: config.hub.secret, ca: config.hub.ca },
      outbox,
      telemetry,
      { edgeId: config.edgeId, hello: { version: VERSION, target: target() } },
    );
  }
  const hubStatus = (): HubStatus =>
    uplink?.status() ?? { configured: false, connected: false, lastAckAt: null };

  const ingest = createIngest({ outbox, devices, telemetry, rules: () => passThrough });

  const token = resolveApiToken(config);
  const app = createControlApp({
    token,
    edgeId: config.edgeId,
    version: VERSION,
    startedAt,
    maxPayloadBytes: config.limits.maxPayloadBytes,
    ingest,
    outbox,
    devices,
    deadLetters,
    telemetry,
    hubStatus,
  });

  let server: Server | undefined;
  let stopping: Promise<void> | undefined;

  return {
    outbox,
    ingest,
    async start() {
      uplink?.start();
      const { hostname, port } = splitHostPort(config.api.listen);
      server = await serve({ hostname, port, fetch: app.fetch });
      log.info("agent.started", {
        version: VERSION,
        edgeId: config.edgeId,
        api: `${hostname}:${server.port}`,
        dataDir: config.dataDir,
        hub: config.hub ? config.hub.url : null,
        config: config.source ?? "built-in defaults",
      });
      return { apiPort: server.port };
    },
    stop() {
      stopping ??= (async () => {
        await server?.close();
        await uplink?.drain(2_000);
        uplink?.stop();
        outbox.close();
        log.info("agent.stopped", {});
      })();
      return stopping;
    },
  };
}
