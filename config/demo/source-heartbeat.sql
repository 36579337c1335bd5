-- Lethe's source heartbeat table: proof of how far the source connector has read the WAL.
-- Not a demo table and no personal data: Lethe owns it, in a schema of its own. Not named
-- `lethe`: a schema named as the role (the demo's role is `lethe`) comes first in its default
-- search_path ("$user", public), so every table it then creates unqualified would land there.
--
-- The connector's `heartbeat.action.query` (config/connect/hosting-source.json) upserts its
-- one row with now() on every heartbeat. That commit travels the WAL behind every earlier
-- commit, through the same connector, so when the worker reads its change on
-- `<topic prefix>.lethe_heartbeat.source_heartbeat`, every change committed before its
-- `source.ts_ms` has been published (lethe/heartbeat.py). Idempotent: `lethe stack up` runs
-- it on every start, after the demo schema (which creates the publication); the compose file
-- mounts it into /docker-entrypoint-initdb.d after the demo files.

CREATE SCHEMA IF NOT EXISTS lethe_heartbeat;

CREATE TABLE IF NOT EXISTS lethe_heartbeat.source_heartbeat (
    id       int         PRIMARY KEY,
    beat_at  timestamptz NOT NULL
);

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_publication_tables
        WHERE pubname = 'lethe_hosting'
            AND schemaname = 'lethe_heartbeat' AND tablename = 'source_heartbeat'
    ) THEN
        ALTER PUBLICATION lethe_hosting ADD TABLE lethe_heartbeat.source_heartbeat;
    END IF;
END
$$;
