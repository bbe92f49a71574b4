/**
 * `idle`: the agent as deployed (embedded broker, the 5-rule document, hub connected), started 5
 * times on the same data directory. Figures: start-up time from spawning the process to the
 * first 200 from `GET /healthz` (polled every 2 ms), and RSS after 3 s without traffic (medians);
 * the last start also stays up for 30 s, to show where idle RSS settles once timers, the hub link
 * and the first collections have read back the code they need (docs/memory.md).
 */
import { outpostCommand, startProcess } from "../../tests/helpers/procs.ts";
import { median, rssMb } from "./procs.ts";
import { BENCH_RULES, type BenchContext, startEdge } from "./harness.ts";

const STARTS = 5;
const SETTLE_MS = 30_000;

export async function idle(ctx: BenchContext): Promise<void> {
  const edge = await startEdge({ runner: ctx.runner, rules: BENCH_RULES });
  const startups: number[] = [];
  const rss: number[] = [];
  const anon: number[] = [];
  let settled: ReturnType<typeof rssMb> | undefined;
  try {
    // The first start (by startEdge) created and migrated the database; these are restarts.
    await edge.agent.stop("SIGTERM");
    const healthz = `http://127.0.0.1:${edge.apiPort}/healthz`;
    for (let i = 1; i <= STARTS; i++) {
      const t0 = performance.now();
      const proc = startProcess([...outpostCommand(ctx.runner), "run", "--config", edge.agent.configPath]);
      let ms = 0;
      try {
        for (;;) {
          const res = await fetch(healthz).catch(() => undefined);
          await res?.body?.cancel();
          if (res?.status === 200) {
            ms = performance.now() - t0;
            break;
          }
          if (performance.now() - t0 > 30_000) {
            throw new Error("the agent did not answer /healthz within 30 s");
          }
          await new Promise((r) => setTimeout(r, 2));
        }
        await proc.waitForEvent("hub.connected", 10_000).catch(() => {});
        await new Promise((r) => setTimeout(r, 3000));
        const m = rssMb(proc.pid);
        startups.push(ms);
        rss.push(m.rss);
        anon.push(m.anon);
        ctx.log(
          `idle start ${i}: /healthz after ${ms.toFixed(0)} ms, RSS after 3 s idle ${m.rss.toFixed(1)} MB ` +
            `(anonymous ${m.anon.toFixed(1)} MB, mapped files ${m.file.toFixed(1)} MB)`,
        );
        if (i === STARTS) {
          await new Promise((r) => setTimeout(r, SETTLE_MS - 3000));
          settled = rssMb(proc.pid);
          ctx.log(
            `idle start ${i}: RSS after ${SETTLE_MS / 1000} s idle ${settled.rss.toFixed(1)} MB ` +
              `(anonymous ${settled.anon.toFixed(1)} MB, mapped files ${settled.file.toFixed(1)} MB)`,
          );
        }
      } finally {
        await proc.kill("SIGTERM");
      }
    }
  } finally {
    await edge.stop();
  }
  const s = ctx.summary;
  s.startup_ms = Math.round(median(startups));
  s.idle_rss_mb = Number(median(rss).toFixed(1));
  s.idle_rss_anon_mb = Number(median(anon).toFixed(1));
  if (settled) s.idle_rss_30s_mb = Number(settled.rss.toFixed(1));
  ctx.log(
    `idle: start-up to /healthz ${s.startup_ms} ms, idle RSS ${s.idle_rss_mb} MB (medians of ${STARTS})`,
  );
}
