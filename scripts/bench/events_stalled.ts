/**
 * Ingest throughput over HTTP with live event streams open: no stream, two reading streams, and
 * two reading streams plus one that never reads. Each run posts 20,000 messages (1 KB payloads,
 * batches of 100, 4 posts in flight) to a fresh agent started from source.
 *
 *   deno run -A scripts/bench/events_stalled.ts [--runner deno|bun] [--rounds 3]
 */
import { join } from "node:path";
import {
  freePort,
  removeDir,
  startAgent,
  tempDir,
  TEST_TOKEN,
  writeAgentConfig,
} from "../../tests/helpers/procs.ts";

const args = Deno.args;
const runner = args.includes("--runner") ? args[args.indexOf("--runner") + 1] : "deno";
const rounds = args.includes("--rounds") ? Number(args[args.indexOf("--rounds") + 1]) : 3;
const TOTAL = 20_000;
const BATCH = 100;
const PAD = "p".repeat(1000);

async function drain(res: Response, stop: Promise<void>): Promise<void> {
  const reader = res.body!.getReader();
  while (true) {
    const r = await Promise.race([reader.read(), stop.then(() => undefined)]);
    if (r === undefined || r.done) break;
  }
  await reader.cancel().catch(() => {});
}

async function run(mode: "none" | "readers" | "readers+stalled"): Promise<number> {
  const dir = tempDir("outpost-bench-events-");
  const configPath = writeAgentConfig(join(dir, "agent"), {
    edgeId: "gw-bench-events",
    dataDir: "data",
    api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
    mqtt: { broker: false },
  });
  const agent = await startAgent(configPath, { runner });
  let finish!: () => void;
  const stop = new Promise<void>((r) => finish = r);
  const readers: Promise<void>[] = [];
  let stalled: Deno.TcpConn | undefined;
  try {
    const url = `http://127.0.0.1:${agent.apiPort}/api/v1/events`;
    const headers = { authorization: `Bearer ${TEST_TOKEN}` };
    if (mode !== "none") {
      for (let i = 0; i < 2; i++) readers.push(drain(await fetch(url, { headers }), stop));
    }
    if (mode === "readers+stalled") {
      stalled = await Deno.connect({ hostname: "127.0.0.1", port: agent.apiPort });
      await stalled.write(new TextEncoder().encode(
        `GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_TOKEN}\r\n\r\n`,
      ));
      await new Promise((r) => setTimeout(r, 200));
    }
    const bodies = Array.from(
      { length: TOTAL / BATCH },
      (_, n) => JSON.stringify(Array.from({ length: BATCH }, (_, i) => ({ seq: n * BATCH + i, pad: PAD }))),
    );
    let next = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next < bodies.length) {
        const body = bodies[next++];
        const res = await agent.api("/api/v1/devices/bench/telemetry", { method: "POST", body });
        await res.body?.cancel();
        if (res.status !== 202) throw new Error(`status ${res.status}`);
      }
    }));
    return TOTAL / ((performance.now() - t0) / 1000);
  } finally {
    finish();
    await Promise.all(readers);
    stalled?.close();
    await agent.stop();
    removeDir(dir);
  }
}

const results: Record<string, number[]> = { none: [], readers: [], "readers+stalled": [] };
for (let r = 0; r < rounds; r++) {
  for (const mode of ["none", "readers", "readers+stalled"] as const) results[mode].push(await run(mode));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const [mode, xs] of Object.entries(results)) {
  console.log(
    `${mode.padEnd(16)} median ${Math.round(median(xs))} msg/s  (${xs.map(Math.round).join(", ")})`,
  );
}
