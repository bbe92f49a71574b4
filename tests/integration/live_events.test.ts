/**
 * `GET /api/v1/events` against a real agent: three streams, one of which never reads, while
 * 20,000 messages are posted. The readers get every message event or a `dropped` count for what
 * they missed; the stalled stream's queue stays bounded; ingest is not held up (every post is
 * answered 202). Also: the bearer token is required, and the filters apply.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { freePort, removeDir, startAgent, tempDir, TEST_TOKEN, writeAgentConfig } from "../helpers/procs.ts";

interface Tally {
  messages: number;
  dropped: number;
  lastId: number;
  done: Promise<void>;
}

/** Reads an SSE stream until `stop` resolves, counting message events and dropped counts. */
function read(res: Response, stop: Promise<void>): Tally {
  const tally: Tally = { messages: 0, dropped: 0, lastId: 0, done: Promise.resolve() };
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  tally.done = (async () => {
    let stopped = false;
    stop.then(() => stopped = true);
    while (!stopped) {
      const chunk = await Promise.race([reader.read(), stop.then(() => undefined)]);
      if (chunk === undefined || chunk.done) break;
      buf += decoder.decode(chunk.value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        const id = /^id: (\d+)$/m.exec(block)?.[1];
        if (id) tally.lastId = Number(id);
        if (event === "message") tally.messages++;
        if (event === "dropped") tally.dropped += JSON.parse(data!).count;
      }
    }
    await reader.cancel().catch(() => {});
  })();
  return tally;
}

async function metric(api: (p: string) => Promise<Response>, name: string): Promise<number> {
  const text = await (await api("/metrics")).text();
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : NaN;
}

Deno.test({
  name: "event stream: a stalled client stays bounded, the others get every event or a dropped count",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-events-");
    const configPath = writeAgentConfig(join(dir, "agent"), {
      edgeId: "gw-events",
      dataDir: "data",
      api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
      mqtt: { broker: false },
    });
    const agent = await startAgent(configPath);
    try {
      const url = `http://127.0.0.1:${agent.apiPort}/api/v1/events`;
      const noToken = await fetch(url);
      await noToken.body?.cancel();
      assert.equal(noToken.status, 401);

      const auth = { authorization: `Bearer ${TEST_TOKEN}` };
      let finish!: () => void;
      const stop = new Promise<void>((r) => finish = r);
      // The stalled client: a raw socket that sends the request and never reads a byte.
      const stalled = await Deno.connect({ hostname: "127.0.0.1", port: agent.apiPort });
      await stalled.write(new TextEncoder().encode(
        `GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TEST_TOKEN}\r\n\r\n`,
      ));
      const firstRes = await fetch(url, { headers: auth });
      assert.equal(firstRes.status, 200);
      assert.match(firstRes.headers.get("content-type") ?? "", /text\/event-stream/);
      await firstRes.body?.cancel();
      const a = read(await fetch(url, { headers: auth }), stop);
      const b = read(await fetch(`${url}?device=ev-*&kind=telemetry`, { headers: auth }), stop);
      const other = read(await fetch(`${url}?device=nobody`, { headers: auth }), stop);

      const TOTAL = 20_000;
      const PAD = "p".repeat(1000);
      const BATCH = 100;
      for (let n = 0; n < TOTAL; n += BATCH) {
        const body = JSON.stringify(
          Array.from({ length: BATCH }, (_, i) => ({ seq: n + i, v: (n + i) % 97, pad: PAD })),
        );
        const res = await agent.api(`/api/v1/devices/ev-${n % 3}/telemetry`, { method: "POST", body });
        assert.equal(res.status, 202, await res.text());
      }
      // Let the readers catch up: until both account for every message.
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline && (a.messages + a.dropped < TOTAL || b.messages + b.dropped < TOTAL)) {
        await new Promise((r) => setTimeout(r, 100));
      }
      const queueMax = await metric(agent.api, "outpost_live_queue_max");
      assert.equal(await metric(agent.api, "outpost_live_streams"), 4);
      const dropped = await metric(agent.api, "outpost_live_dropped");
      finish();
      await Promise.all([a.done, b.done, other.done]);
      stalled.close();

      console.log(
        `a: ${a.messages} received, ${a.dropped} dropped; b: ${b.messages} + ${b.dropped}; stalled queue ${queueMax}; dropped total ${dropped}`,
      );
      assert.equal(a.messages + a.dropped, TOTAL, `stream a: ${a.messages} + ${a.dropped} dropped`);
      assert.equal(b.messages + b.dropped, TOTAL, `stream b: ${b.messages} + ${b.dropped} dropped`);
      assert.equal(other.messages, 0);
      // The stalled stream filled its queue to the bound and lost the rest (what the socket
      // buffers took is not counted; 1 KB payloads make 20 MB, far more than they hold).
      assert.equal(queueMax, 1024, `the stalled queue holds ${queueMax}`);
      assert.ok(dropped > 0 && dropped <= TOTAL + a.dropped + b.dropped, `dropped ${dropped}`);
    } finally {
      await agent.stop();
      removeDir(dir);
    }
  },
});

/** Reads an SSE response until `count` blocks have arrived (or the time runs out); the raw text. */
async function readBlocks(res: Response, count: number, timeoutMs = 15_000): Promise<string> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && (text.match(/\n\nid: |^id: /gm) ?? []).length < count) {
    const chunk = await Promise.race([
      reader.read(),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 500)),
    ]);
    if (chunk === undefined) continue;
    if (chunk.done) break;
    text += decoder.decode(chunk.value, { stream: true });
  }
  await reader.cancel().catch(() => {});
  return text;
}

Deno.test({
  name: "event stream: a console cookie works, Last-Event-ID resumes, and no secret is in any event",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-events-cookie-");
    const configPath = writeAgentConfig(join(dir, "agent"), {
      edgeId: "gw-events-2",
      dataDir: "data",
      api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
      mqtt: { broker: false },
    });
    const agent = await startAgent(configPath);
    try {
      const base = `http://127.0.0.1:${agent.apiPort}`;
      const login = await fetch(`${base}/ui/login`, {
        method: "POST",
        redirect: "manual",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token: TEST_TOKEN }).toString(),
      });
      assert.equal(login.status, 303);
      const cookie = login.headers.get("set-cookie")!.split(";")[0];
      const stream = await fetch(`${base}/api/v1/events?kind=message,rules,log`, { headers: { cookie } });
      assert.equal(stream.status, 200);
      // A device made through the API (its token is shown once), a message, a rules change and a
      // refused request (a warn line) — none of which may carry a secret into the stream.
      const created =
        await (await agent.api("/api/v1/devices", { method: "POST", body: '{"id":"ev-secret"}' })).json();
      assert.equal(typeof created.token, "string");
      for (let i = 0; i < 3; i++) {
        const res = await agent.api("/api/v1/devices/ev-1/telemetry", { method: "POST", body: `{"v":${i}}` });
        assert.equal(res.status, 202);
      }
      const put = await agent.api("/api/v1/rules", { method: "PUT", body: '{"version":1,"rules":[]}' });
      assert.equal(put.status, 200);
      await (await fetch(`${base}/api/v1/status`, { headers: { authorization: "Bearer wrong-token-xyz" } }))
        .body
        ?.cancel();
      const text = await readBlocks(stream, 5);
      assert.match(text, /event: message\n/);
      assert.match(text, /event: rules\n/);
      assert.match(text, /event: log\n.*auth\.refused/);
      for (const secret of [TEST_TOKEN, created.token, cookie.split("=")[1], "wrong-token-xyz"]) {
        assert.ok(!text.includes(secret), "no secret in the stream");
      }
      // Resume after the first message: the two after it come again.
      const firstId = Number(/^id: (\d+)\nevent: message/m.exec(text)![1]);
      const resumed = await fetch(`${base}/api/v1/events?kind=message`, {
        headers: { cookie, "last-event-id": String(firstId) },
      });
      const again = await readBlocks(resumed, 2);
      assert.deepEqual([...again.matchAll(/"payload":\{"v":(\d)\}/g)].map((m) => Number(m[1])), [1, 2]);
    } finally {
      await agent.stop();
      removeDir(dir);
    }
  },
});
