-- The reference hub's store: one row per (edge, record id); seq is the hub's arrival order.
-- Batches are committed one at a time, so a record committed later always has a higher seq and
-- readers paging with `seq > after` never miss one. AUTOINCREMENT keeps seq from being reused.
CREATE TABLE records (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  edge TEXT NOT NULL,
  id TEXT NOT NULL,
  device TEXT NOT NULL,
  kind TEXT NOT NULL,
  ts INTEGER NOT NULL,
  topic TEXT,
  -- Always valid JSON text: the record's payload, or {"_raw": "<text>"} when it was not JSON.
  payload TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  UNIQUE (edge, id)
);
CREATE INDEX records_edge ON records (edge, seq);
CREATE INDEX records_device ON records (device, seq);

-- What the hub knows of each edge. `records` counts its stored records (kept in the same
-- transaction as the inserts); `reports` holds the latest report body per type, as JSON.
CREATE TABLE edges (
  id TEXT PRIMARY KEY,
  connected INTEGER NOT NULL DEFAULT 0,
  connected_at INTEGER,
  last_seen_at INTEGER,
  records INTEGER NOT NULL DEFAULT 0,
  reports TEXT NOT NULL DEFAULT '{}'
);

-- Commands sent to devices through an edge, and how they ended.
-- status: pending, ok, error, timeout or device-offline.
CREATE TABLE commands (
  id TEXT PRIMARY KEY,
  edge TEXT NOT NULL,
  device TEXT NOT NULL,
  method TEXT NOT NULL,
  params TEXT NOT NULL,
  timeout_ms INTEGER NOT NULL,
  status TEXT NOT NULL,
  payload TEXT,
  created_at INTEGER NOT NULL,
  completed_at INTEGER
);

-- Rules and update offers waiting for their edge to connect; the latest of each kind wins.
CREATE TABLE pushes (
  edge TEXT NOT NULL,
  kind TEXT NOT NULL,
  version TEXT NOT NULL,
  body TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (edge, kind)
);
