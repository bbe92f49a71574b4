-- The rules' state (SPEC §5, §14): last forwarded values (deadband), last times let through
-- (throttle), active alarms and open aggregate windows, one row per rule action and device.
-- Rows are written in the very outbox transaction that stores the messages whose processing
-- changed them, so a refused message leaves the state as it was and an acknowledged one is
-- never judged or counted again after a crash (src/agent/rules_host.ts).
-- key: a JSON array naming the entry, e.g. ["d", rule id, action index, field, device];
-- value: JSON.
CREATE TABLE rule_state (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
