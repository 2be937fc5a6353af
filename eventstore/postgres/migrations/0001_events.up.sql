-- The event log. seq is assigned at insert, tx_id is the inserting transaction's id; the
-- global feed is ordered by (tx_id, seq) and read only below a watermark (see store.go).
CREATE TABLE events (
    seq            bigserial   PRIMARY KEY,
    tx_id          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id       uuid        NOT NULL,
    type           text        NOT NULL,
    schema_version integer     NOT NULL,
    stream         text        NOT NULL,
    revision       bigint      NOT NULL CHECK (revision >= 0),
    occurred_at    timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    data           jsonb       NOT NULL,
    metadata       jsonb       NOT NULL DEFAULT '{}',
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_revision_key UNIQUE (stream, revision)
);

-- Serves ReadAll, Head and SubscribeAll: a range scan in feed order.
CREATE INDEX events_feed_idx ON events (tx_id, seq);

-- One row per stream: its last revision, checked under the stream's advisory lock.
CREATE TABLE streams (
    stream   text   PRIMARY KEY,
    revision bigint NOT NULL CHECK (revision >= 0)
);
