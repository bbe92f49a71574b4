/**
 * Update offers from the hub, with real binaries: `POST /api/v1/edges/{edge}/update` on the
 * reference hub sends an `updateOffer`; an agent with `update.auto` applies it (under a
 * systemd-style supervisor) and the hub hears the outcome; without `update.auto` the offer is
 * recorded, shown in status, reported, and nothing changes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { removeDir, startHub, tempDir, waitFor } from "../helpers/procs.ts";
import {
  buildVersions,
  installAgent,
  opts,
  release,
  ReleaseServer,
  Supervisor,
  versionOf,
} from "./update_helpers.ts";

const EDGE = { id: "gw-offer", routingKey: "rk-offer", secret: "secret-offer-123" };

Deno.test({
  ...opts,
  name: "an update offer from the hub: applied with update.auto (outcome reported), recorded without it",
  fn: async () => {
    const work = tempDir("outpost-offer-");
    const bins = await buildVersions(work, ["0.0.1", "0.0.2"]);
    const server = await new ReleaseServer().start();
    const rel = release(server);
    const manifestUrl = await rel.publish("0.0.2", bins["0.0.2"]);
    const hub = await startHub({ dir: join(work, "hub"), edges: [EDGE], runner: bins["0.0.1"] });
    const hubLink = {
      url: `grpc://127.0.0.1:${hub.grpcPort}`,
      routingKey: EDGE.routingKey,
      secret: EDGE.secret,
    };
    const report = async () => {
      const edges = (await (await hub.api("/api/v1/edges")).json()).edges;
      return edges.find((e: { id: string }) => e.id === EDGE.id)?.reports?.update;
    };
    const offer = async () => {
      const res = await hub.api(`/api/v1/edges/${EDGE.id}/update`, {
        method: "POST",
        body: JSON.stringify({ version: "0.0.2", url: manifestUrl }),
      });
      assert.equal(res.status, 202, await res.text());
    };

    // Without update.auto: recorded and reported, nothing changes.
    const manual = await installAgent(join(work, "manual"), bins["0.0.1"], { publicKey: rel.key.publicKey }, {
      edgeId: EDGE.id,
      hub: hubLink,
    });
    let supervisor = new Supervisor(manual);
    try {
      await supervisor.start(0);
      await waitFor(
        async () => (await (await manual.api("/api/v1/status")).json()).hub.connected,
        20_000,
        "hub link",
      );
      await offer();
      const recorded = await waitFor(
        async () => {
          const r = await report();
          return r?.status === "recorded" ? r : undefined;
        },
        20_000,
        "the recorded offer's report",
      );
      assert.equal(recorded.version, "0.0.2");
      const status = await (await manual.api("/api/v1/status")).json();
      assert.equal(status.version, "0.0.1");
      assert.equal(status.update.offered.version, "0.0.2");
      assert.equal(status.update.offered.applied, false);
      assert.equal(await versionOf(manual.exe), "outpost 0.0.1");
    } finally {
      await supervisor.stop();
    }

    // With update.auto: the same offer applies the new binary; the hub hears "committed".
    const auto = await installAgent(join(work, "auto"), bins["0.0.1"], {
      publicKey: rel.key.publicKey,
      auto: true,
      trialSeconds: 60,
    }, { edgeId: EDGE.id, hub: hubLink });
    supervisor = new Supervisor(auto);
    try {
      await supervisor.start(0);
      await waitFor(
        async () => (await (await auto.api("/api/v1/status")).json()).hub.connected,
        20_000,
        "hub link",
      );
      await offer();
      const committed = await waitFor(
        async () => {
          const r = await report();
          return r?.status === "committed" ? r : undefined;
        },
        90_000,
        `the committed report\n${supervisor.output()}`,
      );
      assert.equal(committed.version, "0.0.2");
      const status = await (await auto.api("/api/v1/status")).json();
      assert.equal(status.version, "0.0.2");
      assert.equal(await versionOf(auto.exe), "outpost 0.0.2");
      assert.equal(await versionOf(`${auto.exe}.prev`), "outpost 0.0.1");
    } finally {
      await supervisor.stop();
      await hub.stop();
      await server.close();
      removeDir(work);
    }
  },
});
