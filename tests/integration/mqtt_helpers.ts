/**
 * Helpers for the MQTT tests: Debian's mosquitto broker and clients (software nobody here wrote),
 * and the stand-alone publisher fleet (mqtt_publisher.ts), each as its own process.
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import process from "node:process";
import { freePort, type Proc, ROOT, startProcess, waitFor } from "../helpers/procs.ts";

const DENO = join(ROOT, "node_modules/.bin/deno");
export const MOSQUITTO = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].find((p) => existsSync(p)) ??
  "mosquitto";

/** Says why the MQTT tests cannot run here, or undefined when mosquitto and its clients exist. */
export function missingTools(): string | undefined {
  for (const tool of ["mosquitto_pub", "mosquitto_sub"]) {
    const found = (Deno.env.get("PATH") ?? "").split(":").some((d) => existsSync(join(d, tool)));
    if (!found) return `${tool} not found: run \`sh scripts/setup.sh\` (installs mosquitto-clients)`;
  }
  if (!existsSync(MOSQUITTO)) return "mosquitto not found: run `sh scripts/setup.sh`";
  return undefined;
}

/** Throws with the reason when the tools are missing (a failure that says what to do). */
export function requireTools(): void {
  const missing = missingTools();
  if (missing) throw new Error(missing);
}

export async function portOpen(port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = createConnection({ port, host: "127.0.0.1" });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

export interface Mosquitto {
  port: number;
  url: string;
  proc: Proc;
  stop(): Promise<void>;
}

/** Starts a real mosquitto on a free loopback port, persistence on in `dir`. */
export async function startMosquitto(dir: string, port?: number): Promise<Mosquitto> {
  mkdirSync(dir, { recursive: true });
  const p = port ?? await freePort();
  const conf = join(dir, "mosquitto.conf");
  const lines = [
    `listener ${p} 127.0.0.1`,
    "allow_anonymous true",
    "persistence true",
    `persistence_location ${dir}/`,
    "autosave_interval 1",
    // Hold every message for an offline persistent session (the default keeps 1,000).
    "max_queued_messages 0",
    "max_inflight_messages 20",
    "log_dest stdout",
    "log_type error",
    "log_type warning",
  ];
  // Run as root, mosquitto would switch to the `mosquitto` user, which cannot write `dir`.
  if (process.getuid?.() === 0) lines.push("user root");
  writeFileSync(conf, lines.join("\n") + "\n");
  const proc = startProcess([MOSQUITTO, "-c", conf]);
  await waitFor(() => portOpen(p), 10_000, `mosquitto on port ${p}`);
  return {
    port: p,
    url: `mqtt://127.0.0.1:${p}`,
    proc,
    async stop() {
      await proc.kill("SIGTERM");
    },
  };
}

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a mosquitto client (`mosquitto_pub`, `mosquitto_sub`) to completion. */
export async function mosquittoTool(
  tool: "mosquitto_pub" | "mosquitto_sub",
  args: string[],
): Promise<ToolResult> {
  const out = await new Deno.Command(tool, { args, stdout: "piped", stderr: "piped" }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** `mosquitto_pub` at QoS 1 by default; `args` come first so they can add options. */
export function pub(port: number, topic: string, message: string, args: string[] = []): Promise<ToolResult> {
  return mosquittoTool("mosquitto_pub", [
    "-h",
    "127.0.0.1",
    "-p",
    String(port),
    "-q",
    "1",
    ...args,
    "-t",
    topic,
    "-m",
    message,
  ]);
}

/** A running `mosquitto_sub` (started with `-d`, so its SUBACK shows); lines of its stdout. */
export interface Subscriber {
  proc: Proc;
  /** Resolves once the broker has answered the SUBSCRIBE. */
  subscribed: Promise<void>;
  /** Payload lines received so far (debug lines filtered out). */
  messages(): string[];
  stop(signal?: Deno.Signal): Promise<number | string>;
}

export function subscribe(port: number, topics: string[], args: string[] = []): Subscriber {
  // Line-buffered: mosquitto_sub's stdout is a pipe here, which libc would buffer in blocks.
  const proc = startProcess([
    "stdbuf",
    "-oL",
    "mosquitto_sub",
    "-d",
    "-h",
    "127.0.0.1",
    "-p",
    String(port),
    ...args,
    ...topics.flatMap((t) => ["-t", t]),
  ]);
  const subscribed = waitFor(() => proc.lines.some((l) => l.includes("received SUBACK")), 10_000, "SUBACK");
  return {
    proc,
    subscribed: subscribed.then(() => {}),
    messages: () =>
      proc.lines.filter((l) => !/^Client .* (sending|received) /.test(l) && !l.startsWith("Subscribed (mid")),
    stop: (signal: Deno.Signal = "SIGTERM") => proc.kill(signal),
  };
}

export interface PublisherOptions {
  url: string;
  devices: string[];
  perDevice: number;
  topic?: string;
  window?: number;
  progressEvery?: number;
  credentials?: Record<string, { username: string; password?: string }>;
  clientPrefix?: string;
  ratePerDevice?: number;
  /** Resend what was not acknowledged after a reconnect (persistent session); default true. */
  resend?: boolean;
  /** Publish as a ThingsBoard gateway for its child `device` (see mqtt_publisher.ts). */
  gateway?: boolean;
}

export interface PublisherReport {
  /** Per device, the numbers PUBACKed, in PUBACK order. */
  acked: Record<string, number[]>;
  /** Per device, numbers given up without a PUBACK (`resend: false` only). */
  unanswered: Record<string, number[]>;
  errors: number;
  elapsedMs: number;
}

export interface Publisher {
  proc: Proc;
  /** PUBACKs so far (from the progress lines). */
  acked(): number;
  /** Resolves with the final report. */
  done(timeoutMs: number): Promise<PublisherReport>;
}

/** Starts the device fleet (mqtt_publisher.ts) as its own process. */
export function startPublisher(o: PublisherOptions): Publisher {
  const proc = startProcess([
    DENO,
    "run",
    "-A",
    join(ROOT, "tests/integration/mqtt_publisher.ts"),
    JSON.stringify(o),
  ]);
  return {
    proc,
    acked() {
      for (let i = proc.lines.length - 1; i >= 0; i--) {
        const l = proc.lines[i];
        if (l.startsWith('{"event":"progress"')) return JSON.parse(l).acked;
      }
      return 0;
    },
    async done(timeoutMs) {
      const line = await proc.waitForEvent("done", timeoutMs);
      return line as unknown as PublisherReport;
    },
  };
}

/**
 * Exactly once: `got` (a device's `n` in hub arrival order) holds every PUBACKed number once, in
 * ascending order, and nothing else but numbers whose fate the device did not learn.
 */
export function checkExactlyOnce(
  device: string,
  got: number[],
  acked: number[],
  unanswered: number[] = [],
): string[] {
  const problems: string[] = [];
  for (let i = 1; i < got.length; i++) {
    if (got[i] <= got[i - 1]) {
      problems.push(`${device}: n=${got[i]} arrived after n=${got[i - 1]} (order or duplicate)`);
      if (problems.length > 5) break;
    }
  }
  const gotSet = new Set(got);
  const missing = acked.filter((n) => !gotSet.has(n));
  if (missing.length > 0) {
    problems.push(`${device}: ${missing.length} PUBACKed messages missing, e.g. ${missing.slice(0, 5)}`);
  }
  const allowed = new Set([...acked, ...unanswered]);
  const extra = got.filter((n) => !allowed.has(n));
  if (extra.length > 0) {
    problems.push(`${device}: ${extra.length} messages at the hub never sent, e.g. ${extra.slice(0, 5)}`);
  }
  return problems;
}

/**
 * At least once, in order: the first arrival of each number is in ascending order, every
 * PUBACKed number is there, nothing else is; `duplicates` counts later arrivals of a number.
 */
export function checkAtLeastOnce(
  device: string,
  got: number[],
  acked: number[],
): { problems: string[]; duplicates: number } {
  const seen = new Set<number>();
  const first: number[] = [];
  let duplicates = 0;
  for (const n of got) {
    if (seen.has(n)) duplicates++;
    else {
      seen.add(n);
      first.push(n);
    }
  }
  return { problems: checkExactlyOnce(device, first, acked), duplicates };
}

/** The embedded broker's port, from the agent's `mqtt.broker.started` line. */
export async function brokerPort(
  agent: { proc: { waitForEvent(event: string): Promise<Record<string, unknown>> } },
): Promise<number> {
  const started = await agent.proc.waitForEvent("mqtt.broker.started");
  return Number(String(started.listen).split(":").pop());
}
