/**
 * The reference hub (SPEC §6): a small real hub for development, demos, tests and integrators.
 * Edges connect over gRPC (`outpost.v1.Hub/Connect`); the hub stores each (edge, record id) once
 * in its store (its own libSQL file by default; PostgreSQL shared by several hub processes, or a
 * libSQL server: SPEC §11), acknowledges a batch only after it has committed, and serves an HTTP
 * API to read records and to send commands, rules and update offers to edges.
 *
 * ```ts
 * const hub = createHub(loadHubConfig("hub.json"));
 * const { grpcPort, apiPort } = await hub.start();
 * // …
 * await hub.stop();
 * ```
 */
export { createHub, type Hub, type HubOptions, type HubPorts, runHub } from "./hub.ts";
export {
  type HubConfig,
  hubConfigJsonSchema,
  HubConfigSchema,
  type HubEdgeConfig,
  loadHubConfig,
  parseHubConfig,
} from "./config.ts";
export { COMMAND_TIMEOUT_MS, createHubApi, type HubApiDeps, RECORDS_LIMIT } from "./api.ts";
export {
  AUTH_FAILED,
  type CommandOutcome,
  type CommandRequest,
  createEdgeLink,
  type EdgeLink,
  type EdgeLinkOptions,
} from "./link.ts";
export { openHubStore } from "./stores.ts";
export {
  type CommandRow,
  createHubStore,
  type EdgeRow,
  type HubStore,
  type RecordQuery,
  type StoredRecord,
} from "./store.ts";
