-- Management operations on edges (SPEC §12, docs/management.md): config, logs, restart, rules,
-- update, each pending -> executing -> successful | failed (with the reason).
-- request: what was asked, secrets masked (what the API shows).
-- body: what goes down to the edge (a pushed config with its secrets); kept only while the
-- operation is open, so that it can be sent again after a reconnect, and never shown.
CREATE TABLE operations (
  id TEXT PRIMARY KEY,
  edge TEXT NOT NULL,
  kind TEXT NOT NULL,
  version TEXT,
  status TEXT NOT NULL,
  reason TEXT,
  request TEXT,
  body TEXT,
  result TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX operations_by_edge ON operations (edge, created_at);
