import { createOutbox } from "./src/outbox/mod.ts";
const o = createOutbox({ path: "/tmp/t/ob/outbox.db", maxBytes: 1 << 30, onFull: "reject" });
console.log(o.stats(), o.epoch);
const N = 200000; const t0 = performance.now();
const ps = [];
for (let i = 0; i < N; i += 100) {
  const batch = []; for (let j = 0; j < 100; j++) batch.push({ device: "d" + (j % 8), kind: "telemetry" as const, ts: Date.now(), payload: { temperature: 21.5 + j, humidity: 40, seq: i + j }, source: "x" });
  ps.push(o.enqueue(batch));
}
await Promise.all(ps);
const t1 = performance.now();
console.log("enqueue rows/s", Math.round(N / ((t1 - t0) / 1000)), o.stats(), o.db.statementCount());
let after = 0, n = 0;
while (true) { const r = o.claim(after, 500); if (!r.length) break; after = r[r.length - 1].seq; n += r.length; await o.ack(r[0].seq, after); }
console.log("drain rows/s", Math.round(N / ((performance.now() - t1) / 1000)), n, o.stats(), o.db.statementCount(), Math.round(process.memoryUsage().rss / 1e6), "MB");
o.close();
