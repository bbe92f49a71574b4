/** Commands: what a `command` frame must hold, and how a device's answer becomes a result. */
import assert from "node:assert/strict";
import { COMMAND_LIMITS, parseAnswer, parseCommand } from "../../../src/device_commands/mod.ts";

const enc = new TextEncoder();
const frame = (over: Record<string, unknown> = {}) =>
  ({
    id: "c-1",
    device: "valve-1",
    method: "open",
    params: enc.encode('{"to":50}'),
    timeoutMs: 5000,
    ...over,
  }) as any;

Deno.test("a well-formed command is parsed with its params", () => {
  const r = parseCommand(frame());
  assert.ok(r.ok);
  assert.deepEqual(r.command, {
    id: "c-1",
    device: "valve-1",
    method: "open",
    params: { to: 50 },
    paramsText: '{"to":50}',
    timeoutMs: 5000,
  });
  const empty = parseCommand(frame({ params: new Uint8Array(0) }));
  assert.ok(empty.ok && empty.command.params === null, "empty params are null");
});

Deno.test("each bad field is named: device id, command id, method, params, size, timeoutMs", () => {
  const problems = (over: Record<string, unknown>) => {
    const r = parseCommand(frame(over));
    assert.ok(!r.ok);
    return r.problems;
  };
  assert.match(problems({ device: "a/b" })[0], /^Device id "a\/b" is not 1-128 of/);
  assert.match(problems({ device: "" })[0], /^Device id "" is not/);
  assert.match(problems({ id: "x+y" })[0], /^Command id "x\+y" is not/);
  assert.deepEqual(problems({ method: "" }), ["Method is empty"]);
  assert.match(problems({ method: "a\nb" })[0], /contains control characters/);
  assert.match(
    problems({ method: "m".repeat(300) })[0],
    /Method of 300 characters is over the 256-character limit/,
  );
  assert.match(problems({ params: enc.encode("{nope") })[0], /^Params are not valid JSON: /);
  assert.match(
    problems({ params: new Uint8Array([0xff, 0xfe]) })[0],
    /^Params are not valid JSON: not valid UTF-8/,
  );
  const big = enc.encode(JSON.stringify({ blob: "x".repeat(COMMAND_LIMITS.maxParamsBytes) }));
  assert.equal(
    problems({ params: big })[0],
    `Params of ${big.byteLength} bytes are over the 65536-byte limit`,
  );
  assert.match(problems({ timeoutMs: 0 })[0], /^timeoutMs 0 is not a whole number from 1 to 3600000/);
  assert.match(problems({ timeoutMs: 3_600_001 })[0], /^timeoutMs 3600001 /);
  // Several at once, in field order.
  assert.equal(problems({ device: "", method: "", timeoutMs: 0 }).length, 3);
});

Deno.test("answers: envelope, {error} object, any other JSON, empty; unreadable ones say why", () => {
  const ok = (raw: string) => parseAnswer(raw, 1024);
  assert.deepEqual(ok('{"status":"ok","payload":{"opened":true}}'), {
    ok: true,
    status: "ok",
    payload: { opened: true },
  });
  assert.deepEqual(ok('{"status":"error","payload":"jammed"}'), {
    ok: true,
    status: "error",
    payload: "jammed",
  });
  assert.deepEqual(ok('{"status":"error"}'), { ok: true, status: "error", payload: null });
  assert.deepEqual(ok('{"error":"jammed","code":7}'), {
    ok: true,
    status: "error",
    payload: { error: "jammed", code: 7 },
  });
  // An object with other keys beside status is the device's own payload.
  assert.deepEqual(ok('{"status":"running","rpm":5}'), {
    ok: true,
    status: "ok",
    payload: { status: "running", rpm: 5 },
  });
  assert.deepEqual(ok('{"status":"ok","rpm":5}'), {
    ok: true,
    status: "ok",
    payload: { status: "ok", rpm: 5 },
  });
  assert.deepEqual(ok("42"), { ok: true, status: "ok", payload: 42 });
  assert.deepEqual(ok("[1,2]"), { ok: true, status: "ok", payload: [1, 2] });
  assert.deepEqual(ok(""), { ok: true, status: "ok", payload: null });
  const bad = parseAnswer("not json", 1024);
  assert.ok(!bad.ok && bad.problem.startsWith("Answer is not valid JSON: "));
  const big = parseAnswer(enc.encode("x".repeat(2000)), 1024);
  assert.ok(!big.ok && big.problem === "Answer of 2000 bytes is over the 1024-byte limit");
});
