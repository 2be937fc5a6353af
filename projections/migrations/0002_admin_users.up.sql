-- Read model "admin_users": the admin user list and the providers it belongs to.

CREATE TABLE providers (
    code               text        PRIMARY KEY,
    name               text        NOT NULL,
    self_reset_allowed boolean     NOT NULL DEFAULT false,
    updated_at         timestamptz NOT NULL
);

-- One row per account (provider + login). status is derived from the four flags, most
-- severe first: deleted, deactivated, admin_locked, locked (failed logins), active.
CREATE TABLE admin_users (
    provider              text        NOT NULL,
    login                 text        NOT NULL,
    display_name          text        NOT NULL DEFAULT '',
    roles                 text        NOT NULL DEFAULT '',
    status                text        NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'locked', 'admin_locked', 'deactivated', 'deleted')),
    locked                boolean     NOT NULL DEFAULT false,
    admin_locked          boolean     NOT NULL DEFAULT false,
    deactivated           boolean     NOT NULL DEFAULT false,
    deleted               boolean     NOT NULL DEFAULT false,
    self_reset_enabled    boolean     NOT NULL DEFAULT false,
    self_reset_configured boolean     NOT NULL DEFAULT false,
    recovery_email_masked text,
    last_reset_at         timestamptz,
    registered_at         timestamptz,
    updated_at            timestamptz NOT NULL,
    PRIMARY KEY (provider, login)
);

CREATE INDEX admin_users_status_idx ON admin_users (provider, status);
