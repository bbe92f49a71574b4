-- Commands from the hub to devices (see src/device_commands/ and docs/commands.md). A row is written
-- when the command arrives and lives until its result has been acknowledged by the hub (and a
-- while after, for GET /api/v1/commands).
-- state: pending (waiting for the device), delivered (handed to the device, waiting for its
-- answer), done (status and payload hold the result). result_acked: 1 once the hub confirmed it
-- has stored the result; until then the result is sent again after every reconnect.
CREATE TABLE commands (
  id TEXT PRIMARY KEY,
  device TEXT NOT NULL,
  method TEXT NOT NULL,
  -- JSON text; NULL for a command refused before its params were read.
  params TEXT,
  timeout_ms INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  deadline INTEGER NOT NULL,
  state TEXT NOT NULL,
  delivered_via TEXT,
  delivered_at INTEGER,
  status TEXT,
  -- JSON text of the result payload.
  payload TEXT,
  completed_at INTEGER,
  result_sent_at INTEGER,
  result_acked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX commands_open ON commands (state, deadline);
CREATE INDEX commands_device ON commands (device, state);
CREATE INDEX commands_unacked ON commands (result_acked, state);

-- Devices a command may be sent to although nothing of them has arrived since the agent
-- started: every device the agent has seen, kept across restarts (the registry keeps what it
-- has seen in memory only).
CREATE TABLE command_devices (
  device TEXT PRIMARY KEY,
  seen_at INTEGER NOT NULL
);
