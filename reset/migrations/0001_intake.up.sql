-- The durable intake of Forgot Password and Resend (reset/intake.go): one watermill-sql
-- queue table per command, in the layout of PostgreSQLQueueSchema. Rows are deleted
-- when their command has been decided.
CREATE TABLE IF NOT EXISTS reset_intake_request (
    "offset"   BIGSERIAL PRIMARY KEY,
    uuid       VARCHAR(36) NOT NULL,
    payload    JSON DEFAULT NULL,
    metadata   JSON DEFAULT NULL,
    acked      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS reset_intake_resend (
    "offset"   BIGSERIAL PRIMARY KEY,
    uuid       VARCHAR(36) NOT NULL,
    payload    JSON DEFAULT NULL,
    metadata   JSON DEFAULT NULL,
    acked      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
