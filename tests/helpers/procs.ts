/**
 * Test helpers that run the real thing: outpost agents and hubs as separate processes on
 * loopback (started under Deno, Bun, or a compiled binary), stopped by pid.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(new URL("../..", import.meta.url).pathname);
const DENO = join(ROOT, "node_modules/.bin/deno");
const BUN = join(ROOT, "node_modules/.bin/bun");

/**
 * How to start outpost: `deno` (default), `bun`, a path to a compiled binary, or a path to the
 * Node bundle (`….mjs`, run with `node`).
 */
export type Runner = string;

export function defaultRunner(): Runner {
  return Deno.env.get("OUTPOST_TEST_RUNNER") ?? "deno";
}

export function outpostCommand(runner: Runner = defaultRunner()): string[] {
  if (runner === "deno") return [DENO, "run", "-A", join(ROOT, "src/main.ts")];
  if (runner === "bun") return [BUN, join(ROOT, "src/main.ts")];
  if (runner.endsWith(".mjs")) return ["node", resolve(runner)];
  return [resolve(runner)];
}

export function tempDir(prefix = "outpost-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * A free port on 127.0.0.1 below the kernel's ephemeral range (32768+ on Linux): a process that
 * restarts on the same port (after a SIGKILL, say) must not find it taken as the source port of
 * some outgoing connection, which ports handed out by `listen(0)` can be.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (await canListen(port)) return port;
  }
  throw new Error("No free port found between 20000 and 32000");
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

export interface Proc {
  child: Deno.ChildProcess;
  pid: number;
  /** Every stdout/stderr line so far. */
  lines: string[];
  /** Resolves with the first JSON log line whose `event` matches (waiting up to timeoutMs). */
  waitForEvent(event: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves with the exit code, or the signal's name when a signal ended it. */
  exited: Promise<number | string>;
  kill(signal?: Deno.Signal): Promise<number | string>;
}

export function startProcess(
  cmd: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Proc {
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: options.cwd ?? ROOT,
    env: { NO_COLOR: "1", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const waiters: { event: string; resolve: (v: Record<string, unknown>) => void }[] = [];
  const onLine = (line: string) => {
    lines.push(line);
    if (Deno.env.get("OUTPOST_TEST_VERBOSE")) console.error(`[${child.pid}] ${line}`);
    if (!line.startsWith("{")) return;
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(line);
    } catch {
      return;
    }
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i].event === parsed.event) {
        waiters[i].resolve(parsed);
        waiters.splice(i, 1);
      }
    }
  };
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    let buf = "";
    for await (
      const chunk of stream.pipeThrough(
        new TextDecoderStream() as unknown as TransformStream<Uint8Array, string>,
      )
    ) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    }
    if (buf) onLine(buf);
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]).catch(() => {});
  const exited = child.status.then(async (s) => {
    await pumps;
    return s.signal ?? s.code;
  });
  let done = false;
  exited.then(() => (done = true));
  return {
    child,
    pid: child.pid,
    lines,
    exited,
    waitForEvent(event, timeoutMs = 30_000) {
      for (const line of lines) {
        if (line.startsWith("{") && line.includes(`"event":"${event}"`)) {
          return Promise.resolve(JSON.parse(line));
        }
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new Error(`No "${event}" within ${timeoutMs} ms; output:\n${lines.slice(-30).join("\n")}`));
        }, timeoutMs);
        const ok = (v: Record<string, unknown>) => {
          clearTimeout(timer);
          resolve(v);
        };
        waiters.push({ event, resolve: ok });
        exited.then((code) => {
          clearTimeout(timer);
          reject(
            new Error(`Process exited (${code}) before "${event}"; output:\n${lines.slice(-30).join("\n")}`),
          );
        });
      });
    },
    async kill(signal: Deno.Signal = "SIGTERM") {
      if (!done) {
        try {
          child.kill(signal);
        } catch { /* already gone */ }
      }
      return await exited;
    },
  };
}

/** Runs outpost to completion: exit code and output. */
export async function runOutpost(
  args: string[],
  options: { runner?: Runner; env?: Record<string, string>; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const cmd = outpostCommand(options.runner);
  const out = await new Deno.Command(cmd[0], {
    args: [...cmd.slice(1), ...args],
    cwd: options.cwd ?? ROOT,
    env: { NO_COLOR: "1", ...options.env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

export interface HubHandle {
  proc: Proc;
  grpcPort: number;
  apiPort: number;
  dataDir: string;
  configPath: string;
  api(path: string, init?: RequestInit): Promise<Response>;
  stop(): Promise<void>;
}

export interface EdgeCredentials {
  id: string;
  routingKey: string;
  secret: string;
}

/** Starts `outpost hub` with its own config; ports are fixed so a restart keeps them. */
export async function startHub(
  options: {
    dir: string;
    edges: EdgeCredentials[];
    grpcPort?: number;
    apiPort?: number;
    runner?: Runner;
    /** More hub config keys (`store`, `retention`, …). */
    config?: Record<string, unknown>;
    /** How long to wait for `hub.started` (default 30 s). */
    startTimeoutMs?: number;
    /** The API's bearer token (and the fleet console's sign-in); none by default. */
    token?: string;
    /** More environment variables for the hub process. */
    env?: Record<string, string>;
  },
): Promise<HubHandle> {
  const grpcPort = options.grpcPort ?? await freePort();
  const apiPort = options.apiPort ?? await freePort();
  mkdirSync(options.dir, { recursive: true });
  const configPath = join(options.dir, "hub.json");
  const dataDir = join(options.dir, "data");
  writeFileSync(
    configPath,
    JSON.stringify({
      listen: `127.0.0.1:${grpcPort}`,
      api: { listen: `127.0.0.1:${apiPort}`, ...(options.token ? { token: options.token } : {}) },
      dataDir,
      edges: options.edges,
      ...options.config,
    }),
  );
  const proc = startProcess([...outpostCommand(options.runner), "hub", "--config", configPath], {
    env: options.env,
  });
  await proc.waitForEvent("hub.started", options.startTimeoutMs);
  return {
    proc,
    grpcPort,
    apiPort,
    dataDir,
    configPath,
    api: (path, init) =>
      fetch(`http://127.0.0.1:${apiPort}${path}`, {
        ...init,
        headers: { ...(options.token ? { authorization: `Bearer ${options.token}` } : {}), ...init?.headers },
      }),
    async stop() {
      await proc.kill("SIGTERM");
    },
  };
}

export interface AgentHandle {
  proc: Proc;
  apiPort: number;
  token: string;
  configPath: string;
  api(path: string, init?: RequestInit): Promise<Response>;
  stop(signal?: Deno.Signal): Promise<number | string>;
}

/** Writes an agent config file (mode 0600) and returns its path. */
export function writeAgentConfig(dir: string, config: Record<string, unknown>): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "outpost.json");
  writeFileSync(path, JSON.stringify(config, null, 2), { mode: 0o600 });
  return path;
}

export const TEST_TOKEN = "test-token-0123456789abcdef";

/** Starts `outpost run --config …` and waits until it has started. */
export async function startAgent(
  configPath: string,
  options: { runner?: Runner; token?: string; env?: Record<string, string> } = {},
): Promise<AgentHandle> {
  const proc = startProcess([...outpostCommand(options.runner), "run", "--config", configPath], {
    env: options.env,
  });
  const started = await proc.waitForEvent("agent.started");
  const apiPort = Number(String(started.api).split(":").pop());
  const token = options.token ?? TEST_TOKEN;
  return {
    proc,
    apiPort,
    token,
    configPath,
    api: (path, init) =>
      fetch(`http://127.0.0.1:${apiPort}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...init?.headers },
      }),
    stop: (signal: Deno.Signal = "SIGTERM") => proc.kill(signal),
  };
}

/** Polls `fn` until it returns a truthy value or the time runs out. */
export async function waitFor<T>(
  fn: () => Promise<T> | T,
  timeoutMs = 30_000,
  what = "condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Timed out waiting for ${what}${last ? `: ${last}` : ""}`);
}

/** A connectivity event (a device going online or offline), which the agent sends on its own. */
export function isConnectivityEvent(record: { kind?: string; payload?: any }): boolean {
  return record.kind === "event" && record.payload?.type === "connectivity";
}

/**
 * The connectivity events this agent process has stored in its outbox (or is about to): its
 * changes less those dropped from the waiting queue, from /metrics. For exact counts of records.
 */
export async function connectivityEvents(agent: AgentHandle): Promise<number> {
  const text = await (await agent.api("/metrics")).text();
  const value = (name: string) =>
    Number(/^(\S+) (\S+)$/m.exec(text.split("\n").find((l) => l.startsWith(`${name} `)) ?? "")?.[2] ?? 0);
  return value("outpost_device_connectivity_changes_total") -
    value("outpost_device_connectivity_dropped_total");
}

/**
 * Every record the hub holds for an edge, in arrival order (follows `next`): the devices' data,
 * and the connectivity events only with `{connectivity: true}`.
 */
export async function hubRecords(
  hub: HubHandle,
  edge: string,
  options: { connectivity?: boolean } = {},
): Promise<Record<string, any>[]> {
  const all: Record<string, any>[] = [];
  let after = 0;
  for (;;) {
    const res = await hub.api(`/api/v1/records?edge=${edge}&after=${after}&limit=10000`);
    if (!res.ok) throw new Error(`hub records: ${res.status} ${await res.text()}`);
    const body = await res.json();
    all.push(...body.records);
    if (body.next === null || body.records.length === 0) break;
    after = body.next;
  }
  return options.connectivity ? all : all.filter((r) => !isConnectivityEvent(r));
}

/** Waits until the agent's outbox is empty with the hub link up: everything accepted is at the hub. */
export function waitDrained(agent: AgentHandle, timeoutMs = 120_000): Promise<boolean> {
  return waitFor(
    async () => {
      const s = await (await agent.api("/api/v1/status")).json();
      return s.outbox.depth === 0 && s.hub.connected;
    },
    timeoutMs,
    "the outbox to drain to the hub",
  );
}

/** Each device's `payload.n` in the order the records are listed (see `hubRecords`). */
export function sequencesByDevice(records: readonly Record<string, any>[]): Map<string, number[]> {
  const byDevice = new Map<string, number[]>();
  for (const r of records) {
    let list = byDevice.get(r.device);
    if (list === undefined) byDevice.set(r.device, list = []);
    list.push(r.payload.n);
  }
  return byDevice;
}
