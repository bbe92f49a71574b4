/**
 * Edges as a load generator for hub benchmarks (a separate process from the hubs): each edge opens
 * the hub link (`outpost.v1.Hub/Connect`) to its URL and sends `records` records in batches of
 * `batch`, at most `window` batches unacknowledged, as the agent's uplink does. Prints one JSON
 * line `{"event":"edges.done", acked, seconds}` when every batch is acknowledged.
 *
 *   bun scripts/bench/grpc_edges.ts '{"edges":[{"url","id","routingKey","secret"}],"records":100000,"batch":500,"window":16}'
 */
import * as grpc from "@grpc/grpc-js";
import process from "node:process";
import { AUTH_METADATA, type EdgeFrame, hubClientConstructor, type HubFrame } from "../../src/proto/mod.ts";

interface Options {
  edges: { url: string; id: string; routingKey: string; secret: string }[];
  records: number;
  batch: number;
  window: number;
}

const o = JSON.parse(process.argv[2]) as Options;
const encoder = new TextEncoder();
const Client = hubClientConstructor();

function payload(n: number): Uint8Array {
  return encoder.encode(
    `{"n":${n},"temperature":${20 + (n % 100) / 10},"humidity":${40 + (n % 50) / 10},"pressure":${
      1013 + (n % 20)
    },"battery":3.7,"status":"ok"}`,
  );
}

function runEdge(e: Options["edges"][number]): Promise<number> {
  return new Promise((resolve, reject) => {
    const client = new Client(new URL(e.url).host, grpc.credentials.createInsecure(), {
      "grpc.max_send_message_length": 32 * 1024 * 1024,
    });
    const md = new grpc.Metadata();
    md.set(AUTH_METADATA.edgeId, e.id);
    md.set(AUTH_METADATA.routingKey, e.routingKey);
    md.set(AUTH_METADATA.secret, e.secret);
    const call = (client as any).connect(md) as grpc.ClientDuplexStream<EdgeFrame, HubFrame>;
    const batches = Math.ceil(o.records / o.batch);
    let sent = 0;
    let acked = 0;
    const send = () => {
      while (sent < batches && sent - acked < o.window) {
        const first = sent * o.batch;
        const n = Math.min(o.batch, o.records - first);
        const records = Array.from({ length: n }, (_, k) => ({
          id: `${e.id}-${first + k}`,
          device: `${e.id}-d${(first + k) % 8}`,
          kind: "telemetry",
          ts: Date.now(),
          payload: payload(first + k),
          topic: "",
        }));
        sent++;
        call.write({ frame: "batch", batch: { seq: sent, records } } as EdgeFrame);
      }
    };
    call.on("data", (frame: HubFrame) => {
      if (frame.frame !== "ack") return;
      acked++;
      if (acked === batches) {
        call.end();
        client.close();
        resolve(o.records);
      } else send();
    });
    call.on("error", (error) => reject(error));
    send();
  });
}

const t0 = performance.now();
const counts = await Promise.all(o.edges.map(runEdge));
const seconds = (performance.now() - t0) / 1000;
console.log(JSON.stringify({ event: "edges.done", acked: counts.reduce((a, b) => a + b, 0), seconds }));
process.exit(0);
