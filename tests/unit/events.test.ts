/** The one list of what outpost reports: complete (the type checker), not stale, and counted. */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { createLogger, createTelemetry, EVENTS, METRICS } from "../../src/telemetry/mod.ts";

const SRC = join(import.meta.dirname!, "../../src");

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith(".ts") ? [path] : [];
  });
}

Deno.test("every catalogued event and metric is reported somewhere in src/ (no stale entries)", () => {
  const text = sources(SRC).filter((f) => !f.endsWith("events.ts")).map((f) => readFileSync(f, "utf8")).join(
    "\n",
  );
  const unused = [...Object.keys(EVENTS), ...Object.keys(METRICS)].filter((name) =>
    !text.includes(`"${name}"`)
  );
  assert.deepEqual(unused, []);
});

Deno.test("the telemetry's logger writes each event as one JSON line and counts it by name and level", () => {
  const lines: string[] = [];
  const telemetry = createTelemetry(createLogger("info", (l) => lines.push(l)));
  telemetry.authRefused("wrong-token", { transport: "http" });
  telemetry.authRefused("missing-token", { transport: "http" });
  telemetry.log.debug("command.received", { id: "c1" }); // below the level: counted, not written
  const metrics = telemetry.metrics.render();
  assert.match(metrics, /^outpost_events_total\{event="auth.refused",level="warn"\} 2$/m);
  assert.match(metrics, /^outpost_events_total\{event="command.received",level="debug"\} 1$/m);
  assert.deepEqual(lines.map((l) => JSON.parse(l).event), ["auth.refused", "auth.refused"]);
});
