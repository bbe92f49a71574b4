-- The redelivery memory as a ring per MQTT session (src/transports/mqtt/dedupe.ts): the n-th
-- stored publish of a session lands in slot n % 1024, replacing what the slot held, so that the
-- table keeps the last 1,024 publishes of each session with one B-tree write per publish and no
-- trimming. Before, each publish updated a primary key and two secondary indexes.
CREATE TABLE mqtt_seen (
  session TEXT NOT NULL,
  slot INTEGER NOT NULL,
  packet_id INTEGER NOT NULL,
  digest TEXT NOT NULL,
  conn TEXT NOT NULL,
  n INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (session, slot)
) WITHOUT ROWID;

-- What 0003's table remembered carries over; where two entries share a slot the newer one stays.
INSERT OR REPLACE INTO mqtt_seen (session, slot, packet_id, digest, conn, n, created_at)
  SELECT session, n % 1024, packet_id, digest, conn, n, created_at FROM mqtt_redelivery ORDER BY session, n;

DROP TABLE mqtt_redelivery;
