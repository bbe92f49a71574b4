/**
 * The CoAP endpoint's promises, over real UDP on loopback: a request reaches the handler once
 * (copies in flight dropped, later copies answered from memory), everything keyed by what
 * clients choose is bounded, Block1 uploads are reassembled within the payload limit, garbage
 * is ignored, and an observer that resets a notification is gone.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { generate } from "coap-packet";
import {
  type CoapReply,
  type CoapRequest,
  createCoapEndpoint,
} from "../../../src/transports/coap/endpoint.ts";
import { createCoapClient } from "../../helpers/coap.ts";

async function withEndpoint(
  handler: (r: CoapRequest) => CoapReply | Promise<CoapReply>,
  fn: (port: number, e: ReturnType<typeof createCoapEndpoint>) => Promise<void>,
  options: { maxPayloadBytes?: number; limits?: Record<string, number> } = {},
): Promise<void> {
  const errors: unknown[] = [];
  const e = createCoapEndpoint({
    handler,
    maxPayloadBytes: options.maxPayloadBytes ?? 4096,
    onError: (error) => errors.push(error),
    limits: options.limits,
  });
  const { port } = await e.listen("127.0.0.1", 0);
  try {
    await fn(port, e);
  } finally {
    await e.close();
  }
  assert.deepEqual(errors, []);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("a confirmable request reaches the handler once: a copy in flight is dropped, a later copy gets the same answer", async () => {
  let calls = 0;
  await withEndpoint(async () => {
    calls++;
    await sleep(300);
    return { code: "2.01" };
  }, async (port) => {
    const client = await createCoapClient(port);
    const token = Buffer.from("abcd");
    const late: string[] = [];
    client.onToken(token, (a) => late.push(a.code));
    const first = client.request({ path: "/x", payload: "{}", token, messageId: 4242 });
    await sleep(50);
    const copy = generate({
      code: "POST",
      confirmable: true,
      messageId: 4242,
      token,
      options: [{ name: "Uri-Path", value: Buffer.from("x") }],
      payload: Buffer.from("{}"),
    });
    client.raw(copy); // while the first is being handled
    assert.equal((await first)?.code, "2.01");
    client.raw(copy); // after it was answered
    await sleep(200);
    assert.equal(calls, 1);
    assert.deepEqual(late, ["2.01"]);
    client.close();
  });
});

Deno.test("dedupe memory and requests in flight are bounded; past the bound the client hears 5.03", async () => {
  let release: () => void = () => {};
  const gate = new Promise<void>((r) => (release = r));
  let hold = false;
  await withEndpoint(async () => {
    if (hold) await gate;
    return { code: "2.01" };
  }, async (port, e) => {
    const client = await createCoapClient(port, { maxRetransmit: 0 });
    for (let i = 0; i < 300; i++) {
      assert.equal((await client.request({ path: "/x", payload: "{}" }))?.code, "2.01");
    }
    assert.ok(e.sizes().exchanges <= 100, `${e.sizes().exchanges} exchanges kept`);
    hold = true;
    const held = [0, 1, 2, 3].map(() => client.request({ path: "/x", payload: "{}" }));
    await sleep(100);
    const refused = await client.request({ path: "/x", payload: "{}" });
    assert.equal(refused?.code, "5.03");
    assert.equal(e.sizes().inFlight, 4);
    release();
    assert.deepEqual((await Promise.all(held)).map((a) => a?.code), ["2.01", "2.01", "2.01", "2.01"]);
    client.close();
  }, { limits: { maxExchanges: 100, maxInFlight: 4 } });
});

function block1(num: number, more: boolean, szx = 2): { name: "Block1"; value: Buffer } {
  const v = num * 16 + (more ? 8 : 0) + szx;
  return { name: "Block1", value: v < 256 ? Buffer.from([v]) : Buffer.from([v >> 8, v & 0xff]) };
}

Deno.test("Block1 uploads are reassembled; over the payload limit 4.13 with Size1; out of order 4.08; uploads bounded", async () => {
  const bodies: string[] = [];
  await withEndpoint((r) => {
    bodies.push(Buffer.from(r.payload).toString());
    return { code: "2.01" };
  }, async (port, e) => {
    const client = await createCoapClient(port, { maxRetransmit: 0 });
    // 64-byte blocks (szx 2): 150 bytes in three blocks, tokens changing per block as libcoap does.
    const body = "a".repeat(150);
    const parts = [body.slice(0, 64), body.slice(64, 128), body.slice(128)];
    const codes: (string | undefined)[] = [];
    for (let i = 0; i < 3; i++) {
      codes.push(
        (await client.request({ path: "/up", payload: parts[i], options: [block1(i, i < 2)] }))?.code,
      );
    }
    assert.deepEqual(codes, ["2.31", "2.31", "2.01"]);
    assert.deepEqual(bodies, [body]);

    // Past the limit (200 bytes): the block that would cross it is refused with 4.13 and Size1.
    await client.request({ path: "/big", payload: "b".repeat(64), options: [block1(0, true)] });
    await client.request({ path: "/big", payload: "b".repeat(64), options: [block1(1, true)] });
    await client.request({ path: "/big", payload: "b".repeat(64), options: [block1(2, true)] });
    const over = await client.request({ path: "/big", payload: "b".repeat(64), options: [block1(3, false)] });
    assert.equal(over?.code, "4.13");
    assert.equal(over?.options.find((o) => o.name === "Size1")?.value.readUInt8(0), 200);

    const skipped = await client.request({
      path: "/gap",
      payload: "c".repeat(64),
      options: [block1(2, true)],
    });
    assert.equal(skipped?.code, "4.08");

    // Uploads open at once are bounded (2 here): a third gets 5.03.
    for (const p of ["/u1", "/u2"]) {
      await client.request({ path: p, payload: "d".repeat(64), options: [block1(0, true)] });
    }
    const third = await client.request({ path: "/u3", payload: "d".repeat(64), options: [block1(0, true)] });
    assert.equal(third?.code, "5.03");
    assert.equal(e.sizes().uploads, 2);

    // A single datagram over the limit is the handler's to refuse (it sees the whole payload).
    client.close();
  }, { maxPayloadBytes: 200, limits: { maxUploads: 2 } });
});

Deno.test("datagrams that are not CoAP are ignored; the endpoint keeps answering", async () => {
  await withEndpoint(() => ({ code: "2.05", payload: "ok" }), async (port) => {
    const client = await createCoapClient(port, { maxRetransmit: 0 });
    client.raw(new Uint8Array([0xff, 0x00, 0x13]));
    client.raw(new Uint8Array(0));
    client.raw(new Uint8Array(2000).fill(0x41));
    const answer = await client.request({ path: "/x", method: "GET" });
    assert.equal(answer?.code, "2.05");
    assert.equal(answer?.payload, "ok");
    client.close();
  });
});

Deno.test("an observer gets confirmable notifications; a reset makes it gone", async () => {
  let observation: CoapRequest["observation"];
  let gone = 0;
  await withEndpoint((r) => {
    observation = r.observation;
    if (observation) observation.onGone = () => gone++;
    return { code: "2.05", observing: observation !== undefined };
  }, async (port, e) => {
    const client = await createCoapClient(port, { maxRetransmit: 0 });
    const token = Buffer.from("obs1");
    const got: string[] = [];
    client.onToken(token, (a) => got.push(a.payload));
    const reg = await client.request({
      method: "GET",
      path: "/rpc",
      token,
      options: [{ name: "Observe", value: Buffer.alloc(0) }],
    });
    assert.equal(reg?.code, "2.05");
    assert.ok(reg?.options.some((o) => o.name === "Observe"));
    assert.ok(observation?.notify('{"id":"1"}'));
    await sleep(100);
    assert.deepEqual(got, ['{"id":"1"}']);
    assert.equal(e.sizes().notifications, 0, "acknowledged");
    client.resetNext = true;
    assert.ok(observation?.notify('{"id":"2"}'));
    await sleep(100);
    assert.equal(gone, 1);
    assert.equal(observation?.notify('{"id":"3"}'), false);
    client.close();
  });
});
