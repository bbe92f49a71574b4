/**
 * `idle`: the agent as deployed (embedded broker, the 5-rule document, hub connected), started 5
 * times on the same data directory. Figures: start-up time from spawning the process to the
 * first 200 from `GET /healthz` (polled every 2 ms), and RSS 5 s after start-up without traffic
 * (medians); the last start also stays up for 60 s, to show where idle RSS settles once timers,
 * the hub link and the first collections have read back the code they need (docs/memory.md), with
 * a reading at 30 s on the way. Each reading is logged split into anonymous memory and mapped
 * files, with the proportional set size (shared pages divided between the processes mapping them).
 *
 * The 60 s reading costs one start staying up 55 s longer, so `--quick` keeps it: the target is
 * the larger of the 5 s and 60 s figures.
 *
 * The agent extracts libSQL's addon into a BUN_TMPDIR of its own, as the hub does (harness.ts):
 * every outpost binary built with the same libSQL extracts it to the same file in /tmp, and pages
 * that another outpost process on this machine keeps resident would count in this agent's RSS.
 */
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { outpostCommand, startProcess } from "../../tests/helpers/procs.ts";
import { median, rssMb } from "./procs.ts";
import { BENCH_RULES, type BenchContext, startEdge } from "./harness.ts";

const STARTS = 5;
const FIRST_MS = 5_000;
const MIDDLE_MS = 30_000;
const LAST_MS = 60_000;

/** Proportional set size of a process in MB (`Pss` in /proc/<pid>/smaps_rollup). */
function pssMb(pid: number): number {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  return Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0) / 1024;
}

function describe(pid: number): { rss: number; anon: number; text: string } {
  const m = rssMb(pid);
  return {
    rss: m.rss,
    anon: m.anon,
    text:
      `${m.rss.toFixed(1)} MB (anonymous ${m.anon.toFixed(1)} MB, mapped files ${m.file.toFixed(1)} MB, ` +
      `PSS ${pssMb(pid).toFixed(1)} MB)`,
  };
}

export async function idle(ctx: BenchContext): Promise<void> {
  const edge = await startEdge({ runner: ctx.runner, rules: BENCH_RULES });
  const startups: number[] = [];
  const rss: number[] = [];
  const anon: number[] = [];
  let at30: number | undefined;
  let at60: number | undefined;
  try {
    // The first start (by startEdge) created and migrated the database; these are restarts.
    await edge.agent.stop("SIGTERM");
    const healthz = `http://127.0.0.1:${edge.apiPort}/healthz`;
    const tmp = join(edge.dir, "agent", "tmp");
    mkdirSync(tmp, { recursive: true });
    for (let i = 1; i <= STARTS; i++) {
      const t0 = performance.now();
      const proc = startProcess([...outpostCommand(ctx.runner), "run", "--config", edge.agent.configPath], {
        env: { BUN_TMPDIR: tmp },
      });
      const sleepUntil = (ms: number) =>
        new Promise((r) => setTimeout(r, Math.max(0, ms - (performance.now() - t0))));
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
        await sleepUntil(FIRST_MS);
        const m = describe(proc.pid);
        startups.push(ms);
        rss.push(m.rss);
        anon.push(m.anon);
        ctx.log(`idle start ${i}: /healthz after ${ms.toFixed(0)} ms, RSS after 5 s ${m.text}`);
        if (i === STARTS) {
          await sleepUntil(MIDDLE_MS);
          const m30 = describe(proc.pid);
          at30 = m30.rss;
          ctx.log(`idle start ${i}: RSS after 30 s ${m30.text}`);
          await sleepUntil(LAST_MS);
          const m60 = describe(proc.pid);
          at60 = m60.rss;
          ctx.log(`idle start ${i}: RSS after 60 s ${m60.text}`);
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
  s.idle_rss_5s_mb = Number(median(rss).toFixed(1));
  // The key earlier runs reported (then after 3 s): now the 5 s median.
  s.idle_rss_mb = s.idle_rss_5s_mb;
  s.idle_rss_anon_mb = Number(median(anon).toFixed(1));
  if (at30 !== undefined) s.idle_rss_30s_mb = Number(at30.toFixed(1));
  if (at60 !== undefined) s.idle_rss_60s_mb = Number(at60.toFixed(1));
  ctx.log(
    `idle: start-up to /healthz ${s.startup_ms} ms, idle RSS after 5 s ${s.idle_rss_5s_mb} MB ` +
      `(medians of ${STARTS}), after 60 s ${s.idle_rss_60s_mb} MB`,
  );
}
