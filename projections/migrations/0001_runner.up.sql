-- The runner's own tables: one checkpoint per consumer, and the events consumers gave up on.

-- A consumer's place in the global feed: the position of the last event it applied,
-- skipped or parked. (commit, prepare) is eventstore.Position; (0, 0) is the start.
CREATE TABLE projection_checkpoints (
    consumer   text        PRIMARY KEY,
    commit     bigint      NOT NULL DEFAULT 0 CHECK (commit >= 0),
    prepare    bigint      NOT NULL DEFAULT 0 CHECK (prepare >= 0),
    updated_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- Events a consumer could not apply after its retries (or could not decode at all). The
-- checkpoint moved past them in the same transaction; a Rebuild after the fix applies them.
CREATE TABLE parked_events (
    consumer   text        NOT NULL,
    event_id   uuid        NOT NULL,
    stream     text        NOT NULL,
    revision   bigint      NOT NULL,
    commit     bigint      NOT NULL,
    prepare    bigint      NOT NULL,
    event_type text        NOT NULL,
    error      text        NOT NULL,
    attempts   integer     NOT NULL,
    parked_at  timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (consumer, event_id)
);

CREATE INDEX parked_events_parked_at_idx ON parked_events (parked_at);
