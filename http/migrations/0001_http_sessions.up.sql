-- Sessions of the API (bearer tokens) and of the HTML pages (cookies) share this table.
-- id is the SHA-256 of the random session token; the token itself is never stored.
CREATE TABLE http_sessions (
    id               bytea       PRIMARY KEY CHECK (octet_length(id) = 32),
    provider         text        NOT NULL,
    login            text        NOT NULL,
    password_version integer     NOT NULL,
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    step_up_until    timestamptz,
    revoked_at       timestamptz
);

CREATE INDEX http_sessions_user ON http_sessions (provider, login) WHERE revoked_at IS NULL;
CREATE INDEX http_sessions_expires ON http_sessions (expires_at);
