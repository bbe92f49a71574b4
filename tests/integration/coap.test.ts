/**
 * The CoAP device API with a real client, libcoap's `coap-client` (Debian: libcoap3-bin): telemetry
 * and attributes answered 2.01 and found at the hub; bad JSON 4.00 with the position and the path
 * in the diagnostic; an unknown token 4.01; an oversized payload 4.13 (block-wise from coap-client,
 * and one datagram from the test's own client); a device observing its rpc resource gets a
 * command sent at the hub and answers it; the agent stays healthy throughout.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type AgentHandle,
  freePort,
  type HubHandle,
  hubRecords,
  isConnectivityEvent,
  removeDir,
  startAgent,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitDrained,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";
import { createCoapClient } from "../helpers/coap.ts";

const COAP_CLIENT = "coap-client-notls";

function requireCoapClient(): void {
  try {
    new Deno.Command(COAP_CLIENT, { args: ["-h"], stdout: "null", stderr: "null" }).outputSync();
  } catch {
    throw new Error(`${COAP_CLIENT} is missing: install Debian's libcoap3-bin (scripts/setup.sh)`);
  }
}

/** Runs coap-client; its output (stdout and stderr together) shows the response code at -v 7. */
async function coapClient(args: string[]): Promise<{ code: number; out: string }> {
  const out = await new Deno.Command(COAP_CLIENT, { args: ["-v", "7", "-B", "10", ...args] }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, out: text };
}

/** The response code coap-client received (its debug dump of the ACK: `t:ACK c:2.01`). */
function responseCode(out: string): string | undefined {
  const codes = [...out.matchAll(/t:(?:ACK|CON|NON) c:(\d\.\d\d)/g)].map((m) => m[1]);
  return codes.filter((c) => c !== "2.31").pop();
}

Deno.test({
  name: "CoAP with coap-client: 2.01 after commit and at the hub, 4.00 bad JSON, 4.01 unknown token, " +
    "4.13 oversized, a command to an observing device answered; the agent stays healthy",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    requireCoapClient();
    const dir = tempDir("outpost-coap-");
    const edge = { id: "gw-coap", routingKey: "rk-gw-coap", secret: "secret-gw-coap-0123" };
    let hub: HubHandle | undefined;
    let agent: AgentHandle | undefined;
    let observer: Deno.ChildProcess | undefined;
    try {
      hub = await startHub({ dir: join(dir, "hub"), edges: [edge] });
      const port = await freePort();
      const configPath = writeAgentConfig(join(dir, "agent"), {
        edgeId: edge.id,
        dataDir: "data",
        api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
        mqtt: { broker: false },
        coap: { listen: `127.0.0.1:${port}` },
        limits: { maxPayloadBytes: 4096 },
        hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
      });
      agent = await startAgent(configPath);
      const started = await agent.proc.waitForEvent("coap.started");
      assert.equal(started.listen, `127.0.0.1:${port}`);
      const { token } =
        await (await agent.api("/api/v1/devices", { method: "POST", body: '{"id":"coap-1"}' }))
          .json();
      const base = `coap://127.0.0.1:${port}/api/v1/${token}`;

      // Telemetry and attributes: 2.01 Created, then at the hub.
      const t = await coapClient([
        "-m",
        "post",
        "-t",
        "json",
        "-e",
        '{"temperature":21.5}',
        `${base}/telemetry`,
      ]);
      assert.equal(t.code, 0, t.out);
      assert.equal(responseCode(t.out), "2.01", t.out);
      const a = await coapClient([
        "-m",
        "post",
        "-t",
        "json",
        "-e",
        '{"firmware":"1.2.3"}',
        `${base}/attributes`,
      ]);
      assert.equal(responseCode(a.out), "2.01", a.out);

      // Bad JSON: 4.00, the diagnostic says what and where.
      const bad = await coapClient(["-m", "post", "-e", '{"temperature":', `${base}/telemetry`]);
      assert.equal(responseCode(bad.out), "4.00", bad.out);
      assert.match(bad.out, /4\.00 Payload is not valid JSON: .*\(POST \/api\/v1\/\{token\}\/telemetry\)/);
      const notObject = await coapClient(["-m", "post", "-e", "[1]", `${base}/telemetry`]);
      assert.match(notObject.out, /4\.00 Payload item \/0 is a number/);

      // Unknown token: 4.01, and the token is not echoed.
      const unknown = await coapClient([
        "-m",
        "post",
        "-e",
        '{"a":1}',
        `coap://127.0.0.1:${port}/api/v1/no-such-token/telemetry`,
      ]);
      assert.equal(responseCode(unknown.out), "4.01", unknown.out);
      assert.match(unknown.out, /4\.01 Unknown device token/);

      // Oversized: coap-client sends a 6,000-byte file block-wise (Block1); the block that crosses
      // the 4,096-byte limit gets 4.13.
      const bigFile = join(dir, "big.json");
      writeFileSync(bigFile, JSON.stringify({ blob: "x".repeat(6000) }));
      const big = await coapClient(["-m", "post", "-f", bigFile, `${base}/telemetry`]);
      assert.equal(responseCode(big.out), "4.13", big.out);
      // One datagram over the limit (the test's own client): 4.13 too.
      const client = await createCoapClient(port);
      const single = await client.request({
        path: `/api/v1/${token}/telemetry`,
        payload: JSON.stringify({ b: "y".repeat(5000) }),
      });
      assert.equal(single?.code, "4.13");
      // A block-wise upload within the limit is reassembled and stored.
      const midFile = join(dir, "mid.json");
      writeFileSync(midFile, JSON.stringify({ blob: "z".repeat(3000) }));
      const mid = await coapClient(["-m", "post", "-b", "512", "-f", midFile, `${base}/telemetry`]);
      assert.equal(responseCode(mid.out), "2.01", mid.out);

      // A command: the device observes its rpc resource, the hub sends, the device answers.
      observer = new Deno.Command(COAP_CLIENT, {
        args: ["-s", "30", "-w", "-B", "30", `${base}/rpc`],
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const lines: string[] = [];
      (async () => {
        const decoder = new TextDecoder();
        for await (const chunk of observer!.stdout) lines.push(...decoder.decode(chunk).split("\n"));
      })();
      await new Promise((r) => setTimeout(r, 500)); // the registration reaches the agent
      // The hub's API answers when the command has its result: not awaited until the device answered.
      const sent = hub.api(`/api/v1/edges/${edge.id}/commands`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          device: "coap-1",
          method: "setInterval",
          params: { seconds: 30 },
          timeoutMs: 20_000,
        }),
      });
      const command = await waitFor(
        () => lines.map((l) => l.trim()).filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))[0],
        15_000,
        "the command at the observing coap-client",
      );
      assert.deepEqual({ method: command.method, params: command.params }, {
        method: "setInterval",
        params: { seconds: 30 },
      });
      const answer = await coapClient(["-m", "post", "-e", '{"applied":true}', `${base}/rpc/${command.id}`]);
      assert.equal(responseCode(answer.out), "2.04", answer.out);
      const result = await sent;
      assert.equal(result.status, 200);
      assert.deepEqual(await result.json(), { id: command.id, status: "ok", payload: { applied: true } });
      const again = await coapClient(["-m", "post", "-e", '{"applied":true}', `${base}/rpc/${command.id}`]);
      assert.equal(responseCode(again.out), "4.04", again.out);

      // At the hub: exactly the three stored messages of coap-1; nothing of the refused ones.
      await waitDrained(agent);
      const records = (await hubRecords(hub, edge.id)).filter((r) => r.device === "coap-1");
      assert.deepEqual(records.map((r) => [r.kind, Object.keys(r.payload)[0]]), [
        ["telemetry", "temperature"],
        ["attributes", "firmware"],
        ["telemetry", "blob"],
      ]);
      assert.equal(records[0].payload.temperature, 21.5);
      assert.equal(records[2].payload.blob.length, 3000);
      assert.equal((await fetch(`http://127.0.0.1:${agent.apiPort}/healthz`)).status, 200);
      // The token never shows in the agent's log.
      assert.ok(!agent.proc.lines.some((l) => l.includes(token)), "the device token is not logged");
      client.close();
    } finally {
      try {
        observer?.kill("SIGKILL");
        await observer?.status;
      } catch { /* ended */ }
      await agent?.stop().catch(() => {});
      await hub?.stop().catch(() => {});
      removeDir(dir);
    }
  },
});

Deno.test({
  name:
    "CoAP refusals: a full outbox under reject is 5.03 and nothing is stored, 4.29 after ten unknown tokens " +
    "from an address, 4.04 and 4.05 for wrong paths and methods; the agent stays healthy",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-coap-refusals-");
    let agent: AgentHandle | undefined;
    try {
      const port = await freePort();
      const configPath = writeAgentConfig(join(dir, "agent"), {
        edgeId: "gw-coap-full",
        dataDir: "data",
        api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
        mqtt: { broker: false },
        coap: { listen: `127.0.0.1:${port}` },
        outbox: { maxBytes: 65536, onFull: "reject" },
      });
      agent = await startAgent(configPath);
      const { token } =
        await (await agent.api("/api/v1/devices", { method: "POST", body: '{"id":"coap-full"}' }))
          .json();
      const client = await createCoapClient(port);
      const path = `/api/v1/${token}/telemetry`;
      const payload = JSON.stringify({ blob: "f".repeat(800) });
      let created = 0;
      let full: Awaited<ReturnType<typeof client.request>>;
      for (let i = 0; i < 200; i++) {
        const a = await client.request({ path, payload });
        if (a?.code === "2.01") created++;
        else {
          full = a;
          break;
        }
      }
      assert.equal(full?.code, "5.03");
      assert.match(full!.payload, /full/i);
      const outbox = await (await agent.api("/api/v1/outbox?limit=1000")).json();
      assert.equal(
        outbox.records.filter((r: Record<string, unknown>) => !isConnectivityEvent(r)).length,
        created,
        "every 2.01 is stored, the refused one is not",
      );

      // Wrong paths and methods.
      assert.equal((await client.request({ path: `/api/v1/${token}/nothing`, payload }))?.code, "4.04");
      assert.equal((await client.request({ path: "/other", payload }))?.code, "4.04");
      assert.equal((await client.request({ path, method: "GET" }))?.code, "4.05");

      // Ten unknown tokens from one address, then that address is refused for the minute.
      for (let i = 0; i < 10; i++) {
        assert.equal(
          (await client.request({ path: `/api/v1/guess-${i}/telemetry`, payload: "{}" }))?.code,
          "4.01",
        );
      }
      const limited = await client.request({ path, payload: "{}" });
      assert.equal(limited?.code, "4.29");
      assert.equal((await fetch(`http://127.0.0.1:${agent.apiPort}/healthz`)).status, 200);
      client.close();
    } finally {
      await agent?.stop().catch(() => {});
      removeDir(dir);
    }
  },
});
