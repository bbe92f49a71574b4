/**
 * The agent, the composition root: opens the database, builds every part from the typed config
 * and runs them under one lifecycle (src/core/component.ts). Start order: store → uplink →
 * downlink → control API → rules → transports (MQTT, and HTTP ingest, which shares the control
 * API's listener but answers 503 until the transports start) → update trial; stop in reverse,
 * draining what is in flight. Start-up and reload share one code path per part.
 */
import { redactUrl } from "../core/redact.ts";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CONSOLE_COMMAND_PREFIX, createCommands, mountCommandRoutes } from "../device_commands/mod.ts";
import {
  collectEventMetrics,
  EventBus,
  ingestWithEvents,
  mountEventRoutes,
  tapLogger,
  watchStatus,
} from "../events/mod.ts";
import { rulesJsonSchema } from "../rules/mod.ts";
import { type Config, DEFAULTS, resolveFromConfig } from "../config/mod.ts";
import { lifecycle } from "../core/component.ts";
import { joinHostPort, localUrl, splitHostPort } from "../core/hostport.ts";
import { agentMigrations, openDatabase } from "../db/mod.ts";
import { createControlApp, type HubStatus } from "../control/mod.ts";
import { errorMessage, UsageError } from "../core/errors.ts";
import { randomToken } from "../core/secret.ts";
import { createConnectivity, DeviceRegistry } from "../devices/mod.ts";
import { createIngest, DeadLetters, type Ingest } from "../ingest/mod.ts";
import { createOutbox, type Outbox } from "../outbox/mod.ts";
import { createHttpIngest, createThingsBoardHttp, thingsBoardToken } from "../transports/http/mod.ts";
import { createMqttTransports, type MqttTransports } from "../transports/mqtt/mod.ts";
import type { CoapTransport } from "../transports/coap/mod.ts";
import type { ModbusTransport } from "../transports/modbus/mod.ts";
import type { Presence } from "../core/presence.ts";
import { serve, type Server, target } from "../runtime/mod.ts";
import type { Telemetry } from "../telemetry/mod.ts";
import { createUplink, type Uplink } from "../uplink/mod.ts";
import { type AgentUpdate, createAgentUpdate } from "../update/mod.ts";
import { VERSION } from "../version.ts";
import { createDownlink, createOfferHandling, report } from "../downlink/mod.ts";
import { RulesHost } from "./rules_host.ts";
import process from "node:process";
import {
  type ConfigBoot,
  createManagement,
  type Management,
  mountManagementRoutes,
} from "../management/mod.ts";

export interface Agent {
  start(): Promise<{ apiPort: number }>;
  /** Drains and stops everything, in reverse start order. Idempotent. */
  stop(): Promise<void>;
  readonly outbox: Outbox;
  readonly ingest: Ingest;
  /** Self-update: the updater, its routes, and the restart it may ask for. */
  readonly update: AgentUpdate;
  /** Operations from the hub: config changes on trial, logs, restarts (and the restart they ask for). */
  readonly management: Management;
}

export interface AgentOptions {
  /** What the start-up check decided about a pushed config on trial (src/management). */
  configBoot?: ConfigBoot;
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

/** Every part of the agent, built from the config and wired together, nothing started yet. */
function buildParts(config: Config, telemetry: Telemetry, options: AgentOptions) {
  const log = telemetry.log;
  /** Open while the transports run: HTTP ingest answers 503 outside that time. */
  const gate = { open: false };
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  chmodSync(config.dataDir, 0o700); // also when it already existed, whatever the umask
  const startedAt = Date.now();

  // The store: one database for the outbox and everything kept beside it.
  const db = openDatabase(join(config.dataDir, "outbox.db"), { migrations: agentMigrations });
  const outbox = createOutbox({
    db,
    maxBytes: config.outbox.maxBytes,
    onFull: config.outbox.onFull,
    minFreeBytes: config.outbox.minFreeBytes ?? DEFAULTS.outboxMinFreeBytes,
    onDropped: (n) => telemetry.dropped(n, "outbox full (onFull: drop-oldest)"),
    onCommit: (added) => {
      telemetry.committed();
      if (added > 0) telemetry.stored(added);
    },
    onError: (event, error) => log.error(event, { error: errorMessage(error) }),
  });
  const devices = new DeviceRegistry(db, {
    max: config.devices.max,
    inactivityTimeout: config.devices.inactivityTimeout,
    telemetry,
  });
  const deadLetters = new DeadLetters(1000);

  // Live events (SPEC §9): fed where events originate, read by GET /api/v1/events. Never waits
  // for a reader.
  const events = new EventBus();
  const watched = {
    hub: () => {
      const s = hubStatus();
      return s.url === undefined ? s : { ...s, url: redactUrl(s.url) };
    },
    outbox: () => {
      const counts = telemetry.counts();
      return { ...outbox.stats(), accepted: counts.accepted, delivered: counts.delivered, at: Date.now() };
    },
    update: () => update.updater.status(),
    rules: () => rulesHost.status(),
  };
  tapLogger(log, events, watched);

  // Uplink.
  let uplink: Uplink | undefined;
  if (config.hub) {
    uplink = createUplink(
      {
        url: config.hub.url,
        routingKey: config.hub.routingKey,
        secret: config.hub.secret,
        ca: config.hub.ca,
      },
      outbox,
      telemetry,
      {
        edgeId: config.edgeId,
        ackTimeoutMs: config.hub.ackTimeout,
        hello: { version: VERSION, target: target() },
        onFrame: (frame) => downlink(frame),
        onConnected: () => {
          management.connected();
          offers.connected();
          commands.linkUp();
        },
      },
    );
  }
  const hubStatus = (): HubStatus =>
    uplink?.status() ?? { configured: false, connected: false, lastAckAt: null };

  const ingest = ingestWithEvents(
    createIngest({
      outbox,
      devices,
      telemetry,
      rules: () => rulesHost.processor,
      // Rules routing to `mqtt:<topic>` publish on the transports built below (called only after start).
      publishLocal: (topic, message) => transports.publishLocal(topic, message),
    }),
    events,
  );

  // Connectivity (docs/devices.md): the inactivity sweep, and every change to the hub as an event.
  const connectivity = createConnectivity({
    registry: devices,
    emit: (records) => ingest.emit(records),
    telemetry,
    // A device coming online (a gateway's child named only in its telemetry, say) gets what waits.
    onOnline: (device) => commands.listening(device),
    // The live events' `device` event (SPEC §9): online or offline, the transport, when.
    onChange: (change) =>
      events.publish("device", { ...change, at: new Date(change.at).toISOString() }, change.device),
  });

  // Rules: the engine is pure; the host loads, watches, replaces and persists.
  const rulesHost = new RulesHost({
    source: typeof config.rules === "string" ? resolveFromConfig(config, config.rules) : config.rules,
    dataDir: config.dataDir,
    telemetry,
    db,
    emit: (produce) => ingest.emitFrom!(produce),
  });

  const token = resolveApiToken(config);
  // Self-update (docs/update.md): GET|POST /api/v1/update, and the trial once started.
  const update = createAgentUpdate({ dataDir: config.dataDir, update: config.update }, log);
  const offers = createOfferHandling({
    auto: config.update.auto,
    updater: update.updater,
    log,
    send: (frame) => uplink?.send(frame) ?? false,
  });

  // Operations from the hub (docs/management.md): config changes on trial, logs, restarts.
  const management = createManagement({
    config,
    boot: options.configBoot ?? { kind: "normal" },
    log,
    send: (frame) => uplink?.send(frame) ?? false,
    hubConnected: () => hubStatus().connected,
    pauseAt: process.env.OUTPOST_TEST_CONFIG_PAUSE || undefined,
  });

  // Device commands from the hub (docs/commands.md): kept in the outbox's database, delivered
  // over the MQTT transports built below (called only after start) or HTTP polls, their results
  // sent to the hub until it acknowledges them.
  const commands = createCommands({
    db,
    telemetry,
    send: (frame) => {
      // A command sent from this edge's console: its result stays here (the hub never knew it).
      const id = frame.frame === "commandResult" ? frame.commandResult.id : undefined;
      if (id !== undefined && id.startsWith(CONSOLE_COMMAND_PREFIX)) {
        queueMicrotask(() => commands.acknowledged(id));
        return true;
      }
      return uplink?.send(frame) ?? false;
    },
    isKnownDevice: (id) => devices.isKnown(id),
    seenDevices: () => devices.ids().sort(),
    // A polled Modbus device's commands are its own; others go to whoever listens now.
    deliver: (command) =>
      modbus?.deliverCommand(command) ?? transports.deliverCommand(command) ?? coap?.deliverCommand(command),
  }, { maxAnswerBytes: config.limits.maxPayloadBytes });

  // What the hub sends down the link: rules, commands, update offers.
  const downlink = createDownlink({
    rules: rulesHost,
    commands,
    telemetry,
    send: (frame) => uplink?.send(frame) ?? false,
    onUpdateOffer: (offer) => offers.offer(offer),
    onOperation: (operation) => management.receive(operation),
  });

  const app = createControlApp({
    token,
    edgeId: config.edgeId,
    version: VERSION,
    startedAt,
    outbox,
    devices,
    deadLetters,
    telemetry,
    hubStatus,
    routes: [createHttpIngest({
      ingest,
      telemetry,
      maxPayloadBytes: config.limits.maxPayloadBytes,
      accepting: () => gate.open,
    })],
    extraStatus: () => ({ update: offers.status(), commands: commands.counts() }),
    tokenInPath: thingsBoardToken,
    extend: (a) => {
      update.mount(a);
      mountCommandRoutes(a, commands);
      mountManagementRoutes(a, { dataDir: config.dataDir, management });
      mountEventRoutes(a, events);
      // After the routes above: `/api/v1/{deviceToken}/…` never shadows one of them.
      a.route(
        "/",
        createThingsBoardHttp({
          ingest,
          telemetry,
          maxPayloadBytes: config.limits.maxPayloadBytes,
          devices,
          commands,
          accepting: () => gate.open,
        }),
      );
    },
    rules: {
      status: () => rulesHost.status(),
      get: () => rulesHost.document(),
      put: (document) => rulesHost.apply(document, "api"),
      test: (body) => rulesHost.test(body),
      schema: () => rulesJsonSchema(),
    },
  });
  telemetry.metrics.collectors.push(() => collectEventMetrics(events, telemetry.metrics));

  // Transports (sources): started last, stopped first.
  const transports: MqttTransports = createMqttTransports({
    edgeId: config.edgeId,
    dataDir: config.dataDir,
    broker: config.mqtt.broker,
    external: config.mqtt.external,
    maxPayloadBytes: config.limits.maxPayloadBytes,
  }, {
    ingest,
    devices,
    deadLetters,
    telemetry,
    apiToken: token,
    db,
    commands: {
      answer: (device, id, payload, via) => void commands.answer(device, id, payload, via),
      listening: (device) => commands.listening(device),
    },
  });

  // What the CoAP and Modbus transports know of each device's connectivity (SPEC §10) goes to the
  // device registry, which keeps it.
  const presence: Presence = {
    active: (device, transport) => void devices.activity(device, transport),
    up: (device, transport) => void devices.connected(device, transport),
    down: (device, transport) => devices.disconnected(device, transport),
  };

  // CoAP (coap.listen, default off) and Modbus TCP polling (modbus[]): their modules are loaded
  // and the transports built at start, only when configured (start-up time and memory).
  let coap: CoapTransport | undefined;
  let modbus: ModbusTransport | undefined;
  const optional = {
    get coap() {
      return coap;
    },
    get modbus() {
      return modbus;
    },
    async build(): Promise<void> {
      if (config.coap && !coap) {
        const { createCoapTransport } = await import("../transports/coap/mod.ts");
        coap = createCoapTransport({
          listen: config.coap.listen,
          maxPayloadBytes: config.limits.maxPayloadBytes,
        }, {
          ingest,
          telemetry,
          deviceByToken: (token) => devices.findByToken(token),
          commands: {
            answer: (device, id, raw, via) => commands.answer(device, id, raw, via, "refuse"),
            listening: (device) => commands.listening(device),
          },
          presence,
          db,
          accepting: () => gate.open,
        });
      }
      if (config.modbus.length > 0 && !modbus) {
        const { createModbusTransport } = await import("../transports/modbus/mod.ts");
        modbus = createModbusTransport(config.modbus, {
          ingest,
          telemetry,
          commands: {
            answer: (device, id, raw, via) => commands.answer(device, id, raw, via),
            listening: (device) => commands.listening(device),
          },
          presence,
        });
      }
    },
  };

  return {
    db,
    outbox,
    ingest,
    uplink,
    hubStatus,
    rulesHost,
    update,
    management,
    commands,
    app,
    transports,
    optional,
    gate,
    connectivity,
    events,
    watched,
  };
}

export function createAgent(config: Config, telemetry: Telemetry, options: AgentOptions = {}): Agent {
  const log = telemetry.log;
  const {
    db,
    outbox,
    ingest,
    uplink,
    hubStatus,
    rulesHost,
    update,
    management,
    commands,
    app,
    transports,
    optional,
    gate,
    connectivity,
    events,
    watched,
  } = buildParts(config, telemetry, options);
  let server: Server | undefined;
  let stopWatching: (() => void) | undefined;
  const { hostname, port } = splitHostPort(config.api.listen);

  const parts = lifecycle([
    {
      name: "store",
      start: () => {},
      stop: () => {
        outbox.close();
        db.close();
      },
    },
    {
      name: "uplink",
      start: () => uplink?.start(),
      stop: async () => {
        await uplink?.drain(2_000);
        uplink?.stop();
      },
    },
    {
      name: "downlink",
      start: ({ signal }) => {
        commands.start();
        // The outbox as the hub's fleet console shows it: reported every 10 s while connected.
        const outboxReport = setInterval(() => {
          try {
            uplink?.send(report("outbox", outbox.stats()));
          } catch { /* the next round tries again */ }
        }, 10_000);
        signal.addEventListener("abort", () => clearInterval(outboxReport), { once: true });
        // Open long polls answer as soon as stopping begins, so the API server can close.
        signal.addEventListener("abort", () => commands.stop(), { once: true });
      },
      stop: () => commands.stop(),
    },
    {
      name: "control",
      start: async () => {
        stopWatching = watchStatus(events, watched);
        server = await serve({ hostname, port, fetch: app.fetch });
      },
      stop: () => {
        // Open event streams end first, so the server can close.
        stopWatching?.();
        events.close();
        return server?.close();
      },
    },
    {
      name: "rules",
      start: () => {
        const rules = rulesHost.start();
        if (!rules.ok) throw new UsageError(`Rules in ${rules.what} are invalid`, { issues: rules.issues });
      },
      stop: () => rulesHost.stop(),
    },
    {
      // Before the transports: every connectivity change they cause is forwarded.
      name: "devices",
      start: (context) => connectivity.start(context),
      stop: () => connectivity.stop(),
    },
    {
      name: "transports",
      start: async ({ signal }) => {
        await optional.build();
        await transports.start();
        await optional.coap?.start({ signal });
        gate.open = true;
        optional.modbus?.start({ signal });
      },
      stop: async () => {
        gate.open = false;
        await optional.modbus?.stop();
        await optional.coap?.stop();
        await transports.stop();
      },
    },
    {
      name: "update",
      // On trial after a self-update: healthy = API answering, store open, hub connected if configured.
      start: () => {
        const healthz = localUrl(joinHostPort(hostname, server!.port), "/healthz");
        update.updater.startTrial(async () => {
          const health = await fetch(healthz, { signal: AbortSignal.timeout(5_000) }).catch(() => undefined);
          await health?.body?.cancel();
          if (health?.status !== 200) return "the API does not answer /healthz";
          outbox.stats();
          const hub = hubStatus();
          if (hub.configured && !hub.connected) {
            return `the hub is not connected${hub.error ? `: ${hub.error}` : ""}`;
          }
          return undefined;
        });
        // On trial after a pushed config: healthy = hub connected when configured.
        management.startTrial();
      },
      stop: () => {
        update.updater.stop();
        management.stop();
      },
    },
  ], (name, error) => log.error("agent.stop_failed", { part: name, error: errorMessage(error) }));

  let stopped: Promise<void> | undefined;
  return {
    outbox,
    ingest,
    update,
    management,
    async start() {
      await parts.start();
      log.info("agent.started", {
        version: VERSION,
        edgeId: config.edgeId,
        api: joinHostPort(hostname, server!.port),
        dataDir: config.dataDir,
        hub: config.hub
          ? (typeof config.hub.url === "string" ? redactUrl(config.hub.url) : config.hub.url.map(redactUrl))
          : null,
        config: config.source ?? "built-in defaults",
      });
      return { apiPort: server!.port };
    },
    stop() {
      stopped ??= parts.stop().then(() => log.info("agent.stopped", {}));
      return stopped;
    },
  };
}
