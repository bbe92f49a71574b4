/**
 * `runtimes`: the agent as the Node bundle (`dist/outpost.mjs` run by `node`, the way onto armv7
 * gateways) against the Bun binary, in the same run on the same config and hub: start-up from
 * spawning the process to the first 200 from `GET /healthz`, and RSS after 3 s idle with the hub
 * connected, alternating the two (medians of 5 each; 2 with --quick). Also the sizes of the bundle and the armv7
 * archive (built here when missing or older than src/).
 */
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { outpostCommand, ROOT, type Runner, startProcess } from "../../tests/helpers/procs.ts";
import { median, newestMtime, rssMb } from "./procs.ts";
import { BENCH_RULES, type BenchContext, startEdge } from "./harness.ts";

function bundleFiles(newerThan: number): { bundle: string; archive: string } {
  const bundle = join(ROOT, "dist/outpost.mjs");
  const archive = join(ROOT, "dist/outpost-linux-armv7.tar.gz");
  for (const [file, target] of [[bundle, "node"], [archive, "linux-armv7"]]) {
    if (existsSync(file) && statSync(file).mtimeMs >= newerThan) continue;
    const built = spawnSync("npm", ["run", "build", "--", "--target", target], {
      cwd: ROOT,
      stdio: "inherit",
    });
    if (built.status !== 0) {
      throw new Error(`npm run build -- --target ${target} failed (exit ${built.status})`);
    }
  }
  return { bundle, archive };
}

async function startOnce(runner: Runner, configPath: string, healthz: string) {
  const t0 = performance.now();
  const proc = startProcess([...outpostCommand(runner), "run", "--config", configPath]);
  try {
    let ms = 0;
    for (;;) {
      const res = await fetch(healthz).catch(() => undefined);
      await res?.body?.cancel();
      if (res?.status === 200) {
        ms = performance.now() - t0;
        break;
      }
      if (performance.now() - t0 > 30_000) throw new Error(`${runner}: no /healthz within 30 s`);
      await new Promise((r) => setTimeout(r, 2));
    }
    await proc.waitForEvent("hub.connected", 10_000).catch(() => {});
    await new Promise((r) => setTimeout(r, 3000));
    return { ms, rss: rssMb(proc.pid) };
  } finally {
    await proc.kill("SIGTERM");
  }
}

export async function runtimes(ctx: BenchContext): Promise<void> {
  const { bundle, archive } = bundleFiles(
    Math.max(newestMtime(join(ROOT, "src")), newestMtime(join(ROOT, "migrations"))),
  );
  const starts = ctx.quick ? 2 : 5;
  const edge = await startEdge({ runner: ctx.runner, rules: BENCH_RULES });
  const figures = {
    node: { ms: [] as number[], rss: [] as number[] },
    bun: { ms: [] as number[], rss: [] as number[] },
  };
  try {
    await edge.agent.stop("SIGTERM");
    const healthz = `http://127.0.0.1:${edge.apiPort}/healthz`;
    for (let i = 1; i <= starts; i++) {
      for (const [name, runner] of [["bun", ctx.runner], ["node", bundle]] as const) {
        const r = await startOnce(runner, edge.agent.configPath, healthz);
        figures[name].ms.push(r.ms);
        figures[name].rss.push(r.rss.rss);
        ctx.log(
          `${name} start ${i}: /healthz after ${r.ms.toFixed(0)} ms, RSS after 3 s idle ${
            r.rss.rss.toFixed(1)
          } MB ` +
            `(anonymous ${r.rss.anon.toFixed(1)} MB)`,
        );
      }
    }
  } finally {
    await edge.stop();
  }
  const s = ctx.summary;
  s.node_bundle_mb = Number((statSync(bundle).size / 1048576).toFixed(2));
  s.armv7_archive_mb = Number((statSync(archive).size / 1048576).toFixed(2));
  s.node_startup_ms = Math.round(median(figures.node.ms));
  s.node_idle_rss_mb = Number(median(figures.node.rss).toFixed(1));
  s.bun_startup_ms = Math.round(median(figures.bun.ms));
  s.bun_idle_rss_mb = Number(median(figures.bun.rss).toFixed(1));
  ctx.log(
    `runtimes: node bundle ${s.node_bundle_mb} MB (armv7 archive ${s.armv7_archive_mb} MB): start-up ` +
      `${s.node_startup_ms} ms, idle RSS ${s.node_idle_rss_mb} MB; Bun binary: ${s.bun_startup_ms} ms, ` +
      `${s.bun_idle_rss_mb} MB (medians of ${starts}, alternating)`,
  );
}
