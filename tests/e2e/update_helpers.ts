/**
 * Helpers for the self-update tests (not a test file itself): real binaries built at two versions
 * with the real build script, a loopback release server with Range support and fault injection,
 * agents installed into temporary folders, and a supervisor loop that starts the agent the way
 * install.sh's systemd unit does (pre-start script, then the binary; restart on a non-zero exit).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import {
  freePort,
  type Proc,
  ROOT,
  startProcess,
  TEST_TOKEN,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";
import { type Artifact, generateSigningKey, type SigningKey, signManifest } from "../../src/update/mod.ts";
import { buildDist, sha256Hex } from "./build_dist.ts";

export const PRESTART = join(ROOT, "scripts/outpost-prestart.sh");
export const opts = { sanitizeResources: false, sanitizeOps: false };

/** Builds the linux-x64 binary at each version (once each), in parallel with nothing else. */
export async function buildVersions(work: string, versions: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const version of versions) {
    const started = performance.now();
    const d = await buildDist({ outdir: join(work, `build-${version}`), targets: "linux-x64", version });
    out[version] = d.binaries["linux-x64"];
    console.log(`built outpost ${version} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The release server

export interface ServedRequest {
  path: string;
  range: string | null;
  status: number;
}

interface Fault {
  kind: "cut" | "stall";
  at: number;
  once: boolean;
}

/**
 * Serves files from memory on 127.0.0.1 with `Range: bytes=N-` support. Faults per path: `cut`
 * sends the first `at` bytes of the body and drops the connection; `stall` sends them and then
 * nothing until the server closes.
 */
export class ReleaseServer {
  readonly files = new Map<string, Uint8Array<ArrayBuffer>>();
  readonly requests: ServedRequest[] = [];
  readonly faults = new Map<string, Fault>();
  #server?: Deno.HttpServer;
  #closed = Promise.withResolvers<void>();
  port = 0;

  async start(): Promise<this> {
    const ready = Promise.withResolvers<number>();
    this.#server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen: (addr) => ready.resolve(addr.port),
      onError: () => new Response("error", { status: 500 }),
    }, (req) => this.#handle(req));
    this.port = await ready.promise;
    return this;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  put(path: string, data: Uint8Array | string): void {
    this.files.set(
      path,
      (typeof data === "string" ? new TextEncoder().encode(data) : data) as Uint8Array<ArrayBuffer>,
    );
  }

  putFile(path: string, file: string): Uint8Array {
    const data = Deno.readFileSync(file) as Uint8Array<ArrayBuffer>;
    this.files.set(path, data);
    return data;
  }

  fault(path: string, kind: "cut" | "stall", at: number, once = true): void {
    this.faults.set(path, { kind, at, once });
  }

  rangeRequests(path: string): ServedRequest[] {
    return this.requests.filter((r) => r.path === path && r.range !== null);
  }

  #handle(r: Request): Response {
    const path = new URL(r.url).pathname;
    const range = r.headers.get("range");
    const data = this.files.get(path);
    const log = (status: number) => this.requests.push({ path, range, status });
    if (!data) {
      log(404);
      return new Response("not found", { status: 404 });
    }
    let start = 0;
    let status = 200;
    const headers = new Headers({ "accept-ranges": "bytes", "content-type": "application/octet-stream" });
    if (range) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(range);
      if (!m || Number(m[1]) >= data.length) {
        log(416);
        return new Response(null, { status: 416, headers: { "content-range": `bytes */${data.length}` } });
      }
      start = Number(m[1]);
      status = 206;
      headers.set("content-range", `bytes ${start}-${data.length - 1}/${data.length}`);
    }
    log(status);
    const body = data.subarray(start);
    headers.set("content-length", String(body.length));
    const fault = this.faults.get(path);
    if (!fault || fault.at <= start) return new Response(body, { status, headers });
    if (fault.once) this.faults.delete(path);
    const cutAt = fault.at - start;
    let sent = 0;
    const closed = this.#closed.promise;
    const stream = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (sent < cutAt) {
          const chunk = body.subarray(sent, Math.min(cutAt, sent + (1 << 20)));
          sent += chunk.length;
          c.enqueue(chunk);
          return;
        }
        if (fault.kind === "stall") await closed;
        c.error(new Error(`fault injected: ${fault.kind} at byte ${fault.at}`));
      },
    });
    return new Response(stream, { status, headers });
  }

  async close(): Promise<void> {
    this.#closed.resolve();
    await this.#server?.shutdown().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// Releases

export interface Release {
  key: SigningKey;
  /** Publishes `binary` (or any bytes) as version `version` and returns the manifest's URL. */
  publish(
    version: string,
    file: string | Uint8Array,
    options?: {
      name?: string;
      tamper?: (m: Record<string, unknown>) => void;
      artifact?: Partial<Artifact>;
      servedBytes?: Uint8Array;
      target?: string;
    },
  ): Promise<string>;
}

export function release(server: ReleaseServer, key = generateSigningKey()): Release {
  return {
    key,
    publish(version, file, options = {}) {
      const name = options.name ?? version;
      const bytes = typeof file === "string" ? Deno.readFileSync(file) : file;
      const path = `/${name}/outpost-linux-x64`;
      server.put(path, options.servedBytes ?? bytes);
      const sha256 = createHash("sha256").update(bytes).digest("hex");
      const manifest: Record<string, unknown> = signManifest({
        version,
        artifacts: {
          [options.target ?? "linux-x64"]: {
            url: server.url(path),
            sha256,
            size: bytes.length,
            ...options.artifact,
          },
        },
      }, key.privateKeyPem);
      options.tamper?.(manifest);
      server.put(`/${name}/manifest.json`, JSON.stringify(manifest, null, 2));
      return Promise.resolve(server.url(`/${name}/manifest.json`));
    },
  };
}

/** A `#!/bin/sh` stand-in for a broken release: right `--version`, then `body` for anything else. */
export function fakeBinary(version: string, body: string): Uint8Array {
  return new TextEncoder().encode(
    `#!/bin/sh\ncase "$1" in --version|version) echo "outpost ${version}"; echo "sh linux-x64"; exit 0 ;; esac\n${body}\n`,
  );
}

// ---------------------------------------------------------------------------------------------
// Installed agents

export interface Installed {
  dir: string;
  exe: string;
  dataDir: string;
  configPath: string;
  apiPort: number;
  config: Record<string, any>;
  api(path: string, init?: RequestInit): Promise<Response>;
}

/** Copies `binary` to `<dir>/bin/outpost` and writes its config (no MQTT broker, fixed API port). */
export async function installAgent(
  dir: string,
  binary: string,
  update: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): Promise<Installed> {
  mkdirSync(join(dir, "bin"), { recursive: true });
  const exe = join(dir, "bin/outpost");
  copyFileSync(binary, exe);
  Deno.chmodSync(exe, 0o755);
  const apiPort = await freePort();
  const dataDir = join(dir, "data");
  const config = {
    edgeId: "gw-update",
    dataDir,
    api: { listen: `127.0.0.1:${apiPort}`, token: TEST_TOKEN },
    mqtt: { broker: false },
    update,
    ...extra,
  };
  const configPath = writeAgentConfig(dir, config);
  return {
    dir,
    exe,
    dataDir,
    configPath,
    apiPort,
    config,
    api: (path, init) =>
      fetch(`http://127.0.0.1:${apiPort}${path}`, {
        ...init,
        headers: {
          authorization: `Bearer ${TEST_TOKEN}`,
          "content-type": "application/json",
          ...init?.headers,
        },
      }),
  };
}

/** Runs the installed executable with `args` to completion. */
export async function runExe(
  exe: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(exe, {
    args,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** The executable's `--version` first line (it must start: that is the invariant). */
export async function versionOf(exe: string): Promise<string> {
  const r = await runExe(exe, ["--version"]);
  assert.equal(r.code, 0, `${exe} --version failed: ${r.stdout}${r.stderr}`);
  return r.stdout.split("\n")[0];
}

export async function updateState(inst: Installed): Promise<Record<string, any>> {
  const r = await inst.api("/api/v1/update");
  assert.equal(r.status, 200);
  return await r.json();
}

/** Polls `GET /api/v1/update` until `pred` holds; tolerates the agent being down meanwhile. */
export async function waitForUpdate(
  inst: Installed,
  pred: (s: Record<string, any>) => boolean,
  timeoutMs = 60_000,
  what = "update state",
): Promise<Record<string, any>> {
  let last: unknown;
  return await waitFor(
    async () => {
      const r = await inst.api("/api/v1/update").catch(() => undefined);
      if (!r?.ok) return undefined;
      const s = await r.json();
      last = s;
      return pred(s) ? s : undefined;
    },
    timeoutMs,
    `${what} (last: ${JSON.stringify(last)})`,
  );
}

export function sha256Of(path: string): Promise<string> {
  return sha256Hex(path);
}

export function sizeOf(path: string): number {
  return statSync(path).size;
}

export function readText(path: string): string {
  return readFileSync(path, "utf8");
}

/**
 * Stops (SIGTERM, then SIGKILL) every process an agent started itself without a supervisor, as
 * its `update.restart` log lines name them, and waits until they are gone.
 */
export async function stopSpawned(lines: string[]): Promise<void> {
  const pids = lines.filter((l) => l.includes('"event":"update.restart"') && l.includes('"how":"spawn"'))
    .map((l) => Number(JSON.parse(l).pid)).filter((p) => p > 0);
  for (const signal of ["SIGTERM", "SIGKILL"] as const) {
    for (const pid of pids) {
      try {
        Deno.kill(pid, signal);
      } catch { /* already gone */ }
    }
    const gone = await waitFor(
      () => pids.every((p) => !existsSync(`/proc/${p}`) || isZombie(p)),
      10_000,
      "spawned agents to stop",
    )
      .then(() => true, () => false);
    if (gone) return;
  }
}

function isZombie(pid: number): boolean {
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// A supervisor like systemd with install.sh's unit

export interface SupervisorOptions {
  /** Extra environment for the n-th start (0-based). */
  env?: (start: number) => Record<string, string>;
  restartDelayMs?: number;
  /** Bound on starts (a real unit has none; a test must end). */
  maxStarts?: number;
}

/**
 * Runs `outpost-prestart EXE DATA_DIR`, then `EXE run --config FILE` with `INVOCATION_ID` set (so
 * the agent behaves as under systemd), and again after any non-zero exit (systemd:
 * `Restart=always` with the agent exiting 0 only when stopped), until stopped.
 */
export class Supervisor {
  readonly procs: Proc[] = [];
  readonly exits: (number | string)[] = [];
  readonly prestartLog: string[] = [];
  #stopping = false;
  #done: Promise<void>;
  #started: ((p: Proc) => void)[] = [];
  #gate: Promise<void> = Promise.resolve();
  #openGate: () => void = () => {};

  constructor(readonly inst: Installed, readonly options: SupervisorOptions = {}) {
    this.#done = this.#loop();
  }

  async #loop(): Promise<void> {
    const max = this.options.maxStarts ?? 30;
    for (let n = 0; n < max && !this.#stopping; n++) {
      await this.#gate;
      if (this.#stopping) break;
      const pre = await new Deno.Command("sh", {
        args: [PRESTART, this.inst.exe, this.inst.dataDir],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const preText = new TextDecoder().decode(pre.stderr).trim();
      if (preText) this.prestartLog.push(preText);
      assert.equal(pre.code, 0, `outpost-prestart failed: ${preText}`);
      const proc = startProcess([this.inst.exe, "run", "--config", this.inst.configPath], {
        cwd: this.inst.dir,
        env: { INVOCATION_ID: "test-supervisor", ...this.options.env?.(n) },
      });
      this.procs.push(proc);
      for (const f of this.#started.splice(0)) f(proc);
      const code = await proc.exited;
      this.exits.push(code);
      if (this.#stopping || code === 0) break;
      await new Promise((r) => setTimeout(r, this.options.restartDelayMs ?? 200));
    }
  }

  current(): Proc | undefined {
    return this.procs.at(-1);
  }

  /** Resolves with the process of start number `n` (0-based) once it has been started. */
  start(n: number, timeoutMs = 60_000): Promise<Proc> {
    return waitFor(() => this.procs[n], timeoutMs, `start #${n} (exits so far: ${this.exits.join(", ")})`);
  }

  /** Holds the next restart until `release()` (to look at the files between two starts). */
  hold(): void {
    this.#gate = new Promise((r) => (this.#openGate = r));
  }

  release(): void {
    this.#openGate();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.release();
    await this.current()?.kill("SIGTERM");
    await this.#done;
  }

  /** Every log line of every start, for failure messages. */
  output(): string {
    return this.procs.map((p, i) =>
      `--- start #${i} (exit ${this.exits[i]})\n${p.lines.slice(-40).join("\n")}`
    )
      .join("\n") + `\n--- prestart:\n${this.prestartLog.join("\n")}`;
  }
}

export { TEST_TOKEN };
