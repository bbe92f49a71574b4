/**
 * Live events (SPEC §9): a bounded bus that never waits for a client, served as Server-Sent
 * Events on `GET /api/v1/events`, fed by accepted messages, the logger and a one-second watch of
 * the outbox, the hub link and the update while someone listens.
 *
 * ```ts
 * const bus = new EventBus();
 * const ingest = ingestWithEvents(createIngest(…), bus);
 * tapLogger(telemetry.log, bus, watched);
 * const stop = watchStatus(bus, watched);
 * mountEventRoutes(app, bus);
 * ```
 */
export {
  type BusEvent,
  collectEventMetrics,
  EVENT_NAMES,
  EventBus,
  type EventBusOptions,
  EventClient,
  type EventFilter,
  type EventName,
  globMatcher,
  MESSAGE_PAYLOAD_LIMIT,
  parseFilter,
} from "./bus.ts";
export { mountEventRoutes } from "./sse.ts";
export { ingestWithEvents, tapLogger, type Watched, watchStatus } from "./wire.ts";
