/**
 * `GET /api/v1/events`: the bus as Server-Sent Events (SPEC §9). Authentication is the app's.
 * `Last-Event-ID` (or `?lastEventId=`) resumes from the ring; `?replay=1` starts with all it holds.
 * The body is pulled: a client that does not read is never written to, and its events wait in
 * its bounded queue (or are counted as dropped), so publishing never waits for it.
 */
import type { Hono } from "hono";
import { type BusEvent, type EventBus, parseFilter } from "./bus.ts";

const encoder = new TextEncoder();
const KEEPALIVE_MS = 15_000;

/** The event's frame, encoded once however many streams send it. */
function wire(e: BusEvent): Uint8Array {
  return e.wire ??= encoder.encode(`id: ${e.id}\nevent: ${e.name}\ndata: ${e.data}\n\n`);
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  n = 0;
  for (const p of parts) {
    out.set(p, n);
    n += p.length;
  }
  return out;
}

/**
 * `GET /api/v1/events`. (The recent lines themselves come from the on-disk log ring:
 * `GET /api/v1/logs`, src/management/routes.ts.)
 */
export function mountEventRoutes(app: Hono, bus: EventBus): void {
  app.get("/api/v1/events", (c) => {
    const header = c.req.header("last-event-id") ?? c.req.query("lastEventId");
    let last = header !== undefined && /^\d{1,15}$/.test(header) ? Number(header) : undefined;
    // `?replay=1` (the console on a fresh load): everything the ring holds, with no gap counted.
    if (last === undefined && c.req.query("replay") === "1") last = bus.oldestId - 1;
    const client = bus.subscribe(parseFilter(c.req.query("device"), c.req.query("kind")), last);
    if (client === undefined) {
      return c.json({ error: `Too many event streams (at most ${bus.maxClients})` }, 503);
    }
    let first = true;
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          if (first) {
            first = false;
            controller.enqueue(encoder.encode(": outpost events\nretry: 2000\n\n"));
            return;
          }
          await client.wait(KEEPALIVE_MS);
          if (client.closed) {
            controller.close();
            return;
          }
          // What is queued is older than what was lost while the queue was full.
          const parts = client.take().map(wire);
          if (client.dropped > 0) {
            parts.push(encoder.encode(`event: dropped\ndata: {"count":${client.dropped}}\n\n`));
            client.dropped = 0;
          }
          controller.enqueue(parts.length === 0 ? encoder.encode(": ping\n\n") : concat(parts));
        } catch {
          bus.unsubscribe(client);
          try {
            controller.close();
          } catch { /* already closed */ }
        }
      },
      cancel() {
        bus.unsubscribe(client);
      },
    }, { highWaterMark: 1 });
    return new Response(stream, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      },
    });
  });
}
