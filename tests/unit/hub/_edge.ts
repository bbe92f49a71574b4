/** A test edge: a real grpc-js client of the hub's Connect stream, with helpers to await frames. */
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type EdgeFrame,
  hubClientConstructor,
  type HubFrame,
  type WireRecord,
} from "../../../src/proto/mod.ts";
import { createHub, type Hub, type HubConfig, type HubPorts } from "../../../src/hub/mod.ts";
import { createLogger } from "../../../src/telemetry/mod.ts";

const silent = createLogger("error", () => {});
type Unframed<T> = T extends unknown ? Omit<T, "frame"> : never;

export const EDGE = { id: "gw-01", routingKey: "rk-gw-01", secret: "s3cret-gw-01" };
export const OTHER = { id: "gw-02", routingKey: "rk-gw-02", secret: "s3cret-gw-02" };
export const TOKEN = "test-token-0123456789abcdef";

export interface TestHub extends HubPorts {
  hub: Hub;
  dataDir: string;
  api(path: string, init?: RequestInit & { token?: string | null }): Promise<Response>;
  close(): Promise<void>;
}

/** Starts a real hub on 127.0.0.1 with free ports and a temp data dir. */
export async function startHub(overrides: Partial<HubConfig> = {}): Promise<TestHub> {
  const dataDir = mkdtempSync(join(tmpdir(), "outpost-hub-"));
  const config: HubConfig = {
    listen: "127.0.0.1:0",
    api: { listen: "127.0.0.1:0", token: TOKEN },
    dataDir,
    edges: [EDGE, OTHER],
    ...overrides,
  };
  const hub = createHub(config, { log: silent, commandGraceMs: 50 });
  const ports = await hub.start();
  return {
    hub,
    dataDir,
    ...ports,
    api(path, init = {}) {
      const { token = TOKEN, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (token !== null) headers.set("authorization", `Bearer ${token}`);
      return fetch(`http://127.0.0.1:${ports.apiPort}${path}`, { ...rest, headers });
    },
    async close() {
      await hub.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface TestEdge {
  call: grpc.ClientDuplexStream<EdgeFrame, HubFrame>;
  /** Resolves when the hub sent response headers ("connected"). */
  headers: Promise<void>;
  /** Resolves with the call's final status. */
  status: Promise<grpc.StatusObject>;
  frames: HubFrame[];
  /** Waits for the first frame (from `from` on) that `match` accepts. */
  next<T extends HubFrame["frame"]>(
    frame: T,
    match?: (f: Extract<HubFrame, { frame: T }>) => boolean,
  ): Promise<Extract<HubFrame, { frame: T }>>;
  send(frame: Unframed<EdgeFrame>): void;
  batch(seq: number, records: WireRecord[]): void;
  /** Half-closes, waits for the status, closes the client. */
  close(): Promise<grpc.StatusObject>;
}

export function connectEdge(port: number, who: { id: string; routingKey: string; secret: string }): TestEdge {
  const Client = hubClientConstructor();
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as any;
  const metadata = new grpc.Metadata();
  metadata.set("edge-id", who.id);
  metadata.set("routing-key", who.routingKey);
  metadata.set("secret", who.secret);
  const call = client.connect(metadata) as grpc.ClientDuplexStream<EdgeFrame, HubFrame>;
  const frames: HubFrame[] = [];
  const listeners = new Set<() => void>();
  call.on("data", (raw: unknown) => {
    const frame = raw as HubFrame | undefined;
    if (frame !== undefined) frames.push(frame);
    for (const l of [...listeners]) l();
  });
  call.on("error", () => {}); // the status promise reports it
  const headers = new Promise<void>((resolve) => call.on("metadata", () => resolve()));
  const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
  const done = status.then((s) => {
    client.close();
    return s;
  });
  const edge: TestEdge = {
    call,
    headers,
    status: done,
    frames,
    next(frame, match = () => true) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = frames.find((f) => f.frame === frame && match(f as any));
          if (found === undefined) return false;
          listeners.delete(check);
          clearTimeout(timer);
          resolve(found as any);
          return true;
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(
            new Error(`No ${frame} frame within 5 s; got ${JSON.stringify(frames.map((f) => f.frame))}`),
          );
        }, 5000);
        if (!check()) listeners.add(check);
      });
    },
    send(frame) {
      call.write(frame as any);
    },
    batch(seq, records) {
      edge.send({ batch: { seq, records } });
    },
    async close() {
      call.end();
      return await done;
    },
  };
  return edge;
}

const encoder = new TextEncoder();

/** A wire record with a JSON payload. */
export function record(id: string, device: string, payload: unknown, ts = 1_700_000_000_000): WireRecord {
  return {
    id,
    device,
    kind: "telemetry",
    ts,
    payload: encoder.encode(typeof payload === "string" ? payload : JSON.stringify(payload)),
    topic: `devices/${device}/telemetry`,
  };
}
