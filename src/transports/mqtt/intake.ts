/**
 * The MQTT side of the ingest doorway, shared by the embedded broker and the external clients:
 * takes the publishes that arrived together from one session (in order), and answers, per
 * publish, what to acknowledge. Invariants:
 * - A device publish is acknowledged only after `ingest.accept()` has committed it; the
 *   publishes of one batch go in one `accept()` call, so they commit together and in order, and
 *   concurrent batches share the outbox's group commit.
 * - A full outbox under `onFull: "reject"` is backpressure: the batch waits and retries, and is
 *   acknowledged only once stored; nothing is dropped.
 * - Bad input (invalid JSON, not an object, too large, an unusable topic) is acknowledged but
 *   not forwarded: it is dead-lettered and counted as rejected.
 * - A resend of an already committed publish (see dedupe.ts) is acknowledged, not stored again;
 *   what is stored is remembered in the same outbox transaction.
 */
import type { IngestKind, Message } from "../../core/message.ts";
import { type Accepted, type DeadLetters, type Ingest, parsePayload } from "../../ingest/mod.ts";
import { errorMessage } from "../../core/errors.ts";
import type { Telemetry } from "../../telemetry/mod.ts";
import type { PublishKey, Redelivery } from "./dedupe.ts";
import { parseGatewayData } from "./gateway.ts";

/** One publish, with where its topic says it goes. */
export interface InboundPublish {
  topic: string;
  payload: Uint8Array;
  target:
    | { type: "device"; device: string; kind: IngestKind }
    /** A ThingsBoard gateway's `v1/gateway/telemetry|attributes`: data of its children. */
    | { type: "gateway"; gateway: string; kind: "telemetry" | "attributes" }
    | { type: "invalid"; device?: string; reason: string; message: string };
  /** For QoS 1/2 publishes with a packet id. */
  key?: PublishKey;
}

export type Outcome = "accepted" | "duplicate" | "rejected";

export type IntakeResult =
  | { ok: true; outcomes: Outcome[] }
  /** Not stored: stopping, the sender went away while waiting, or the store failed. Do not ack. */
  | { ok: false; why: "stopped" | "gone" | "error" };

export interface IntakeDeps {
  ingest: Ingest;
  telemetry: Telemetry;
  deadLetters: DeadLetters;
  redelivery?: Redelivery;
  maxPayloadBytes: number;
  now?: () => number;
  /** Retry delays while the outbox is full (ms); default 100 doubling to 2000. */
  retry?: { firstMs: number; maxMs: number };
}

export interface Intake {
  /** Processes one session's batch; `alive()` false means the sender is gone (stop retrying). */
  submit(batch: readonly InboundPublish[], source: string, alive: () => boolean): Promise<IntakeResult>;
  /** The PUBACKs of these stored publishes were written (see dedupe.ts: what counts as a resend). */
  acked(keys: readonly PublishKey[]): void;
  /** Batches being processed now. */
  readonly busy: number;
  /** Resolves when nothing is in flight, or after `timeoutMs`. */
  drain(timeoutMs: number): Promise<void>;
  /** Stops retrying: waiting batches resolve `{ok: false, why: "stopped"}`. */
  stop(): void;
}

export function createIntake(deps: IntakeDeps): Intake {
  const { telemetry, deadLetters } = deps;
  const now = deps.now ?? Date.now;
  const firstMs = deps.retry?.firstMs ?? 100;
  const maxMs = deps.retry?.maxMs ?? 2000;
  const resends = telemetry.metrics.family("outpost_mqtt_resends_total");
  const waits = telemetry.metrics.family("outpost_mqtt_backpressure_total");
  /** Publishes being stored now, by session and packet id: a resend arriving meanwhile waits. */
  const pending = new Map<string, { digest: string; stored: Promise<boolean> }>();
  let busy = 0;
  let stopped = false;
  let wake: (() => void)[] = [];
  let fullSince: number | undefined;
  const idle: (() => void)[] = [];

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = wake.filter((w) => w !== done);
        resolve();
      }
      wake.push(done);
    });

  async function store(
    messages: Message[],
    source: string,
    alive: () => boolean,
    keys: PublishKey[],
  ): Promise<IntakeResult | undefined> {
    const inTransaction = keys.length > 0 ? () => deps.redelivery?.write(keys) : undefined;
    let delay = firstMs;
    for (;;) {
      if (stopped) return { ok: false, why: "stopped" };
      let result: Accepted;
      try {
        result = await deps.ingest.accept(messages, { inTransaction });
      } catch (error) {
        telemetry.log.error("mqtt.store_failed", { source, error: errorMessage(error) });
        return { ok: false, why: "error" };
      }
      if (result.ok) {
        if (fullSince !== undefined) {
          telemetry.log.info("mqtt.backpressure_ended", { waitedMs: now() - fullSince });
          fullSince = undefined;
        }
        return undefined;
      }
      if (result.reason === "stopping") return { ok: false, why: "stopped" };
      if (fullSince === undefined) {
        fullSince = now();
        telemetry.log.warn("mqtt.backpressure", {
          source,
          reason: result.message,
          action: "acknowledgements withheld until the outbox has room",
        });
      }
      waits.add(1);
      if (!alive()) return { ok: false, why: "gone" };
      await sleep(delay);
      delay = Math.min(maxMs, delay * 2);
    }
  }

  function reject(p: InboundPublish, reason: string, message: string, device: string | undefined): void {
    deadLetters.add({ device, topic: p.topic, reason, message, payload: p.payload });
    telemetry.rejected(reason, { transport: "mqtt", device, topic: p.topic.slice(0, 256), detail: message });
  }

  async function process(
    batch: readonly InboundPublish[],
    source: string,
    alive: () => boolean,
  ): Promise<IntakeResult> {
    const outcomes: Outcome[] = new Array(batch.length);
    // Resends of publishes still being stored (the sender reconnected meanwhile) wait for them.
    for (let i = 0; i < batch.length; i++) {
      const k = batch[i].key;
      const p = k && pending.get(`${k.session}\0${k.packetId}`);
      if (p && p.digest === k.digest && await p.stored) outcomes[i] = "duplicate";
    }
    const t = now();
    const messages: Message[] = [];
    const remember: PublishKey[] = [];
    const mine: string[] = [];
    let resolveStored!: (ok: boolean) => void;
    const stored = new Promise<boolean>((r) => (resolveStored = r));
    for (let i = 0; i < batch.length; i++) {
      if (outcomes[i] !== undefined) continue;
      const p = batch[i];
      if (p.key && deps.redelivery?.isResend(p.key)) {
        outcomes[i] = "duplicate";
        continue;
      }
      if (p.target.type === "invalid") {
        reject(p, p.target.reason, p.target.message, p.target.device);
        outcomes[i] = "rejected";
        continue;
      }
      if (p.target.type === "gateway") {
        const g = parseGatewayData(p.payload, {
          gateway: p.target.gateway,
          kind: p.target.kind,
          topic: p.topic,
          now: t,
          maxBytes: deps.maxPayloadBytes,
          maxBatchBytes: deps.ingest.maxBatchBytes,
          admit: deps.ingest.admit,
        });
        if (!g.ok) {
          reject(p, g.reason, g.message, p.target.gateway);
          outcomes[i] = "rejected";
          continue;
        }
        if (g.refused > 0) {
          // The children that could be taken are stored; the rest is told once per publish.
          const why =
            `${g.refused} child device(s) refused${
              g.overLimit > 0 ? ` (${g.overLimit} over devices.max)` : ""
            }: ` +
            g.problems.join("; ");
          reject(p, g.overLimit > 0 ? "device-limit" : "invalid-child", why, p.target.gateway);
        }
        for (const m of g.messages) messages.push(m);
        outcomes[i] = g.messages.length > 0 || g.refused === 0 ? "accepted" : "rejected";
      } else {
        const { device, kind } = p.target;
        const parsed = parsePayload(p.payload, {
          device,
          kind,
          source,
          topic: p.topic,
          now: t,
          maxBytes: deps.maxPayloadBytes,
          maxBatchBytes: deps.ingest.maxBatchBytes,
          admit: deps.ingest.admit,
        });
        if (!parsed.ok) {
          reject(p, parsed.reason, parsed.message, device);
          outcomes[i] = "rejected";
          continue;
        }
        for (const m of parsed.messages) messages.push(m);
        outcomes[i] = "accepted";
      }
      if (p.key) {
        remember.push(p.key);
        const id = `${p.key.session}\0${p.key.packetId}`;
        pending.set(id, { digest: p.key.digest, stored });
        mine.push(id);
      }
    }
    const resent = outcomes.filter((o) => o === "duplicate").length;
    if (resent > 0) resends.add(resent);
    let failed: IntakeResult | undefined;
    try {
      if (messages.length > 0) failed = await store(messages, source, alive, remember);
    } finally {
      resolveStored(failed === undefined);
      for (const id of mine) if (pending.get(id)?.stored === stored) pending.delete(id);
    }
    return failed ?? { ok: true, outcomes };
  }

  return {
    async submit(batch, source, alive) {
      busy++;
      try {
        return await process(batch, source, alive);
      } finally {
        busy--;
        if (busy === 0) { for (const f of idle.splice(0)) f(); }
      }
    },
    acked(keys) {
      if (keys.length > 0) deps.redelivery?.acked(keys);
    },
    get busy() {
      return busy;
    },
    drain(timeoutMs) {
      if (busy === 0) return Promise.resolve();
      return new Promise((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        idle.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
    stop() {
      stopped = true;
      for (const w of wake.slice()) w();
    },
  };
}
