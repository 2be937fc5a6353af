-- Read model "analytics": sign-in outcomes, the configuration funnel and the enablement
-- history, each with a daily view; and two views over reset_tokens (time from request to
-- completed reset). Nothing here holds a hash, an address or an IP: accounts are named by
-- provider code and login only, and a login someone typed for an account that does not
-- exist is not kept at all.

-- One row per sign-in outcome (LoginSucceeded, LoginFailed, AccountLocked,
-- AccountUnlocked), keyed by the event.
CREATE TABLE readmodels.login_activity_facts (
    event_id        uuid        PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind IN ('succeeded', 'failed', 'locked', 'unlocked')),
    provider        text        NOT NULL,
    login           text,       -- NULL for a failed login of an account that does not exist
    day             date        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    reason          text,       -- failed: why (wrong_password, locked, …); unlocked: password_reset or admin
    step_up         boolean     NOT NULL DEFAULT false, -- failed: the settings re-authentication
    failed_attempts integer     -- failed, locked: the running count on the account
);

CREATE INDEX login_activity_facts_provider_day_idx ON readmodels.login_activity_facts (provider, day);

CREATE VIEW readmodels.login_activity_daily AS
SELECT provider, day,
       count(*) FILTER (WHERE kind = 'succeeded')                                  AS logins_succeeded,
       count(*) FILTER (WHERE kind = 'failed')                                     AS login_failures,
       count(*) FILTER (WHERE kind = 'failed' AND reason = 'wrong_password')       AS failed_wrong_password,
       count(*) FILTER (WHERE kind = 'failed' AND reason = 'locked')               AS failed_locked,
       count(*) FILTER (WHERE kind = 'failed' AND reason = 'unknown_account')      AS failed_unknown_account,
       count(*) FILTER (WHERE kind = 'failed' AND reason IN ('admin_locked', 'deactivated', 'deleted')) AS failed_account_status,
       count(*) FILTER (WHERE kind = 'failed' AND step_up)                         AS failed_step_up,
       count(DISTINCT login) FILTER (WHERE kind = 'failed')                        AS accounts_failed,
       count(*) FILTER (WHERE kind = 'locked')                                     AS lockouts,
       count(*) FILTER (WHERE kind = 'unlocked')                                   AS unlocks,
       count(*) FILTER (WHERE kind = 'unlocked' AND reason = 'password_reset')     AS unlocks_by_reset,
       count(*) FILTER (WHERE kind = 'unlocked' AND reason = 'admin')              AS unlocks_by_admin
FROM readmodels.login_activity_facts
GROUP BY provider, day;

-- One row per step of configuring self-service reset (RecoveryEmailCodeSent,
-- RecoveryEmailCodeRejected, RecoveryEmailVerified, SelfResetConfigured), keyed by the event.
CREATE TABLE readmodels.configuration_facts (
    event_id    uuid        PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind IN ('code_sent', 'code_rejected', 'verified', 'configured')),
    provider    text        NOT NULL,
    login       text        NOT NULL,
    day         date        NOT NULL,
    occurred_at timestamptz NOT NULL,
    code_id     text,       -- code_sent, code_rejected, verified: which code (its id, never its value)
    reason      text        -- code_rejected: wrong_code, code_expired, too_many_attempts
);

CREATE INDEX configuration_facts_provider_day_idx ON readmodels.configuration_facts (provider, day);

-- The funnel per provider per UTC day: events and distinct accounts at each step.
CREATE VIEW readmodels.configuration_funnel_daily AS
SELECT provider, day,
       count(*) FILTER (WHERE kind = 'code_sent')                AS codes_sent,
       count(DISTINCT login) FILTER (WHERE kind = 'code_sent')   AS accounts_sent_code,
       count(*) FILTER (WHERE kind = 'code_rejected')            AS codes_rejected,
       count(*) FILTER (WHERE kind = 'verified')                 AS codes_verified,
       count(DISTINCT login) FILTER (WHERE kind = 'verified')    AS accounts_verified,
       count(*) FILTER (WHERE kind = 'configured')               AS configured,
       count(DISTINCT login) FILTER (WHERE kind = 'configured')  AS accounts_configured
FROM readmodels.configuration_facts
GROUP BY provider, day;

-- One row per period in which self-service reset was enabled for an account: opened by
-- SelfResetEnabled (keyed by that event), closed by the next SelfResetDisabled.
-- enabled_by and disabled_by are actor ids ("user:ACME/boss", "system:ops").
CREATE TABLE readmodels.enablement_history (
    enabled_event_id uuid        PRIMARY KEY,
    provider         text        NOT NULL,
    login            text        NOT NULL,
    enabled_at       timestamptz NOT NULL,
    enabled_by       text        NOT NULL,
    disabled_at      timestamptz,
    disabled_by      text
);

CREATE INDEX enablement_history_account_idx ON readmodels.enablement_history (provider, login, enabled_at);

-- Time from request to completed reset, one row per Forgot Password request that issued a
-- token: the token chain it started (each Resend supersedes the token before it) and,
-- when a token of that chain was used, when. Computed from reset_tokens.
CREATE VIEW readmodels.reset_durations AS
WITH RECURSIVE chain AS (
    SELECT token_id AS request_token_id, token_id, provider, login, issued_at AS requested_at, used_at
    FROM readmodels.reset_tokens
    WHERE NOT resend
    UNION ALL
    SELECT c.request_token_id, t.token_id, c.provider, c.login, c.requested_at, t.used_at
    FROM chain c
    JOIN readmodels.reset_tokens t ON t.supersedes = c.token_id AND t.resend
)
SELECT request_token_id, provider, login, requested_at,
       (requested_at AT TIME ZONE 'UTC')::date AS day,
       count(*) - 1                            AS resends,
       max(used_at)                            AS completed_at,
       extract(epoch FROM max(used_at) - requested_at)::double precision AS seconds
FROM chain
GROUP BY request_token_id, provider, login, requested_at;

-- Per provider per UTC day of the request: requests, completed resets and the median, 90th
-- percentile and maximum seconds to completion (NULL when none completed).
CREATE VIEW readmodels.reset_durations_daily AS
SELECT provider, day,
       count(*)                                                       AS requests,
       count(completed_at)                                            AS completed,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds)           AS p50_seconds,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds)           AS p90_seconds,
       max(seconds)                                                   AS max_seconds
FROM readmodels.reset_durations
GROUP BY provider, day;
