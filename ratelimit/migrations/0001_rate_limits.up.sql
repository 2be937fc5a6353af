-- One row per rate-limit key (a SHA-256 of "class|ip|prefix" or "class|acct|CODE/login",
-- so neither addresses nor login names are stored in clear). full_at is the GCRA's
-- theoretical arrival time: the moment the key's bucket is full again. A row whose full_at
-- has passed says nothing a missing row would not, so the cleanup deletes it.
--
-- UNLOGGED: the buckets are soft state. Skipping the WAL makes each spend a cheap commit;
-- the price is that a PostgreSQL crash or a failover to a standby empties the table, i.e.
-- every client gets a full bucket once, never a lockout.
CREATE UNLOGGED TABLE rate_limits (
    key          bytea PRIMARY KEY,
    full_at      timestamptz NOT NULL,
    last_allowed boolean NOT NULL
) WITH (fillfactor = 70); -- room for HOT updates: a hot key is updated on every request
