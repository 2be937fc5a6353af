-- The latest snapshot of each stream (eventstore.SnapshotStore): a cache of its fold up to
-- revision, written after appends by whoever folded the stream. Never the record: a row
-- may be deleted at any time, and readers then fold the stream in full. data is JSON kept
-- as bytes (checked by the writer): nothing queries inside it, and bytea spares parsing
-- and rendering jsonb on every load.
CREATE TABLE snapshots (
    stream     text        PRIMARY KEY,
    revision   bigint      NOT NULL CHECK (revision >= 0),
    schema     text        NOT NULL,
    data       bytea       NOT NULL,
    taken_at   timestamptz NOT NULL DEFAULT now()
);
