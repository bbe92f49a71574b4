/**
 * Self-update of the armv7 archive, run as shipped by an armv7l Node.js 20 under qemu-arm-static:
 * installed as install.sh lays it out (`bin/outpost` a link to the launcher of
 * `lib/releases/<hash>/`), it updates 0.0.1 → 0.0.2 under a supervisor (the archive unpacked
 * beside the running release, the link swapped, the trial committed once the hub answers), and a
 * 0.0.3 whose bundle cannot start is rolled back by the pre-start script to 0.0.2's link. Every
 * message accepted over HTTP reaches the hub exactly once, in order.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type HubHandle, hubRecords, removeDir, startHub, tempDir, waitFor } from "../helpers/procs.ts";
import { generateSigningKey } from "../../src/update/mod.ts";
import { armhfNode, runBuild } from "./build_dist.ts";
import {
  installAgent,
  type Installed,
  opts,
  release,
  ReleaseServer,
  runExe,
  Supervisor,
  waitForUpdate,
} from "./update_helpers.ts";

const work = tempDir("outpost-update-armv7-");
const ARCHIVE = "outpost-linux-armv7.tar.gz";

async function tar(args: string[]): Promise<void> {
  const o = await new Deno.Command("tar", { args, stderr: "piped" }).output();
  assert.equal(o.code, 0, new TextDecoder().decode(o.stderr));
}

/** The armv7 archive of `version`, built by the real build script. */
async function archive(version: string): Promise<string> {
  const out = join(work, `build-${version}`);
  const b = await runBuild(["--target", "linux-armv7", "--version", version, "--outdir", out]);
  assert.equal(b.code, 0, b.stdout + b.stderr);
  return join(out, ARCHIVE);
}

/** 0.0.2's archive relabelled 0.0.3 with a bundle that answers --version and fails to start. */
async function brokenArchive(from: string): Promise<string> {
  const dir = join(work, "broken");
  mkdirSync(dir);
  await tar(["-xzf", from, "-C", dir]);
  const top = join(dir, "outpost-0.0.3-linux-armv7");
  renameSync(join(dir, "outpost-0.0.2-linux-armv7"), top);
  writeFileSync(
    join(top, "outpost.mjs"),
    'if (process.argv[2] === "--version") { console.log("outpost 0.0.3\\nnode linux-armv7"); process.exit(0); }\n' +
      'console.error("this release cannot start"); process.exit(3);\n',
  );
  const file = join(work, `broken-${ARCHIVE}`);
  await tar(["--owner=0", "--group=0", "-czf", file, "-C", dir, "outpost-0.0.3-linux-armv7"]);
  return file;
}

const sha = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

Deno.test({
  ...opts,
  name: "armv7 self-update under qemu: 0.0.1 → 0.0.2 swaps the link to a new release folder and commits; " +
    "a 0.0.3 that cannot start is rolled back to 0.0.2 by the pre-start check; every message at the hub once, in order",
  fn: async () => {
    const armNode = armhfNode(work);
    const [a1, a2] = [await archive("0.0.1"), await archive("0.0.2")];
    const a3 = await brokenArchive(a2);
    const server = await new ReleaseServer().start();
    const rel = release(server, generateSigningKey());
    const url2 = await rel.publish("0.0.2", a2, { target: "linux-armv7" });
    const url3 = await rel.publish("0.0.3", a3, { target: "linux-armv7" });

    // installAgent names the edge gw-update.
    const edge = { id: "gw-update", routingKey: "rk-armv7", secret: "secret-armv7-0123456789" };
    let hub: HubHandle | undefined;
    let sup: Supervisor | undefined;
    try {
      hub = await startHub({ dir: join(work, "hub"), edges: [edge] });
      // As install.sh lays it out: lib/releases/<hash>/ and bin/outpost a link to its launcher.
      const releases = join(work, "agent/lib/releases");
      const first = join(releases, sha(a1).slice(0, 16));
      mkdirSync(first, { recursive: true });
      await tar(["-xzf", a1, "-C", first, "--strip-components=1"]);
      const inst: Installed = await installAgent(join(work, "agent"), join(first, "outpost"), {
        publicKey: rel.key.publicKey,
        maxStarts: 2,
        trialSeconds: 120,
      }, {
        hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
      });
      rmSync(inst.exe);
      Deno.symlinkSync(join(first, "outpost"), inst.exe);
      const env = { OUTPOST_NODE: armNode };
      const version = async () => (await runExe(inst.exe, ["--version"], env)).stdout.split("\n")[0];
      assert.equal(await version(), "outpost 0.0.1");

      sup = new Supervisor(inst, { env: () => env, restartDelayMs: 100 });
      await (await sup.start(0, 120_000)).waitForEvent("agent.started", 120_000);
      let n = 0;
      const post = async (count: number) => {
        for (let i = 0; i < count; i++) {
          const r = await inst.api("/api/v1/devices/arm-1/telemetry", {
            method: "POST",
            body: JSON.stringify({ n: ++n }),
          });
          assert.equal(r.status, 202, await r.text());
        }
      };
      await post(3);

      // 0.0.1 → 0.0.2: unpacked beside it, the link swapped, exit 75, trial, commit.
      const up = await inst.api("/api/v1/update", {
        method: "POST",
        body: JSON.stringify({ manifestUrl: url2 }),
      });
      assert.equal(up.status, 202, await up.text());
      await sup.start(1, 180_000);
      const committed = await waitForUpdate(inst, (s) => s.state === "committed", 180_000)
        .catch((e) => Promise.reject(new Error(`${e}\n${sup!.output()}`)));
      assert.equal(committed.version, "0.0.2", JSON.stringify(committed));
      assert.equal(sup.exits[0], 75, sup.output());
      const second = join(releases, sha(a2).slice(0, 16));
      assert.equal(Deno.readLinkSync(inst.exe), join(second, "outpost"));
      assert.equal(Deno.readLinkSync(`${inst.exe}.prev`), join(first, "outpost"), ".prev links to 0.0.1");
      assert.deepEqual(readdirSync(releases).sort(), [first, second].map((d) => d.split("/").pop()).sort());
      assert.equal(await version(), "outpost 0.0.2");
      await post(3);

      // 0.0.3 cannot start: two failed starts, then the pre-start check puts 0.0.2's link back.
      const bad = await inst.api("/api/v1/update", {
        method: "POST",
        body: JSON.stringify({ manifestUrl: url3 }),
      });
      assert.equal(bad.status, 202, await bad.text());
      const back = await sup.start(4, 180_000);
      await back.waitForEvent("agent.started", 120_000);
      assert.deepEqual(sup.exits.slice(1, 4), [75, 3, 3], sup.output());
      assert.match(sup.prestartLog.join("\n"), /rolled back to 0\.0\.2: 0\.0\.3 was started 2 times/);
      assert.equal(Deno.readLinkSync(inst.exe), join(second, "outpost"), "the link is 0.0.2's again");
      assert.equal(await version(), "outpost 0.0.2");
      const s = await waitForUpdate(inst, (s) => s.state === "rolled-back", 60_000);
      assert.equal(s.version, "0.0.3");
      assert.equal(s.current, "0.0.2");
      await post(3);

      const records = await waitFor(
        async () => {
          const r = await hubRecords(hub!, edge.id);
          return r.length >= 9 ? r : undefined;
        },
        60_000,
        "9 records at the hub",
      );
      assert.deepEqual(records!.map((r) => r.payload.n), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
      console.log(`armv7 update: exits ${sup.exits.join(", ")}; 9 messages at the hub once each, in order`);
    } finally {
      await sup?.stop();
      await hub?.stop();
      await server.close();
      removeDir(work);
    }
  },
});
