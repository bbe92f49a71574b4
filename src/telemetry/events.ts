/**
 * Everything outpost can report, in one list: each log event's name, the levels it is logged
 * at, and what it means; then each metric family. A logger takes only these event names and
 * `Metrics.family()` only these metric names (both checked by the type checker), and the
 * telemetry's logger counts every event it writes in `outpost_events_total{event, level}`.
 *
 * Levels: `error` means an operator is needed or data could not be kept; `warn` a refusal or a
 * degraded state that heals itself; `info` lifecycle, never per message; `debug` per-connection
 * or per-command detail.
 */
/** How much a reader should care: see above. */
export type Level = "debug" | "info" | "warn" | "error";

type Entry = readonly [levels: readonly Level[], meaning: string];

export const EVENTS = {
  // The agent's lifecycle (src/agent, src/cli/run.ts).
  "agent.started": [
    ["info"],
    "every part started: version, edge id, API address, data folder, hub, config file",
  ],
  "agent.stopping": [["info"], "a signal arrived; the parts stop in reverse start order"],
  "agent.stopped": [["info"], "every part stopped; the process exits"],
  "agent.start_failed": [["error"], "a part could not start; the agent exits 1 (2 for bad config or rules)"],
  "agent.stop_failed": [["error"], "a part failed while stopping; the others still stop"],
  "bug.unhandled_rejection": [["error"], "a promise rejected with nobody to handle it: a bug to report"],
  "memory.gc_options": [["info"], "the garbage collector settings in force (docs/decisions/0008)"],
  "memory.startup_pages_released": [["info"], "memory used only at start-up was handed back to the system"],

  // Ingest and the outbox (src/ingest, src/outbox, src/telemetry).
  "ingest.rejected": [
    ["warn"],
    "device data refused (bad JSON, too large, too deep, device limit, outbox full)",
  ],
  "outbox.dropped": [["error"], "records dropped from a full outbox under onFull: drop-oldest"],
  "outbox.listener_failed": [["error"], "a part waiting for new records failed; the records are safe"],
  "outbox.statfs_failed": [["error"], "the free space of the outbox's file system could not be read"],
  "outbox.ack_failed": [["error"], "acknowledged records could not be deleted; they are sent again"],
  "devices.limit": [["warn"], "a new device id was refused: devices.max devices are tracked"],
  "device.created": [["info"], "a device and its token were created through the API"],
  "device.connectivity": [["debug"], "a device went online or offline (forwarded to the hub as an event)"],
  "devices.connectivity_waiting": [
    ["warn"],
    "connectivity changes could not be stored yet (outbox full or stopping); they are retried",
  ],
  "devices.connectivity_dropped": [
    ["warn"],
    "connectivity changes waited past their bound and the oldest were dropped",
  ],
  "devices.sweep_failed": [["error"], "the inactivity sweep failed; it runs again"],

  // The control API and authentication (src/control, src/core/auth_limiter.ts).
  "api.error": [["error"], "a request failed unexpectedly: answered 500, a bug to report"],
  "api.storage_full": [["error"], "a request could not be kept because the disk is full: answered 507"],
  "auth.refused": [["warn"], "a request or connection without a valid token or password"],
  "auth.limited": [["warn"], "an address refused for a minute after too many failed authentications"],
  "console.signed_in": [["info"], "someone signed in to the web console with the API token"],
  "console.origin_refused": [
    ["warn"],
    "a state-changing request signed in by cookie came from another origin: answered 403",
  ],

  // Rules (src/agent/rules_host.ts).
  "rules.loaded": [["info"], "the rules in force at start: version and rule count"],
  "rules.applied": [["info"], "new rules are in force (from the API, the hub or the rules file)"],
  "rules.refused": [["warn", "error"], "a rules document was refused; the rules in force are unchanged"],
  "rules.file_invalid": [["error"], "the rules file changed on disk and is invalid; the rules in force stay"],
  "rules.emit_failed": [["error"], "a closed aggregate window could not be stored yet; it is retried"],
  "rules.state_store_failed": [["error"], "rule state could not be written"],
  "rules.state_unreadable": [
    ["warn"],
    "stored rule state could not be read; the rules start from empty state",
  ],

  // The hub link, edge side (src/uplink, src/downlink).
  "hub.connected": [["info"], "the uplink is connected to the hub"],
  "hub.disconnected": [["warn"], "the uplink lost the hub (and why); it reconnects with backoff"],
  "hub.frame_unhandled": [["warn"], "the hub sent a frame this edge does not handle"],
  "uplink.heartbeat_failed": [["warn"], "a heartbeat could not be written; the link is checked again"],
  "uplink.pump_failed": [["error"], "sending records failed unexpectedly; the link reconnects and resends"],

  // Device commands (src/device_commands).
  "command.received": [["debug"], "a command for a device arrived from the hub"],
  "command.repeated": [
    ["debug", "warn"],
    "the hub sent a command again (after a reconnect) or a device answered twice",
  ],
  "command.delivered": [["debug"], "a command was handed to its device"],
  "command.deliver_failed": [
    ["warn"],
    "a command could not be handed to its device; it waits for the next chance",
  ],
  "command.finished": [["info"], "a command ended: answered, timed out, refused or failed"],
  "command.refused": [["warn"], "a command was refused (unknown device, bad params, too many open)"],
  "command.answer_ignored": [["warn"], "a device's answer matched no open command"],
  "command.failed": [["error"], "a command could not be handled; the hub gets an error result"],
  "command.results_dropped": [["error"], "unacknowledged results over the bound were dropped"],
  "command.store_failed": [["error"], "the commands table could not be read or written"],

  // MQTT (src/transports/mqtt).
  "mqtt.broker.started": [["info"], "the embedded broker listens"],
  "mqtt.broker.stopped": [["info"], "the embedded broker closed"],
  "mqtt.broker.open": [["warn"], "the embedded broker listens beyond loopback without authentication"],
  "mqtt.broker.error": [["error"], "the embedded broker failed"],
  "mqtt.client_error": [["debug"], "one client's connection failed (its problem, not the broker's)"],
  "mqtt.connection_error": [["debug"], "a connection failed before it was a client"],
  "mqtt.limited": [["warn"], "a client hit a broker bound (connections, packet size, retained, queue)"],
  "mqtt.backpressure": [["warn"], "the outbox is full: PUBACKs are withheld until it has room"],
  "mqtt.backpressure_ended": [["info"], "the outbox has room again; PUBACKs resume"],
  "mqtt.store_failed": [["error"], "a publish could not be stored unexpectedly; it is not acknowledged"],
  "mqtt.publish_failed": [["warn"], "a message routed to the local bus could not be published"],
  "mqtt.command_answer_failed": [["error"], "a device's command answer over MQTT could not be taken"],
  "mqtt.prune_failed": [["error"], "old redelivery entries could not be pruned"],
  "mqtt.gateway_refused": [
    ["warn"],
    "a ThingsBoard gateway message was refused (bad JSON, unknown child, devices.max); counted, logged once a minute",
  ],
  "mqtt.session_expiry_failed": [["error"], "expired persistent sessions could not be removed"],
  "mqtt.external.connected": [["info"], "connected to an external broker"],
  "mqtt.external.disconnected": [["warn"], "the external broker connection was lost; it reconnects"],
  "mqtt.external.unreachable": [["warn"], "the external broker cannot be reached"],
  "mqtt.external.error": [["warn"], "the connection to the external broker failed after it had worked"],
  "mqtt.external.qos0_dropped": [
    ["warn"],
    "QoS 0 messages from the external broker dropped while the outbox was busy",
  ],
  "mqtt.external.subscribed": [["info"], "subscribed to the device topics on the external broker"],
  "mqtt.external.subscribe_refused": [["error"], "the external broker refused the subscription"],
  "mqtt.external.subscribe_failed": [["error"], "the subscription to the external broker failed"],
  "mqtt.external.store_failed": [["error"], "a message from the external broker could not be stored"],

  // CoAP (src/transports/coap).
  "coap.started": [["info"], "the CoAP endpoint listens (UDP)"],
  "coap.error": [["error"], "the CoAP endpoint failed on a request or its socket; the request got 5.00"],
  "coap.observer_gone": [["debug"], "a device stopped observing its commands (reset or no acknowledgement)"],

  // Modbus TCP polling (src/transports/modbus).
  "modbus.online": [["info"], "a Modbus server answers a device's polls (at start or again after failing)"],
  "modbus.offline": [
    ["warn"],
    "a Modbus server did not answer a poll: the device is offline, retried with backoff",
  ],
  "modbus.written": [["debug"], "a modbus.write command was carried out (or refused by the server)"],
  "modbus.store_failed": [
    ["error"],
    "a poll could not be stored unexpectedly; the next poll is taken as usual",
  ],

  // Self-update (src/update, src/downlink/offers.ts).
  "update.offered": [["info"], "the hub offered an update"],
  "update.up_to_date": [["info"], "the offered version is not newer than the running one"],
  "update.downloading": [["info"], "the artifact is being downloaded"],
  "update.download.resume": [["info"], "a download resumed where it was interrupted"],
  "update.download.resumed": [["info"], "an interrupted download continues after a restart"],
  "update.download.interrupted": [["info"], "a download was interrupted; it resumes"],
  "update.compressed.skipped": [["info"], "no xz here: the plain artifact is downloaded instead"],
  "update.compressed.failed": [
    ["warn"],
    "the compressed artifact could not be fetched or decoded: the plain one is used",
  ],
  "update.compressed.unpacked": [["info"], "the compressed artifact was verified and decompressed"],
  "update.paused": [["warn"], "the download keeps failing; it is retried later"],
  "update.swapping": [["info"], "the verified executable is being swapped in"],
  "update.swapped": [["info"], "the new executable is in place; the agent restarts into it"],
  "update.restart": [["info"], "the agent restarts into the new version"],
  "update.watchdog.started": [["info"], "the restart watchdog is waiting for the new process"],
  "update.watchdog.done": [["info"], "the restart watchdog saw the new process start"],
  "update.trial.started": [["info"], "the new version is on trial until it proves healthy"],
  "update.committed": [["info"], "the trial passed: the new version stays"],
  "update.trial.commit_failed": [["error"], "the trial passed but could not be recorded; it is judged again"],
  "update.trial.marker_corrupt": [["warn"], "the trial marker was unreadable and was removed"],
  "update.trial.stale_marker": [["warn"], "a trial marker from another version was removed"],
  "update.rolled_back": [["error"], "the trial failed: the previous version is back"],
  "update.rollback_impossible": [["error"], "the trial failed and no previous version is kept"],
  "update.failed": [["error"], "an update failed (verification, download, swap); the running version stays"],

  // Management from the hub (src/management): operations, config changes on trial.
  "operation.received": [["info"], "the hub asked for a config change or a restart"],
  "operation.refused": [
    ["warn"],
    "an operation from the hub was refused (invalid config, busy, unknown kind)",
  ],
  "operation.finished": [["info"], "an operation from the hub ended: successful or failed, with the reason"],
  "operation.store_failed": [
    ["error"],
    "an operation's outcome could not be recorded; it is reported anyway",
  ],
  "config.written": [["info"], "a pushed config is in place (the previous one kept); the agent restarts"],
  "config.stage_failed": [["error"], "a pushed config could not be written; the config in force stays"],
  "config.paused": [["warn"], "test hook: the config change stops here for good"],
  "config.trial.started": [
    ["info"],
    "the agent runs on a pushed config, on trial until the hub is connected",
  ],
  "config.trial.failed": [["warn"], "a pushed config failed (not in place, or its trial failed)"],
  "config.trial.marker_corrupt": [["warn"], "the config trial marker was unreadable and was removed"],
  "config.trial.commit_failed": [
    ["error"],
    "the config trial passed but could not be recorded; judged again",
  ],
  "config.committed": [["info"], "the pushed config passed its trial and stays"],
  "config.rolled_back": [["error"], "the pushed config failed its trial: the previous one is back"],
  "config.rollback_impossible": [
    ["error"],
    "the pushed config failed and the previous file cannot be restored",
  ],
  "agent.restart": [["info"], "the agent restarts, as the hub asked or to apply or undo a config"],
  "operation.pending_failed": [
    ["warn"],
    "the hub restarted while it waited for an answer: the operation failed",
  ],
  "operation.updated": [["info"], "an operation's state changed at the hub"],

  // The reference hub (src/hub).
  "hub.started": [["info"], "the hub listens: gRPC and API addresses"],
  "hub.stopping": [["info"], "the hub is stopping"],
  "hub.stopped": [["info"], "the hub stopped"],
  "hub.failed": [["error"], "the hub could not start or stopped on an error"],
  "api.auth_limited": [["warn"], "the hub's API refused an address after too many failed tokens"],
  "api.failed": [["error"], "a hub API request failed unexpectedly: answered 500"],
  "hub.api_without_token": [["warn"], "the hub's API has no token and listens beyond loopback"],
  "hub.internal_error": [["error"], "the hub failed unexpectedly on an edge's frame"],
  "hub.store_failed": [["error"], "a batch could not be stored; it is not acknowledged and comes again"],
  "hub.record_conflict": [["warn"], "an edge sent a record id again with different content"],
  "hub.store_opened": [
    ["info"],
    "the hub's store is open: its kind, URL (without password) and migrations applied",
  ],
  "hub.store_unavailable": [
    ["warn"],
    "the hub's database does not answer at start; it tries again with backoff",
  ],
  "hub.store_listen_failed": [["error"], "a replica lost the other replicas' messages (LISTEN) and retries"],
  "hub.retention": [["info"], "records older than the retention were deleted (count, in bounded batches)"],
  "hub.retention_failed": [["warn"], "a retention pass failed; it runs again later"],
  "batch.stored": [["debug"], "a batch was stored and acknowledged"],
  "edge.connected": [["info"], "an edge connected"],
  "edge.disconnected": [["info"], "an edge disconnected"],
  "edge.rejected": [["warn"], "an edge was refused (unknown, wrong secret)"],
  "edge.auth_limited": [["warn"], "an address was refused after too many failed edge sign-ins"],
  "edge.frame_ignored": [["debug"], "an edge sent a frame the hub ignores"],
  "edge.report_ignored": [["warn"], "an edge sent a report the hub could not read"],
  "edge.write_failed": [["warn"], "a frame to an edge could not be written"],
  "edge.flow_control_default": [["debug"], "an edge did not say its window; the default applies"],
  "command.unknown_result": [["warn"], "an edge sent a result for a command the hub does not know"],
} as const satisfies Record<string, Entry>;

/** Every metric family on `GET /metrics`: its type and help text. */
export const METRICS = {
  outpost_events_total: ["counter", "Events reported, by name and level (src/telemetry/events.ts)"],
  outpost_ingest_accepted_total: ["counter", "Messages accepted (durable in the outbox)"],
  outpost_ingest_rejected_total: ["counter", "Messages rejected (bad input, too large, full)"],
  outpost_outbox_stored_total: ["counter", "Records written to the outbox"],
  outpost_outbox_commits_total: [
    "counter",
    "Outbox transactions committed (each one fsync; group commit shares them)",
  ],
  outpost_hub_delivered_total: ["counter", "Records acknowledged by the hub"],
  outpost_outbox_dropped_total: ["counter", "Records dropped from a full outbox"],
  outpost_hub_connects_total: ["counter", "Hub connections established"],
  outpost_auth_refused_total: ["counter", "Device connections or requests refused"],
  outpost_rules_errors_total: ["counter", "Rule evaluation errors"],
  outpost_mqtt_limited_total: [
    "counter",
    "What the embedded broker refused or dropped at a bound of mqtt.broker.limits, by limit",
  ],
  outpost_mqtt_resends_total: [
    "counter",
    "MQTT publishes recognised as resends of committed ones (acknowledged, not stored again)",
  ],
  outpost_mqtt_backpressure_total: ["counter", "Times an MQTT batch waited for room in a full outbox"],
  outpost_mqtt_clients: ["gauge", "Clients connected to the embedded broker"],
  outpost_auth_limited_total: [
    "counter",
    "HTTP requests refused (429) because their address failed authentication too often",
  ],
  outpost_outbox_depth: ["gauge", "Records waiting in the outbox"],
  outpost_outbox_bytes: ["gauge", "Bytes waiting in the outbox"],
  outpost_outbox_dropped: ["gauge", "Records dropped from a full outbox, ever"],
  outpost_hub_connected: ["gauge", "1 when the hub link is up"],
  outpost_process_resident_memory_bytes: ["gauge", "Resident set size"],
  outpost_js_heap_used_bytes: ["gauge", "JavaScript heap in use"],
  outpost_js_heap_total_bytes: ["gauge", "JavaScript heap reserved"],
  outpost_js_external_bytes: ["gauge", "Memory held by JavaScript objects outside the heap"],
  outpost_commands_total: ["counter", "Commands finished, by result status"],
  outpost_commands_open: ["gauge", "Commands waiting or in progress"],
  outpost_devices_refused_total: [
    "counter",
    "Messages refused because their device id was new and devices.max ids were already tracked",
  ],
  outpost_devices_online: [
    "gauge",
    "Devices online now (an open session, or active within the inactivity timeout)",
  ],
  outpost_device_connectivity_changes_total: ["counter", "Devices going online or offline"],
  outpost_device_connectivity_dropped_total: [
    "counter",
    "Connectivity changes dropped before they were stored (the waiting queue was full)",
  ],
  outpost_mqtt_gateway_refused_total: [
    "counter",
    "ThingsBoard gateway messages or child devices refused, by reason",
  ],
  outpost_coap_resends_total: [
    "counter",
    "CoAP requests recognised as retransmissions of stored ones (answered 2.01, not stored again)",
  ],
  outpost_modbus_polls_total: ["counter", "Modbus polls, by result (ok, failed)"],
  outpost_mqtt_external_qos0_dropped_total: [
    "counter",
    "QoS 0 messages from external brokers dropped while too many waited for the store",
  ],
  outpost_live_streams: ["gauge", "Live event streams open (GET /api/v1/events)"],
  outpost_live_queue_max: ["gauge", "Events queued for the slowest live event stream"],
  outpost_live_dropped: ["gauge", "Events lost by slow live event streams, ever"],
  outpost_live_refused: ["gauge", "Live event streams refused at the bound, ever"],
  outpost_console_sessions: ["gauge", "Console sessions signed in"],
} as const satisfies Record<string, readonly ["counter" | "gauge", string]>;

/** Every metric family's name. */
export type MetricName = keyof typeof METRICS;

/** Every event name. */
export type EventName = keyof typeof EVENTS;

/** The events that may be logged at `level`. */
export type EventAt<L extends Level> = {
  [K in EventName]: L extends (typeof EVENTS)[K][0][number] ? K : never;
}[EventName];
