-- The redelivery memory packed per commit (src/transports/mqtt/dedupe.ts): one row holds every
-- publish of one MQTT session (and connection) stored by one outbox transaction, as
-- ",<packet id>:<digest>" entries in arrival order. The n-th pack of a session lands in slot
-- n % 1024, replacing what the slot held. Before, each publish was a row of its own (0005): under
-- load a session stores several publishes per commit, and every row cost a bound INSERT and a
-- B-tree write.
CREATE TABLE mqtt_seen_packs (
  session TEXT NOT NULL,
  slot INTEGER NOT NULL,
  n INTEGER NOT NULL,
  conn TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  entries TEXT NOT NULL,
  PRIMARY KEY (session, slot)
) WITHOUT ROWID;

-- Each remembered publish of 0005's ring becomes a pack of one, in the same slot.
INSERT INTO mqtt_seen_packs (session, slot, n, conn, created_at, entries)
  SELECT session, slot, n, conn, created_at, ',' || packet_id || ':' || digest FROM mqtt_seen;

DROP TABLE mqtt_seen;
