/**
 * `ingest.accept(messages, {inTransaction})`: the MQTT transports' memory of what they stored
 * commits in the same outbox transaction as the messages, or not at all.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Message } from "../../../src/core/message.ts";
import { DeviceRegistry } from "../../../src/devices/mod.ts";
import { createIngest, passThrough } from "../../../src/ingest/mod.ts";
import { createOutbox } from "../../../src/outbox/mod.ts";
import { createLogger, createTelemetry } from "../../../src/telemetry/mod.ts";
import { removeDir, tempDir } from "../../helpers/procs.ts";

const msg = (n: number, pad = 0): Message => ({
  device: "d1",
  kind: "telemetry",
  ts: n,
  payload: { n, pad: "x".repeat(pad) },
  source: "test",
});

Deno.test("inTransaction runs inside the transaction that stores the messages, also when rules leave none", async () => {
  const dir = tempDir();
  try {
    const outbox = createOutbox({ path: join(dir, "o.db"), maxBytes: 70_000, onFull: "reject" });
    const telemetry = createTelemetry(createLogger("error", () => {}));
    let drop = false;
    const ingest = createIngest({
      outbox,
      devices: new DeviceRegistry(outbox.db),
      telemetry,
      rules: () => (drop ? { process: () => ({ outputs: [], errors: 0 }) } : passThrough),
    });
    const seen: boolean[] = [];
    const probe = () => seen.push(outbox.db.raw.inTransaction);
    assert.deepEqual(await ingest.accept([msg(1)], { inTransaction: probe }), { ok: true, accepted: 1 });
    drop = true;
    assert.deepEqual(await ingest.accept([msg(2)], { inTransaction: probe }), { ok: true, accepted: 1 });
    assert.deepEqual(seen, [true, true]);
    assert.equal(outbox.stats().depth, 1);

    // A batch refused by a full outbox (onFull: "reject") does not run it.
    drop = false;
    const refused = await ingest.accept([msg(3, 80_000)], { inTransaction: probe });
    assert.equal(refused.ok ? "stored" : refused.reason, "full");
    assert.equal(seen.length, 2);
    outbox.close();
  } finally {
    removeDir(dir);
  }
});
