-- Read model "reset_tokens": every password token ever issued and what became of it.

CREATE TABLE reset_tokens (
    token_id       text        PRIMARY KEY,
    provider       text        NOT NULL,
    login          text        NOT NULL,
    issued_at      timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    state          text        NOT NULL CHECK (state IN ('active', 'used', 'revoked', 'superseded')),
    wrong_attempts integer     NOT NULL DEFAULT 0,
    resend         boolean     NOT NULL DEFAULT false,
    supersedes     text,
    superseded_by  text,
    used_at        timestamptz,
    ended_at       timestamptz,
    end_reason     text,
    updated_at     timestamptz NOT NULL
);

CREATE INDEX reset_tokens_user_idx ON reset_tokens (provider, login, issued_at);
CREATE INDEX reset_tokens_active_expiry_idx ON reset_tokens (expires_at) WHERE state = 'active';

-- "Is this token valid now": active (not used, revoked or superseded) and not yet expired.
CREATE VIEW reset_tokens_valid_now AS
SELECT token_id, provider, login, issued_at, expires_at, wrong_attempts, resend
FROM reset_tokens
WHERE state = 'active' AND expires_at > now();
