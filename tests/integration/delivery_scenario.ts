/**
 * The spine's promise as a scenario: clients post telemetry over HTTP while the agent is killed
 * with SIGKILL and the hub is stopped; afterwards every message answered 202 is at the hub
 * exactly once, and each device's messages are in the order they were accepted.
 *
 * Clients post each message once (they do not retry a request that got no answer: its fate is
 * unknown to them, so it may be at the hub at most once).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type AgentHandle,
  freePort,
  type HubHandle,
  hubRecords,
  removeDir,
  type Runner,
  sequencesByDevice,
  startAgent,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitDrained,
  writeAgentConfig,
} from "../helpers/procs.ts";

export interface ScenarioOptions {
  runner: Runner;
  total: number;
  devices: number;
  clients: number;
  /** SIGKILL the agent after this many accepted messages (each, then restart). */
  killsAt: number[];
  /** Stop the hub after this many accepted messages, for `hubDownMs`. */
  hubDownAt?: number;
  hubDownMs?: number;
  /** How the hub is stopped: SIGTERM (graceful: the hub sends HTTP/2 GOAWAY, the default) or SIGKILL (a crash). */
  hubStopSignal?: "SIGTERM" | "SIGKILL";
  /** Messages per request (1: single objects; >1: arrays). */
  perRequest?: number;
}

export interface ScenarioResult {
  accepted: number;
  unanswered: number;
  atHub: number;
}

export async function deliveryScenario(o: ScenarioOptions): Promise<ScenarioResult> {
  const dir = tempDir("outpost-delivery-");
  const edge = { id: "gw-01", routingKey: "rk-gw-01", secret: "secret-gw-01-abcdef" };
  let hub: HubHandle | undefined;
  let agent: AgentHandle | undefined;
  try {
    hub = await startHub({ dir: join(dir, "hub"), edges: [edge], runner: o.runner });
    const apiPort = await freePort();
    const configPath = writeAgentConfig(join(dir, "agent"), {
      edgeId: edge.id,
      dataDir: "data",
      api: { listen: `127.0.0.1:${apiPort}`, token: TEST_TOKEN },
      mqtt: { broker: false },
      hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
    });
    agent = await startAgent(configPath, { runner: o.runner });

    const perDevice = Math.floor(o.total / o.devices);
    const perRequest = o.perRequest ?? 1;
    const accepted = new Map<string, number[]>(); // device → n answered 202, in order
    const unanswered = new Map<string, Set<number>>();
    let acceptedCount = 0;
    let killed = 0;
    let unansweredCount = 0;
    const milestones = new Map<number, () => Promise<void>>();
    for (const k of o.killsAt) {
      milestones.set(k, async () => {
        await agent!.stop("SIGKILL");
        await new Promise((r) => setTimeout(r, 300));
        agent = await startAgent(configPath, { runner: o.runner });
        killed++;
      });
    }
    if (o.hubDownAt !== undefined) {
      milestones.set(o.hubDownAt, async () => {
        const h = hub!;
        if (o.hubStopSignal === "SIGKILL") await h.proc.kill("SIGKILL");
        else await h.stop();
        setTimeout(async () => {
          hub = await startHub({
            dir: join(dir, "hub"),
            edges: [edge],
            grpcPort: h.grpcPort,
            apiPort: h.apiPort,
            runner: o.runner,
          });
        }, o.hubDownMs ?? 3000);
      });
    }
    const pendingMilestones = [...milestones.keys()].sort((a, b) => a - b);
    let milestoneRunning: Promise<void> | undefined;

    const client = async (c: number) => {
      const mine = Array.from({ length: o.devices }, (_, d) => `dev-${d}`).filter((_, d) =>
        d % o.clients === c
      );
      const next = new Map(mine.map((d) => [d, 0]));
      for (const d of mine) {
        accepted.set(d, []);
        unanswered.set(d, new Set());
      }
      let turn = 0;
      while (mine.some((d) => next.get(d)! < perDevice)) {
        const d = mine[turn++ % mine.length];
        const start = next.get(d)!;
        if (start >= perDevice) continue;
        const ns = Array.from({ length: Math.min(perRequest, perDevice - start) }, (_, i) => start + i);
        next.set(d, start + ns.length);
        const body = perRequest === 1
          ? JSON.stringify({ n: ns[0], temperature: 20 + (ns[0] % 10) })
          : JSON.stringify(ns.map((n) => ({ n, temperature: 20 + (n % 10) })));
        let ok = false;
        try {
          const res = await fetch(`http://127.0.0.1:${apiPort}/api/v1/devices/${d}/telemetry`, {
            method: "POST",
            body,
            headers: { authorization: `Bearer ${TEST_TOKEN}`, "content-type": "application/json" },
          });
          const text = await res.text();
          ok = res.status === 202;
          if (!ok && res.status !== 503) throw new Error(`unexpected ${res.status}: ${text}`);
        } catch (error) {
          if (error instanceof Error && error.message.startsWith("unexpected")) throw error;
        }
        if (ok) {
          accepted.get(d)!.push(...ns);
          acceptedCount += ns.length;
        } else {
          for (const n of ns) unanswered.get(d)!.add(n);
          unansweredCount += ns.length;
          await new Promise((r) => setTimeout(r, 50));
        }
        while (pendingMilestones.length && acceptedCount >= pendingMilestones[0]) {
          const at = pendingMilestones.shift()!;
          const run = milestones.get(at)!;
          milestoneRunning = (milestoneRunning ?? Promise.resolve()).then(run);
        }
        if (milestoneRunning) await milestoneRunning;
      }
    };
    await Promise.all(Array.from({ length: o.clients }, (_, c) => client(c)));
    if (milestoneRunning) await milestoneRunning;

    // Everything accepted must reach the hub; wait for the outbox to empty.
    try {
      await waitDrained(agent!);
    } catch (error) {
      const state = await Promise.race([agent!.proc.exited, Promise.resolve("running")]);
      throw new Error(
        `${(error as Error).message}\nagent (${state}) output:\n${agent!.proc.lines.slice(-40).join("\n")}` +
          `\nhub output:\n${hub!.proc.lines.slice(-20).join("\n")}`,
      );
    }

    const records = await hubRecords(hub!, edge.id);
    const ids = new Set<string>();
    for (const r of records) {
      assert.ok(!ids.has(r.id), `record id ${r.id} stored twice`);
      ids.add(r.id);
    }
    const byDevice = sequencesByDevice(records);
    for (const [device, acc] of accepted) {
      const got = byDevice.get(device) ?? [];
      for (let i = 1; i < got.length; i++) {
        assert.ok(got[i] > got[i - 1], `${device}: ${got[i]} after ${got[i - 1]} (order or duplicate)`);
      }
      const gotSet = new Set(got);
      const missing = acc.filter((n) => !gotSet.has(n));
      assert.deepEqual(missing, [], `${device}: accepted messages missing at the hub`);
      const extra = got.filter((n) => !acc.includes(n) && !unanswered.get(device)!.has(n));
      assert.deepEqual(extra, [], `${device}: messages at the hub that were never sent`);
    }
    assert.equal(killed, o.killsAt.length, "every planned SIGKILL happened");
    return { accepted: acceptedCount, unanswered: unansweredCount, atHub: records.length };
  } finally {
    await agent?.stop("SIGKILL").catch(() => {});
    await hub?.stop().catch(() => {});
    removeDir(dir);
  }
}
