/**
 * The web consoles in a real browser (Debian's chromium, driven by puppeteer-core) against a real
 * agent, a real hub and devices played by mosquitto_pub / mosquitto_sub:
 * - sign in with the token, and a wrong token refused;
 * - a device that publishes appears on Devices, and its value on Live;
 * - a rule with an error is shown at its path and not applied; a valid rule's dry run shows its
 *   trace; applying it changes what reaches the hub;
 * - a command sent from a device page is answered by a scripted device, and the answer shows;
 * - the hub stopped: Overview shows the link down with the reason and the outbox depth rising;
 *   the hub restarted: the depth falls back to 0;
 * - the hub's console lists the edge as connected and shows its records; a command sent from it is
 *   answered by a scripted device; rules pushed from it reach the edge;
 * - keyboard: the skip link, then the navigation; at phone width nothing is wider than the screen.
 * Screenshots go to docs/console/ (docs/console.md shows them). Figures (time to first render,
 * agent RSS with the console open) are printed, not asserted.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import {
  freePort,
  hubRecords,
  removeDir,
  ROOT,
  startAgent,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";
import { pub, requireTools, subscribe } from "../integration/mqtt_helpers.ts";

/**
 * The agent and hub run under Bun, the runtime of the shipped binary, unless OUTPOST_TEST_RUNNER says
 * otherwise: under Deno 2.9 the agent process sometimes dies (SIGSEGV or SIGABRT) when the hub goes
 * away while a long-lived HTTP answer is open (an event stream here; a command long poll does it too,
 * before the console existed).
 */
const RUNNER = Deno.env.get("OUTPOST_TEST_RUNNER") ?? "bun";
const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));
const SHOTS = join(ROOT, "docs/console");
const HUB_TOKEN = "hub-console-token-0123456789";

async function launch(): Promise<Browser> {
  if (CHROMIUM === undefined) throw new Error("chromium not found: run `sh scripts/setup.sh`");
  return await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      ...(process.getuid?.() === 0 ? ["--no-sandbox"] : []),
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--no-first-run",
    ],
  });
}

async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`) as `${string}.png`, fullPage: true });
}

/** The text of the first element matching `selector` once `predicate(text)` holds (polled). */
async function waitText(
  page: Page,
  selector: string,
  predicate: (t: string) => boolean,
  timeout = 15_000,
): Promise<string> {
  const deadline = Date.now() + timeout;
  let last = "(no element)";
  while (Date.now() < deadline) {
    const text = await page.$eval(
      selector,
      (el) =>
        el instanceof HTMLTextAreaElement || el instanceof HTMLInputElement ? el.value : el.textContent ?? "",
    ).catch(() => undefined);
    if (text !== undefined) {
      last = text;
      if (predicate(text)) return text;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Timed out waiting for ${selector}; its text: ${last.slice(0, 300)}`);
}

async function setTextarea(page: Page, selector: string, value: string): Promise<void> {
  await page.$eval(selector, (el, v) => {
    (el as HTMLTextAreaElement).value = v as string;
    el.dispatchEvent(new Event("input", { bubbles: true }));
  }, value);
}

async function rss(api: (p: string) => Promise<Response>): Promise<number> {
  const text = await (await api("/metrics")).text();
  return Number(/^outpost_process_resident_memory_bytes (\d+)/m.exec(text)?.[1]);
}

Deno.test({
  name: "the agent's and the hub's consoles in Chromium against a real agent, hub and MQTT devices",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    requireTools();
    const dir = tempDir("outpost-console-");
    const edge = { id: "gw-console", routingKey: "rk-console", secret: "secret-console-0123" };
    const hubDir = join(dir, "hub");
    let hub = await startHub({ dir: hubDir, edges: [edge], token: HUB_TOKEN, runner: RUNNER });
    const mqttPort = await freePort();
    const configPath = writeAgentConfig(join(dir, "agent"), {
      edgeId: edge.id,
      dataDir: "data",
      api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
      mqtt: { broker: { listen: `127.0.0.1:${mqttPort}`, auth: "none" } },
      hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
    });
    const agent = await startAgent(configPath, { runner: RUNNER });
    await agent.proc.waitForEvent("mqtt.broker.started");
    const base = `http://127.0.0.1:${agent.apiPort}`;
    const browser = await launch();
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 800 });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => {
      if (m.type() === "error" && !/Failed to load resource|EventSource|ERR_/.test(m.text())) {
        errors.push(m.text());
      }
    });
    const figures: string[] = [];
    let failed = false;
    try {
      await waitFor(
        async () => (await (await agent.api("/api/v1/status")).json()).hub.connected,
        15_000,
        "hub link",
      );
      const rssClosed = await rss(agent.api);

      failed ||= !await t.step(
        "sign in: a wrong token is refused, the right one opens the overview",
        async () => {
          const res = await page.goto(`${base}/`);
          assert.equal(new URL(page.url()).pathname, "/ui/login");
          assert.equal(res?.headers()["content-security-policy"]?.includes("default-src 'self'"), true);
          await page.type("#token", "not-the-token");
          await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
          assert.match(await waitText(page, "#login-error", (t) => t.length > 0), /Wrong token/);
          await page.type("#token", TEST_TOKEN);
          const started = performance.now();
          await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
          assert.equal(new URL(page.url()).pathname, "/ui/");
          await waitText(page, "#hub-state", (t) => t.startsWith("Up"));
          figures.push(
            `time to first render of the overview (sign-in submit → hub link shown): ${
              Math.round(performance.now() - started)
            } ms`,
          );
          const cookies = await page.cookies();
          const session = cookies.find((c) => c.name === "outpost_session")!;
          assert.equal(session.httpOnly, true);
          assert.equal(session.sameSite, "Strict");
          assert.ok(!(await page.content()).includes(TEST_TOKEN), "the token is in no page");
        },
      );

      failed ||= !await t.step("a device that publishes appears on Devices, its value on Live", async () => {
        // By keyboard: the skip link first, then the navigation.
        await page.keyboard.press("Tab");
        assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Skip to content");
        await page.keyboard.press("Tab");
        await page.keyboard.press("Tab");
        assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Devices");
        await page.keyboard.press("Enter");
        await page.waitForSelector("#devices");
        assert.equal(new URL(page.url()).pathname, "/ui/devices");
        const sent = performance.now();
        const r = await pub(mqttPort, "devices/boiler-1/telemetry", '{"temperature": 21.5}', ["-q", "1"]);
        assert.equal(r.code, 0, r.stderr);
        await waitText(page, "#devices", (t) => t.includes("boiler-1"), 10_000);
        figures.push(
          `device on the Devices page after its first publish: ${Math.round(performance.now() - sent)} ms`,
        );
        await shot(page, "devices");
        await page.click("nav a[href='/ui/live']");
        await page.waitForSelector("#live-list");
        await pub(mqttPort, "devices/boiler-1/telemetry", '{"temperature": 23.25}', ["-q", "1"]);
        await waitText(page, "#live-list", (t) => t.includes("23.25"));
        await page.type("#live-device", "pump-*");
        await waitText(page, "#live-list", (t) => !t.includes("boiler-1"));
        await page.$eval("#live-device", (el) => {
          (el as HTMLInputElement).value = "";
          el.dispatchEvent(new Event("input"));
        });
        await waitText(page, "#live-list", (t) => t.includes("23.25"));
        await shot(page, "live");
      });

      failed ||= !await t.step(
        "rules: an error shows at its path and is not applied; dry run; apply changes the hub's data",
        async () => {
          const before = await (await agent.api("/api/v1/rules")).json();
          await page.goto(`${base}/ui/rules`);
          await waitText(page, "#rules-doc", (t) => t.includes("version"));
          await setTextarea(
            page,
            "#rules-doc",
            JSON.stringify({ version: 1, rules: [{ id: "bad", then: [{ sett: { x: 1 } }] }] }, null, 2),
          );
          await page.waitForSelector("#rules-errors li[data-path='/rules/0/then/0']");
          assert.equal(await page.$eval("#rules-apply", (b) => (b as HTMLButtonElement).disabled), true);
          await shot(page, "rules-error");
          // The server refuses it too, and nothing changes.
          const refused = await agent.api("/api/v1/rules", {
            method: "PUT",
            body: JSON.stringify({ version: 1, rules: [{ id: "bad", then: [{ sett: { x: 1 } }] }] }),
          });
          assert.equal(refused.status, 400);
          assert.equal((await (await agent.api("/api/v1/rules")).json()).version, before.version);

          const rule = {
            version: 1,
            rules: [{
              id: "to-fahrenheit",
              match: { device: "boiler-*" },
              if: { "!=": [{ var: "temperature" }, null] },
              then: [{ set: { fahrenheit: { "+": [{ "*": [{ var: "temperature" }, 1.8] }, 32] } } }],
            }],
          };
          await setTextarea(page, "#rules-doc", JSON.stringify(rule, null, 2));
          await waitText(page, "#rules-errors", (t) => t === "");
          await setTextarea(
            page,
            "#rules-sample",
            JSON.stringify({ device: "boiler-1", kind: "telemetry", payload: { temperature: 100 } }),
          );
          await page.click("#rules-test");
          await waitText(page, "#dry-trace", (t) => t.includes("to-fahrenheit") && t.includes("yes"));
          assert.match(
            await waitText(page, "#dry-outputs", (t) => t.includes("fahrenheit")),
            /"fahrenheit": 212/,
          );
          await shot(page, "rules-dry-run");
          await page.click("#rules-apply");
          await waitText(page, "[role=status]", (t) => t.startsWith("Applied"));
          await pub(mqttPort, "devices/boiler-1/telemetry", '{"temperature": 50}', ["-q", "1"]);
          await waitFor(
            async () => {
              const records = await hubRecords(hub, edge.id);
              return records.some((r) => r.payload.temperature === 50 && r.payload.fahrenheit === 122);
            },
            15_000,
            "the rule's output at the hub",
          );
          const records = await hubRecords(hub, edge.id);
          assert.ok(
            records.every((r) => r.payload.temperature !== 21.5 || r.payload.fahrenheit === undefined),
          );
        },
      );

      failed ||= !await t.step("a command from a device page is answered by a scripted device", async () => {
        const valve = subscribe(mqttPort, ["devices/valve-1/commands/+"], ["-q", "1", "-v", "-i", "valve-1"]);
        try {
          await valve.subscribed;
          await pub(mqttPort, "devices/valve-1/telemetry", '{"position": 0}', ["-q", "1"]);
          await page.goto(`${base}/ui/devices/valve-1`);
          await page.waitForSelector("#cmd-form");
          await page.$eval("#cmd-method", (el) => (el as HTMLInputElement).value = "");
          await page.type("#cmd-method", "open");
          await setTextarea(page, "#cmd-params", '{"to": 50}');
          await page.click("#cmd-form button[type=submit]");
          const line = await waitFor(
            () => valve.messages().find((l) => l.startsWith("devices/valve-1/commands/")),
            15_000,
            "the command at the device",
          ) as string;
          const body = JSON.parse(line.slice(line.indexOf(" ") + 1));
          assert.equal(body.method, "open");
          assert.deepEqual(body.params, { to: 50 });
          const answered = await pub(
            mqttPort,
            `devices/valve-1/commands/${body.id}/response`,
            '{"opened": true, "position": 50}',
          );
          assert.equal(answered.code, 0, answered.stderr);
          await waitText(page, "#cmd-result", (t) => !t.startsWith("Sending") && !t.startsWith("Waiting"));
          assert.equal(await waitText(page, "#cmd-status", (t) => t.length > 0), "ok");
          assert.match(await waitText(page, "#cmd-payload", (t) => t.length > 0), /"opened":true/);
          await shot(page, "device");
        } finally {
          await valve.stop();
        }
      });

      failed ||= !await t.step(
        "hub stopped: link down with the reason, depth rising; hub back: depth 0",
        async () => {
          await page.goto(`${base}/ui/`);
          await waitText(page, "#hub-state", (t) => t.startsWith("Up"));
          const rssOpen = await rss(agent.api);
          figures.push(
            `agent RSS: ${(rssClosed / 2 ** 20).toFixed(1)} MiB before any console, ${
              (rssOpen / 2 ** 20).toFixed(1)
            } MiB with the console open and events streaming`,
          );
          await hub.stop();
          const down = await waitText(page, "#hub-state", (t) => t.startsWith("Down: "), 30_000);
          assert.match(down, /^Down: .+/, "the reason is shown");
          for (let i = 0; i < 5; i++) {
            await pub(mqttPort, "devices/boiler-1/telemetry", `{"temperature": ${60 + i}}`, ["-q", "1"]);
          }
          await waitText(page, "#outbox-depth", (t) => Number(t) >= 5);
          await shot(page, "overview-hub-down");
          hub = await startHub({
            dir: hubDir,
            edges: [edge],
            token: HUB_TOKEN,
            grpcPort: hub.grpcPort,
            apiPort: hub.apiPort,
          });
          await waitText(page, "#hub-state", (t) => t.startsWith("Up"), 60_000);
          await waitText(page, "#outbox-depth", (t) => t === "0", 60_000);
          await shot(page, "overview");
          await page.setViewport({ width: 390, height: 844, isMobile: true });
          assert.ok(
            await page.evaluate(() => document.documentElement.scrollWidth <= 390),
            "nothing wider than a phone's screen",
          );
          await shot(page, "overview-phone");
          await page.setViewport({ width: 1100, height: 800 });
        },
      );

      failed ||= !await t.step(
        "Outbox, Commands, Update and Logs load from their deep links and show their data",
        async () => {
          await page.goto(`${base}/ui/outbox`);
          await waitText(page, "#outbox-records", (t) => t.includes("records waiting"));
          await page.waitForSelector("#deadletters table");
          await page.goto(`${base}/ui/commands`);
          await waitText(
            page,
            "#commands",
            (t) => t.includes("valve-1") && t.includes("open") && t.includes("ok"),
          );
          await shot(page, "commands");
          await page.goto(`${base}/ui/update`);
          await waitText(page, "#update-state", (t) => t.includes("idle"));
          await page.waitForSelector("#update-progress");
          await page.goto(`${base}/ui/logs`);
          // The hub was stopped a moment ago: its warning is among the recent lines.
          await waitText(page, "#log-list", (t) => t.includes("hub.disconnected"));
          await shot(page, "logs");
        },
      );

      failed ||= !await t.step(
        "the hub's console lists the edge as connected, shows its records, sends a command and pushes rules",
        async () => {
          const hubPage = await browser.newPage();
          await hubPage.setViewport({ width: 1100, height: 800 });
          const hubBase = `http://127.0.0.1:${hub.apiPort}`;
          await hubPage.goto(`${hubBase}/ui/`);
          assert.equal(new URL(hubPage.url()).pathname, "/ui/login");
          await hubPage.type("#token", HUB_TOKEN);
          await Promise.all([hubPage.waitForNavigation(), hubPage.click("button[type=submit]")]);
          await waitText(hubPage, "#edges-table", (t) => t.includes(edge.id) && t.includes("connected"));
          assert.ok(!(await hubPage.$eval("#edges-table", (e) => e.textContent!)).includes("disconnected"));
          await shot(hubPage, "hub-edges");
          await hubPage.click(`a[href='/ui/edges/${edge.id}']`);
          await waitText(
            hubPage,
            "#records-table",
            (t) => t.includes("boiler-1") && t.includes("fahrenheit"),
          );
          await waitText(hubPage, "#edge-link", (t) => t === "connected");
          await shot(hubPage, "hub-edge");

          // A command from the hub's console, answered by a scripted device.
          const valve = subscribe(mqttPort, ["devices/valve-1/commands/+"], [
            "-q",
            "1",
            "-v",
            "-i",
            "valve-1",
          ]);
          try {
            await valve.subscribed;
            await hubPage.type("#hc-device", "valve-1");
            await hubPage.type("#hc-method", "close");
            await hubPage.click("form:has(#hc-device) button[type=submit]");
            const line = await waitFor(
              () => valve.messages().find((l) => l.startsWith("devices/valve-1/commands/")),
              15_000,
              "the hub's command at the device",
            ) as string;
            const body = JSON.parse(line.slice(line.indexOf(" ") + 1));
            assert.equal(body.method, "close");
            await pub(mqttPort, `devices/valve-1/commands/${body.id}/response`, '{"closed": true}');
            assert.match(await waitText(hubPage, "#hc-result", (t) => t.startsWith("ok")), /"closed":true/);
          } finally {
            await valve.stop();
          }
          // Rules pushed from the hub's console reach the edge.
          await hubPage.$eval(
            "#hr-doc",
            (el) => (el as HTMLTextAreaElement).value = '{"version": 1, "rules": []}',
          );
          await hubPage.click("form:has(#hr-doc) button[type=submit]");
          await waitText(hubPage, "form:has(#hr-doc) [role=status]", (t) => t.startsWith("Pushed"));
          await waitFor(
            async () => (await (await agent.api("/api/v1/rules")).json()).count === 0,
            15_000,
            "the pushed rules at the edge",
          );
          await hubPage.close();
        },
      );

      assert.deepEqual(errors, [], "no script error in the pages");
      console.log(figures.join("\n"));
    } finally {
      // What the agent said, when a step failed.
      if (failed) console.error(`agent output:\n${agent.proc.lines.slice(-40).join("\n")}`);
      await browser.close().catch(() => {});
      await agent.stop();
      await hub.stop();
      removeDir(dir);
    }
  },
});
