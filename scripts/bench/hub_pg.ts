/**
 * `hub-pg`: records from several edges stored by the hub, two ways in the same run:
 * - one `outpost hub` on its libSQL file;
 * - two `outpost hub` replicas on one PostgreSQL (started here with initdb, PostgreSQL's default
 *   durability: fsync on), half of the edges on each.
 * The edges are a load generator speaking the hub link directly (grpc_edges.ts: batches of 500,
 * 16 in flight, like the agent's uplink), so the figures are the hubs' and the database's.
 * Figures: records/s until the last batch is acknowledged, and CPU seconds per 100,000 records of
 * the hubs and of PostgreSQL (all its processes).
 */
import { join } from "node:path";
import { startPostgres } from "../../tests/helpers/postgres.ts";
import { cpuSeconds, median } from "./procs.ts";
import { type BenchContext, freePort, type HubHandle, removeDir, startTool, tempDir } from "./harness.ts";
import { startHub } from "../../tests/helpers/procs.ts";

const EDGES = 4;

const edges = Array.from({ length: EDGES }, (_, i) => ({
  id: `bench-${i}`,
  routingKey: `rk-bench-${i}`,
  secret: `secret-bench-${i}-0123456789`,
}));

interface Figures {
  recordsPerS: number;
  hubCpuPer100k: number;
  pgCpuPer100k?: number;
}

async function load(ctx: BenchContext, urls: string[], perEdge: number): Promise<number> {
  const tool = startTool(ctx, "grpc_edges.ts", {
    edges: edges.map((e, i) => ({ ...e, url: urls[i % urls.length] })),
    records: perEdge,
    batch: 500,
    window: 16,
  });
  const done = await tool.waitForEvent("edges.done", 900_000);
  return Number(done.acked) / Number(done.seconds);
}

async function libsqlRun(ctx: BenchContext, perEdge: number): Promise<Figures> {
  const dir = tempDir("outpost-bench-hub-");
  let hub: HubHandle | undefined;
  try {
    hub = await startHub({ dir, edges, runner: ctx.runner, grpcPort: await freePort() });
    const c0 = cpuSeconds(hub.proc.pid);
    const rate = await load(ctx, [`grpc://127.0.0.1:${hub.grpcPort}`], perEdge);
    const total = perEdge * EDGES;
    return { recordsPerS: rate, hubCpuPer100k: (cpuSeconds(hub.proc.pid) - c0) * 100_000 / total };
  } finally {
    await hub?.stop();
    removeDir(dir);
  }
}

async function pgRun(ctx: BenchContext, perEdge: number): Promise<Figures> {
  const dir = tempDir("outpost-bench-hubpg-");
  const pg = await startPostgres({ durable: true });
  const hubs: HubHandle[] = [];
  try {
    for (const name of ["a", "b"]) {
      hubs.push(
        await startHub({
          dir: join(dir, name),
          edges,
          runner: ctx.runner,
          config: { store: { url: pg.url } },
        }),
      );
    }
    const hubCpu = () => hubs.reduce((sum, h) => sum + cpuSeconds(h.proc.pid), 0);
    const c0 = hubCpu();
    const p0 = pg.cpuSeconds();
    const rate = await load(ctx, hubs.map((h) => `grpc://127.0.0.1:${h.grpcPort}`), perEdge);
    const total = perEdge * EDGES;
    return {
      recordsPerS: rate,
      hubCpuPer100k: (hubCpu() - c0) * 100_000 / total,
      pgCpuPer100k: (pg.cpuSeconds() - p0) * 100_000 / total,
    };
  } finally {
    for (const h of hubs) await h.stop();
    await pg.remove();
    removeDir(dir);
  }
}

export async function hubPg(ctx: BenchContext): Promise<void> {
  const perEdge = ctx.quick ? 25_000 : 100_000;
  const libsql: Figures[] = [];
  const pg: Figures[] = [];
  for (let run = 0; run < ctx.runs; run++) {
    libsql.push(await libsqlRun(ctx, perEdge));
    ctx.log(`   libSQL hub: ${libsql.at(-1)!.recordsPerS.toFixed(0)} records/s`);
    pg.push(await pgRun(ctx, perEdge));
    ctx.log(`   2 replicas on PostgreSQL: ${pg.at(-1)!.recordsPerS.toFixed(0)} records/s`);
  }
  const m = (xs: Figures[], key: keyof Figures) => Number(median(xs.map((x) => x[key] ?? 0)).toFixed(2));
  Object.assign(ctx.summary, {
    hub_pg_edges: EDGES,
    hub_pg_records: perEdge * EDGES,
    hub_libsql_records_per_s: Math.round(m(libsql, "recordsPerS")),
    hub_libsql_cpu_s_per_100k: m(libsql, "hubCpuPer100k"),
    hub_pg_records_per_s: Math.round(m(pg, "recordsPerS")),
    hub_pg_hubs_cpu_s_per_100k: m(pg, "hubCpuPer100k"),
    hub_pg_postgres_cpu_s_per_100k: m(pg, "pgCpuPer100k"),
  });
  ctx.log(
    `   median: libSQL ${ctx.summary.hub_libsql_records_per_s} records/s (hub ${ctx.summary.hub_libsql_cpu_s_per_100k} ` +
      `CPU s/100k); PostgreSQL, 2 replicas ${ctx.summary.hub_pg_records_per_s} records/s (hubs ` +
      `${ctx.summary.hub_pg_hubs_cpu_s_per_100k}, PostgreSQL ${ctx.summary.hub_pg_postgres_cpu_s_per_100k} CPU s/100k)`,
  );
}
