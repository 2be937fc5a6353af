-- The read models move out of the default schema, where the event store (argon2id hashes,
-- recovery emails, client IPs), the HTTP sessions and the mail log live, into a schema of
-- their own that the analyst role may read (granted by projections.Migrate after the
-- files). The runner's tables (checkpoints, parked events) stay where they are: they are
-- the service's, not the analysts'. The schema's name is projections.Schema.
--
-- ALTER … SET SCHEMA keeps each table's rows, indexes and the views on it, so an upgrade
-- needs no rebuild. The mailer's migration may create the schema first (it adds a view
-- here), and two processes may create it at once: either way is fine.
DO $$
BEGIN
    CREATE SCHEMA IF NOT EXISTS readmodels;
EXCEPTION WHEN unique_violation OR duplicate_schema THEN
    NULL; -- created by a concurrent migration
END
$$;

ALTER TABLE providers            SET SCHEMA readmodels;
ALTER TABLE admin_users          SET SCHEMA readmodels;
ALTER TABLE reset_tokens         SET SCHEMA readmodels;
ALTER TABLE reset_activity_facts SET SCHEMA readmodels;
ALTER VIEW reset_tokens_valid_now SET SCHEMA readmodels;
ALTER VIEW reset_activity_daily   SET SCHEMA readmodels;

-- A request for an account that does not exist records the login name someone typed: it
-- may be anything (an email address, a mistyped password), so the analysts' copy keeps
-- only the provider code. Auditors still find it in the event.
ALTER TABLE readmodels.reset_activity_facts ALTER COLUMN login DROP NOT NULL;
UPDATE readmodels.reset_activity_facts SET login = NULL WHERE reason = 'unknown_account';
