/** The one lifecycle: start in order, stop in reverse, once; a failed start undoes what started. */
import assert from "node:assert/strict";
import { type Component, lifecycle } from "../../src/core/component.ts";

function parts(names: string[], log: string[], failStart?: string, failStop?: string): Component[] {
  return names.map((name) => ({
    name,
    async start({ signal }) {
      await Promise.resolve();
      log.push(`start ${name}`);
      signal.addEventListener("abort", () => log.push(`abort seen by ${name}`), { once: true });
      if (name === failStart) throw new Error(`${name} cannot start`);
    },
    stop() {
      log.push(`stop ${name}`);
      if (name === failStop) throw new Error(`${name} cannot stop`);
    },
  }));
}

Deno.test("parts start in the order given and stop in reverse, after the signal aborted; stop is idempotent", async () => {
  const log: string[] = [];
  const l = lifecycle(parts(["store", "uplink", "control"], log));
  await l.start();
  assert.deepEqual(log, ["start store", "start uplink", "start control"]);
  log.length = 0;
  const [a, b] = [l.stop(), l.stop()];
  await Promise.all([a, b]);
  await l.stop();
  assert.deepEqual(log, [
    "abort seen by store",
    "abort seen by uplink",
    "abort seen by control",
    "stop control",
    "stop uplink",
    "stop store",
  ]);
});

Deno.test("a part that fails to start: it and those before it stop in reverse; the error reaches the caller", async () => {
  const log: string[] = [];
  const l = lifecycle(parts(["store", "rules", "transports"], log, "rules"));
  await assert.rejects(l.start(), /rules cannot start/);
  assert.deepEqual(log.filter((e) => !e.startsWith("abort")), [
    "start store",
    "start rules",
    "stop rules",
    "stop store",
  ]);
});

Deno.test("a part that fails to stop is reported, and the parts before it still stop", async () => {
  const log: string[] = [];
  const failures: string[] = [];
  const l = lifecycle(
    parts(["store", "uplink", "control"], log, undefined, "uplink"),
    (name, error) => failures.push(`${name}: ${(error as Error).message}`),
  );
  await l.start();
  await l.stop();
  assert.deepEqual(log.filter((e) => e.startsWith("stop")), ["stop control", "stop uplink", "stop store"]);
  assert.deepEqual(failures, ["uplink: uplink cannot stop"]);
});
