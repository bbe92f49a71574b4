/**
 * The hub link: one bidirectional gRPC stream to the hub, authenticated by metadata, and the
 * dispatcher loop that feeds it: claim the oldest records → send a batch → delete on ack.
 * Invariants:
 * - Records are sent in outbox order, at most `window` batches unacknowledged at once.
 * - A batch is whole outbox groups, sent as the outbox stored them (records encoded as on the
 *   wire), never read back record by record; the outbox stores no group larger than a batch.
 * - Batches are sized by load: a full batch (`batchRecords` or `batchBytes`) goes at once; a
 *   partial one goes when nothing else is in flight or its oldest record has waited `lingerMs`.
 *   Under load, records gather while earlier batches are acknowledged (fewer, larger batches,
 *   fewer hub commits); when idle, a message is sent as soon as it is committed.
 * - A record is deleted only after the hub acknowledged the batch holding it.
 * - After any disconnect everything unacknowledged is sent again, oldest first (the hub
 *   deduplicates by record id, so the pair is exactly-once).
 * - Handshake (SPEC §6): the edge does not wait for the hub. It opens the call and, as soon as
 *   the connection is up (TCP and HTTP/2), sends its `hello` report and its first batches; the
 *   link counts as up on the hub's response headers or its first frame, whichever comes first
 *   (many gRPC stacks, grpcio among them, send headers only with the first response message). A hub that refuses the credentials ends the
 *   call before storing anything. `status()` says what the link is waiting for.
 * - `hub.url` may list several hubs (SPEC §11): the edge uses one at a time and, when the call
 *   fails or is lost, moves to the next one in the list (round robin) after the backoff.
 * - Reconnects follow `createReconnectSchedule` (src/core/backoff.ts): a random 0.4–0.8 s between
 *   attempts for the first minute of an outage, then exponential growth with full jitter up to
 *   15 s; credentials refused add 5 s to every delay. A link lost within `STABLE_MS` of coming up
 *   continues the outage it ended instead of starting a new one, so a hub that answers and drops
 *   at once is not retried fast forever.
 * - Every attempt dials on a new gRPC channel (and subchannel), and a channel is closed as soon as
 *   its call ends: no grpc-js reconnect backoff of its own delays an attempt, and no channel keeps
 *   dialling the hub in the background between attempts. The schedule above is the only one.
 *   Nothing is claimed for an attempt before its connection is up, and one not up within
 *   `dialTimeoutMs` (20 s) ends the attempt.
 * - A batch not acknowledged within `ackTimeoutMs` (config `hub.ackTimeout`) means a broken link,
 *   even when the connection looks alive (a hub that stopped acknowledging): the call is
 *   cancelled, and the reconnect resends everything unacknowledged. Measured on a monotonic clock.
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { performance } from "node:perf_hooks";
import { readFileSync } from "node:fs";
import { createReconnectSchedule, type ReconnectSchedule } from "../core/backoff.ts";
import type { Outbox, OutboxGroup } from "../outbox/mod.ts";
import {
  AUTH_METADATA,
  type EdgeFrame,
  hubClientConstructor,
  type HubFrame,
  type StoredBatch,
} from "../proto/mod.ts";
import type { Telemetry } from "../telemetry/mod.ts";
import { classify, codeName } from "./classify.ts";
import { errorMessage } from "../core/errors.ts";

/**
 * Each connection gets a channel of its own, closed as soon as its call ends (decision 0017).
 * A channel kept across attempts waits out grpc-js's own subchannel backoff (up to
 * `grpc.max_reconnect_backoff_ms`, ±20 %) before it dials again, failing every call meanwhile,
 * whatever the link's schedule says; that made a reconnect take seconds after the hub was back.
 * Under Deno it is also what keeps the process alive: Deno 2.9's node:http2 can crash inside
 * nghttp2 when a hub closing gracefully sends GOAWAY on a session that has seen a call end
 * (denoland/deno#36788; exit 134 or 139); closing the channel when the call ends keeps that GOAWAY
 * from being processed. See docs/decisions/0011-deno-goaway.md.
 */
const CHANNEL_OPTIONS = {
  // A channel of our own never shares a subchannel (nor its backoff) with an earlier one.
  "grpc.use_local_subchannel_pool": 1,
  "grpc.initial_reconnect_backoff_ms": 200,
  "grpc.max_reconnect_backoff_ms": 1_000,
};

/** A link lost sooner than this after the hub answered continues the outage it ended. */
const STABLE_MS = 10_000;
/** How long an attempt may wait for its connection (TCP and HTTP/2) before the next one. */
const DIAL_TIMEOUT_MS = 20_000;

export interface UplinkConfig {
  /** One hub URL, or several to fail over between, in order of preference. */
  url: string | readonly string[];
  routingKey: string;
  secret: string;
  ca?: string;
}

export interface UplinkOptions {
  edgeId: string;
  /** Batches in flight, unacknowledged. */
  window?: number;
  batchRecords?: number;
  batchBytes?: number;
  /** How long a partial batch may wait for more records while others are in flight (ms). */
  lingerMs?: number;
  /** Information sent in the `hello` report after connecting (version, target). */
  hello?: Record<string, unknown>;
  /** Frames other than acks (commands, rules, update offers) go here. */
  onFrame?: (frame: HubFrame) => void;
  /** Called after each (re)connect, once the hello report is sent. */
  onConnected?: () => void;
  /** How long a batch may wait for its ack before the link counts as broken (ms); default 30 s. */
  ackTimeoutMs?: number;
  /** How long an attempt may wait for its connection (TCP and HTTP/2) (ms); default 20 s. */
  dialTimeoutMs?: number;
}

export interface UplinkStatus {
  configured: true;
  connected: boolean;
  lastAckAt: string | null;
  /** The hub the link uses now (or tries next). */
  url: string;
  /** Every configured hub URL, when there is more than one. */
  urls?: string[];
  /** While not connected: what the link is waiting for. */
  waitingFor?: string;
  error?: string;
}

/**
 * Where the link is: waiting to retry, dialling (the call made, its connection not yet up), call
 * open and waiting for the hub's first word, or up.
 */
type LinkState = "idle" | "dialling" | "opening" | "up";

/** Batches sent on a new call before the hub has answered (headers or a first frame). */
const BATCHES_BEFORE_ANSWER = 4;

interface InFlight {
  first: number;
  last: number;
  count: number;
  /** When it was written (monotonic ms). */
  sentAt: number;
}

export class Uplink {
  private readonly config: UplinkConfig;
  private readonly outbox: Outbox;
  private readonly telemetry: Telemetry;
  private readonly options: UplinkOptions;
  private readonly window: number;
  private readonly batchRecords: number;
  private readonly batchBytes: number;
  private readonly lingerMs: number;
  private readonly backoff: ReconnectSchedule;
  /** When the hub last answered (monotonic ms). */
  private upSince = 0;
  /** Claimed, not yet sent: the next batch's groups, growing while earlier ones are in flight. */
  private staged: OutboxGroup[] = [];
  private stagedRecords = 0;
  private stagedBytes = 0;
  /** The next group does not fit the staged batch: it is as full as it gets. */
  private stagedFull = false;
  private lingerTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly urls: string[];
  /** The URL in use: an index into `urls`. */
  private current = 0;
  /** The current attempt's client (its own channel), closed when its call ends. */
  private client: grpc.Client | undefined;
  private call: grpc.ClientDuplexStream<EdgeFrame, HubFrame> | undefined;
  /** The call is open and may be written to (before the hub said anything, too). */
  private streaming = false;
  /** The hub answered on this call: headers or a first frame. */
  private connected = false;
  private state: LinkState = "idle";
  private retryAt: number | undefined;
  private lastAckAt: number | null = null;
  private lastError: string | undefined;
  private inFlight = new Map<number, InFlight>();
  private nextSeq = 1;
  private lastClaimed = 0;
  private stopped = true;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private pumping = false;
  private unsubscribe: (() => void) | undefined;
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private readonly ackTimeoutMs: number;
  private ackWatch: ReturnType<typeof setInterval> | undefined;
  private drained: (() => void) | undefined;

  constructor(config: UplinkConfig, outbox: Outbox, telemetry: Telemetry, options: UplinkOptions) {
    this.config = config;
    this.urls = typeof config.url === "string" ? [config.url] : [...config.url];
    if (this.urls.length === 0) throw new Error("The hub link needs at least one hub URL");
    this.outbox = outbox;
    this.telemetry = telemetry;
    this.options = options;
    this.window = options.window ?? 16;
    this.batchRecords = options.batchRecords ?? 500;
    this.batchBytes = options.batchBytes ?? 1024 * 1024;
    this.lingerMs = options.lingerMs ?? 20;
    this.ackTimeoutMs = options.ackTimeoutMs ?? 30_000;
    this.backoff = createReconnectSchedule({
      fastForMs: 60_000,
      fastMinMs: 400,
      fastMaxMs: 800,
      baseMs: 1_000,
      maxMs: 15_000,
    });
    outbox.limitGroups(this.batchRecords, this.batchBytes);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.unsubscribe = this.outbox.onData(() => this.pump());
    this.connect();
  }

  /** A new gRPC client, on a channel of its own, for `urls[index]`. */
  private newClient(index: number): grpc.Client {
    const u = new URL(this.urls[index]);
    const target = `${u.hostname}:${u.port || (u.protocol === "grpcs:" ? "443" : "80")}`;
    const credentials = u.protocol === "grpcs:"
      ? grpc.credentials.createSsl(this.config.ca ? readFileSync(this.config.ca) : undefined)
      : grpc.credentials.createInsecure();
    const Client = hubClientConstructor();
    return new Client(target, credentials, {
      "grpc.keepalive_time_ms": 10_000,
      "grpc.keepalive_timeout_ms": 5_000,
      "grpc.keepalive_permit_without_calls": 1,
      "grpc.max_receive_message_length": 32 * 1024 * 1024,
      "grpc.max_send_message_length": 32 * 1024 * 1024,
      ...CHANNEL_OPTIONS,
    });
  }

  status(): UplinkStatus {
    return {
      configured: true,
      connected: this.connected,
      lastAckAt: this.lastAckAt === null ? null : new Date(this.lastAckAt).toISOString(),
      url: this.urls[this.current],
      ...(this.urls.length > 1 ? { urls: [...this.urls] } : {}),
      ...(this.connected ? {} : { waitingFor: this.waitingFor() }),
      ...(this.lastError && !this.connected ? { error: this.lastError } : {}),
    };
  }

  private waitingFor(): string {
    if (this.stopped) return "nothing (stopped)";
    if (this.state === "dialling") return "the connection to the hub";
    if (this.state === "opening") {
      return `the hub's response headers or first frame (hello and ${this.inFlight.size} batches sent)`;
    }
    const seconds = this.retryAt === undefined ? 0 : Math.max(0, (this.retryAt - Date.now()) / 1000);
    return `the next attempt, in ${seconds.toFixed(1)} s`;
  }

  /** Sends a non-batch frame (command results, reports); false when the link is down. */
  send(frame: EdgeFrame): boolean {
    if (!this.streaming || !this.call) return false;
    this.call.write(frame);
    return true;
  }

  private connect(): void {
    if (this.stopped) return;
    this.retryAt = undefined;
    const md = new grpc.Metadata();
    md.set(AUTH_METADATA.edgeId, this.options.edgeId);
    md.set(AUTH_METADATA.routingKey, this.config.routingKey);
    md.set(AUTH_METADATA.secret, this.config.secret);
    const client = this.client ??= this.newClient(this.current);
    const call = (client as any).connect(md) as grpc.ClientDuplexStream<
      EdgeFrame,
      HubFrame
    >;
    this.call = call;
    let ended = false;
    const end = (reason: string, code?: number) => {
      if (ended) return;
      ended = true;
      if (this.call === call) this.onDisconnect(reason, code);
    };
    call.on("metadata", () => {
      if (this.call !== call || this.stopped) return;
      this.onHubAnswered();
    });
    call.on("data", (frame: HubFrame) => {
      if (this.call !== call) return;
      // A hub that sends headers only with its first message: that message is its first word.
      if (!this.connected) this.onHubAnswered();
      this.onHubFrame(frame);
    });
    call.on(
      "error",
      (error: grpc.ServiceError) =>
        end(`${codeName(error.code)}: ${error.details || error.message}`, error.code),
    );
    call.on("end", () => end("hub ended the stream"));
    call.on("close", () => end("stream closed"));
    this.state = "dialling";
    this.whenConnected(client.getChannel(), call, () => this.onStreamOpen());
  }

  /**
   * Runs `open` once the channel's connection is up (TCP and HTTP/2, not yet the hub's answer),
   * unless the call ended first. Batches claimed and encoded for a call whose connection is then
   * refused would be thrown away, and while the hub is down that is every attempt. A connection
   * not up within `dialTimeoutMs` (a network that drops packets: TCP would go on retrying for
   * minutes) ends the attempt, and the schedule makes the next one.
   */
  private whenConnected(
    channel: ReturnType<grpc.Client["getChannel"]>,
    call: grpc.ClientDuplexStream<EdgeFrame, HubFrame>,
    open: () => void,
  ) {
    const dialTimeoutMs = this.options.dialTimeoutMs ?? DIAL_TIMEOUT_MS;
    const timer = setTimeout(() => {
      if (this.call !== call || this.stopped || this.streaming) return;
      // Detach first, so the cancelled call's own end is not reported as the reason.
      this.call = undefined;
      this.onDisconnect(
        `no connection to the hub within ${dialTimeoutMs / 1000} s; trying again`,
        grpc.status.UNAVAILABLE,
      );
      try {
        call.cancel();
      } catch { /* already closed */ }
    }, dialTimeoutMs);
    const check = () => {
      if (this.call !== call || this.stopped) return clearTimeout(timer);
      const state = channel.getConnectivityState(false);
      if (state === grpc.connectivityState.READY) {
        clearTimeout(timer);
        return open();
      }
      if (state === grpc.connectivityState.SHUTDOWN) return clearTimeout(timer);
      channel.watchConnectivityState(state, Infinity, check);
    };
    check();
  }

  /**
   * The call's connection is up: send at once, without waiting for the hub (SPEC §6 handshake).
   * Nothing is deleted until the hub acknowledges, and a hub that refuses the credentials stores
   * nothing.
   */
  private onStreamOpen(): void {
    this.streaming = true;
    // The hub may have answered already (its headers raced the connection's state change).
    this.state = this.connected ? "up" : "opening";
    this.inFlight.clear();
    this.unstage();
    this.lastClaimed = 0;
    this.nextSeq = 1;
    if (this.options.hello) {
      this.call?.write({
        frame: "report",
        report: { type: "hello", body: Buffer.from(JSON.stringify(this.options.hello)) },
      });
    }
    this.heartbeat = setInterval(() => {
      try {
        this.call?.write({ frame: "heartbeat", heartbeat: { ts: Date.now() } });
      } catch (error) {
        this.telemetry.log.warn("uplink.heartbeat_failed", { error: errorMessage(error) });
      }
    }, 15_000);
    this.ackWatch = setInterval(() => this.checkAcks(), Math.max(50, Math.min(5_000, this.ackTimeoutMs / 4)));
    this.pump();
  }

  /** The hub's first word on this call (headers or a frame): the link is up. */
  private onHubAnswered(): void {
    if (this.connected) return;
    this.connected = true;
    this.state = "up";
    this.lastError = undefined;
    this.upSince = performance.now();
    this.telemetry.hubConnected(this.urls[this.current]);
    this.options.onConnected?.();
    this.pump();
  }

  /** The oldest batch in flight waited too long for its ack: the link is broken. */
  private checkAcks(): void {
    const call = this.call;
    if (!this.streaming || call === undefined || this.inFlight.size === 0) return;
    const oldest = this.inFlight.values().next().value!;
    const waited = performance.now() - oldest.sentAt;
    if (waited <= this.ackTimeoutMs) return;
    // Detach first, so the cancelled call's own end is not reported as the reason.
    this.call = undefined;
    this.onDisconnect(
      `no acknowledgement within ${Math.round(this.ackTimeoutMs / 1000)} s (hub.ackTimeout); reconnecting`,
      grpc.status.DEADLINE_EXCEEDED,
    );
    try {
      call.cancel();
    } catch { /* already closed */ }
  }

  private onDisconnect(reason: string, code?: number): void {
    const wasConnected = this.connected;
    this.connected = false;
    this.streaming = false;
    this.state = "idle";
    this.call = undefined;
    this.inFlight.clear();
    this.unstage();
    this.lastClaimed = 0;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    if (this.ackWatch) clearInterval(this.ackWatch);
    this.ackWatch = undefined;
    if (this.stopped) return;
    // Close the channel at once (its HTTP/2 session with it) and dial the next attempt on a new
    // one: its own reconnect backoff never delays ours, and under Deno a session the hub is
    // closing never reaches the GOAWAY that Deno cannot take.
    this.client?.close();
    this.client = undefined;
    this.lastError = reason;
    if (wasConnected || reason !== this.reportedError) {
      this.telemetry.hubDisconnected(reason, codeName(code));
      this.reportedError = reason;
    }
    // A link that was up long enough ended the outage; one that dropped at once continues it.
    if (wasConnected && performance.now() - this.upSince >= STABLE_MS) this.backoff.reset();
    let delay = this.backoff.next();
    // Credentials refused (or a protocol mismatch): an operator must act, so retry slowly.
    if (classify(code) === "permanent") delay += 5_000;
    // Lost or never reached: the next attempt goes to the next hub in the list.
    this.current = (this.current + 1) % this.urls.length;
    this.retryAt = Date.now() + delay;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.connect();
    }, delay);
  }
  private reportedError: string | undefined;

  private onHubFrame(frame: HubFrame): void {
    if (frame.frame === "ack") {
      const seq = Number(frame.ack.seq);
      const batch = this.inFlight.get(seq);
      if (!batch) return; // an ack from before a reconnect
      this.inFlight.delete(seq);
      this.lastAckAt = Date.now();
      this.outbox.ack(batch.first, batch.last).then(() => {
        this.telemetry.delivered(batch.count);
        if (this.inFlight.size === 0 && this.drained) this.drained();
      });
      this.pump();
      return;
    }
    if (frame.frame === "heartbeat") return;
    this.options.onFrame?.(frame);
  }

  /** The staged batch is being sent: the next one starts empty (its linger timer stays). */
  private unstageBatch(): void {
    this.staged = [];
    this.stagedRecords = 0;
    this.stagedBytes = 0;
    this.stagedFull = false;
  }

  private unstage(): void {
    this.unstageBatch();
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
  }

  /**
   * Sends batches while the window has room and the outbox has records not yet in flight: full
   * batches at once, a partial one when nothing is in flight or it has lingered long enough.
   */
  private pump(): void {
    if (this.pumping || !this.streaming || !this.call) return;
    this.pumping = true;
    try {
      // Until the hub has said anything, only a few batches go out: enough for a hub that answers
      // only after its first message, little to waste on one that refuses the credentials.
      const window = this.connected ? this.window : Math.min(this.window, BATCHES_BEFORE_ANSWER);
      while (this.streaming && this.call && this.inFlight.size < window) {
        if (
          !this.stagedFull && this.stagedRecords < this.batchRecords && this.stagedBytes < this.batchBytes
        ) {
          const more = this.outbox.claimGroups(
            this.lastClaimed,
            this.batchRecords - this.stagedRecords,
            this.batchBytes - this.stagedBytes,
            this.staged.length === 0,
          );
          for (const g of more.groups) {
            this.staged.push(g);
            this.stagedRecords += g.n;
            this.stagedBytes += g.bytes;
            this.lastClaimed = g.seq;
          }
          this.stagedFull = more.full;
        }
        const groups = this.staged;
        if (groups.length === 0) break;
        const full = this.stagedFull || this.stagedRecords >= this.batchRecords ||
          this.stagedBytes >= this.batchBytes;
        if (!full && this.inFlight.size > 0) {
          const wait = groups[0].createdAt + this.lingerMs - Date.now();
          if (wait > 0) {
            this.lingerTimer ??= setTimeout(() => {
              this.lingerTimer = undefined;
              try {
                this.pump();
              } catch (error) {
                // The records stay in the outbox; the next commit or ack pumps again.
                this.telemetry.log.error("uplink.pump_failed", { error: errorMessage(error) });
              }
            }, wait);
            break;
          }
        }
        const count = this.stagedRecords;
        this.unstageBatch();
        const seq = this.nextSeq++;
        const first = groups[0].seq - groups[0].n + 1;
        const last = groups[groups.length - 1].seq;
        this.inFlight.set(seq, { first, last, count, sentAt: performance.now() });
        this.call.write(toWire(seq, groups));
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Waits (bounded) until nothing is in flight, so a clean stop leaves no needless resends. */
  async drain(timeoutMs: number): Promise<void> {
    if (!this.streaming || this.inFlight.size === 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.drained = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.drained = undefined;
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.unsubscribe?.();
    this.unstage();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.ackWatch) clearInterval(this.ackWatch);
    const call = this.call;
    this.call = undefined;
    this.connected = false;
    this.streaming = false;
    this.state = "idle";
    try {
      call?.end();
      call?.cancel();
    } catch { /* already closed */ }
    this.client?.close();
    this.client = undefined;
  }
}

/**
 * A batch frame of stored groups: the batch codec copies their records as they are
 * (src/proto/records_codec.ts), the bytes protobufjs would write for the same records.
 */
function toWire(seq: number, groups: readonly OutboxGroup[]): EdgeFrame {
  const batch: StoredBatch = { seq, encoded: groups.map((g) => g.records) };
  return { frame: "batch", batch } as unknown as EdgeFrame;
}

export function createUplink(
  config: UplinkConfig,
  outbox: Outbox,
  telemetry: Telemetry,
  options: UplinkOptions,
): Uplink {
  return new Uplink(config, outbox, telemetry, options);
}
