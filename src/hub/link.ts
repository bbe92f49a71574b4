/**
 * The hub's side of the link (SPEC §6): the gRPC `Connect` handler and the live streams of each
 * edge.
 *
 * Invariants:
 * - A stream is authenticated from its metadata before any frame is read; a wrong or unknown
 *   (edge-id, routing-key, secret) ends it with UNAUTHENTICATED and nothing is stored.
 * - A batch is acknowledged only after its transaction has committed. When the store fails the
 *   stream ends with UNAVAILABLE and nothing more is acknowledged on it; the edge resends.
 * - An edge's batches are stored one at a time, in arrival order, across all of its streams, so
 *   a reconnecting edge's resend never interleaves with a batch still in flight on an old stream.
 *   Batches that arrive together are stored together: one transaction (one commit) for all of
 *   them, in arrival order, then each is acknowledged.
 */
import { AUTH_MAX_FAILURES, AuthLimiter, peerAddress } from "../core/auth_limiter.ts";
import { RefusalLog } from "../core/refusal_log.ts";
import { maskSecrets } from "../core/redact.ts";
import * as grpc from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import type { CommandResultFrame, EdgeFrame, HubFrame, ReportFrame } from "../proto/mod.ts";
import { AUTH_METADATA } from "../proto/mod.ts";
import type { HubEdgeConfig } from "./config.ts";
import { edgeAuthenticator } from "./edge_auth.ts";
import { createEdgeWork } from "./link_batches.ts";
import { type CommandOutcome, type CommandOutcomeStatus, CommandWaiters } from "./link_commands.ts";
import type { Logger } from "../telemetry/mod.ts";
import { errorMessage } from "../core/errors.ts";
import {
  type CommandRow,
  type HubStore,
  type OperationKind,
  type OperationRow,
  type OperationState,
  payloadText,
  type PushKind,
  type ReplicaMessage,
} from "./store.ts";

export const AUTH_FAILED = "unknown edge or wrong routing key/secret";
export const AUTH_LIMITED = "too many failed authentications from this address; try again in a minute";
const STORE_FAILED = "hub cannot store records right now; resend later";
const SHUTTING_DOWN = "hub is shutting down";

export interface CommandRequest {
  /** The command's id; a fresh UUID when absent. */
  id?: string;
  device: string;
  method: string;
  params: unknown;
  timeoutMs: number;
}

export type { CommandOutcome, CommandOutcomeStatus } from "./link_commands.ts";

export interface EdgeLink {
  /** The grpc-js handler for `outpost.v1.Hub/Connect`. */
  connect(call: grpc.ServerDuplexStream<EdgeFrame, HubFrame>): void;
  isConnected(edge: string): boolean;
  /**
   * Sends a command on the edge's newest stream and waits for its result, up to its timeout plus
   * a short grace for the edge's own timeout report; `device-offline` when the edge is not
   * connected.
   */
  runCommand(edge: string, request: CommandRequest): Promise<CommandOutcome>;
  /** Stores the command and sends it; resolves once it is stored, with its outcome to come. */
  startCommand(
    edge: string,
    request: CommandRequest,
  ): Promise<{ id: string; outcome: Promise<CommandOutcome> }>;
  /** Edges connected here or, with a shared store, to any live replica. */
  connectedEdges(): Promise<Set<string>>;
  /**
   * Sends rules or an update offer now (wherever the edge is connected), or keeps it for the
   * edge's next connect; either way an operation records it until the edge reports on it.
   */
  push(edge: string, kind: PushKind, version: string, body: string): Promise<"sent" | "pending">;
  /**
   * Starts a config change or a restart: recorded `pending`, sent now if the edge is connected
   * (here, or through the replica it is connected to) and again on every connect until the edge
   * reports an outcome. `request` is what the API shows (secrets masked); `body` goes to the edge
   * and is never shown.
   */
  operate(edge: string, kind: "config" | "restart", body: string, request: unknown): Promise<OperationRow>;
  /**
   * Asks a connected edge for its log lines and waits for them (up to `timeoutMs`); recorded as
   * an operation like any other (the lines themselves are not kept).
   */
  fetchLogs(edge: string, query: unknown, timeoutMs: number): Promise<LogsOutcome>;
  /** Logs requests of this edge waiting here for their answer. */
  logsWaiting(edge: string): number;
  /** Listens for the other replicas' messages (a shared store only). */
  start(): Promise<void>;
  /** Stops taking batches, lets those in flight commit and be acknowledged, ends every stream. */
  close(): Promise<void>;
}

export type LogsOutcome =
  | { id: string; status: "successful"; lines: unknown[]; truncated: boolean }
  | { id: string; status: "failed"; reason: string; errors?: unknown; code: 400 | 503 | 504 };

/** Logs requests waiting for their edge at once, per edge (a bound: past it, 429 at the API). */
export const LOGS_WAITING_PER_EDGE = 4;
/** How often a replica waiting for a logs answer looks for it in the shared store. */
const LOGS_POLL_MS = 200;
/**
 * With replicas: a logs request open this long has no waiter left (every wait is shorter); nor
 * has one whose replica is no longer alive (the store knows, by the replicas' heartbeats).
 */
const LOGS_ORPHANED_MS = 10 * 60_000;
const LOGS_SWEEP_MS = 15_000;

export interface EdgeLinkOptions {
  store: HubStore;
  edges: readonly HubEdgeConfig[];
  log: Logger;
  now?: () => number;
  /** How long past a command's timeoutMs the hub waits for the edge's answer (default 1000). */
  commandGraceMs?: number;
  /** Failed-authentication limit per remote address (default: 10 a minute). */
  limiter?: AuthLimiter;
}

type Call = grpc.ServerDuplexStream<EdgeFrame, HubFrame>;

interface Session {
  edge: string;
  call: Call;
  peer: string;
  /** False once the stream failed, was cancelled, or was ended by the hub. */
  open: boolean;
  detached: boolean;
}

const COMMAND_STATUSES: ReadonlySet<string> = new Set(["ok", "error", "timeout", "device-offline"]);
const REPORT_TYPE = /^[A-Za-z0-9._-]{1,64}$/;
const utf8 = new TextEncoder();

export function createEdgeLink(options: EdgeLinkOptions): EdgeLink {
  const { store, log } = options;
  const now = options.now ?? Date.now;
  const graceMs = options.commandGraceMs ?? 1000;
  const limiter = options.limiter ?? new AuthLimiter({ now });
  const refusals = new RefusalLog(now);
  const authenticate = edgeAuthenticator(options.edges);
  const sessions = new Map<string, Session[]>();
  const waiters = new CommandWaiters();
  const logWaiters = new Map<string, { edge: string; settle: (outcome: LogsOutcome) => void }>();
  let closing = false;
  let closed: Promise<void> | undefined;
  let sweeper: ReturnType<typeof setInterval> | undefined;

  function endCall(call: Call, code: grpc.status, details: string): void {
    if (call.writableEnded) return;
    // grpc-js turns an 'error' event on a server stream into the call's final status.
    call.emit("error", { code, details, metadata: new grpc.Metadata() });
  }

  /** A frame as written: grpc-js sets the oneof from the one field present. */
  type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

  function write(session: Session, frame: DistributiveOmit<HubFrame, "frame">): void {
    if (!session.open || session.call.writableEnded) return;
    try {
      session.call.write(frame as HubFrame);
    } catch (error) {
      log.warn("edge.write_failed", { edge: session.edge, error: errorMessage(error) });
    }
  }

  function live(edge: string): Session | undefined {
    const list = sessions.get(edge);
    return list?.findLast((s) => s.open);
  }

  function detach(session: Session, reason: string): void {
    session.open = false;
    if (session.detached) return;
    session.detached = true;
    const list = (sessions.get(session.edge) ?? []).filter((s) => s !== session);
    if (list.length > 0) sessions.set(session.edge, list);
    else sessions.delete(session.edge);
    const edge = session.edge;
    // After the connect's own update (one queue per edge), so the two never swap.
    void serially(edge, async () => {
      try {
        if (sessions.has(edge)) await store.touch(edge, now());
        else await store.setConnected(edge, false, now());
      } catch (error) {
        log.error("hub.store_failed", { edge, error: errorMessage(error) });
      }
    });
    log.info("edge.disconnected", {
      edge: session.edge,
      peer: session.peer,
      reason,
      streams: list.length,
    });
  }

  function fail(session: Session, code: grpc.status, details: string): void {
    session.open = false;
    endCall(session.call, code, details);
    detach(session, details);
  }

  const work = createEdgeWork<Session>({
    store,
    log,
    now,
    ack: (session, seq) => write(session, { ack: { seq } }),
    fail: (session) => fail(session, grpc.status.UNAVAILABLE, STORE_FAILED),
  });
  const serially = work.serially;

  async function setOperation(
    edge: string,
    id: string,
    kind: string,
    next: { status: OperationState; reason?: string | null; result?: unknown; answer?: string },
  ): Promise<void> {
    if (await store.updateOperation(id, edge, next, now())) {
      log.info("operation.updated", {
        edge,
        id,
        kind,
        status: next.status,
        reason: next.reason ?? undefined,
      });
    }
  }

  /** The edge's word on an operation: `{id, kind, status, reason?, errors?, result?}`. */
  async function operationReport(edge: string, body: unknown): Promise<void> {
    const r = body as Record<string, unknown> | null;
    const id = typeof r?.id === "string" ? r.id : undefined;
    const status = r?.status;
    if (id === undefined || (status !== "executing" && status !== "successful" && status !== "failed")) {
      log.warn("edge.report_ignored", { edge, reason: "bad operation report" });
      return;
    }
    const reason = typeof r!.reason === "string" ? r!.reason.slice(0, 4096) : null;
    const kind = String(r!.kind ?? "");
    if (kind === "logs") {
      const result = (r!.result ?? {}) as { lines?: unknown; truncated?: unknown };
      const lines = Array.isArray(result.lines) ? result.lines : [];
      const outcome: LogsOutcome | undefined = status === "executing"
        ? undefined
        : status === "successful"
        ? { id, status, lines, truncated: result.truncated === true }
        : { id, status: "failed", reason: reason ?? "failed", errors: r!.errors, code: 400 };
      const waiter = logWaiters.get(id);
      const here = waiter?.edge === edge;
      await setOperation(edge, id, kind, {
        status,
        reason,
        result: status === "successful"
          ? { lines: lines.length, truncated: result.truncated === true }
          : undefined,
        // The request waits on another replica: the answer stays in the row until it takes it.
        answer: outcome !== undefined && !here && store.shared !== undefined
          ? JSON.stringify(outcome)
          : undefined,
      });
      if (here && outcome !== undefined) waiter!.settle(outcome);
      return;
    }
    await setOperation(edge, id, kind, {
      status,
      reason,
      result: Array.isArray(r!.errors) ? { errors: r!.errors } : undefined,
    });
  }

  /** Rules and update reports end (or move on) the operation that pushed them. */
  async function pushReport(edge: string, kind: PushKind, body: unknown): Promise<void> {
    const b = body as { version?: unknown; status?: unknown; reason?: unknown; errors?: unknown } | null;
    if (typeof b?.version !== "string") return;
    const op = await store.openOperationOf(edge, kind, b.version);
    if (op === undefined) return;
    const reason = typeof b.reason === "string" ? b.reason : null;
    const outcome: { status: OperationState; reason?: string | null; result?: unknown } | undefined =
      kind === "rules"
        ? b.status === "applied"
          ? { status: "successful" }
          : { status: "failed", reason: "refused by the edge", result: { errors: b.errors } }
        : b.status === "started"
        ? { status: "executing" }
        : b.status === "committed"
        ? { status: "successful" }
        : b.status === "recorded" || b.status === "refused" || b.status === "failed" ||
            b.status === "rolled-back"
        ? { status: "failed", reason: b.status === "rolled-back" ? `rolled back: ${reason ?? ""}` : reason }
        : undefined;
    if (outcome) await setOperation(edge, op.id, kind, outcome);
    // Pushes replace each other: those before this one that the edge never reported on are over.
    await store.supersedeOperations(
      edge,
      kind,
      op.id,
      "replaced by a newer push before the edge reported on it",
      now(),
    );
  }

  async function saveReport(session: Session, report: ReportFrame): Promise<void> {
    if (!REPORT_TYPE.test(report.type)) {
      log.warn("edge.report_ignored", { edge: session.edge, reason: "bad report type" });
      return;
    }
    const body = decodeJson(report.body);
    // Operation reports go to their operation (logs can be large: never kept as the last report).
    if (report.type === "operation") return await operationReport(session.edge, body);
    await store.saveReport(session.edge, report.type, body, now());
    if (report.type === "rules" || report.type === "update") {
      await pushReport(session.edge, report.type, body);
    }
    // The edge's word on a rules push or an update offer ends that push, whatever it says.
    if (report.type === "rules" || report.type === "update") {
      const kind: PushKind = report.type === "rules" ? "rules" : "update";
      const version = (body as { version?: unknown } | null)?.version;
      const pending = (await store.pushesOf(session.edge)).find((p) => p.kind === kind);
      if (pending !== undefined && pending.version === version) await store.dropPush(session.edge, kind);
    }
  }

  async function settleCommand(session: Session, result: CommandResultFrame): Promise<void> {
    const status = (COMMAND_STATUSES.has(result.status) ? result.status : "error") as CommandOutcomeStatus;
    const text = result.payload?.length ? payloadText(result.payload) : null;
    const known = await store.settleCommand(result.id, session.edge, status, text, now());
    // Stored (or nothing to store it against): the edge may forget it. A result that arrives
    // late (after the hub's own timeout, or after a restart) replaces what the hub assumed.
    write(session, { commandResultAck: { id: result.id } });
    if (!known) {
      log.warn("command.unknown_result", { edge: session.edge, id: result.id });
      return;
    }
    waiters.settle(result.id, session.edge, status, text === null ? null : JSON.parse(text));
    // The caller may wait on another replica.
    await store.shared?.notify({ type: "result", edge: session.edge, id: result.id });
  }

  function onFrame(session: Session, raw: unknown): void {
    if (!session.open) return;
    const edge = session.edge;
    const frame = typeof (raw as { frame?: unknown } | null)?.frame === "string"
      ? raw as EdgeFrame
      : undefined;
    if (frame === undefined) return log.debug("edge.frame_ignored", { edge });
    const name = frame.frame;
    const failed = (error: unknown) =>
      log.error("hub.store_failed", { edge, frame: name, error: errorMessage(error) });
    switch (frame.frame) {
      case "batch":
        // A batch arriving while the hub shuts down is not taken; the edge resends it.
        if (!closing) work.take(session, frame.batch);
        return;
      case "heartbeat":
        write(session, { heartbeat: { ts: now() } });
        store.touch(edge, now()).catch(failed);
        return;
      case "report": {
        const report = frame.report;
        // In order with the edge's other work (its batches), so a report never overtakes them.
        void serially(edge, () => saveReport(session, report).catch(failed));
        return;
      }
      case "commandResult": {
        const result = frame.commandResult;
        void serially(edge, () => settleCommand(session, result).catch(failed));
        return;
      }
      default:
        log.debug("edge.frame_ignored", { edge });
    }
  }

  function operationFrame(id: string, kind: string, body: string): DistributiveOmit<HubFrame, "frame"> {
    return { operation: { id, kind, body: utf8.encode(body) } };
  }

  function pushFrame(kind: PushKind, version: string, body: string): DistributiveOmit<HubFrame, "frame"> {
    if (kind === "rules") return { rules: { version, document: utf8.encode(body) } };
    return { updateOffer: JSON.parse(body) };
  }

  function connect(call: Call): void {
    const peer = safePeer(call);
    if (closing) return endCall(call, grpc.status.UNAVAILABLE, SHUTTING_DOWN);
    const address = peerAddress(peer);
    if (limiter.blocked(address)) {
      // Refused without looking at the credentials, for the rest of the minute (SPEC §14).
      const n = refusals.note();
      if (n !== undefined) {
        log.warn("edge.auth_limited", {
          address,
          refused: n,
          rule: `${AUTH_MAX_FAILURES} failed authentications in a minute`,
        });
      }
      return endCall(call, grpc.status.RESOURCE_EXHAUSTED, AUTH_LIMITED);
    }
    const edge = authenticate(call.metadata);
    if (edge === undefined) {
      limiter.fail(address);
      const claimed = call.metadata.get(AUTH_METADATA.edgeId)[0];
      log.warn("edge.rejected", {
        edge: typeof claimed === "string" ? claimed.slice(0, 128) : null,
        peer,
      });
      return endCall(call, grpc.status.UNAUTHENTICATED, AUTH_FAILED);
    }
    const session: Session = { edge, call, peer, open: true, detached: false };
    const list = sessions.get(edge) ?? [];
    list.push(session);
    sessions.set(edge, list);
    widenFlowControl(call, log);
    log.info("edge.connected", { edge, peer, streams: list.length });

    // Frames read before the store knows of the connection wait behind it (one queue per edge).
    call.on("data", (frame: unknown) => onFrame(session, frame));
    // The edge half-closed: answer what it sent before, then end the call.
    call.on("end", () =>
      void serially(edge, () => {
        if (session.open) {
          session.open = false;
          call.end();
        }
        detach(session, "closed by edge");
      }));
    call.on("cancelled", () => detach(session, "cancelled"));
    call.on("close", () => detach(session, "closed"));

    void serially(edge, async () => {
      if (!session.open) return;
      try {
        await store.setConnected(edge, true, now());
      } catch (error) {
        log.error("hub.store_failed", { edge, error: errorMessage(error) });
        return fail(session, grpc.status.UNAVAILABLE, STORE_FAILED);
      }
      // The edge counts its link as up on these headers (or on the hub's first frame).
      if (session.open && !call.writableEnded) call.sendMetadata(new grpc.Metadata());
      await sendPushes(session);
    });
  }

  /**
   * Pushes stay in the store until the edge reports on them (a rules or update report naming
   * their version): one sent before a disconnect is sent again on every connect until then.
   */
  async function sendPushes(session: Session): Promise<void> {
    try {
      for (const p of await store.pushesOf(session.edge)) {
        write(session, pushFrame(p.kind, p.version, p.body));
      }
      // Config changes and restarts not yet finished go again; the edge runs an id once and
      // answers a repeat with its state.
      for (const op of await store.openOperations(session.edge)) {
        write(session, operationFrame(op.id, op.kind, op.body));
      }
    } catch (error) {
      log.error("hub.store_failed", { edge: session.edge, error: errorMessage(error) });
    }
  }

  function commandFrame(c: Pick<CommandRow, "id" | "device" | "method" | "params" | "timeoutMs">) {
    return {
      command: {
        id: c.id,
        device: c.device,
        method: c.method,
        params: utf8.encode(JSON.stringify(c.params ?? null)),
        timeoutMs: c.timeoutMs,
      },
    };
  }

  /** Whether the edge is connected to another replica of this hub (a shared store only). */
  async function connectedElsewhere(edge: string): Promise<boolean> {
    if (store.shared === undefined) return false;
    return (await store.shared.connectedEdges()).has(edge);
  }

  /** A message from a replica (this one too): deliver what waits for an edge connected here. */
  function onReplicaMessage(m: ReplicaMessage): void {
    const failed = (error: unknown) =>
      log.error("hub.store_failed", { edge: m.edge, error: errorMessage(error) });
    if (m.type === "result") {
      if (!waiters.has(m.id)) return;
      store.command(m.id).then((row) => {
        if (row !== undefined && row.status !== "pending") {
          waiters.settle(m.id, m.edge, row.status, row.payload);
        }
      }).catch(failed);
      return;
    }
    const session = closing ? undefined : live(m.edge);
    if (session === undefined) return;
    if (m.type === "push") {
      void sendPushes(session);
      return;
    }
    if (m.type === "operation") {
      // Posted to another replica: its body is in the shared store.
      store.openOperations(m.edge).then((ops) => {
        const op = ops.find((o) => o.id === m.id);
        if (op !== undefined) write(session, operationFrame(op.id, op.kind, op.body));
      }).catch(failed);
      return;
    }
    if (waiters.has(m.id)) return; // sent by this replica itself
    store.command(m.id).then((row) => {
      if (row !== undefined && row.status === "pending") write(session, commandFrame(row));
    }).catch(failed);
  }

  /** Stores the command and sends it on (here or through the replica the edge is connected to). */
  async function startCommand(
    edge: string,
    { id = randomUUID(), ...request }: CommandRequest,
  ): Promise<{ id: string; outcome: Promise<CommandOutcome> }> {
    await store.insertCommand({ id, edge, ...request, status: "pending", createdAt: now() });
    const session = closing ? undefined : live(edge);
    const elsewhere = session === undefined && !closing && await connectedElsewhere(edge);
    if (session === undefined && !elsewhere) {
      await store.settleCommand(id, edge, "device-offline", null, now());
      return { id, outcome: Promise.resolve({ id, status: "device-offline", payload: null }) };
    }
    const outcome = waiters.wait(
      id,
      edge,
      request.timeoutMs + graceMs,
      () =>
        void store.settleCommand(id, edge, "timeout", null, now()).catch((error) =>
          log.error("hub.store_failed", { edge, error: errorMessage(error) })
        ),
    );
    if (session !== undefined) write(session, commandFrame({ id, ...request }));
    // The replica the edge is connected to sends it, and tells every replica the result.
    else await store.shared!.notify({ type: "command", edge, id });
    return { id, outcome };
  }

  async function runCommand(edge: string, request: CommandRequest): Promise<CommandOutcome> {
    return await (await startCommand(edge, request)).outcome;
  }

  async function push(
    edge: string,
    kind: PushKind,
    version: string,
    body: string,
  ): Promise<"sent" | "pending"> {
    // Durable first, deleted only when the edge reports on it (see saveReport).
    await store.savePush({ edge, kind, version, body, createdAt: now() });
    await store.insertOperation({
      id: randomUUID(),
      edge,
      kind,
      version,
      status: "pending",
      request: kind === "rules" ? { version } : maskOffer(body),
      body: null,
      createdAt: now(),
    });
    const session = closing ? undefined : live(edge);
    if (session !== undefined) {
      write(session, pushFrame(kind, version, body));
      return "sent";
    }
    if (!closing && await connectedElsewhere(edge)) {
      // The replica the edge is connected to sends the edge's pushes.
      await store.shared!.notify({ type: "push", edge });
      return "sent";
    }
    // The edge gets only the newest push of a kind on connect: older unsent ones are over.
    const op = await store.openOperationOf(edge, kind, version);
    if (op) {
      await store.supersedeOperations(
        edge,
        kind,
        op.id,
        "replaced by a newer push before the edge got it",
        now(),
      );
    }
    return "pending";
  }

  async function connectedEdges(): Promise<Set<string>> {
    const here = new Set([...sessions.keys()].filter((edge) => live(edge) !== undefined));
    if (store.shared === undefined) return here;
    for (const edge of await store.shared.connectedEdges()) here.add(edge);
    return here;
  }

  /**
   * Sends an operation down the edge's stream here, or has the replica the edge is connected to
   * send it (it reads the body from the shared store). False when the edge is connected nowhere.
   */
  async function sendOperation(
    edge: string,
    id: string,
    kind: OperationKind,
    body: string,
  ): Promise<boolean> {
    if (closing) return false;
    const session = live(edge);
    if (session !== undefined) {
      write(session, operationFrame(id, kind, body));
      return true;
    }
    if (!await connectedElsewhere(edge)) return false;
    await store.shared!.notify({ type: "operation", edge, id });
    return true;
  }

  async function operate(
    edge: string,
    kind: "config" | "restart",
    body: string,
    request: unknown,
  ): Promise<OperationRow> {
    const id = randomUUID();
    await store.insertOperation({
      id,
      edge,
      kind,
      version: null,
      status: "pending",
      request,
      body,
      createdAt: now(),
    });
    log.info("operation.updated", { edge, id, kind, status: "pending" });
    await sendOperation(edge, id, kind, body);
    return (await store.operation(id))!;
  }

  /**
   * A logs answer that reached another replica (kept in the operation's row until taken). An
   * operation that ended without one (failed by a sweep, or answered here) is left to its waiter.
   */
  async function takeLogsAnswer(id: string): Promise<LogsOutcome | undefined> {
    const op = await store.operation(id);
    if (op === undefined || op.status === "pending" || op.status === "executing") return undefined;
    const text = await store.takeOperationAnswer(id);
    return text === null ? undefined : JSON.parse(text) as LogsOutcome;
  }

  async function fetchLogs(edge: string, query: unknown, timeoutMs: number): Promise<LogsOutcome> {
    const id = randomUUID();
    const kind: OperationKind = "logs";
    const body = JSON.stringify(query);
    await store.insertOperation({
      id,
      edge,
      kind,
      version: null,
      status: "pending",
      request: query,
      // With replicas, the one the edge is connected to reads the request from the row.
      body: store.shared !== undefined ? body : null,
      createdAt: now(),
    });
    const failed = (error: unknown) => log.error("hub.store_failed", { edge, error: errorMessage(error) });
    return await new Promise<LogsOutcome>((resolve) => {
      let done = false;
      let poll: ReturnType<typeof setInterval> | undefined;
      const settle = (outcome: LogsOutcome) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearInterval(poll);
        logWaiters.delete(id);
        resolve(outcome);
      };
      logWaiters.set(id, { edge, settle });
      const timer = setTimeout(() => {
        void (async () => {
          const reason = `the edge did not answer within ${timeoutMs} ms`;
          const timedOut = { id, status: "failed", reason, code: 504 } as const;
          try {
            if (await store.updateOperation(id, edge, { status: "failed", reason }, now())) {
              log.info("operation.updated", { edge, id, kind, status: "failed", reason });
            } else if (store.shared !== undefined) {
              // It ended meanwhile: its answer may be waiting in the row.
              return settle(await takeLogsAnswer(id) ?? timedOut);
            }
          } catch (error) {
            failed(error);
          }
          settle(timedOut);
        })();
      }, timeoutMs);
      if (store.shared !== undefined) {
        // The answer may reach another replica: it leaves it in the row, read here.
        poll = setInterval(() => {
          takeLogsAnswer(id).then((outcome) => outcome && settle(outcome)).catch(failed);
        }, LOGS_POLL_MS);
      }
      sendOperation(edge, id, kind, body).then(async (sent) => {
        if (sent) return;
        const reason = "the edge is not connected";
        await setOperation(edge, id, kind, { status: "failed", reason });
        settle({ id, status: "failed", reason, code: 503 });
      }).catch((error) => {
        failed(error);
        settle({ id, status: "failed", reason: "the hub's store failed", code: 503 });
      });
    });
  }

  /**
   * A logs request lives only as long as the API call that waits for it. With one hub process,
   * every one still open at start-up has failed; with replicas, those whose replica stopped while
   * waiting (or older than any wait), checked at start-up and every LOGS_SWEEP_MS.
   */
  async function sweepLogs(): Promise<void> {
    const t = now();
    const before = store.shared === undefined ? Number.MAX_SAFE_INTEGER : t - LOGS_ORPHANED_MS;
    const reason = store.shared === undefined
      ? "the hub restarted before the edge answered"
      : "the hub replica waiting for the answer stopped before the edge answered";
    const lost = await store.failOperations("logs", reason, t, before);
    for (const id of lost) log.warn("operation.pending_failed", { id, kind: "logs" });
  }

  async function start(): Promise<void> {
    await sweepLogs();
    if (store.shared === undefined) return;
    await store.shared.listen(onReplicaMessage);
    sweeper = setInterval(() => {
      sweepLogs().catch((error) => log.error("hub.store_failed", { error: errorMessage(error) }));
    }, LOGS_SWEEP_MS);
  }

  function close(): Promise<void> {
    closed ??= (async () => {
      closing = true;
      clearInterval(sweeper);
      for (const [id, waiter] of [...logWaiters]) {
        const reason = "the hub is shutting down";
        try {
          await setOperation(waiter.edge, id, "logs", { status: "failed", reason });
        } catch { /* the answer below still goes out */ }
        waiter.settle({ id, status: "failed", reason, code: 503 });
      }
      waiters.timeoutAll((id, edge) =>
        void store.settleCommand(id, edge, "timeout", null, now()).catch(() => {})
      );
      // Batches received and not yet queued for storing are stored (and acknowledged) now.
      await work.flush();
      for (const list of [...sessions.values()]) {
        for (const session of [...list]) fail(session, grpc.status.UNAVAILABLE, SHUTTING_DOWN);
      }
      await work.flush();
    })();
    return closed;
  }

  const logsWaiting = (edge: string) => [...logWaiters.values()].filter((w) => w.edge === edge).length;
  return {
    connect,
    isConnected: (edge) => live(edge) !== undefined,
    connectedEdges,
    runCommand,
    startCommand,
    push,
    operate,
    fetchLogs,
    logsWaiting,
    close,
    start,
  };
}

/** HTTP/2 receive windows the hub grants an edge's connection (stream, and connection total). */
const STREAM_WINDOW = 16 * 1024 * 1024;
const CONNECTION_WINDOW = 32 * 1024 * 1024;

/**
 * Grants the edge's HTTP/2 connection large receive windows. With the default 64 KiB, an edge can
 * have only 64 KiB on the wire before the hub's WINDOW_UPDATE comes back, and a busy edge reads
 * that update only on its next event-loop turn: measured here, batches of 500 records then took
 * about 1.7 s each to get through and the hub got 3,500 msg/s of the 6,000 the edge accepted.
 * The edge's own window of batches in flight (16 × ≤1 MiB) bounds what it sends, so a window of
 * 16 MiB costs no memory that is not already bounded. grpc-js has no server option for this: the
 * HTTP/2 session is reached through the call's internals, and if that path ever changes the hub
 * keeps working with the default windows (logged once at debug).
 */
function widenFlowControl(call: Call, log: Logger): void {
  try {
    let inner = (call as any).call;
    while (inner && !inner.stream) inner = inner.nextCall;
    const session = inner?.stream?.session;
    if (!session || typeof session.settings !== "function") throw new Error("no HTTP/2 session on the call");
    if ((session.localSettings?.initialWindowSize ?? 0) < STREAM_WINDOW) {
      session.settings({ initialWindowSize: STREAM_WINDOW });
    }
    if (typeof session.setLocalWindowSize === "function") session.setLocalWindowSize(CONNECTION_WINDOW);
  } catch (error) {
    log.debug("edge.flow_control_default", { error: errorMessage(error) });
  }
}

/** An update offer as the API shows it: the manifest URL without credentials or query. */
function maskOffer(body: string): unknown {
  try {
    return maskSecrets(JSON.parse(body));
  } catch {
    return null;
  }
}

/** A JSON value from the wire: null when empty, `{"_raw": text}` when not JSON. */
function decodeJson(bytes: Uint8Array | undefined): unknown {
  return bytes?.length ? JSON.parse(payloadText(bytes)) : null;
}

function safePeer(call: Call): string {
  try {
    return call.getPeer();
  } catch {
    return "unknown";
  }
}
