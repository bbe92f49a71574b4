/**
 * Helpers for the management tests (not a test file itself): an agent under a small supervisor
 * that starts it again when it exits with 75 (as install.sh's systemd unit does, with
 * `OUTPOST_SUPERVISED=1`), or when the test asks after a kill -9; and the hub's operations.
 */
import assert from "node:assert/strict";
import {
  type HubHandle,
  outpostCommand,
  type Proc,
  type Runner,
  startProcess,
  TEST_TOKEN,
  waitFor,
} from "../helpers/procs.ts";

export const opts = { sanitizeResources: false, sanitizeOps: false };

/** Agent and hub run under Bun (the release binary's runtime) unless the environment says otherwise. */
export const RUNNER: Runner = Deno.env.get("OUTPOST_TEST_RUNNER") ?? "bun";

export interface Supervised {
  /** The process running now. */
  current(): Proc;
  /** Every process started so far, oldest first. */
  readonly procs: Proc[];
  /** Every output line of every process. */
  lines(): string[];
  apiPort: number;
  api(path: string, init?: RequestInit): Promise<Response>;
  /** Waits until the n-th process (1-based) has logged `agent.started`. */
  started(n: number, timeoutMs?: number): Promise<void>;
  /** kill -9 the current process and start a new one (with `env`). */
  kill9AndStart(env?: Record<string, string>): Promise<void>;
  /** Sets the environment of the next start by the supervisor loop. */
  nextEnv(env: Record<string, string>): void;
  stop(): Promise<void>;
}

/** Starts `outpost run --config …` supervised; the API port is fixed by the config. */
export async function superviseAgent(
  configPath: string,
  apiPort: number,
  env: Record<string, string> = {},
): Promise<Supervised> {
  const procs: Proc[] = [];
  let stopping = false;
  let next: Record<string, string> = {};
  const start = (extra: Record<string, string>) => {
    const proc = startProcess([...outpostCommand(RUNNER), "run", "--config", configPath], {
      env: { OUTPOST_SUPERVISED: "1", ...extra },
    });
    procs.push(proc);
    proc.exited.then((code) => {
      // The supervisor: exit 75 asks to be started again (a config change, a rollback, a restart).
      if (!stopping && code === 75 && procs[procs.length - 1] === proc) {
        const e = next;
        next = {};
        start(e);
      }
    });
    return proc;
  };
  start(env);
  await procs[0].waitForEvent("agent.started", 60_000);
  const handle: Supervised = {
    current: () => procs[procs.length - 1],
    procs,
    lines: () => procs.flatMap((p) => p.lines),
    apiPort,
    api: (path, init) =>
      fetch(`http://127.0.0.1:${apiPort}${path}`, {
        ...init,
        headers: {
          authorization: `Bearer ${TEST_TOKEN}`,
          "content-type": "application/json",
          ...init?.headers,
        },
      }),
    async started(n, timeoutMs = 60_000) {
      await waitFor(() => procs.length >= n, timeoutMs, `start number ${n}`);
      await procs[n - 1].waitForEvent("agent.started", timeoutMs);
    },
    async kill9AndStart(e = {}) {
      const proc = procs[procs.length - 1];
      await proc.kill("SIGKILL");
      start(e);
    },
    nextEnv(e) {
      next = e;
    },
    async stop() {
      stopping = true;
      for (const p of procs) await p.kill("SIGTERM");
    },
  };
  return handle;
}

/** The hub's operation `id` once it is successful or failed. */
export function waitOperation(hub: HubHandle, id: string, timeoutMs = 90_000): Promise<Record<string, any>> {
  return waitFor(
    async () => {
      const op = await (await hub.api(`/api/v1/operations/${id}`)).json();
      return op.status === "successful" || op.status === "failed" ? op : undefined;
    },
    timeoutMs,
    `operation ${id} to end`,
  );
}

/** Pushes a config; answers the operation's id. */
export async function pushConfig(hub: HubHandle, edge: string, config: unknown): Promise<string> {
  const res = await hub.api(`/api/v1/edges/${edge}/config`, { method: "PUT", body: JSON.stringify(config) });
  assert.equal(res.status, 202, await res.clone().text());
  const body = await res.json();
  assert.equal(body.status, "pending");
  return body.id;
}

/** Waits until the agent answering now reports the hub link up. */
export function waitConnected(agent: Supervised, timeoutMs = 60_000): Promise<unknown> {
  return waitFor(
    async () => {
      const s = await (await agent.api("/api/v1/status")).json();
      return s.hub.connected;
    },
    timeoutMs,
    "the hub link",
  );
}
