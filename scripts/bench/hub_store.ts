/**
 * The reference hub's store alone: `storeBatch()` of 500-record batches (~150-byte JSON payloads,
 * 100 devices, ids as the edge makes them), one transaction each, into a fresh database. Prints
 * wall and CPU time per record, medians of 5 rounds of 100,000 records. This is the cost that
 * bounds how fast a backlog can drain into `outpost hub` on the same machine (docs/performance.md).
 *
 *   deno run -A scripts/bench/hub_store.ts      (or: bun scripts/bench/hub_store.ts)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import type { WireRecord } from "../../src/proto/mod.ts";
import { createHubStore } from "../../src/hub/store.ts";
import { median } from "./procs.ts";

const ROUNDS = 5;
const BATCHES = 200;
const BATCH = 500;
const dir = mkdtempSync(join(tmpdir(), "outpost-hub-store-"));
const store = createHubStore(join(dir, "hub.db"));
await store.registerEdges(["bench"]);
const enc = new TextEncoder();
let seq = 0;

function batch(): WireRecord[] {
  const out: WireRecord[] = new Array(BATCH);
  for (let i = 0; i < BATCH; i++) {
    seq++;
    const device = `dev-${seq % 100}`;
    const t = Date.now();
    out[i] = {
      id: `5f1c2a9be044-${seq}`,
      device,
      kind: "telemetry",
      ts: t,
      topic: `devices/${device}/telemetry`,
      payload: enc.encode(
        `{"n":${seq},"t":${t},"temperature":${20 + (seq % 100) / 10},"humidity":0.45,"pressure":1013.2,` +
          `"battery":87,"status":"ok","temperature_f":${68 + (seq % 100) / 10}}`,
      ),
    };
  }
  return out;
}

const wall: number[] = [];
const user: number[] = [];
const system: number[] = [];
try {
  for (let round = 0; round < ROUNDS; round++) {
    const batches = Array.from({ length: BATCHES }, batch);
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (const b of batches) await store.storeBatch("bench", b, Date.now());
    const dt = performance.now() - t0;
    const c = process.cpuUsage(c0);
    const n = BATCHES * BATCH;
    wall.push(dt * 1000 / n);
    user.push(c.user / n);
    system.push(c.system / n);
  }
} finally {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
const f = (x: number) => x.toFixed(2);
console.log(
  `hub store, ${BATCH}-record batches: ${f(median(wall))} µs wall per record ` +
    `(${Math.round(1e6 / median(wall))} records/s), CPU ${f(median(user))} µs user + ` +
    `${f(median(system))} µs system per record (medians of ${ROUNDS} × ${BATCHES * BATCH})`,
);
