-- What the MQTT transports remember of stored QoS 1/2 publishes, written in the same transaction
-- as the outbox records they produced, so that a device's resend after a crash is recognised
-- and acknowledged without being stored twice (see src/transports/mqtt/dedupe.ts).
CREATE TABLE mqtt_redelivery (
  session TEXT NOT NULL,
  packet_id INTEGER NOT NULL,
  digest TEXT NOT NULL,
  conn TEXT NOT NULL,
  n INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (session, packet_id)
);
CREATE INDEX mqtt_redelivery_session_n ON mqtt_redelivery (session, n);
CREATE INDEX mqtt_redelivery_created ON mqtt_redelivery (created_at);

-- Small durable notes of the MQTT transports (e.g. the filters an external session holds).
CREATE TABLE mqtt_notes (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
