/**
 * CoAP device API (SPEC §10) on ThingsBoard's paths, over the endpoint in endpoint.ts:
 * - `POST /api/v1/{deviceToken}/telemetry` and `/attributes`: answered 2.01 Created only after the
 *   outbox committed; 4.00 bad payload, 4.01 unknown token, 4.13 over `limits.maxPayloadBytes`,
 *   4.29 device limit or too many failed tokens from the address, 5.03 full outbox, starting or
 *   stopping;
 * - `GET /api/v1/{deviceToken}/rpc` with Observe=0: commands arrive as notifications
 *   `{"id", "method", "params"}`; Observe=1 (or a reset notification) ends it;
 * - `POST /api/v1/{deviceToken}/rpc/{id}`: the device's answer (2.04 Changed once stored).
 *
 * The token alone identifies the device (as ThingsBoard does); it is never logged or echoed.
 * One observer per device: a new registration replaces the old one, so the map is bounded by the
 * devices that have a token.
 */
import { AUTH_MAX_FAILURES, AuthLimiter } from "../../core/auth_limiter.ts";
import type { Component } from "../../core/component.ts";
import { errorMessage } from "../../core/errors.ts";
import { splitHostPort } from "../../core/hostport.ts";
import type { IngestKind } from "../../core/message.ts";
import { NO_PRESENCE, type Presence } from "../../core/presence.ts";
import { RefusalLog } from "../../core/refusal_log.ts";
import { type Ingest, parsePayload } from "../../ingest/mod.ts";
import type { LocalDatabase } from "../../db/mod.ts";
import type { Telemetry } from "../../telemetry/mod.ts";
import { createStoredExchanges, exchangeDigest, type StoredExchanges } from "./exchanges.ts";
import {
  type CoapEndpoint,
  type CoapReply,
  type CoapRequest,
  createCoapEndpoint,
  EXCHANGE_LIFETIME_MS,
  type Observation,
} from "./endpoint.ts";

export { COAP_LIMITS, type CoapReply, type CoapRequest, EXCHANGE_LIFETIME_MS } from "./endpoint.ts";
export { createStoredExchanges, exchangeDigest, type StoredExchanges } from "./exchanges.ts";

/** What the transport does with commands: the commands module, wired by the agent. */
export interface CoapCommandHooks {
  /** A device's answer, stored before this returns; `invalid` when it cannot be read. */
  answer(
    device: string,
    id: string,
    raw: Uint8Array,
    via: string,
  ): { ok: true } | { ok: false; reason: "unknown" | "finished" | "invalid" | "failed"; message: string };
  /** `device` now listens for its commands: pending ones are delivered (through `deliverCommand`). */
  listening(device: string): void;
}

export interface CoapDeps {
  ingest: Ingest;
  telemetry: Telemetry;
  /** The device a token belongs to (ThingsBoard style). */
  deviceByToken(token: string): string | undefined;
  commands?: CoapCommandHooks;
  presence?: Presence;
  /** The agent's database: stored requests are remembered there across a crash (exchanges.ts). */
  db?: LocalDatabase;
  /** False while the agent starts or stops: requests get 5.03. Default: always. */
  accepting?: () => boolean;
  now?: () => number;
}

export interface CoapConfig {
  listen: string;
  maxPayloadBytes: number;
}

export interface CoapTransport extends Component {
  /** Sends a command to its device if it observes its rpc resource; `"coap"` when sent. */
  deliverCommand(
    command: { id: string; device: string; method: string; params: unknown },
  ): string | undefined;
  /** The address it listens on, once started. */
  readonly address: string | undefined;
}

/** Observers kept at most (one per device with a token; this only guards the map). */
const MAX_OBSERVERS = 10_000;

const KINDS: Record<string, IngestKind> = { telemetry: "telemetry", attributes: "attributes" };

export function createCoapTransport(config: CoapConfig, deps: CoapDeps): CoapTransport {
  const { telemetry } = deps;
  const log = telemetry.log;
  const now = deps.now ?? Date.now;
  const presence = deps.presence ?? NO_PRESENCE;
  const limiter = new AuthLimiter({ now });
  const limitedLog = new RefusalLog(now);
  const observers = new Map<string, Observation>();
  let endpoint: CoapEndpoint | undefined;
  let address: string | undefined;
  let stored: StoredExchanges | undefined;
  const resends = telemetry.metrics.family("outpost_coap_resends_total");

  const text = (code: string, payload: string): CoapReply => ({ code, payload });

  /** The device of a request's token, or the reply that refuses it. */
  function identify(token: string, remote: string): string | CoapReply {
    if (limiter.blocked(remote)) {
      telemetry.metrics.family("outpost_auth_limited_total").add(1);
      const n = limitedLog.note();
      if (n !== undefined) {
        log.warn("auth.limited", {
          transport: "coap",
          address: remote,
          refused: n,
          rule: `${AUTH_MAX_FAILURES} failed authentications in a minute`,
        });
      }
      return { code: "4.29", payload: "Too many failed authentications from this address", maxAge: 60 };
    }
    const device = token === "" ? undefined : deps.deviceByToken(token);
    if (device === undefined) {
      limiter.fail(remote);
      telemetry.authRefused("unknown-token", { transport: "coap", address: remote });
      return text("4.01", "Unknown device token");
    }
    return device;
  }

  async function ingestData(device: string, kind: IngestKind, request: CoapRequest): Promise<CoapReply> {
    const max = config.maxPayloadBytes;
    if (request.payload.byteLength > max) {
      telemetry.rejected("too-large", { device, transport: "coap", bytes: request.payload.byteLength });
      return {
        code: "4.13",
        payload: `Body of ${request.payload.byteLength} bytes is over the ${max}-byte limit`,
        size1: max,
      };
    }
    const parsed = parsePayload(request.payload, {
      device,
      kind,
      source: "coap",
      now: now(),
      maxBytes: max,
      maxBatchBytes: deps.ingest.maxBatchBytes,
      admit: deps.ingest.admit,
    });
    if (!parsed.ok) {
      telemetry.rejected(parsed.reason, { device, transport: "coap" });
      const code = parsed.reason === "too-large" || parsed.reason === "batch-too-large"
        ? "4.13"
        : parsed.reason === "device-limit"
        ? "4.29"
        : "4.00";
      return text(
        code,
        `${parsed.message} (POST /api/v1/{token}/${kind === "telemetry" ? "telemetry" : "attributes"})`,
      );
    }
    // A retransmission of a request stored before (by this process or one that died before its
    // answer went out): answered as the first time, not stored again.
    const digest = stored ? exchangeDigest(request.path, request.payload) : "";
    if (stored?.seen(request.exchange, digest)) {
      resends.add(1);
      return { code: "2.01" };
    }
    const result = await deps.ingest.accept(parsed.messages, {
      inTransaction: stored ? () => stored!.write(request.exchange, digest) : undefined,
    });
    if (result.ok) {
      presence.active(device, "coap");
      return { code: "2.01" };
    }
    telemetry.rejected(result.reason === "stopping" ? "stopping" : "outbox-full", {
      device,
      transport: "coap",
      count: parsed.messages.length,
    });
    return { code: "5.03", payload: result.message, maxAge: result.reason === "stopping" ? 5 : 10 };
  }

  function observe(device: string, request: CoapRequest): CoapReply {
    if (request.observe === 1) {
      const old = observers.get(device);
      if (old && old.remote.address === request.remote.address && old.remote.port === request.remote.port) {
        old.cancel();
        observers.delete(device);
        presence.down(device, "coap");
      }
      return { code: "2.05" };
    }
    const observation = request.observation;
    if (observation === undefined) {
      return text("4.00", "Observe /api/v1/{token}/rpc (GET with Observe=0) to receive commands");
    }
    if (!deps.commands) return text("5.03", "Commands are not available");
    const old = observers.get(device);
    old?.cancel();
    if (old === undefined && observers.size >= MAX_OBSERVERS) {
      return { code: "5.03", payload: "Too many observers", maxAge: 60 };
    }
    observers.delete(device);
    observers.set(device, observation);
    observation.onGone = () => {
      if (observers.get(device) !== observation) return;
      observers.delete(device);
      presence.down(device, "coap");
      log.debug("coap.observer_gone", { device });
    };
    presence.up(device, "coap");
    presence.active(device, "coap");
    // Pending commands follow as notifications, after this answer (delivery runs on a later turn).
    deps.commands.listening(device);
    return { code: "2.05", observing: true };
  }

  function rpcAnswer(device: string, id: string, request: CoapRequest): CoapReply {
    if (!deps.commands) return text("4.04", `No command "${id.slice(0, 128)}"`);
    const outcome = deps.commands.answer(device, id, request.payload, "coap");
    presence.active(device, "coap");
    if (outcome.ok) return { code: "2.04" };
    const code = outcome.reason === "invalid" ? "4.00" : outcome.reason === "failed" ? "5.00" : "4.04";
    return text(code, outcome.message);
  }

  async function handle(request: CoapRequest): Promise<CoapReply> {
    if (deps.accepting && !deps.accepting()) {
      return { code: "5.03", payload: "The agent is starting or stopping; try again", maxAge: 1 };
    }
    const p = request.path;
    if (p.length < 4 || p[0] !== "api" || p[1] !== "v1" || p.length > 5) {
      return text("4.04", "No such resource: use /api/v1/{token}/telemetry, /attributes or /rpc");
    }
    const [, , token, resource, id] = p;
    const kind = KINDS[resource];
    const known = kind !== undefined ? p.length === 4 : resource === "rpc";
    if (!known) return text("4.04", "No such resource: use /api/v1/{token}/telemetry, /attributes or /rpc");
    const wanted = kind !== undefined || id !== undefined ? "0.02" : "0.01";
    if (request.code !== wanted) {
      return text("4.05", `Method not allowed: use ${wanted === "0.02" ? "POST" : "GET"}`);
    }
    const who = identify(token, request.remote.address);
    if (typeof who !== "string") return who;
    if (kind !== undefined) return await ingestData(who, kind, request);
    if (id === undefined) return observe(who, request);
    return rpcAnswer(who, id, request);
  }

  return {
    name: "coap",
    get address() {
      return address;
    },
    async start() {
      const { hostname, port } = splitHostPort(config.listen);
      endpoint = createCoapEndpoint({
        handler: handle,
        maxPayloadBytes: config.maxPayloadBytes,
        onError: (error) => log.error("coap.error", { error: errorMessage(error) }),
        now,
      });
      if (deps.db) stored = createStoredExchanges(deps.db, { lifetimeMs: EXCHANGE_LIFETIME_MS, now });
      const bound = await endpoint.listen(hostname, port);
      address = `${bound.address.includes(":") ? `[${bound.address}]` : bound.address}:${bound.port}`;
      log.info("coap.started", { listen: address });
    },
    async stop() {
      for (const o of observers.values()) o.cancel();
      observers.clear();
      const e = endpoint;
      endpoint = undefined;
      await e?.close();
    },
    deliverCommand(command) {
      const observation = observers.get(command.device);
      if (observation === undefined || observation.cancelled) return undefined;
      const sent = observation.notify(
        JSON.stringify({ id: command.id, method: command.method, params: command.params ?? null }),
      );
      return sent ? "coap" : undefined;
    },
  };
}
