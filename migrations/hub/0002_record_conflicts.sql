-- Records an edge sent again under an id the hub already holds, with other content (a cloned or
-- restored edge reusing its ids): not stored a second time, but counted per edge, so that an
-- operator sees it (GET /api/v1/edges, `conflicts`; docs/hub.md).
ALTER TABLE edges ADD COLUMN conflicts INTEGER NOT NULL DEFAULT 0;
