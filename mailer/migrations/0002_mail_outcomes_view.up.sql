-- Mail outcomes for analysts: mail_deliveries summed per provider, kind and UTC day, with
-- no recipient, no secret id and no error text. The view lives in the read models' schema
-- (projections.Schema), which the analyst role may read, while mail_deliveries stays where
-- that role cannot; the view reads it with its owner's rights. The schema may not exist
-- yet (the mailer migrated first) or be created by a concurrent migration.
DO $$
BEGIN
    CREATE SCHEMA IF NOT EXISTS readmodels;
EXCEPTION WHEN unique_violation OR duplicate_schema THEN
    NULL;
END
$$;

CREATE VIEW readmodels.mail_outcomes_daily AS
SELECT CASE WHEN stream LIKE 'user-%' THEN split_part(stream, '-', 2) END AS provider,
       kind,
       (occurred_at AT TIME ZONE 'UTC')::date                            AS day,
       count(*)                                                          AS queued,
       count(*) FILTER (WHERE state = 'pending')                         AS pending,
       count(*) FILTER (WHERE state = 'sent')                            AS sent,
       count(*) FILTER (WHERE state = 'failed')                          AS failed,
       count(*) FILTER (WHERE state = 'skipped')                         AS skipped,
       count(*) FILTER (WHERE state = 'skipped' AND skip_reason = 'expired')    AS skipped_expired,
       count(*) FILTER (WHERE state = 'skipped' AND skip_reason = 'superseded') AS skipped_superseded,
       coalesce(sum(attempts), 0)                                        AS attempts,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - occurred_at))
           FILTER (WHERE state = 'sent')                                 AS p50_seconds_to_send
FROM mail_deliveries
GROUP BY 1, 2, 3;
