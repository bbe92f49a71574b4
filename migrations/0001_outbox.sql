-- The agent's outbox: every accepted message waits here until the hub acknowledges it.
-- seq orders the outbox (oldest first) and, with the store's epoch, makes the record id the hub
-- deduplicates on. AUTOINCREMENT keeps seq from ever being reused after deletes.
CREATE TABLE outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  device TEXT NOT NULL,
  kind TEXT NOT NULL,
  ts INTEGER NOT NULL,
  topic TEXT,
  payload TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);

-- Key/value facts about this store: its epoch (a random id made when the file is created),
-- counters that must survive restarts.
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
