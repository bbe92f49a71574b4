import assert from "node:assert/strict";
import { deliveryScenario } from "./delivery_scenario.ts";

Deno.test({
  name:
    "HTTP → hub: 20,000 messages from 4 clients for 8 devices, agent SIGKILLed twice, hub killed for 4 s: " +
    "every 202 exactly once at the hub, per-device order kept (Deno)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const r = await deliveryScenario({
      runner: "deno",
      total: 20_000,
      devices: 8,
      clients: 4,
      perRequest: 1,
      killsAt: [5_000, 11_000],
      hubDownAt: 14_000,
      hubDownMs: 4_000,
      hubStopSignal: "SIGKILL", // see ScenarioOptions.hubStopSignal: a Deno runtime bug, not ours
    });
    assert.ok(r.accepted >= 19_900, `accepted ${r.accepted}`);
    assert.ok(r.atHub >= r.accepted && r.atHub <= r.accepted + r.unanswered);
    console.log(`accepted ${r.accepted}, unanswered ${r.unanswered}, at hub ${r.atHub}`);
  },
});

Deno.test({
  name: "HTTP → hub under Bun: 4,000 messages in arrays of 10, one SIGKILL, hub down 2 s",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const r = await deliveryScenario({
      runner: "bun",
      total: 4_000,
      devices: 8,
      clients: 4,
      perRequest: 10,
      killsAt: [1_500],
      hubDownAt: 2_500,
      hubDownMs: 2_000,
    });
    assert.ok(r.accepted >= 3_900, `accepted ${r.accepted}`);
    console.log(`accepted ${r.accepted}, unanswered ${r.unanswered}, at hub ${r.atHub}`);
  },
});
