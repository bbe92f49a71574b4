/**
 * Devices (docs/devices.md): the registry (tokens, seen devices under `devices.max`, last values,
 * connectivity) and the connectivity host (inactivity sweep, changes forwarded to the hub).
 *
 * Transports report connectivity through the registry:
 * - `connected(id, transport)` / `disconnected(id, transport)` around a session (an MQTT
 *   connection, a gateway child's `connect`/`disconnect`, a polled device's successful polls);
 * - `activity(id, transport)` for connectionless traffic (HTTP, CoAP): online until
 *   `devices.inactivityTimeout` passes without more.
 * Accepted messages count as activity by themselves (`observe()`, called by ingest after commit).
 */
export {
  type ConnectivityChange,
  DEFAULT_INACTIVITY_TIMEOUT_MS,
  DEFAULT_MAX_DEVICES,
  DeviceRegistry,
  MAX_DEVICE_VALUE_BYTES,
  MAX_LAST_VALUES,
  MAX_VALUE_BYTES,
  type RegistryOptions,
  type SeenDevice,
  transportOf,
  type ValueMarker,
} from "./registry.ts";
export {
  type Connectivity,
  type ConnectivityDeps,
  connectivityRecord,
  createConnectivity,
  MAX_QUEUED_CHANGES,
} from "./connectivity.ts";
