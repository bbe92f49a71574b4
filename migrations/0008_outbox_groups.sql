-- The outbox as the hub link sends it (src/outbox/mod.ts, docs/decisions/0020-…): one row per
-- group of records committed together, holding them already encoded as on the wire (each record
-- a `Record records = 2` field of the Batch message, laid end to end). The row holds the records
-- seq - n + 1 … seq; seq, the key, is its last record's. bytes is what the records count against
-- outbox.maxBytes. records is the last column so that reading the others never reads the blob.
-- The rows before are in the `outbox` table of 0001: the outbox converts them into this table
-- when it opens, with their seqs and ids, and then drops that table.
CREATE TABLE outbox_groups (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  n INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  records BLOB NOT NULL
);

-- A seq is never used twice: the new table goes on from the highest seq the old one ever gave.
-- (The outbox sets each row's seq itself; AUTOINCREMENT keeps the highest ever inserted.)
INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox_groups', seq FROM sqlite_sequence WHERE name = 'outbox';
