/**
 * Observability in one place: every event is named in ./events.ts (the one list of what outpost
 * can report), logged as one JSON line of structured fields and counted; the data path's events
 * are functions of `Telemetry` that also bump their own metrics. Errors mean an operator is
 * needed or data was lost; info is lifecycle, never per message. Secrets are never passed in.
 */

import { RefusalLog } from "../core/refusal_log.ts";
import { type EventAt, type Level, type MetricName, METRICS } from "./events.ts";

export {
  LOG_READ_MAX_LINES,
  LOG_RING_DEFAULT_BYTES,
  type LogLine,
  type LogQuery,
  type LogRing,
  logRingPaths,
  openLogRing,
  parseLogQuery,
  readLogRing,
} from "./log_ring.ts";
export { type EventAt, type EventName, EVENTS, type Level, type MetricName, METRICS } from "./events.ts";

const LEVELS: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Logs the events of ./events.ts, each at a level the catalogue allows it. */
export interface Logger {
  debug(event: EventAt<"debug">, fields?: Record<string, unknown>): void;
  info(event: EventAt<"info">, fields?: Record<string, unknown>): void;
  warn(event: EventAt<"warn">, fields?: Record<string, unknown>): void;
  error(event: EventAt<"error">, fields?: Record<string, unknown>): void;
}

export function createLogger(
  level: Level = "info",
  write: (line: string) => void = (l) => console.log(l),
  /** Called for every event written (the telemetry counts them). */
  onEvent?: (event: string, level: Level) => void,
): Logger {
  const min = LEVELS[level];
  const emit = (lvl: Level) => (event: string, fields?: Record<string, unknown>) => {
    onEvent?.(event, lvl);
    if (LEVELS[lvl] < min) return;
    write(JSON.stringify({ ts: new Date().toISOString(), level: lvl, event, ...fields }));
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}

/** A logger that also counts each event in `outpost_events_total{event, level}`. */
function countingLogger(inner: Logger, metrics: Metrics): Logger {
  const events = metrics.family("outpost_events_total");
  const counted = <L extends Level>(level: L) => (event: EventAt<L>, fields?: Record<string, unknown>) => {
    events.add(1, labels({ event, level }));
    (inner[level] as (e: string, f?: Record<string, unknown>) => void)(event, fields);
  };
  return { debug: counted("debug"), info: counted("info"), warn: counted("warn"), error: counted("error") };
}

/** A counter or gauge family with optional labels, rendered in Prometheus text format. */
class Family {
  readonly values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string, readonly type: "counter" | "gauge") {}
  add(n: number, labels = ""): void {
    this.values.set(labels, (this.values.get(labels) ?? 0) + n);
  }
  set(n: number, labels = ""): void {
    this.values.set(labels, n);
  }
  get(labels = ""): number {
    return this.values.get(labels) ?? 0;
  }
  total(): number {
    let t = 0;
    for (const v of this.values.values()) t += v;
    return t;
  }
}

function labels(obj: Record<string, string>): string {
  const parts = Object.entries(obj).map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, "_")}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

export class Metrics {
  readonly families = new Map<string, Family>();
  /** Gauges computed on scrape (outbox depth and the like). */
  readonly collectors: (() => void)[] = [];

  /** The family of a catalogued metric (./events.ts), made on first use. */
  family(name: MetricName): Family {
    let f = this.families.get(name);
    if (!f) {
      const [type, help] = METRICS[name];
      f = new Family(name, help, type);
      this.families.set(name, f);
    }
    return f;
  }

  render(): string {
    for (const collect of this.collectors) collect();
    const out: string[] = [];
    for (const f of this.families.values()) {
      out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
      if (f.values.size === 0) out.push(`${f.name} 0`);
      for (const [l, v] of f.values) out.push(`${f.name}${l} ${v}`);
    }
    return out.join("\n") + "\n";
  }
}

/** The agent's observable events. */
export interface Telemetry {
  log: Logger;
  metrics: Metrics;
  accepted(n: number, source: string): void;
  rejected(reason: string, fields: Record<string, unknown>): void;
  stored(n: number): void;
  /** One outbox transaction committed (records per commit = stored / commits). */
  committed(): void;
  delivered(n: number): void;
  dropped(n: number, why: string): void;
  hubConnected(url: string): void;
  hubDisconnected(reason: string, code?: string): void;
  authRefused(reason: string, fields: Record<string, unknown>): void;
  rulesErrors(n: number): void;
  counts(): { accepted: number; rejected: number; delivered: number; dropped: number; ruleErrors: number };
}

export function createTelemetry(inner: Logger): Telemetry {
  const metrics = new Metrics();
  const log = countingLogger(inner, metrics);
  const accepted = metrics.family("outpost_ingest_accepted_total");
  const rejected = metrics.family("outpost_ingest_rejected_total");
  const stored = metrics.family("outpost_outbox_stored_total");
  const commits = metrics.family("outpost_outbox_commits_total");
  const delivered = metrics.family("outpost_hub_delivered_total");
  const dropped = metrics.family("outpost_outbox_dropped_total");
  const connects = metrics.family("outpost_hub_connects_total");
  const authRefused = metrics.family("outpost_auth_refused_total");
  const ruleErrors = metrics.family("outpost_rules_errors_total");
  /** Per reason (a fixed set of names). */
  const rejectedLog = new Map<string, RefusalLog>();
  const droppedLog = new RefusalLog();
  return {
    log,
    metrics,
    accepted(n, source) {
      accepted.add(n, labels({ source }));
    },
    rejected(reason, fields) {
      rejected.add(1, labels({ reason }));
      // At most once a minute per reason (a fixed set), with the count since the last line and the
      // latest case: a hostile client must not turn into a log line per message.
      let r = rejectedLog.get(reason);
      if (r === undefined) rejectedLog.set(reason, r = new RefusalLog());
      const count = r.note();
      if (count !== undefined) log.warn("ingest.rejected", { reason, count, ...fields });
    },
    stored(n) {
      stored.add(n);
    },
    committed() {
      commits.add(1);
    },
    delivered(n) {
      delivered.add(n);
    },
    dropped(n, why) {
      dropped.add(n);
      // At most once a minute, with the count since the last line (drop-oldest on a full disk
      // drops on every commit).
      const count = droppedLog.note(n);
      if (count !== undefined) log.error("outbox.dropped", { count, total: dropped.total(), why });
    },
    hubConnected(url) {
      connects.add(1);
      log.info("hub.connected", { url });
    },
    hubDisconnected(reason, code) {
      log.warn("hub.disconnected", { reason, code });
    },
    authRefused(reason, fields) {
      authRefused.add(1, labels({ reason }));
      log.warn("auth.refused", { reason, ...fields });
    },
    rulesErrors(n) {
      ruleErrors.add(n);
    },
    counts: () => ({
      accepted: accepted.total(),
      rejected: rejected.total(),
      delivered: delivered.total(),
      dropped: dropped.total(),
      ruleErrors: ruleErrors.total(),
    }),
  };
}
