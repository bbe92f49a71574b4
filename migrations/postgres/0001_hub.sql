-- The hub's PostgreSQL store (SPEC §11): shared by every replica of one hub.
-- Applied at start under an advisory lock and recorded in outpost_migrations.

-- One row per (edge, record id). seq is the hub's arrival number for GET /api/v1/records; readers
-- serve it only up to the visibility horizon (docs/decisions/0010), so a reader paging with
-- `seq > after` never skips a record committed late.
CREATE SEQUENCE records_seq AS bigint;
CREATE TABLE records (
  seq bigint PRIMARY KEY DEFAULT nextval('records_seq'),
  edge text NOT NULL,
  id text NOT NULL,
  device text NOT NULL,
  kind text NOT NULL,
  -- The record's own time, ms since the epoch, and the same as a timestamp for dashboards.
  ts bigint NOT NULL,
  time timestamptz GENERATED ALWAYS AS (to_timestamp(ts / 1000.0)) STORED,
  topic text,
  -- The payload's JSON text as the edge sent it ({"_raw": "<text>"} when it was not JSON).
  payload json NOT NULL,
  -- When the hub committed it, ms since the epoch.
  received_at bigint NOT NULL,
  UNIQUE (edge, id)
);
ALTER SEQUENCE records_seq OWNED BY records.seq;
CREATE INDEX records_edge ON records (edge, seq);
CREATE INDEX records_device ON records (device, seq);

-- What the hub knows of each edge. An edge is connected when `replica` is a live replica (its
-- heartbeat in hub_replicas is recent) and `connected` is set; `generation` grows on every
-- connect, and a replica marks an edge disconnected only with the generation it connected under,
-- so a replica that lost an edge never overrides the replica that took it.
CREATE TABLE edges (
  id text PRIMARY KEY,
  connected boolean NOT NULL DEFAULT false,
  replica text,
  generation bigint NOT NULL DEFAULT 0,
  connected_at bigint,
  last_seen_at bigint,
  records bigint NOT NULL DEFAULT 0,
  conflicts bigint NOT NULL DEFAULT 0,
  reports jsonb NOT NULL DEFAULT '{}'
);

-- The hub processes sharing this database, each with its last heartbeat.
CREATE TABLE hub_replicas (
  id text PRIMARY KEY,
  started_at timestamptz NOT NULL DEFAULT now(),
  seen_at timestamptz NOT NULL DEFAULT now()
);

-- Commands sent to devices through an edge, and how they ended.
CREATE TABLE commands (
  id text PRIMARY KEY,
  edge text NOT NULL,
  device text NOT NULL,
  method text NOT NULL,
  params text NOT NULL,
  timeout_ms bigint NOT NULL,
  status text NOT NULL,
  payload text,
  created_at bigint NOT NULL,
  completed_at bigint
);

-- Rules and update offers waiting for their edge; the latest of each kind wins.
CREATE TABLE pushes (
  edge text NOT NULL,
  kind text NOT NULL,
  version text NOT NULL,
  body text NOT NULL,
  created_at bigint NOT NULL,
  PRIMARY KEY (edge, kind)
);
