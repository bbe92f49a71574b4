/**
 * The reference hub's lifecycle: store → gRPC link → HTTP API on start, the reverse on stop.
 * `stop()` lets batches in flight commit and be acknowledged, ends every edge stream with
 * UNAVAILABLE (the edges reconnect and resend), then closes the listeners and the store.
 */
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "../core/errors.ts";
import { hubService } from "../proto/mod.ts";
import { onShutdownSignal, runtimeName, serve, type Server as HttpServer } from "../runtime/mod.ts";
import { createHubApi } from "./api.ts";
import { joinHostPort, splitHostPort } from "../core/hostport.ts";
import { type HubConfig, loadHubConfig } from "./config.ts";
import { createEdgeLink, type EdgeLink } from "./link.ts";
import { createLogger, type Logger } from "../telemetry/mod.ts";
import { errorMessage } from "../core/errors.ts";
import { createHubStore, type HubStore } from "./store.ts";

/** How long `stop()` lets gRPC calls finish before cutting them off. */
const GRPC_SHUTDOWN_GRACE_MS = 2000;

const GRPC_SERVER_OPTIONS: grpc.ServerOptions = {
  "grpc.max_receive_message_length": 32 * 1024 * 1024,
  // Edges ping to keep NAT and proxies open, also between batches.
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.http2.min_ping_interval_without_data_ms": 5000,
  // The hub pings too, to notice an edge that vanished without closing its stream.
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
};

export interface HubPorts {
  grpcPort: number;
  apiPort: number;
}

export interface Hub {
  /** Opens the store, then listens for edges (gRPC) and the API (HTTP); resolves with the bound ports. */
  start(): Promise<HubPorts>;
  /** Stops everything started; idempotent. */
  stop(): Promise<void>;
}

export interface HubOptions {
  /** Where structured log lines go (default: JSON lines on stdout). */
  log?: Logger;
  /** How long past a command's timeoutMs the hub waits for the edge's answer (default 1000). */
  commandGraceMs?: number;
}

export function createHub(config: HubConfig, options: HubOptions = {}): Hub {
  const log = options.log ?? createLogger();
  let store: HubStore | undefined;
  let link: EdgeLink | undefined;
  let grpcServer: grpc.Server | undefined;
  let http: HttpServer | undefined;
  let starting: Promise<HubPorts> | undefined;
  let stopping: Promise<void> | undefined;

  async function start(): Promise<HubPorts> {
    const credentials = serverCredentials(config);
    store = createHubStore(join(config.dataDir, "hub.db"));
    store.registerEdges(config.edges.map((e) => e.id));
    // A logs request lives only as long as the API call that waits for it: one the hub was
    // waiting on when it stopped has failed. Config changes and restarts go on: they are sent
    // again when their edge connects, and the edge reports how they ended.
    const lost = store.failOperations("logs", "the hub restarted before the edge answered", Date.now());
    for (const id of lost) log.warn("operation.pending_failed", { id, kind: "logs" });
    link = createEdgeLink({ store, edges: config.edges, log, commandGraceMs: options.commandGraceMs });

    grpcServer = new grpc.Server(GRPC_SERVER_OPTIONS);
    grpcServer.addService(hubService(), { connect: link.connect });
    const grpcPort = await bind(grpcServer, config.listen, credentials);

    const app = createHubApi({
      store,
      link,
      edges: config.edges.map((e) => e.id),
      token: config.api.token,
      log,
    });
    const { hostname, port } = splitHostPort(config.api.listen);
    try {
      http = await serve({ hostname, port, fetch: app.fetch });
    } catch (error) {
      throw new Error(`Cannot serve the hub API on ${config.api.listen}: ${errorMessage(error)}`, {
        cause: error,
      });
    }
    return { grpcPort, apiPort: http.port };
  }

  async function shutdown(): Promise<void> {
    await starting?.catch(() => {});
    await link?.close();
    await http?.close();
    const server = grpcServer;
    if (server) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, GRPC_SHUTDOWN_GRACE_MS);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    store?.close();
  }

  return {
    start() {
      if (starting) return Promise.reject(new Error("Hub already started"));
      starting = start();
      // A failed start releases whatever it had opened.
      return starting.catch(async (error) => {
        stopping ??= shutdown();
        await stopping;
        throw error;
      });
    },
    stop() {
      stopping ??= shutdown();
      return stopping;
    },
  };
}

/**
 * Runs the hub for `outpost hub`: loads the config (throwing `UsageError` when it is bad), starts,
 * logs `hub.started` with both addresses, runs until SIGINT or SIGTERM, stops. Resolves 0 after a
 * clean stop, 1 when the hub cannot start (a port in use, an unreadable database).
 */
export async function runHub(configPath: string, options: HubOptions = {}): Promise<number> {
  const config = loadHubConfig(configPath);
  const log = options.log ?? createLogger();
  const hub = createHub(config, { ...options, log });
  let signalled!: (signal: string) => void;
  const signal = new Promise<string>((resolve) => signalled = resolve);
  const unhook = onShutdownSignal((name) => signalled(name));
  try {
    let ports: HubPorts;
    try {
      ports = await hub.start();
    } catch (error) {
      if (error instanceof UsageError) throw error;
      log.error("hub.failed", { error: errorMessage(error) });
      return 1;
    }
    log.info("hub.started", {
      grpc: joinHostPort(splitHostPort(config.listen).hostname, ports.grpcPort),
      api: joinHostPort(splitHostPort(config.api.listen).hostname, ports.apiPort),
      edges: config.edges.length,
      tls: config.tls !== undefined,
      dataDir: config.dataDir,
    });
    if (config.api.token === undefined) {
      log.warn("hub.api_without_token", {
        api: config.api.listen,
        note: "anyone who reaches the API can read records and send commands; set api.token",
      });
    }
    const name = await signal;
    log.info("hub.stopping", { signal: name });
    await hub.stop();
    log.info("hub.stopped");
    return 0;
  } finally {
    unhook();
  }
}

function serverCredentials(config: HubConfig): grpc.ServerCredentials {
  if (config.tls === undefined) return grpc.ServerCredentials.createInsecure();
  if (runtimeName() === "deno") {
    // Deno's node:http2 TLS server accepts the connection but never completes a gRPC handshake:
    // refuse at start rather than run a hub no edge can reach.
    throw new Error(
      'TLS for edges does not work under Deno (its node:http2 TLS server); run the hub with Bun or the outpost binary, or remove "tls"',
    );
  }
  const read = (path: string, pointer: string) => {
    try {
      return readFileSync(path);
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? errorMessage(error);
      throw new UsageError(`Cannot read TLS file ${path}: ${reason}`, {
        issues: [{ path: pointer, message: `cannot read ${path}: ${reason}` }],
      });
    }
  };
  return grpc.ServerCredentials.createSsl(
    null,
    [{ cert_chain: read(config.tls.cert, "/tls/cert"), private_key: read(config.tls.key, "/tls/key") }],
    false,
  );
}

function bind(server: grpc.Server, address: string, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (error, port) => {
      if (error) {
        reject(new Error(`Cannot listen for edges on ${address}: ${error.message}`, { cause: error }));
      } else resolve(port);
    });
  });
}
