-- Read model "reset_activity": one fact per reset-related event, and the daily view.

-- Replay-safe by construction: facts are keyed by the event that produced them and
-- inserted with ON CONFLICT DO NOTHING. One event yields one or two facts (a granted
-- Forgot Password request is a "request" and a "token_issued").
CREATE TABLE reset_activity_facts (
    event_id    uuid        NOT NULL,
    kind        text        NOT NULL
        CHECK (kind IN ('request', 'token_issued', 'rejected', 'completed', 'token_rejected')),
    provider    text        NOT NULL,
    login       text        NOT NULL,
    day         date        NOT NULL,
    occurred_at timestamptz NOT NULL,
    reason      text,
    resend      boolean     NOT NULL DEFAULT false,
    token_id    text,
    PRIMARY KEY (event_id, kind)
);

CREATE INDEX reset_activity_facts_provider_day_idx ON reset_activity_facts (provider, day);

-- Per provider per UTC day. tokens_expired_unused comes from reset_tokens, by the day the
-- token expired: never used, and expired before anything else (a newer token, a revocation)
-- ended it.
CREATE VIEW reset_activity_daily AS
WITH facts AS (
    SELECT provider, day,
           count(*) FILTER (WHERE kind = 'request')                        AS requests,
           count(*) FILTER (WHERE kind = 'token_issued')                   AS tokens_issued,
           count(*) FILTER (WHERE kind = 'token_issued' AND resend)        AS tokens_resent,
           count(*) FILTER (WHERE kind = 'rejected')                       AS rejections,
           count(*) FILTER (WHERE kind = 'rejected' AND reason = 'unknown_account')      AS rejected_unknown_account,
           count(*) FILTER (WHERE kind = 'rejected' AND reason = 'identifiers_mismatch') AS rejected_identifiers_mismatch,
           count(*) FILTER (WHERE kind = 'rejected' AND reason = 'throttled')            AS rejected_throttled,
           count(*) FILTER (WHERE kind = 'rejected' AND reason = 'not_configured')       AS rejected_not_configured,
           count(*) FILTER (WHERE kind = 'rejected' AND reason = 'user_not_enabled')     AS rejected_user_not_enabled,
           count(*) FILTER (WHERE kind = 'rejected' AND reason = 'provider_not_allowed') AS rejected_provider_not_allowed,
           count(*) FILTER (WHERE kind = 'rejected' AND reason IN ('admin_locked', 'deactivated', 'deleted')) AS rejected_account_status,
           count(*) FILTER (WHERE kind = 'rejected' AND reason IN ('no_active_token', 'resend_after_expiry')) AS rejected_resend,
           count(*) FILTER (WHERE kind = 'token_rejected')                 AS token_rejections,
           count(*) FILTER (WHERE kind = 'completed')                      AS completed_resets
    FROM reset_activity_facts
    GROUP BY provider, day
), reasons AS (
    SELECT provider, day, jsonb_object_agg(reason, n) AS rejections_by_reason
    FROM (SELECT provider, day, coalesce(reason, 'unknown') AS reason, count(*) AS n
          FROM reset_activity_facts WHERE kind = 'rejected'
          GROUP BY provider, day, coalesce(reason, 'unknown')) r
    GROUP BY provider, day
), expired AS (
    SELECT provider, (expires_at AT TIME ZONE 'UTC')::date AS day, count(*) AS tokens_expired_unused
    FROM reset_tokens
    WHERE used_at IS NULL AND expires_at <= now()
      AND (state = 'active' OR ended_at >= expires_at)
    GROUP BY provider, (expires_at AT TIME ZONE 'UTC')::date
)
SELECT coalesce(f.provider, e.provider)          AS provider,
       coalesce(f.day, e.day)                    AS day,
       coalesce(f.requests, 0)                   AS requests,
       coalesce(f.tokens_issued, 0)              AS tokens_issued,
       coalesce(f.tokens_resent, 0)              AS tokens_resent,
       coalesce(f.rejections, 0)                 AS rejections,
       coalesce(f.rejected_unknown_account, 0)   AS rejected_unknown_account,
       coalesce(f.rejected_identifiers_mismatch, 0) AS rejected_identifiers_mismatch,
       coalesce(f.rejected_throttled, 0)         AS rejected_throttled,
       coalesce(f.rejected_not_configured, 0)    AS rejected_not_configured,
       coalesce(f.rejected_user_not_enabled, 0)  AS rejected_user_not_enabled,
       coalesce(f.rejected_provider_not_allowed, 0) AS rejected_provider_not_allowed,
       coalesce(f.rejected_account_status, 0)    AS rejected_account_status,
       coalesce(f.rejected_resend, 0)            AS rejected_resend,
       coalesce(r.rejections_by_reason, '{}'::jsonb) AS rejections_by_reason,
       coalesce(f.token_rejections, 0)           AS token_rejections,
       coalesce(f.completed_resets, 0)           AS completed_resets,
       coalesce(e.tokens_expired_unused, 0)      AS tokens_expired_unused
FROM facts f
FULL JOIN expired e ON e.provider = f.provider AND e.day = f.day
LEFT JOIN reasons r ON r.provider = f.provider AND r.day = f.day;
