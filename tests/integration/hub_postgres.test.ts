/**
 * The hub for fleets (SPEC §11), with real processes and a real PostgreSQL (tests/helpers/postgres.ts):
 * two `outpost hub` replicas on one database and four agents, each listing both replicas.
 *
 * - 40,000 messages posted over HTTP while one replica is SIGKILLed and restarted and one agent is
 *   SIGKILLed and restarted: afterwards every message answered 202 is in PostgreSQL exactly once,
 *   each device's messages in the order they were accepted; counted exactly.
 * - A client pages `GET /api/v1/records?after=` on both replicas all along and has seen every
 *   record the hub holds: none ever fell behind its cursor.
 * - A command posted to one replica reaches a device whose agent is connected to the other, and
 *   its answer comes back to the caller; a rules push posted to one replica reaches that edge too.
 * Faults: PostgreSQL down when the hub starts (a clear warning, retried until it answers),
 * PostgreSQL killed and restarted mid-stream (nothing lost), a wrong password (exit 2, the password
 * never printed).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import postgres from "postgres";
import {
  type AgentHandle,
  freePort,
  type HubHandle,
  removeDir,
  runOutpost,
  startAgent,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitDrained,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";
import { type Postgres, startPostgres } from "../helpers/postgres.ts";
import { writeFileSync } from "node:fs";

const EDGES = [1, 2, 3, 4].map((i) => ({
  id: `gw-${i}`,
  routingKey: `rk-${i}`,
  secret: `secret-gw-${i}-0123456789`,
}));
const DEVICES_PER_EDGE = 4;

interface Replica {
  hub: HubHandle;
  grpcPort: number;
  apiPort: number;
  dir: string;
}

async function startReplica(pg: Postgres, dir: string, name: string, ports?: { grpc: number; api: number }) {
  const grpcPort = ports?.grpc ?? await freePort();
  const apiPort = ports?.api ?? await freePort();
  const hub = await startHub({
    dir: join(dir, name),
    edges: EDGES,
    grpcPort,
    apiPort,
    runner: "bun",
    config: { store: { url: pg.url } },
    startTimeoutMs: 60_000,
  });
  return { hub, grpcPort, apiPort, dir: join(dir, name) };
}

async function startEdge(dir: string, edge: typeof EDGES[number], urls: string[], apiPort?: number) {
  const port = apiPort ?? await freePort();
  const configPath = writeAgentConfig(join(dir, edge.id), {
    edgeId: edge.id,
    dataDir: "data",
    api: { listen: `127.0.0.1:${port}`, token: TEST_TOKEN },
    mqtt: { broker: false },
    hub: { url: urls, routingKey: edge.routingKey, secret: edge.secret, ackTimeout: "10s" },
  });
  return { agent: await startAgent(configPath, { runner: "bun" }), apiPort: port };
}

/** Every record in PostgreSQL, in seq order: `data` without the agents' own connectivity events. */
async function allRecords(sql: postgres.Sql) {
  const all = await sql`SELECT seq, edge, id, device, (payload->>'n')::int AS n,
    (kind = 'event' AND payload->>'type' = 'connectivity') AS connectivity FROM records ORDER BY seq`;
  return { all, data: all.filter((r) => !r.connectivity) };
}

/** A reader paging GET /api/v1/records?after= on alternating replicas until stopped. */
function startPager(apis: () => string[]) {
  const seen = new Set<number>();
  let after = 0;
  let pages = 0;
  let stop = false;
  let turn = 0;
  const page = async (): Promise<boolean> => {
    const list = apis();
    const base = list[turn++ % list.length];
    try {
      const res = await fetch(`${base}/api/v1/records?after=${after}&limit=2000`);
      if (!res.ok) return false;
      const body = await res.json();
      for (const r of body.records) {
        assert.ok(r.seq > after, `seq ${r.seq} came after cursor ${after}`);
        seen.add(r.seq);
      }
      pages++;
      if (body.records.length > 0) after = body.records[body.records.length - 1].seq;
      return body.next !== null;
    } catch {
      return false; // that replica is down: the other one answers next time
    }
  };
  const running = (async () => {
    while (!stop) {
      if (!await page()) await new Promise((r) => setTimeout(r, 30));
    }
  })();
  return {
    seen,
    get pages() {
      return pages;
    },
    /** Stops, then reads to the end. */
    async finish() {
      stop = true;
      await running;
      for (let i = 0; i < 1000; i++) if (!await page() && !(await page())) break;
    },
  };
}

Deno.test({
  name:
    "two replicas on PostgreSQL, four edges listing both: 40,000 messages, a replica and an edge SIGKILLed — " +
    "every 202 stored once, per-device order kept, a pager saw every record, a command and a rules push cross replicas",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-hubpg-");
    const pg = await startPostgres();
    const sql = postgres(pg.url, { max: 2, onnotice: () => {} });
    const replicas: Replica[] = [];
    const edges: { agent: AgentHandle; apiPort: number; urls: string[] }[] = [];
    try {
      // Started together: the migrations run once, under their advisory lock.
      replicas.push(...await Promise.all([startReplica(pg, dir, "hub-a"), startReplica(pg, dir, "hub-b")]));
      const urlA = `grpc://127.0.0.1:${replicas[0].grpcPort}`;
      const urlB = `grpc://127.0.0.1:${replicas[1].grpcPort}`;
      for (const [i, edge] of EDGES.entries()) {
        const urls = i % 2 === 0 ? [urlA, urlB] : [urlB, urlA];
        edges.push({ ...await startEdge(dir, edge, urls), urls });
      }
      const apis = () => replicas.map((r) => `http://127.0.0.1:${r.apiPort}`);
      const pager = startPager(apis);

      const total = 40_000;
      const perEdge = total / EDGES.length;
      const perRequest = 50;
      const accepted = new Map<string, number[]>(); // edge/device → n, in the order answered 202
      const unanswered = new Set<string>(); // edge/device/n whose request got no answer
      let acceptedCount = 0;
      let replicaKilled = false;
      let edgeKilled = false;

      const post = async (e: number, device: string, from: number) => {
        const body = Array.from({ length: perRequest }, (_, k) => ({ n: from + k }));
        const key = `${EDGES[e].id}/${device}`;
        try {
          const res = await edges[e].agent.api(`/api/v1/devices/${device}/telemetry`, {
            method: "POST",
            body: JSON.stringify(body),
          });
          if (res.status !== 202) throw new Error(`status ${res.status}: ${await res.text()}`);
          await res.body?.cancel();
          const list = accepted.get(key) ?? [];
          list.push(...body.map((m) => m.n));
          accepted.set(key, list);
          acceptedCount += perRequest;
          return true;
        } catch {
          for (const m of body) unanswered.add(`${key}/${m.n}`);
          return false;
        }
      };

      const faults = async () => {
        await waitFor(() => acceptedCount >= total * 0.3, 120_000, "30% accepted");
        // Replica A dies mid-stream and comes back on the same ports a second later.
        await replicas[0].hub.proc.kill("SIGKILL");
        replicaKilled = true;
        await new Promise((r) => setTimeout(r, 1_000));
        replicas[0] = await startReplica(pg, dir, "hub-a", {
          grpc: replicas[0].grpcPort,
          api: replicas[0].apiPort,
        });
        await waitFor(() => acceptedCount >= total * 0.6, 120_000, "60% accepted");
        // Edge 4 dies with records in its outbox, and restarts with the same data.
        await edges[3].agent.stop("SIGKILL");
        edgeKilled = true;
        edges[3] = {
          ...await startEdge(dir, EDGES[3], edges[3].urls, edges[3].apiPort),
          urls: edges[3].urls,
        };
      };

      // Each edge: its devices post in turn; a request that failed (the edge was killed) is not
      // retried: its fate is unknown to the client, so it may be stored at most once.
      const load = EDGES.map(async (_, e) => {
        for (let from = 0; from < perEdge / DEVICES_PER_EDGE; from += perRequest) {
          for (let d = 0; d < DEVICES_PER_EDGE; d++) {
            if (!await post(e, `dev-${e + 1}-${d}`, from)) {
              await waitFor(
                async () => (await edges[e].agent.api("/api/v1/status")).ok,
                30_000,
                "the agent back",
              );
            }
          }
        }
      });
      await Promise.all([...load, faults()]);
      assert.ok(replicaKilled && edgeKilled);

      for (const e of edges) await waitDrained(e.agent, 120_000);
      await pager.finish();

      // Exactly once, in order, counted exactly.
      const { all, data: rows } = await allRecords(sql);
      const stored = new Map<string, number[]>();
      for (const r of rows) {
        const key = `${r.edge}/${r.device}`;
        const list = stored.get(key) ?? [];
        list.push(r.n);
        stored.set(key, list);
      }
      let extra = 0;
      for (const [key, list] of stored) {
        assert.deepEqual([...list].sort((a, b) => a - b), list, `${key}: stored out of order`);
        assert.equal(new Set(list).size, list.length, `${key}: a message stored twice`);
        const want = new Set(accepted.get(key) ?? []);
        for (const n of list) {
          if (!want.has(n)) extra++, assert.ok(unanswered.has(`${key}/${n}`), `${key}/${n} never sent`);
        }
        for (const n of want) assert.ok(list.includes(n), `${key}/${n} answered 202 but not stored`);
      }
      assert.equal(rows.length, acceptedCount + extra);
      assert.ok(acceptedCount >= total - unanswered.size, `accepted ${acceptedCount}`);
      assert.ok(unanswered.size <= 2 * perRequest * DEVICES_PER_EDGE, `unanswered ${unanswered.size}`);

      // The pager saw every record the hub holds: none fell behind its cursor.
      const missed = all.filter((r) => !pager.seen.has(Number(r.seq)));
      assert.equal(missed.length, 0, `the pager missed ${missed.length} records, e.g. seq ${missed[0]?.seq}`);
      assert.equal(pager.seen.size, all.length);

      // One row per edge, each counted connected once, by a live replica.
      const listed = await (await fetch(`http://127.0.0.1:${replicas[1].apiPort}/api/v1/edges`)).json();
      assert.deepEqual(listed.edges.map((e: any) => [e.id, e.connected]), EDGES.map((e) => [e.id, true]));

      // A command posted to replica A reaches a device whose edge is connected to replica B.
      const found = await waitFor(
        async () => {
          for (const [i, e] of edges.entries()) {
            const s = await (await e.agent.api("/api/v1/status")).json();
            if (s.hub.connected && s.hub.url === urlB) return { i };
          }
        },
        10_000,
        "an edge on replica B",
      );
      const onB = found!.i;
      const edge = EDGES[onB];
      const device = `dev-${onB + 1}-0`;
      const answer = (async () => {
        const polled = await (await edges[onB].agent.api(`/api/v1/devices/${device}/commands?wait=20`))
          .json();
        assert.equal(polled.length, 1);
        assert.equal(polled[0].method, "open");
        const res = await edges[onB].agent.api(`/api/v1/devices/${device}/commands/${polled[0].id}`, {
          method: "POST",
          body: JSON.stringify({ status: "ok", payload: { opened: polled[0].params.percent } }),
        });
        assert.equal(res.status, 200);
      })();
      const res = await fetch(`http://127.0.0.1:${replicas[0].apiPort}/api/v1/edges/${edge.id}/commands`, {
        method: "POST",
        body: JSON.stringify({ device, method: "open", params: { percent: 40 }, timeoutMs: 15_000 }),
      });
      assert.equal(res.status, 200);
      const outcome = await res.json();
      await answer;
      assert.equal(outcome.status, "ok");
      assert.deepEqual(outcome.payload, { opened: 40 });

      // A rules push to replica A for that edge is sent through replica B; the edge applies it.
      const pushed = await fetch(`http://127.0.0.1:${replicas[0].apiPort}/api/v1/edges/${edge.id}/rules`, {
        method: "PUT",
        body: JSON.stringify({ version: 1, rules: [{ id: "strip", then: [{ remove: ["debug"] }] }] }),
      });
      assert.equal(pushed.status, 202);
      const push = await pushed.json();
      assert.equal(push.status, "sent");
      // The edge reports on it; replica A shows the report (the store is shared).
      const report = await waitFor(
        async () => {
          const listed = await (await fetch(`http://127.0.0.1:${replicas[0].apiPort}/api/v1/edges`)).json();
          const r = listed.edges.find((e: { id: string }) => e.id === edge.id).reports.rules;
          return r?.version === push.version ? r : undefined;
        },
        15_000,
        "the edge on replica B to report the rules pushed to replica A",
      );
      assert.equal(report.status, "applied");
      console.log(
        `accepted ${acceptedCount}, unanswered ${unanswered.size}, stored ${rows.length}, pager pages ${pager.pages}`,
      );
    } finally {
      await Promise.all(edges.map((e) => e.agent.stop().catch(() => {})));
      await Promise.all(replicas.map((r) => r.hub.stop().catch(() => {})));
      await sql.end();
      await pg.remove();
      removeDir(dir);
    }
  },
});

Deno.test({
  name:
    "PostgreSQL faults: down at hub start (warned, retried), killed and restarted mid-stream (nothing lost), " +
    "a wrong password (exit 2, never printed)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-hubpg-faults-");
    const pg = await startPostgres();
    let hub: HubHandle | undefined;
    let agent: AgentHandle | undefined;
    const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
    try {
      // A wrong password: exit 2, the key named, the password nowhere in the output.
      const wrongUrl = pg.url.replace(pg.password, "not-the-password-7731");
      const config = join(dir, "wrong.json");
      writeFileSync(
        config,
        JSON.stringify({
          dataDir: join(dir, "wrong"),
          edges: EDGES,
          store: { url: wrongUrl },
          listen: "127.0.0.1:0",
        }),
      );
      const wrong = await runOutpost(["hub", "--config", config], { runner: "bun" });
      assert.equal(wrong.code, 2, wrong.stdout + wrong.stderr);
      assert.match(wrong.stdout + wrong.stderr, /\/store\/url/);
      assert.ok(!(wrong.stdout + wrong.stderr).includes("not-the-password-7731"), "the password was printed");
      assert.ok(!(wrong.stdout + wrong.stderr).includes("    at "), "a stack trace was printed");

      // Down at start: the hub warns and retries until the database answers.
      await pg.stop("SIGTERM");
      const starting = startHub({
        dir: join(dir, "hub"),
        edges: EDGES.slice(0, 1),
        runner: "bun",
        config: { store: { url: pg.url } },
        startTimeoutMs: 60_000,
      });
      // Long enough for the hub to start and find the database down.
      await new Promise((r) => setTimeout(r, 5_000));
      await pg.start();
      hub = await starting;
      const warned = hub.proc.lines.filter((l) => l.includes('"event":"hub.store_unavailable"'));
      assert.ok(warned.length >= 1, `no hub.store_unavailable warning:\n${hub.proc.lines.join("\n")}`);
      assert.ok(!hub.proc.lines.join("\n").includes(pg.password), "the password was logged");

      // Killed and restarted mid-stream: the edge sees UNAVAILABLE, backs off, resends.
      const edge = EDGES[0];
      ({ agent } = await startEdge(dir, edge, [`grpc://127.0.0.1:${hub.grpcPort}`]));
      const total = 6_000;
      let accepted = 0;
      for (let from = 0; from < total; from += 100) {
        if (from === 2_000) {
          await pg.stop("SIGKILL");
          setTimeout(() => void pg.start(), 1_000);
        }
        const res = await agent.api("/api/v1/devices/d1/telemetry", {
          method: "POST",
          body: JSON.stringify(Array.from({ length: 100 }, (_, k) => ({ n: from + k }))),
        });
        assert.equal(res.status, 202);
        await res.body?.cancel();
        accepted += 100;
      }
      await waitDrained(agent, 120_000);
      const rows = (await allRecords(sql)).data;
      assert.equal(rows.length, accepted);
      assert.deepEqual(rows.map((r) => r.n), Array.from({ length: total }, (_, i) => i));
      assert.ok(
        agent.proc.lines.some((l) => l.includes('"event":"hub.disconnected"') && l.includes("UNAVAILABLE")),
        "the edge never saw UNAVAILABLE",
      );
    } finally {
      await agent?.stop().catch(() => {});
      await hub?.stop().catch(() => {});
      await sql.end();
      await pg.remove();
      removeDir(dir);
    }
  },
});
