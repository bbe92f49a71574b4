/**
 * `outpost update [--check] [--manifest URL] [--allow-downgrade] [--config FILE]` and
 * `outpost update keygen --out FILE [--force]`.
 *
 * `--check` fetches and verifies the manifest in this process and changes nothing. Applying an
 * update asks the running agent (`POST /api/v1/update`, then follows `GET /api/v1/update` through
 * the restart and the trial), because the agent owns the executable, drains before it restarts
 * and judges its own trial. When no agent answers, this process applies the update itself
 * (download, verify, swap) and the next `outpost run` starts the new binary on trial.
 */
import { chmodSync, closeSync, existsSync, openSync, writeSync } from "node:fs";
import process from "node:process";
import { agentEndpoint } from "./agent_api.ts";
import type { Io } from "./io.ts";
import { type Config, loadConfig } from "../config/mod.ts";
import { type Issue, UsageError } from "../core/errors.ts";
import { executablePath, installedAs, pid, stderrIsTerminal, target } from "../runtime/mod.ts";
import { createLogger } from "../telemetry/mod.ts";
import { VERSION } from "../version.ts";
import { createUpdater, generateSigningKey, updatePaths, type UpdateStatus } from "../update/mod.ts";

export interface UpdateCliOptions {
  check?: boolean;
  manifest?: string;
  allowDowngrade?: boolean;
  config?: string;
  out?: string;
  force?: boolean;
}

export async function updateCommand(
  action: string | undefined,
  o: UpdateCliOptions,
  io: Io,
): Promise<number> {
  if (action === "keygen") return keygen(o, io);
  if (action !== undefined) {
    throw new UsageError(`Unknown update action "${action}": expected keygen, or none`);
  }
  if (o.out !== undefined) throw new UsageError("--out goes with outpost update keygen");
  if (o.manifest !== undefined) {
    if (typeof o.manifest !== "string" || !URL.canParse(o.manifest)) {
      throw new UsageError(`--manifest "${o.manifest}" is not a URL`);
    }
  }
  const config = loadConfig(o.config);
  return o.check ? await check(config, o, io) : await apply(config, o, io);
}

function keygen(o: UpdateCliOptions, io: Io): number {
  if (typeof o.out !== "string" || o.out === "") {
    throw new UsageError("outpost update keygen needs --out FILE");
  }
  if (existsSync(o.out) && !o.force) {
    throw new UsageError(`${o.out} exists: refusing to overwrite a key (--force replaces it)`);
  }
  const key = generateSigningKey();
  const fd = openSync(o.out, o.force ? "w" : "wx", 0o600);
  try {
    writeSync(fd, key.privateKeyPem);
  } finally {
    closeSync(fd);
  }
  chmodSync(o.out, 0o600);
  io.out(`Wrote a new ed25519 private key to ${o.out} (mode 0600): keep it secret, and off the devices.`);
  io.out(`Sign a release with: npm run release -- --key ${o.out} --base-url URL`);
  io.out("The public key, for update.publicKey in each device's config:");
  io.out(key.publicKey);
  return 0;
}

function localUpdater(config: Config) {
  return createUpdater({
    paths: updatePaths(executablePath(), config.dataDir),
    version: VERSION,
    target: target(),
    compiled: installedAs() !== undefined,
    bundle: installedAs() === "bundle",
    settings: config.update,
    // The CLI speaks in sentences; structured events stay quiet unless something is wrong.
    log: createLogger("error", (line) => console.error(line)),
    pid: pid(),
    by: "cli",
  });
}

async function check(config: Config, o: UpdateCliOptions, io: Io): Promise<number> {
  const result = await localUpdater(config).check({ manifestUrl: o.manifest });
  if (!result.ok) {
    if (result.usage) throw new UsageError(result.reason, { issues: configIssue(result.reason) });
    io.err(`error: ${result.reason}`);
    return 1;
  }
  io.out(`current: ${result.current}`);
  const verdict = result.order > 0
    ? "newer: `outpost update` installs it"
    : result.order === 0
    ? "the same: up to date"
    : "older: installed only with --allow-downgrade";
  io.out(`offered: ${result.offered} (${verdict})`);
  if (!result.artifact) {
    io.out(
      `note: the manifest has no artifact for this target (${target()}), so it cannot be installed here`,
    );
  }
  return 0;
}

function configIssue(reason: string): Issue[] {
  if (reason.includes("update.publicKey")) return [{ path: "/update/publicKey", message: "is not set" }];
  if (reason.includes("update.manifestUrl")) return [{ path: "/update/manifestUrl", message: "is not set" }];
  return [];
}

interface AgentApi {
  url: string;
  get(): Promise<Response>;
  post(body: unknown): Promise<Response>;
}

function agentApi(config: Config): AgentApi {
  const { url, token } = agentEndpoint(config, "/api/v1/update");
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  return {
    url,
    get: () => fetch(url, { headers, signal: AbortSignal.timeout(10_000) }),
    post: (body) =>
      fetch(url, {
        method: "POST",
        headers,
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      }),
  };
}

async function apply(config: Config, o: UpdateCliOptions, io: Io): Promise<number> {
  const api = agentApi(config);
  let probe: Response | undefined;
  try {
    probe = await api.get();
  } catch {
    probe = undefined;
  }
  if (!probe) return await applyHere(config, o, io, api.url);
  if (probe.status === 401) {
    io.err(`error: the agent at ${api.url} refused the API token (check api.token in the config)`);
    return 1;
  }
  if (!probe.ok) {
    io.err(`error: the agent at ${api.url} answered ${probe.status}: ${(await probe.text()).slice(0, 200)}`);
    return 1;
  }
  await probe.body?.cancel();
  const body: Record<string, unknown> = {};
  if (o.manifest) body.manifestUrl = o.manifest;
  if (o.allowDowngrade) body.allowDowngrade = true;
  const started = await api.post(body);
  const answer = await started.json().catch(() => ({}));
  if (started.status === 400) {
    throw new UsageError(
      answer.error ?? "The agent refused the request",
      { issues: answer.errors ?? configIssue(String(answer.error ?? "")) },
    );
  }
  if (started.status !== 202) {
    io.err(`error: ${answer.error ?? `the agent answered ${started.status}`}`);
    return 1;
  }
  io.err(
    `The agent at ${api.url.replace(/\/api\/v1\/update$/, "")} (outpost ${answer.current}) is updating.`,
  );
  return await follow(api, answer as UpdateStatus, io);
}

/** Follows the agent's update through its restart until it commits, rolls back or fails. */
async function follow(api: AgentApi, first: UpdateStatus, io: Io): Promise<number> {
  const view = createProgressView(io);
  const startPid = first.pid;
  let last: UpdateStatus = first;
  let lostSince: number | undefined;
  view.show(first);
  while (true) {
    await new Promise((r) => setTimeout(r, 250));
    let s: UpdateStatus;
    try {
      const r = await api.get();
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      s = await r.json();
      lostSince = undefined;
    } catch {
      lostSince ??= Date.now();
      if (last.state === "restarting" || last.state === "swapping" || last.state === "trial") {
        view.note(`waiting for the agent to come back…`);
      }
      if (Date.now() - lostSince > 180_000) {
        view.done();
        io.err(`error: the agent at ${api.url} has not answered for 3 minutes (last state: ${last.state})`);
        return 1;
      }
      continue;
    }
    view.show(s);
    last = s;
    const restarted = s.pid !== startPid;
    switch (s.state) {
      case "failed":
        view.done();
        io.err(`error: the update failed: ${s.reason}`);
        return 1;
      case "rolled-back":
        if (!restarted) break; // an earlier update's outcome, still on record
        view.done();
        io.err(`error: ${s.version} was rolled back to ${s.previous}: ${s.reason}`);
        return 1;
      case "committed":
        if (!restarted) break;
        view.done();
        io.out(`outpost ${s.version} is running and committed (the previous binary is kept as .prev).`);
        return 0;
      case "idle":
        if (s.message) {
          view.done();
          io.out(s.message);
          return 0;
        }
        break;
    }
  }
}

async function applyHere(config: Config, o: UpdateCliOptions, io: Io, agentUrl: string): Promise<number> {
  const updater = localUpdater(config);
  const view = createProgressView(io);
  updater.onChange((s) => view.show(s));
  const s = await updater.run({ manifestUrl: o.manifest, allowDowngrade: o.allowDowngrade });
  view.done();
  if (s.state === "failed") {
    if (s.reason && /No manifest URL|No update\.publicKey/.test(s.reason)) {
      throw new UsageError(s.reason, { issues: configIssue(s.reason) });
    }
    io.err(`error: the update failed: ${s.reason}`);
    return 1;
  }
  if (s.state === "idle") {
    io.out(s.message ?? "Nothing to do");
    return 0;
  }
  const exe = executablePath();
  io.out(`Installed outpost ${s.version} at ${exe} (the previous binary is kept as ${exe}.prev).`);
  io.out(`No agent answers at ${agentUrl}: the next \`outpost run\` starts ${s.version} on trial.`);
  return 0;
}

/**
 * Progress on stderr: a redrawn bar when stderr is a terminal, else one plain line per state
 * and per 10 % of the download.
 */
function createProgressView(io: Io) {
  const tty = stderrIsTerminal();
  let lastState = "";
  let lastTenth = -1;
  let barShown = false;
  let lastNote = "";
  const endBar = () => {
    if (barShown) process.stderr.write("\n");
    barShown = false;
  };
  const line = (text: string) => {
    endBar();
    io.err(text);
  };
  let lastTotal = 0;
  const bar = (bytes: number, total: number, version?: string) => {
    const ratio = total > 0 ? bytes / total : 0;
    if (lastState !== "downloading") line(`downloading outpost ${version} (${mib(total)})`);
    lastState = "downloading";
    lastTotal = total;
    if (tty) {
      const width = 30;
      const full = Math.round(ratio * width);
      process.stderr.write(
        `\r[${"#".repeat(full)}${"-".repeat(width - full)}] ${(ratio * 100).toFixed(0).padStart(3)}% ` +
          `${mib(bytes)} of ${mib(total)}`,
      );
      barShown = true;
    } else {
      const tenth = Math.floor(ratio * 10);
      if (tenth !== lastTenth) {
        lastTenth = tenth;
        io.err(`downloading: ${tenth * 10}% (${mib(bytes)} of ${mib(total)})`);
      }
    }
  };
  return {
    show(s: UpdateStatus) {
      if (s.state === "downloading" && s.progress) {
        bar(s.progress.bytes, s.progress.total, s.version);
        return;
      }
      if (s.state === lastState) return;
      // Polling may miss the end of a fast download: a later step means it completed.
      if (lastState === "downloading" && ["verifying", "swapping", "restarting", "trial"].includes(s.state)) {
        bar(lastTotal, lastTotal, s.version);
      }
      lastState = s.state;
      lastNote = "";
      const text = describe(s);
      if (text) line(text);
    },
    note(text: string) {
      if (text === lastNote) return;
      lastNote = text;
      line(text);
    },
    done: endBar,
  };
}

function describe(s: UpdateStatus): string | undefined {
  switch (s.state) {
    case "checking":
      return `checking ${s.manifestUrl ?? "the manifest"}`;
    case "verifying":
      return `verifying outpost ${s.version} (size, sha256, --version)`;
    case "swapping":
      return `installing outpost ${s.version} (keeping the current binary as .prev)`;
    case "restarting":
      return `restarting into outpost ${s.version}`;
    case "trial":
      return `outpost ${s.version} is on trial until it is healthy (deadline ${s.trial?.deadline ?? "?"})`;
    default:
      return undefined;
  }
}

function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}
