-- Provisioned devices: a device's token is shown once at creation and kept only as a SHA-256 hash.
CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  token_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
