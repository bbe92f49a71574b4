-- Management operations on edges (SPEC §12, docs/management.md), shared by every replica: config,
-- logs, restart, rules, update, each pending -> executing -> successful | failed (with the reason).
-- n: the order operations were made in (the libSQL store's rowid).
-- replica: the replica that took the request (a logs request waits there; when that replica is no
-- longer alive, the request fails).
-- request: what was asked, secrets masked (what the API shows).
-- body: what goes down to the edge (a pushed config with its secrets, a logs query); kept only
-- while the operation is open, so that whichever replica the edge is connected to can send it,
-- and never shown. A logs answer that reached another replica than the one waiting for it is
-- kept here until that replica takes it, or until a sweep finds that replica gone.
CREATE TABLE operations (
  n bigserial UNIQUE,
  id text PRIMARY KEY,
  replica text,
  edge text NOT NULL,
  kind text NOT NULL,
  version text,
  status text NOT NULL,
  reason text,
  request text,
  body text,
  result text,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL
);
CREATE INDEX operations_by_edge ON operations (edge, created_at);
CREATE INDEX operations_open ON operations (kind, status) WHERE status IN ('pending', 'executing');
