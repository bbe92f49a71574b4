/** Who an MQTT connection is and what it may do (pure decisions). */
import assert from "node:assert/strict";
import {
  authenticate,
  type Credentials,
  type Identity,
  mayPublish,
  maySubscribe,
} from "../../../src/transports/mqtt/auth.ts";

const credentials: Credentials = {
  isApiToken: (t) => t === "api-token-0123456789",
  verifyDevice: (id, token) => id === "dev-a" && token === "token-a",
  deviceByToken: (token) => (token === "token-a" ? "dev-a" : undefined),
  isProvisioned: (id) => id === "dev-a",
};

Deno.test("auth token: device id + token, ThingsBoard token as username, API token for local-bus clients", () => {
  assert.deepEqual(authenticate("token", "dev-a", "token-a", credentials), {
    ok: true,
    identity: { type: "device", device: "dev-a", via: "credentials" },
  });
  assert.deepEqual(authenticate("token", "token-a", undefined, credentials), {
    ok: true,
    identity: { type: "device", device: "dev-a", via: "thingsboard" },
  });
  assert.deepEqual(authenticate("token", "token-a", "", credentials), {
    ok: true,
    identity: { type: "device", device: "dev-a", via: "thingsboard" },
  });
  assert.deepEqual(authenticate("token", "node-red", "api-token-0123456789", credentials), {
    ok: true,
    identity: { type: "service" },
  });
  assert.deepEqual(authenticate("token", undefined, "api-token-0123456789", credentials), {
    ok: true,
    identity: { type: "service" },
  });
});

Deno.test("auth token: missing credentials → CONNACK 5, wrong ones → 4", () => {
  assert.deepEqual(authenticate("token", undefined, undefined, credentials), {
    ok: false,
    reason: "missing-credentials",
    returnCode: 5,
  });
  for (const [u, p] of [["dev-a", "nope"], ["dev-b", "token-a"], ["nope", undefined], ["token-a", "x"]]) {
    assert.deepEqual(authenticate("token", u, p, credentials), {
      ok: false,
      reason: "wrong-credentials",
      returnCode: 4,
    }, `${u}/${p}`);
  }
});

Deno.test("auth none: everyone in; a ThingsBoard username still names the device", () => {
  assert.deepEqual(authenticate("none", undefined, undefined, credentials), {
    ok: true,
    identity: { type: "anonymous", device: undefined },
  });
  assert.deepEqual(authenticate("none", "token-a", undefined, credentials), {
    ok: true,
    identity: { type: "anonymous", device: "dev-a" },
  });
  assert.deepEqual(authenticate("none", "sensor-9", undefined, credentials), {
    ok: true,
    identity: { type: "anonymous", device: "sensor-9" },
  });
});

Deno.test("a device publishes only under its own topics and subscribes only to its own commands", () => {
  const a: Identity = { type: "device", device: "dev-a", via: "credentials" };
  assert.deepEqual(mayPublish(a, "devices/dev-a/telemetry"), { ok: true });
  assert.deepEqual(mayPublish(a, "devices/dev-a/commands/7/response"), { ok: true });
  assert.deepEqual(mayPublish(a, "v1/devices/me/telemetry"), { ok: true });
  for (
    const t of [
      "devices/dev-b/telemetry",
      "devices/dev-a",
      "devices/dev-a/",
      "devices/dev-ab/telemetry",
      "bus/x",
    ]
  ) {
    assert.deepEqual(mayPublish(a, t), { ok: false, reason: "foreign-topic" }, t);
  }
  assert.deepEqual(mayPublish(a, "$SYS/x"), { ok: false, reason: "reserved-topic" });

  assert.deepEqual(maySubscribe(a, "devices/dev-a/commands/#"), { ok: true });
  assert.deepEqual(maySubscribe(a, "devices/dev-a/commands/+"), { ok: true });
  assert.deepEqual(maySubscribe(a, "v1/devices/me/rpc/request/+"), { ok: true });
  for (const f of ["#", "devices/#", "devices/+/commands/#", "devices/dev-b/commands/#", "devices/dev-a/#"]) {
    assert.deepEqual(maySubscribe(a, f), { ok: false, reason: "foreign-subscription" }, f);
  }
});

Deno.test("local-bus clients may use any topic but $SYS/", () => {
  for (const who of [{ type: "service" }, { type: "anonymous" }] as Identity[]) {
    assert.deepEqual(mayPublish(who, "devices/x/telemetry"), { ok: true });
    assert.deepEqual(mayPublish(who, "anything/at/all"), { ok: true });
    assert.deepEqual(mayPublish(who, "$SYS/broker"), { ok: false, reason: "reserved-topic" });
    assert.deepEqual(maySubscribe(who, "#"), { ok: true });
  }
});
