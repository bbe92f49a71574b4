/**
 * The web console's costs on a real agent: its assets' size gzipped, the time to first render of the
 * Overview in Chromium (navigation start to the hub link and outbox shown, median of 5 loads), and the
 * agent's RSS under a steady load (HTTP telemetry at `--rate` messages a second) without any console,
 * then with the console's Live page open and events streaming, each after `--seconds` of that load.
 *
 *   deno run -A scripts/bench/console.ts [--runner deno|bun|<binary>] [--rate 200] [--seconds 30]
 */
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import process from "node:process";
import puppeteer from "puppeteer-core";
import { ASSETS } from "../../src/console/mod.ts";
import {
  freePort,
  removeDir,
  startAgent,
  tempDir,
  TEST_TOKEN,
  writeAgentConfig,
} from "../../tests/helpers/procs.ts";

const args = Deno.args;
const opt = (name: string, fallback: string) => args.includes(name) ? args[args.indexOf(name) + 1] : fallback;
const runner = opt("--runner", "deno");
const rate = Number(opt("--rate", "200"));
const seconds = Number(opt("--seconds", "30"));

let raw = 0;
let gzipped = 0;
for (const asset of Object.values(ASSETS)) {
  raw += asset.body.length;
  gzipped += gzipSync(asset.body, { level: 9 }).length;
}
console.log(`assets: ${Object.keys(ASSETS).length} files, ${raw} bytes, ${gzipped} bytes gzipped`);

const dir = tempDir("outpost-bench-console-");
const configPath = writeAgentConfig(join(dir, "agent"), {
  edgeId: "gw-bench-console",
  dataDir: "data",
  api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
  mqtt: { broker: false },
});
const agent = await startAgent(configPath, { runner });
const base = `http://127.0.0.1:${agent.apiPort}`;
let loading = true;
const load = (async () => {
  let n = 0;
  const t0 = performance.now();
  while (loading) {
    const due = Math.floor((performance.now() - t0) / 1000 * rate);
    for (; n < due; n += 10) {
      const body = JSON.stringify(
        Array.from({ length: 10 }, (_, i) => ({ seq: n + i, temperature: 20 + (n % 50) / 10 })),
      );
      const res = await agent.api(`/api/v1/devices/sensor-${n % 20}/telemetry`, { method: "POST", body });
      await res.body?.cancel();
    }
    await new Promise((r) => setTimeout(r, 20));
  }
})();

async function rss(): Promise<number> {
  const text = await (await agent.api("/metrics")).text();
  return Number(/^outpost_process_resident_memory_bytes (\d+)/m.exec(text)?.[1]) / 2 ** 20;
}

const browser = await puppeteer.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [...(process.getuid?.() === 0 ? ["--no-sandbox"] : []), "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const without = await rss();

  const page = await browser.newPage();
  await page.goto(`${base}/ui/login`);
  await page.type("#token", TEST_TOKEN);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  const renders: number[] = [];
  for (let i = 0; i < 5; i++) {
    await page.goto(`${base}/ui/`);
    await page.waitForSelector("#outbox-depth");
    await page.waitForSelector("#hub-link dl");
    // performance.now() counts from the navigation's start.
    renders.push(await page.evaluate(() => performance.now()) as number);
  }
  renders.sort((a, b) => a - b);
  await page.goto(`${base}/ui/live`);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const withConsole = await rss();
  console.log(
    `time to first render of the Overview: median ${renders[2].toFixed(0)} ms (5 loads: ${
      renders.map((r) => r.toFixed(0)).join(", ")
    })`,
  );
  console.log(
    `agent RSS at ${rate} msg/s (${runner}): ${without.toFixed(1)} MiB without a console, ${
      withConsole.toFixed(1)
    } MiB with the Live page open and events streaming`,
  );
} finally {
  loading = false;
  await load;
  await browser.close();
  await agent.stop();
  removeDir(dir);
}
