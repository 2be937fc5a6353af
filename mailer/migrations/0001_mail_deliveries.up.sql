-- The mailer's delivery log: one row per mail-worthy event, keyed by the event's id, so a
-- replay or a restart of the feed never queues the same mail twice. Secret values (reset
-- tokens, email codes) are never stored: only their kind, key id and id, from which the
-- sender derives the value at send time.
CREATE TABLE mail_deliveries (
    event_id            uuid        PRIMARY KEY,
    stream              text        NOT NULL,
    revision            bigint      NOT NULL CHECK (revision >= 0),
    kind                text        NOT NULL CHECK (kind IN ('email_code', 'reset_token', 'reset_error', 'password_changed')),
    recipient           text        NOT NULL,
    secret_kind         text,
    secret_key_id       text,
    secret_id           text,
    occurred_at         timestamptz NOT NULL,
    expires_at          timestamptz,
    -- reset_error: the recorded refusal code (domain.Error.Code), rendered in the seed's words;
    -- password_changed: how the password was changed (domain.PasswordChangedBy…).
    reason              text        NOT NULL DEFAULT '',
    state               text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'skipped', 'failed')),
    -- skipped: why ('expired', 'superseded').
    skip_reason         text        NOT NULL DEFAULT '',
    attempts            integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- pending: when the row is due. While a sender works on a row this is its lease: other
    -- senders leave the row alone until then.
    next_attempt_at     timestamptz NOT NULL,
    last_error          text        NOT NULL DEFAULT '',
    provider_message_id text        NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    sent_at             timestamptz,
    CHECK ((secret_kind IS NULL) = (secret_id IS NULL) AND (secret_id IS NULL) = (secret_key_id IS NULL)),
    CHECK (kind NOT IN ('email_code', 'reset_token') OR (secret_id IS NOT NULL AND expires_at IS NOT NULL))
);

-- The sender's claim: due pending rows, oldest first.
CREATE INDEX mail_deliveries_due_idx ON mail_deliveries (next_attempt_at) WHERE state = 'pending';

-- Supersession: is there a later secret of the same kind on the same stream?
CREATE INDEX mail_deliveries_secret_idx ON mail_deliveries (stream, secret_kind, revision) WHERE secret_kind IS NOT NULL;
