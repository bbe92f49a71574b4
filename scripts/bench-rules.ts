/**
 * Rule engine throughput.
 *
 *   deno run -A scripts/bench-rules.ts [--messages N] [--baseline-messages N] [--runs N]
 *   bun scripts/bench-rules.ts
 *
 * 1. A 20-rule gateway document over N messages with the compiled engine (`trace: false`, as
 *    ingest runs it: matching, conditions, actions, alarms, outputs), and, in the same run, the
 *    same 20 `if` conditions interpreted by json-logic-js as the baseline. The baseline only
 *    evaluates conditions, so it does less work than the engine.
 * 2. A 5-rule filter document (match + if + drop) over N messages.
 * 3. The same comparison for a deliberately action-heavy 20-rule document (every message
 *    rewritten by several rules), reported beside the headline figures.
 * Wall-clock time on one core, after a warm-up. Each measurement runs in 5 rounds (or `runs`,
 * if more), the engine's and the baseline's rounds interleaved so that both meet the same
 * machine conditions; the best round of each is reported (the machine may be shared).
 * `benchRules()` is exported for scripts/bench.ts.
 */
import jsonLogic from "json-logic-js";
import type { Message } from "../src/core/message.ts";
import { createRuleEngine, parseRulesDocument } from "../src/rules/mod.ts";
import type { CompiledRules } from "../src/rules/mod.ts";

export interface BenchRulesOptions {
  /** Messages through the compiled engine, per document (default 1,000,000). */
  messages?: number;
  /** Messages through the json-logic-js baseline (default: `messages`). */
  baselineMessages?: number;
  /** Rounds each measurement is split into, at least 5; the best round counts. */
  runs?: number;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface DocumentProfile {
  rules_matched_per_msg: number;
  actions_per_msg: number;
  changed_fraction: number;
  alarms_per_msg: number;
}

export interface BenchRulesResult {
  /** The 20-rule document through the compiled engine, messages per second. */
  compiled_msgs_per_s: number;
  /** The same 20 conditions through json-logic-js, messages per second. */
  baseline_msgs_per_s: number;
  /** compiled / baseline. */
  ratio: number;
  /** The 5-rule filter document through the compiled engine. */
  filter5_msgs_per_s: number;
  /** The 20-rule document with the trace built (as `POST /api/v1/rules/test` runs it). */
  compiled_traced_msgs_per_s: number;
  /** The action-heavy 20-rule document: compiled, baseline, ratio. */
  heavy_compiled_msgs_per_s: number;
  heavy_baseline_msgs_per_s: number;
  heavy_ratio: number;
  /** What each document does to the message pool. */
  profile: DocumentProfile;
  heavy_profile: DocumentProfile;
}

/**
 * Twenty rules of the kinds a gateway runs: junk filters, unit conversion and renaming scoped to
 * device families, threshold alarms with clear conditions, local routing, deadband, throttle.
 * Every message is evaluated against (nearly) all of them; a few fire per message.
 */
export const TWENTY_RULES = {
  version: 1,
  rules: [
    { id: "drop-debug-topics", match: { topic: "devices/+/debug" }, then: [{ drop: true }] },
    { id: "drop-test-devices", match: { device: "test-*" }, then: [{ drop: true }] },
    {
      id: "hvac-f-to-c",
      match: { device: "hvac-*" },
      if: { "!!": [{ var: "temp_f" }] },
      then: [{ set: { temperature: { "/": [{ "*": [{ "-": [{ var: "temp_f" }, 32] }, 5] }, 9] } } }, {
        remove: ["temp_f"],
      }],
    },
    {
      id: "sensor-humidity-name",
      match: { device: "sensor-*" },
      if: { "!==": [{ var: "hum" }, null] },
      then: [{ rename: { hum: "humidity" } }],
    },
    {
      id: "outliers",
      if: { or: [{ ">": [{ var: "temperature" }, 500] }, { "<": [{ var: "temperature" }, -100] }] },
      then: [{ drop: true }],
    },
    {
      id: "overheat",
      match: { kind: "telemetry", device: "boiler-*" },
      if: { ">": [{ var: "temperature" }, 90] },
      then: [{
        alarm: { type: "overheat", severity: "critical", clear: { "<": [{ var: "temperature" }, 80] } },
      }],
    },
    {
      id: "freeze",
      if: { "<": [{ var: "temperature" }, -30] },
      then: [{ alarm: { type: "freeze", severity: "major", clear: { ">": [{ var: "temperature" }, -25] } } }],
    },
    {
      id: "low-battery",
      if: { "<=": [0, { var: "battery" }, 10] },
      then: [{ alarm: { type: "battery", severity: "warning", clear: { ">": [{ var: "battery" }, 20] } } }],
    },
    {
      id: "pressure-out-of-band",
      if: { or: [{ "<": [{ var: "pressure" }, 950] }, { ">": [{ var: "pressure" }, 1050] }] },
      then: [{ alarm: { type: "pressure", severity: "major" } }],
    },
    {
      id: "faults-local",
      if: { in: [{ var: "status" }, ["fault", "error", "alarm"]] },
      then: [{ route: ["hub", "mqtt:local/faults"] }],
    },
    {
      id: "firmware-unknown",
      match: { kind: "attributes" },
      if: { "!": { var: "fw" } },
      then: [{ set: { fw: "unknown" } }],
    },
    {
      id: "incomplete",
      match: { kind: "telemetry" },
      if: { "==": [{ var: "battery" }, null] },
      then: [{ set: { quality: "partial" } }],
    },
    {
      id: "vibration",
      if: { ">": [{ var: "vibration.rms" }, 3.5] },
      then: [{ alarm: { type: "vibration", severity: "minor" } }],
    },
    {
      id: "hot-zone",
      if: { some: [{ var: "zones" }, { ">": [{ var: "" }, 80] }] },
      then: [{ alarm: { type: "zone", severity: "major" } }],
    },
    { id: "pumps-local", match: { device: "pump-?" }, then: [{ route: ["hub", "mqtt:local/pumps"] }] },
    {
      id: "debug-events",
      match: { kind: "event" },
      if: { "==": [{ var: "level" }, "debug"] },
      then: [{ drop: true }],
    },
    {
      id: "sensor-rh",
      match: { device: "sensor-*" },
      if: { "!!": { var: "humidity" } },
      then: [{ set: { rh: { "/": [{ var: "humidity" }, 100] } } }],
    },
    {
      id: "overload",
      if: { ">": [{ "*": [{ var: "current" }, { var: "voltage" }] }, 2000] },
      then: [{ alarm: { type: "overload", severity: "critical" } }],
    },
    {
      id: "meter-deadband",
      match: { device: "meter-*" },
      then: [{ deadband: { field: "kwh", delta: 0.5 } }],
    },
    { id: "chatty-throttle", match: { device: "sensor-9*" }, then: [{ throttle: { interval: "1s" } }] },
  ],
};

/**
 * The first version of the benchmark document, kept as a stress figure: its transforms are not
 * scoped, so each message is rewritten by several rules (2.3 sets per message, 82% of messages
 * changed) and the overheat alarm meets uniform noise.
 */
export const TWENTY_RULES_HEAVY = {
  version: 1,
  rules: [
    { id: "drop-debug", match: { topic: "devices/+/debug" }, then: [{ drop: true }] },
    {
      id: "f-to-c",
      if: { "!!": [{ var: "temp_f" }] },
      then: [{ set: { temperature: { "/": [{ "*": [{ "-": [{ var: "temp_f" }, 32] }, 5] }, 9] } } }, {
        remove: ["temp_f"],
      }],
    },
    { id: "rename-hum", if: { "!==": [{ var: "hum" }, null] }, then: [{ rename: { hum: "humidity" } }] },
    {
      id: "outlier",
      if: { or: [{ ">": [{ var: "temperature" }, 500] }, { "<": [{ var: "temperature" }, -100] }] },
      then: [{ drop: true }],
    },
    {
      id: "overheat",
      match: { kind: "telemetry", device: "boiler-*" },
      if: { ">": [{ var: "temperature" }, 90] },
      then: [{
        alarm: { type: "overheat", severity: "critical", clear: { "<": [{ var: "temperature" }, 80] } },
      }],
    },
    {
      id: "freeze",
      if: { "<": [{ var: "temperature" }, -30] },
      then: [{ alarm: { type: "freeze", severity: "major" } }],
    },
    { id: "low-battery", if: { "<=": [0, { var: "battery" }, 10] }, then: [{ set: { battery_low: true } }] },
    {
      id: "pressure-band",
      if: { and: [{ ">=": [{ var: "pressure" }, 950] }, { "<=": [{ var: "pressure" }, 1050] }] },
      then: [{ set: { pressure_ok: true } }],
    },
    {
      id: "status-text",
      if: { in: [{ var: "status" }, ["fault", "error", "alarm"]] },
      then: [{ route: ["hub", "mqtt:local/faults"] }],
    },
    {
      id: "firmware",
      match: { kind: "attributes" },
      if: { "!": { var: "fw" } },
      then: [{ set: { fw: "unknown" } }],
    },
    {
      id: "missing-fields",
      if: { missing: ["temperature", "humidity"] },
      then: [{ set: { partial: true } }],
    },
    {
      id: "vibration",
      if: { ">": [{ var: "vibration.rms" }, 3.5] },
      then: [{ set: { vibration_high: true } }],
    },
    {
      id: "any-hot-zone",
      if: { some: [{ var: "zones" }, { ">": [{ var: "" }, 80] }] },
      then: [{ set: { zone_hot: true } }],
    },
    { id: "pumps-local", match: { device: "pump-?" }, then: [{ route: ["hub", "mqtt:local/pumps"] }] },
    {
      id: "events",
      match: { kind: "event" },
      if: { "==": [{ var: "level" }, "debug"] },
      then: [{ drop: true }],
    },
    {
      id: "dewpoint",
      if: { "!!": { var: "humidity" } },
      then: [{ set: { rh: { "/": [{ var: "humidity" }, 100] } } }],
    },
    {
      id: "energy",
      if: { ">": [{ "*": [{ var: "current" }, { var: "voltage" }] }, 2000] },
      then: [{ set: { overload: true } }],
    },
    {
      id: "label",
      if: { "==": [{ substr: [{ var: "@device" }, 0, 4] }, "pump"] },
      then: [{ set: { family: "pump" } }],
    },
    { id: "quiet-meter", match: { device: "meter-*" }, then: [{ deadband: { field: "kwh", delta: 0.5 } }] },
    { id: "chatty", match: { device: "sensor-9*" }, then: [{ throttle: { interval: "1s" } }] },
  ],
};

/** Five drop filters: the typical "keep junk off the uplink" document. */
export const FIVE_FILTERS = {
  version: 1,
  rules: [
    { id: "debug-topics", match: { topic: "devices/+/debug" }, then: [{ drop: true }] },
    { id: "test-devices", match: { device: "test-*" }, then: [{ drop: true }] },
    {
      id: "outliers",
      if: { or: [{ ">": [{ var: "temperature" }, 150] }, { "<": [{ var: "temperature" }, -50] }] },
      then: [{ drop: true }],
    },
    { id: "impossible-humidity", if: { ">": [{ var: "humidity" }, 100] }, then: [{ drop: true }] },
    {
      id: "debug-events",
      match: { kind: "event" },
      if: { "==": [{ var: "level" }, "debug"] },
      then: [{ drop: true }],
    },
  ],
};

/**
 * A fixed pool of varied messages (deterministic: no Math.random). Readings drift slowly per
 * device, as real sensors do, with occasional spikes; payload shapes vary (optional fields), so
 * property access is as megamorphic as with real JSON.
 */
export function messagePool(size = 1024): Message[] {
  const devices = ["boiler-1", "boiler-2", "pump-3", "pump-7", "meter-1", "sensor-91", "test-1", "hvac-4"];
  const pool: Message[] = [];
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const level = new Map<string, number>();
  for (let i = 0; i < size; i++) {
    const device = devices[i % devices.length];
    const kind = i % 17 === 0 ? "event" : i % 11 === 0 ? "attributes" : "telemetry";
    const drift = (level.get(device) ?? 60) + (rnd() - 0.5) * 4;
    level.set(device, Math.min(110, Math.max(-40, drift)));
    const payload: Record<string, unknown> = {
      temperature: Math.round((i % 97 === 0 ? drift + 40 : drift) * 10) / 10,
      battery: 5 + Math.floor((i / 8) % 95),
      pressure: 1000 + Math.floor((rnd() - 0.5) * 90),
      status: i % 29 === 0 ? "fault" : "ok",
    };
    if (i % 3 === 0) payload.hum = Math.floor(rnd() * 100);
    if (i % 5 === 0) payload.temp_f = Math.round(rnd() * 200);
    if (i % 7 === 0) payload.vibration = { rms: Math.round((2 + Math.sin(i / 150) * 1.8) * 100) / 100 };
    if (i % 9 === 0) payload.zones = [drift, drift - 5];
    if (device === "meter-1") payload.kwh = 1000 + i * 0.1;
    if (kind === "event") payload.level = i % 2 ? "debug" : "info";
    payload.current = Math.round(((i * 7) % 80) / 10 + (i % 211 === 0 ? 2 : 0));
    payload.voltage = 230;
    const m: Message = { device, kind, ts: 1_700_000_000_000 + i, payload, source: "mqtt" };
    m.topic = i % 23 === 0 ? `devices/${device}/debug` : `devices/${device}/${kind}`;
    pool.push(m);
  }
  return pool;
}

/** What a document does to the pool: rules matched, messages changed, alarms per message. */
export function documentProfile(rules: CompiledRules, pool: Message[]): DocumentProfile {
  const engine = createRuleEngine(rules);
  let matched = 0, actions = 0, changed = 0, alarms = 0;
  const n = pool.length * 4;
  for (let i = 0; i < n; i++) {
    const m = pool[i % pool.length];
    const r = engine.process(m, 1_700_000_000_000 + i);
    for (const t of r.trace) {
      if (t.origin !== undefined || !t.matched) continue;
      matched++;
      actions += t.actions?.length ?? 0;
    }
    alarms += r.outputs.filter((o) => o.kind === "alarm").length;
    if (r.outputs.some((o) => o.kind !== "alarm" && o.payload !== m.payload)) changed++;
  }
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    rules_matched_per_msg: round(matched / n),
    actions_per_msg: round(actions / n),
    changed_fraction: round(changed / n),
    alarms_per_msg: round(alarms / n),
  };
}

function compile(document: unknown): CompiledRules {
  const parsed = parseRulesDocument(document);
  if (!parsed.ok) throw new Error(`bench document invalid: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

/** A measurement split into rounds; the best round counts (the machine may be shared). */
interface Meter {
  round(): void;
  best(): number;
}

function engineMeter(
  rules: CompiledRules,
  pool: Message[],
  n: number,
  trace: boolean,
  rounds: number,
): Meter {
  const engine = createRuleEngine(rules);
  const options = { trace };
  const mask = pool.length - 1; // pool size is a power of two
  const perRound = Math.max(1, Math.floor(n / rounds));
  let now = 1_700_000_000_000;
  let sink = 0, best = 0, i = 0;
  // Warm up: the JIT settles after a few hundred thousand calls.
  for (let k = 0; k < 300_000; k++) sink += engine.process(pool[k & mask], now++, options).outputs.length;
  return {
    round() {
      const start = performance.now();
      for (const end = i + perRound; i < end; i++) {
        sink += engine.process(pool[i & mask], now++, options).outputs.length;
      }
      best = Math.max(best, perRound / ((performance.now() - start) / 1000));
      if (sink < 0) console.log(sink);
    },
    best: () => best,
  };
}

function baselineMeter(document: { rules: unknown[] }, pool: Message[], n: number, rounds: number): Meter {
  const conditions = document.rules.map((r) => (r as { if?: unknown }).if ?? true);
  const mask = pool.length - 1;
  const perRound = Math.max(1, Math.floor(n / rounds));
  let sink = 0, best = 0, i = 0;
  for (let k = 0; k < 10_000; k++) {
    const payload = pool[k & mask].payload;
    for (const c of conditions) if (jsonLogic.truthy(jsonLogic.apply(c as never, payload as never))) sink++;
  }
  return {
    round() {
      const start = performance.now();
      for (const end = i + perRound; i < end; i++) {
        const payload = pool[i & mask].payload;
        for (let k = 0; k < conditions.length; k++) {
          if (jsonLogic.truthy(jsonLogic.apply(conditions[k] as never, payload as never))) sink++;
        }
      }
      best = Math.max(best, perRound / ((performance.now() - start) / 1000));
      if (sink < 0) console.log(sink);
    },
    best: () => best,
  };
}

/** Runs the meters' rounds interleaved, so that each sees the same machine conditions. */
function interleave(rounds: number, ...meters: Meter[]): void {
  for (let r = 0; r < rounds; r++) for (const m of meters) m.round();
}

/** Runs the rules benchmarks; figures are messages per second on one core (wall clock). */
export function benchRules(options: BenchRulesOptions = {}): BenchRulesResult {
  const n = options.messages ?? 1_000_000;
  const nBaseline = options.baselineMessages ?? n;
  const log = options.log ?? (() => {});
  const rounds = Math.max(5, Math.floor(options.runs ?? 5));
  const pool = messagePool(1024);
  const twenty = compile(TWENTY_RULES);
  const heavy = compile(TWENTY_RULES_HEAVY);
  const five = compile(FIVE_FILTERS);
  const profile = documentProfile(twenty, pool);
  const heavyProfile = documentProfile(heavy, pool);

  const compiledMeter = engineMeter(twenty, pool, n, false, rounds);
  const baselineMeter_ = baselineMeter(TWENTY_RULES, pool, nBaseline, rounds);
  interleave(rounds, compiledMeter, baselineMeter_);
  const compiled = compiledMeter.best(), baseline = baselineMeter_.best();
  log(`20-rule gateway document: ${JSON.stringify(profile)}`);
  log(`  compiled engine:               ${fmt(compiled)} msg/s (${n} messages)`);
  log(`  json-logic-js, conditions only:${fmt(baseline)} msg/s (${nBaseline} messages)`);
  log(`  ratio compiled / baseline:     ${(compiled / baseline).toFixed(1)}×`);
  const tracedMeter = engineMeter(twenty, pool, Math.max(rounds, Math.floor(n / 5)), true, rounds);
  const filterMeter = engineMeter(five, pool, n, false, rounds);
  interleave(rounds, tracedMeter, filterMeter);
  const traced = tracedMeter.best(), filter5 = filterMeter.best();
  log(`  compiled, with trace:          ${fmt(traced)} msg/s`);
  log(`5-rule filter document:`);
  log(`  compiled engine:               ${fmt(filter5)} msg/s (${n} messages)`);
  const heavyMeter = engineMeter(heavy, pool, n, false, rounds);
  const heavyBaselineMeter = baselineMeter(
    TWENTY_RULES_HEAVY,
    pool,
    Math.max(rounds, Math.floor(nBaseline / 5)),
    rounds,
  );
  interleave(rounds, heavyMeter, heavyBaselineMeter);
  const heavyCompiled = heavyMeter.best(), heavyBaseline = heavyBaselineMeter.best();
  log(`action-heavy 20-rule document: ${JSON.stringify(heavyProfile)}`);
  log(`  compiled engine:               ${fmt(heavyCompiled)} msg/s (${n} messages)`);
  log(`  json-logic-js, conditions only:${fmt(heavyBaseline)} msg/s (${Math.floor(nBaseline / 5)} messages)`);
  log(`  ratio compiled / baseline:     ${(heavyCompiled / heavyBaseline).toFixed(1)}×`);
  const round1 = (x: number) => Math.round(x * 10) / 10;
  return {
    compiled_msgs_per_s: Math.round(compiled),
    baseline_msgs_per_s: Math.round(baseline),
    ratio: round1(compiled / baseline),
    filter5_msgs_per_s: Math.round(filter5),
    compiled_traced_msgs_per_s: Math.round(traced),
    heavy_compiled_msgs_per_s: Math.round(heavyCompiled),
    heavy_baseline_msgs_per_s: Math.round(heavyBaseline),
    heavy_ratio: round1(heavyCompiled / heavyBaseline),
    profile,
    heavy_profile: heavyProfile,
  };
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US").padStart(12);
}

function flag(args: string[], name: string): number | undefined {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? Number(args[i + 1]) : undefined;
}

if (import.meta.main) {
  // deno-lint-ignore no-process-global
  const args: string[] = typeof process !== "undefined" ? process.argv.slice(2) : [];
  const result = benchRules({
    messages: flag(args, "--messages"),
    baselineMessages: flag(args, "--baseline-messages"),
    runs: flag(args, "--runs"),
    log: (line) => console.log(line),
  });
  console.log(JSON.stringify(result));
  const ok = result.ratio >= 10 && result.filter5_msgs_per_s >= 1_000_000;
  console.log(
    ok
      ? "targets met: ≥10× the json-logic-js baseline, ≥1,000,000 msg/s for the 5-rule filter"
      : "TARGETS MISSED (≥10× the baseline, ≥1,000,000 msg/s for the 5-rule filter)",
  );
}
